"""The T-TAME attention head: one branch per feature map, a 1x1 fusion, one map per class."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HEAD_INITS", "AttentionHead", "FeatureBranch", "check_head_init"]


class FeatureBranch(nn.Module):
    """``ReLU(BN(conv1x1(x)) + x)``: the per-layer branch of the T-TAME head.

    Args:
        channels: ``C`` of the feature map ``(N, C, h, w)``; the branch keeps it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, bias=True)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, C, h, w)``.

        In eval mode the BatchNorm (running statistics) and the skip connection are folded into
        the convolution (:meth:`fused_weight_bias`): one matrix product and a ReLU instead of four
        passes over the feature map; equal to the unfused computation up to rounding. In training
        mode (batch statistics) the straightforward computation runs.
        """
        if self.training or self.bn.running_mean is None or self.bn.running_var is None:
            x = x.to(self.conv.weight.dtype)  # the float32 head on a low-precision backbone
            return F.relu(self.bn(self.conv(x)) + x)
        weight, bias = self.fused_weight_bias()
        return F.relu(F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype)), inplace=True)

    def _fold_inputs(self) -> list[Tensor]:
        bn, conv = self.bn, self.conv
        return [t for t in (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                            bn.running_var) if t is not None]

    def fused_weight_bias(self) -> tuple[Tensor, Tensor]:
        """The eval-mode branch as one affine map: ``ReLU(W' x + b')``.

        ``BN(conv(x)) + x = s * (W x + b - mean) + beta + x`` with ``s = gamma / sqrt(var + eps)``,
        so ``W' = diag(s) W + I`` and ``b' = s * (b - mean) + beta``. Under ``torch.no_grad()`` the
        result is cached until a parameter or statistic changes (their version counters move on
        every in-place update: optimiser steps, ``load_state_dict``, ``.to()``); a call that
        needs gradients never uses the cache.

        Returns:
            ``W'`` of shape ``(C, C, 1, 1)`` and ``b'`` of shape ``(C,)``, in the parameters' dtype.
        """
        bn, conv = self.bn, self.conv
        assert bn.running_mean is not None and bn.running_var is not None
        tracked = self._fold_inputs()
        # Under torch.export / torch.compile the tensors are fake (no data pointer): no cache,
        # and the fold becomes part of the graph (constant-folded by the compilers).
        tracing = torch.compiler.is_compiling()
        # A fold computed without gradients must not serve a call that needs them.
        cacheable = not tracing and not (torch.is_grad_enabled() and any(t.requires_grad for t in tracked))
        key = tuple((t.data_ptr(), t._version) for t in tracked) + (bn.eps,) if cacheable else None
        cached = self.__dict__.get("_fused_cache")
        if cacheable and cached is not None and cached[0] == key:
            return cached[1], cached[2]
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        # + I out of place: an in-place add on a view survives torch.export's graph and breaks
        # its decomposition for ONNX ("expected an entirely functional graph").
        eye = torch.eye(conv.weight.shape[0], dtype=conv.weight.dtype, device=conv.weight.device)
        weight = conv.weight * scale[:, None, None, None] + eye[:, :, None, None]
        bias = shift if conv.bias is None else conv.bias * scale + shift
        if cacheable:
            self.__dict__["_fused_cache"] = (key, weight, bias)
        return weight, bias


def _project_per_image(b: Tensor, w: Tensor) -> Tensor:
    """``z[n, m] = sum_c w[n, m, c] * b[n, c]``: ``(N, C, h, w)`` x ``(N, M, C)`` -> ``(N, M, h, w)``.

    One batched matrix product, on the branch output's own memory layout (no copy for NCHW or
    channels-last outputs).
    """
    n, c, h, wd = b.shape
    if not b.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last):
        # (N, h*w, C) view of the channels-last tensor; the result is channels-last as well.
        z = torch.bmm(b.permute(0, 2, 3, 1).reshape(n, h * wd, c), w.transpose(1, 2))
        return z.view(n, h, wd, -1).permute(0, 3, 1, 2)
    return torch.bmm(w, b.reshape(n, c, h * wd)).view(n, -1, h, wd)


#: The ways :class:`AttentionHead` can initialise its fusion.
HEAD_INITS = ("zeros", "pytorch")


def check_head_init(init: object) -> None:
    """Raise a ValueError naming the choices unless ``init`` is one of :data:`HEAD_INITS`."""
    if init not in HEAD_INITS:
        raise ValueError(f"head_init: expected one of {HEAD_INITS}, got {init!r}. 'zeros' starts every class "
                         "map at 0.5; 'pytorch' uses PyTorch's default initialisation of the fusion.")


class AttentionHead(nn.Module):
    """The trainable attention mechanism of T-TAME.

    Each feature map ``(N, C_i, h_i, w_i)`` goes through its :class:`FeatureBranch`, is upsampled
    bilinearly to ``map_size``, the branches are concatenated and a 1x1 convolution maps the
    ``sum(C_i)`` channels to one map per class.

    Because bilinear resizing and the 1x1 fusion are both linear, the map of class ``k`` equals
    ``sum_i resize(W_i[k] . branch_i) + b[k]`` where ``W_i`` are the fusion weight's columns of
    branch ``i``. :meth:`forward` computes it that way, for the requested classes only and at each
    branch's own resolution, which is what makes single-class explanations nearly free.
    :meth:`forward_full` is the straightforward computation of all maps, kept for reference.

    Args:
        channels: ``C_i`` of each feature map, earliest layer first.
        num_classes: ``K``, the classifier's number of classes.
        map_size: ``(h, w)`` of the output maps.
        init: how the fusion starts. ``"zeros"`` (default): weights and bias zero, so every class
            map starts at ``sigmoid(0) = 0.5`` everywhere and no class starts behind the others.
            ``"pytorch"``: PyTorch's default initialisation of ``nn.Conv2d`` (what the paper's
            code gets; the paper does not specify one). With it, a class whose random fusion row
            starts with a weak map can be pushed to zero everywhere by the area term before the
            cross-entropy shapes it, and never recover (see :doc:`/training`).
    """

    def __init__(self, channels: Sequence[int], num_classes: int, map_size: tuple[int, int],
                 init: str = "zeros") -> None:
        super().__init__()
        check_head_init(init)
        self.channels = tuple(int(c) for c in channels)
        self.num_classes = int(num_classes)
        self.map_size = (int(map_size[0]), int(map_size[1]))
        self.branches = nn.ModuleList(FeatureBranch(c) for c in self.channels)
        self.fusion = nn.Conv2d(sum(self.channels), self.num_classes, kernel_size=1, bias=True)
        if init == "zeros":
            nn.init.zeros_(self.fusion.weight)
            nn.init.zeros_(self.fusion.bias)

    def _resize(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) == self.map_size:
            return x
        return F.interpolate(x, size=self.map_size, mode="bilinear", align_corners=False)

    def forward(self, features: Sequence[Tensor], classes: Tensor | None = None) -> Tensor:
        """Class maps before the sigmoid (the paper's ``c``) for the requested classes.

        Args:
            features: ``(N, C_i, h_i, w_i)`` feature maps, one per branch.
            classes: ``None`` for all ``K`` classes; a ``(M,)`` long tensor for the same ``M``
                classes for every image; or ``(N, M)`` for ``M`` classes per image.

        Returns:
            ``(N, M, h, w)`` maps (``M = K`` when ``classes`` is ``None``), ``(h, w) = map_size``.
        """
        weight = self.fusion.weight.flatten(1)  # (K, sum C)
        bias = self.fusion.bias
        if classes is None:
            classes = torch.arange(self.num_classes, device=weight.device)
        per_image = classes.dim() == 2
        w_sel = weight[classes]  # (M, sum C) or (N, M, sum C)
        b_sel = bias[classes]  # (M,) or (N, M)
        total: Tensor | None = None
        offset = 0
        for branch, feature in zip(self.branches, features):
            b = branch(feature)
            c = b.shape[1]
            w = w_sel[..., offset : offset + c]
            offset += c
            if per_image:
                z = _project_per_image(b, w.to(b.dtype))
            else:
                z = F.conv2d(b, w.to(b.dtype)[:, :, None, None])
            z = self._resize(z)
            total = z if total is None else total + z
        assert total is not None  # at least one branch, checked at construction
        if per_image:
            return total + b_sel.to(total.dtype)[:, :, None, None]
        return total + b_sel.to(total.dtype)[None, :, None, None]

    def forward_full(self, features: Sequence[Tensor]) -> Tensor:
        """All ``K`` class maps computed as the paper writes it: resize, concatenate, fuse.

        Returns:
            ``(N, K, h, w)``.
        """
        branches = [self._resize(branch(f)) for branch, f in zip(self.branches, features)]
        return self.fusion(torch.cat(branches, dim=1))
