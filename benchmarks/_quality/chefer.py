"""Transformer attribution of Chefer, Gur and Wolf (CVPR 2021), for torchvision ViTs, written here.

The T-TAME paper compares against it on ViT-B-16 ("the transformer LRP of Chefer et al."); no
maintained library ships it, so this module implements it from the paper:

1. Layer-wise relevance propagation (LRP) from the target class down the encoder, starting from
   a one-hot relevance on the logits:

   * layers with weights (the attention's input and output projections, the MLP's linears, the
     classifier head): the LRP-alpha1-beta0 rule: a neuron's relevance is split over its inputs in
     proportion to their positive contributions ``x+ w+ + x- w-`` (biases take no relevance);
   * the non-parametric operations with two tensor operands (the residual sums, ``A @ v``,
     ``q @ k^T``): the gradient-times-input rule ``R_u = u * d(z)/d(u) * R / z``, each operand's
     share rescaled so that the two together keep the relevance that arrived (the paper's
     normalisation: ``R_u * |sum R_u| / (|sum R_u| + |sum R_v|) * sum R / sum R_u``);
   * LayerNorm, softmax, GELU and tanh pass relevance unchanged. (Gradient times input would
     give LayerNorm almost none: a LayerNorm is invariant to the scale of its input, so
     ``x . dLN/dx = 0`` up to its bias and mean terms.)

2. Per block ``b``, the relevance ``R_b`` and the gradient ``dA_b`` (of the target logit) of the
   attention probabilities give ``Abar_b = I + mean_heads((dA_b * R_b)^+)``.
3. The rollout ``C = Abar_B ... Abar_2 Abar_1`` (later blocks on the left, as tokens flow) and the
   class token's row over the patch tokens is the map, on the patch grid, upsampled bilinearly to
   the image.

Dropout is the identity (eval mode). The model is run by a re-implementation of torchvision's
``VisionTransformer`` forward that keeps every intermediate tensor; a test checks that it returns
the model's own logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CheferLRP", "add_rule", "bilinear_rule", "linear_rule", "transformer_attribution"]

EPS = 1e-9


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    """``a / b`` with ``0`` where ``b == 0`` and ``b`` kept away from zero by ``EPS`` with its sign."""
    stabilised = b + EPS * torch.where(b >= 0, 1.0, -1.0)
    return torch.where(b == 0, torch.zeros_like(a), a / stabilised)


def linear_rule(x: Tensor, weight: Tensor, relevance: Tensor) -> Tensor:
    """LRP-alpha1-beta0 through ``x @ weight.T``: ``x (..., in)``, ``weight (out, in)``, relevance
    ``(..., out)`` -> ``(..., in)``. Conserves the relevance wherever the positive part is not 0."""
    px, nx = x.clamp(min=0), x.clamp(max=0)
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    s = _safe_div(relevance, px @ pw.T + nx @ nw.T)
    return px * (s @ pw) + nx * (s @ nw)


def _per_sample_sum(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1).view(-1, *([1] * (t.dim() - 1)))


def _rebalance(r_u: Tensor, r_v: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's normalisation of two operands' relevance: shares by ``|sum|``, total kept."""
    su, sv, total = _per_sample_sum(r_u), _per_sample_sum(r_v), _per_sample_sum(relevance)
    share_u = _safe_div(su.abs(), su.abs() + sv.abs())
    share_v = _safe_div(sv.abs(), su.abs() + sv.abs())
    return r_u * share_u * _safe_div(total, su), r_v * share_v * _safe_div(total, sv)


def add_rule(u: Tensor, v: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """Relevance of ``u`` and ``v`` for ``z = u + v`` (gradient times input, rebalanced)."""
    s = _safe_div(relevance, u + v)
    return _rebalance(u * s, v * s, relevance)


def bilinear_rule(a: Tensor, b: Tensor, relevance: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Relevance of ``a`` and ``b`` for ``z = scale * a @ b`` (batched), gradient times input,
    rebalanced: ``R_a = a * (S @ b^T) * scale``, ``R_b = b * (a^T @ S) * scale``, ``S = R / z``."""
    s = _safe_div(relevance, scale * (a @ b))
    return _rebalance(a * (s @ b.transpose(-1, -2)) * scale, b * (a.transpose(-1, -2) @ s) * scale, relevance)


@dataclass
class _Block:
    """One encoder block's forward tensors (batch-first, heads split as ``(N, H, S, d)``)."""

    x_in: Tensor
    h: Tensor
    q: Tensor
    k: Tensor
    v: Tensor
    attn: Tensor
    ctx: Tensor
    o: Tensor
    x_mid: Tensor
    h2: Tensor
    g: Tensor
    m2: Tensor


def _split(t: Tensor, heads: int) -> Tensor:
    n, s, d = t.shape
    return t.view(n, s, heads, d // heads).transpose(1, 2)


def _merge(t: Tensor) -> Tensor:
    n, h, s, d = t.shape
    return t.transpose(1, 2).reshape(n, s, h * d)


def _block_forward(layer: nn.Module, x: Tensor) -> tuple[Tensor, _Block]:
    attn_mod, mlp = layer.self_attention, layer.mlp
    heads = attn_mod.num_heads
    h = layer.ln_1(x)
    qkv = F.linear(h, attn_mod.in_proj_weight, attn_mod.in_proj_bias)
    q, k, v = (_split(t, heads) for t in qkv.chunk(3, -1))
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = scale * (q @ k.transpose(-1, -2))
    attn = scores.softmax(-1)
    ctx = _merge(attn @ v)
    o = attn_mod.out_proj(ctx)
    x_mid = x + o
    h2 = layer.ln_2(x_mid)
    g = mlp[1](mlp[0](h2))
    m2 = mlp[3](g)
    return x_mid + m2, _Block(x, h, q, k, v, attn, ctx, o, x_mid, h2, g, m2)


def _head_linears(heads: nn.Module) -> list[nn.Linear]:
    linears = [m for m in heads.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("heads: expected torchvision's ViT head (Linear layers, optionally pre_logits "
                         "+ Tanh)")
    return linears


def _forward(model: nn.Module, x: Tensor) -> tuple[Tensor, list[_Block], Tensor]:
    """torchvision ``VisionTransformer.forward`` with every intermediate kept."""
    tokens = model._process_input(x)
    cls = model.class_token.expand(tokens.shape[0], -1, -1)
    t = torch.cat([cls, tokens], dim=1) + model.encoder.pos_embedding
    blocks = []
    for layer in model.encoder.layers:
        t, record = _block_forward(layer, t)
        blocks.append(record)
    z = model.encoder.ln(t)
    return model.heads(z[:, 0]), blocks, z


def _block_relevance(layer: nn.Module, b: _Block, r_out: Tensor) -> tuple[Tensor, Tensor]:
    """Relevance of the block's input and of its attention probabilities ``(N, H, S, S)``."""
    mlp, attn_mod = layer.mlp, layer.self_attention
    r_mid, r_m2 = add_rule(b.x_mid, b.m2, r_out)
    r_h2 = linear_rule(b.h2, mlp[0].weight, linear_rule(b.g, mlp[3].weight, r_m2))  # GELU: unchanged
    r_mid = r_mid + r_h2  # LayerNorm: unchanged
    r_x, r_o = add_rule(b.x_in, b.o, r_mid)
    r_ctx = _split(linear_rule(b.ctx, attn_mod.out_proj.weight, r_o), attn_mod.num_heads)
    r_attn, r_v = bilinear_rule(b.attn, b.v, r_ctx)
    # softmax: unchanged
    r_q, r_kt = bilinear_rule(b.q, b.k.transpose(-1, -2), r_attn, scale=1.0 / math.sqrt(b.q.shape[-1]))
    r_qkv = torch.cat([_merge(r_q), _merge(r_kt.transpose(-1, -2)), _merge(r_v)], dim=-1)
    r_h = linear_rule(b.h, attn_mod.in_proj_weight, r_qkv)
    return r_x + r_h, r_attn  # LayerNorm: unchanged


def transformer_attribution(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Chefer et al.'s map of ``target`` per image: ``(N, 1, h, w)`` on the patch grid."""
    with torch.enable_grad():  # gradients of the attention only: the model's .grad stay as they are
        logits, blocks, z = _forward(model, x.detach().requires_grad_(True))
        picked = logits.gather(1, target.view(-1, 1)).sum()
        attn_grads = torch.autograd.grad(picked, [b.attn for b in blocks])
    linears = _head_linears(model.heads)
    relevance = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    acts = [z[:, 0]]
    for lin in linears[:-1]:  # pre_logits then Tanh (relevance unchanged through it)
        acts.append(torch.tanh(lin(acts[-1])))
    for lin, a in zip(reversed(linears), reversed(acts)):
        relevance = linear_rule(a.detach(), lin.weight.detach(), relevance)
    r_tokens = torch.zeros_like(z)
    r_tokens[:, 0] = relevance
    relevance = r_tokens  # the final LayerNorm: unchanged
    cams = []
    with torch.no_grad():
        for layer, b, grad in zip(reversed(model.encoder.layers), reversed(blocks), reversed(attn_grads)):
            detached = _Block(**{k: getattr(b, k).detach() for k in b.__dataclass_fields__})
            relevance, r_attn = _block_relevance(layer, detached, relevance)
            cams.append((grad * r_attn).clamp(min=0).mean(1))
        cams.reverse()
        n, s = x.shape[0], cams[0].shape[-1]
        eye = torch.eye(s, dtype=x.dtype, device=x.device)
        rollout = eye.expand(n, s, s)
        for cam in cams:
            rollout = (eye + cam) @ rollout
    grid = model.image_size // model.patch_size
    return rollout[:, 0, 1:].reshape(n, 1, grid, grid)


class CheferLRP:
    """``explain(normalised images, target) -> (N, 1, H, W)`` maps, upsampled from the patch grid."""

    def __init__(self, model: nn.Module) -> None:
        from torchvision.models.vision_transformer import VisionTransformer

        if not isinstance(model, VisionTransformer):
            raise TypeError(f"model: Chefer et al.'s attribution is implemented here for torchvision's "
                            f"VisionTransformer, got {type(model).__name__}.")
        self.model = model

    def __call__(self, x: Tensor, target: Tensor) -> Tensor:
        maps = transformer_attribution(self.model, x, target)
        return F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
