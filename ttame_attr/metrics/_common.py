"""Shared helpers of the metrics: argument checks, map preparation, chunked forward passes."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr._core.checks import check_positive_int
from ttame_attr._core.images import check_images
from ttame_attr._core.maps import minmax_scale
from ttame_attr._core.modes import eval_mode
from ttame_attr._core.outputs import forward_logits
from ttame_attr._core.targets import classes_per_image
from ttame_attr._typing import TargetType

__all__ = [
    "MULTI_LABEL_THRESHOLD", "ExplainFn", "MapsOrExplain", "Prepared", "TargetArg", "check_finite_maps",
    "check_fractions", "check_multi_label", "check_positive_int", "chunks", "clean_forward", "get_maps",
    "in_eval_mode", "make_baseline", "model_device", "nonfinite_maps", "pixel_ranks", "prepare",
    "prepare_maps", "probabilities", "to_probabilities",
    "warn_if_training",
]

logger = logging.getLogger(__name__)

F_ = TypeVar("F_", bound=Callable[..., Any])

#: An explanation method: ``explain(inputs, target) -> maps``.
ExplainFn = Callable[[Tensor, Tensor], Any]
#: Precomputed maps, an explanation function, or an object with a Captum-style ``attribute``.
MapsOrExplain = Tensor | ExplainFn | Any
#: ``None`` (the model's prediction), one class for all images, or one class per image
#: (the forms of :func:`ttame_attr._core.targets.parse_target`, one class per image).
TargetArg = TargetType


def check_fractions(values: Any) -> tuple[float, ...]:
    """Check ``fractions``: a number or a non-empty sequence of numbers in ``(0, 1]``."""
    if isinstance(values, (int, float)):
        values = (values,)
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"fractions: expected a sequence of numbers in (0, 1], got {values!r}. "
                        "Pass e.g. (1.0, 0.5, 0.15).") from None
    if not result:
        raise ValueError("fractions: expected at least one value, got an empty sequence.")
    bad = [v for v in result if not 0.0 < v <= 1.0]
    if bad:
        raise ValueError(f"fractions: every value must lie in (0, 1], got {bad} in {result}. Give fractions, "
                         "not percentages (0.5, not 50).")
    return result


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer, else ``fallback``."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return fallback


_WARNED_TRAINING: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def warn_if_training(model: nn.Module, where: str) -> None:
    """Log a warning (once per model object) if any module is in training mode; never change it."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}. Pass the classifier "
                        "whose explanations are evaluated.")
    if any(m.training for m in model.modules()) and model not in _WARNED_TRAINING:
        _WARNED_TRAINING.add(model)
        logger.warning("%s: the model is in training mode; the metric runs it in eval mode (no dropout, "
                       "batch-norm statistics used, never updated) and restores each module's mode "
                       "afterwards. Call model.eval() to silence this.", where)


def in_eval_mode(where: str) -> Callable[[F_], F_]:
    """Decorate a metric whose first argument is the model: warn if it is in training mode
    (:func:`warn_if_training`), run the metric with it in eval mode, restore every module's mode."""

    def decorate(metric: F_) -> F_:
        @functools.wraps(metric)
        def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
            warn_if_training(model, where)
            with eval_mode(model):
                return metric(model, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def chunks(total: int, size: int | None) -> Iterator[slice]:
    """Slices covering ``range(total)`` in pieces of at most ``size`` (all at once if None)."""
    step = total if size is None else size
    for start in range(0, total, max(step, 1)):
        yield slice(start, min(start + step, total))


#: Probability of a label above which a multi-label model "has" it (ROAD's criterion).
MULTI_LABEL_THRESHOLD = 0.5


def check_multi_label(value: Any) -> bool:
    """``multi_label`` as a bool, else TypeError naming it."""
    if not isinstance(value, bool):
        raise TypeError(f"multi_label: expected True (sigmoid probabilities: multi-label or single-logit "
                        f"models) or False (softmax), got {value!r}.")
    return value


def to_probabilities(logits: Tensor, multi_label: bool = False) -> Tensor:
    """Float32 ``(N, K)`` probabilities: softmax over classes, or one sigmoid per label."""
    logits = logits.float()
    return logits.sigmoid() if multi_label else logits.softmax(dim=1)


@torch.no_grad()
def probabilities(model: nn.Module, images: Tensor, target: Tensor,
                  max_batch: int | None = None, multi_label: bool = False) -> tuple[Tensor, Tensor]:
    """Float32 probability of ``target`` and long top-1 class, both ``(M,)``, in chunks.

    With ``multi_label`` the probability is the target's sigmoid, and the second tensor is the
    target where that stays above :data:`MULTI_LABEL_THRESHOLD` and ``-1`` elsewhere, so that
    ``top1 == target`` reads "the label is still positive".
    """
    probs, top1 = [], []
    for part in chunks(images.shape[0], max_batch):
        logits = forward_logits(model, images[part]).float()
        p = to_probabilities(logits, multi_label).gather(1, target[part].view(-1, 1)).squeeze(1)
        probs.append(p)
        if multi_label:
            still = p > MULTI_LABEL_THRESHOLD
            top1.append(torch.where(still, target[part], torch.full_like(target[part], -1)))
        else:
            top1.append(logits.argmax(dim=1))
    return torch.cat(probs), torch.cat(top1)


@torch.no_grad()
def clean_forward(model: nn.Module, inputs: Tensor, multi_label: bool = False) -> Tensor:
    """Probabilities ``(N, K)`` of the clean images (float32; softmax, or sigmoid with
    ``multi_label``); ValueError if the model fails."""
    try:
        logits = forward_logits(model, inputs)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"inputs: the model failed on images of shape {tuple(inputs.shape)} and dtype "
                         f"{inputs.dtype} ({type(err).__name__}: {err}). Pass images the model "
                         "accepts.") from err
    return to_probabilities(logits, multi_label)


def get_maps(maps_or_explain: MapsOrExplain, inputs: Tensor, target: Tensor) -> Tensor:
    """Precomputed maps as they are, or the output of the explanation method.

    Explanation methods (``explain(inputs, target)`` or Captum-style ``attribute(inputs,
    target=target)``) run with gradients enabled, on a detached copy of ``inputs``. A
    one-element tuple/list result is unwrapped.
    """
    if isinstance(maps_or_explain, Tensor):
        return maps_or_explain
    attribute = getattr(maps_or_explain, "attribute", None)
    with torch.enable_grad():
        if callable(attribute):
            result = attribute(inputs.detach().clone(), target=target)
        elif callable(maps_or_explain):
            result = maps_or_explain(inputs.detach().clone(), target)
        else:
            raise TypeError("maps: expected a tensor of maps (N, 1, h, w), (N, h, w) or (N, C, h, w), a "
                            "callable explain(inputs, target) -> maps, or an object with an attribute() "
                            f"method, got {type(maps_or_explain).__name__}.")
    if isinstance(result, (tuple, list)) and len(result) == 1:
        result = result[0]
    if not isinstance(result, Tensor):
        raise TypeError("maps: the explanation method returned "
                        f"{type(result).__name__}, expected a torch.Tensor of maps (N, 1, h, w). Wrap the "
                        "method so that it returns a tensor (e.g. torch.as_tensor(numpy_maps)).")
    return result


def prepare_maps(maps: Tensor, n: int, size: tuple[int, int], minmax: bool = False) -> Tensor:
    """Bring maps to float32 ``(N, H, W)`` at ``size`` on their device; never modifies ``maps``.

    ``(N, C, h, w)`` maps with ``C > 1`` are averaged over channels (after min-max normalisation
    this equals summing them); with ``minmax`` each map is then min-max scaled to ``[0, 1]`` at
    its own resolution (the paper's AD/IC); other resolutions are upsampled bilinearly
    (``align_corners=False``). Signed values are kept (take ``.abs()`` first if the magnitude
    is what counts).
    """
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps: expected a torch.Tensor, got {type(maps).__name__}.")
    if maps.dim() not in (3, 4):
        raise ValueError(f"maps: expected shape (N, 1, h, w), (N, h, w) or (N, C, h, w), got "
                         f"{tuple(maps.shape)}. Add or remove the batch/channel dimension to match.")
    if maps.shape[0] != n:
        raise ValueError(f"maps: batch size {maps.shape[0]} does not match the {n} images of `inputs`. "
                         "Pass one map per image, in the same order.")
    if maps.is_complex() or maps.dtype == torch.bool:
        raise TypeError(f"maps: expected a real-valued tensor, got dtype {maps.dtype}.")
    if min(maps.shape[1:]) == 0:
        raise ValueError(f"maps: maps have an empty channel or spatial size, shape {tuple(maps.shape)}.")
    m = maps.detach().float()
    check_finite_maps(m)
    if m.dim() == 3:
        m = m.unsqueeze(1)
    elif m.shape[1] > 1:
        m = m.mean(dim=1, keepdim=True)
    if minmax:
        m = minmax_scale(m)
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m[:, 0]


def nonfinite_maps(maps: Tensor) -> Tensor:
    """``(N,)`` bool: which maps of a batch hold a NaN or an infinity."""
    return ~torch.isfinite(maps.detach()).flatten(1).all(dim=1)


def check_finite_maps(maps: Tensor, first: int = 0) -> None:
    """Refuse maps holding NaN or inf (min-max scaling would turn them into plausible scores).

    Args:
        maps: ``(N, ...)`` maps of a batch.
        first: the position of the batch's first image, for the message (``evaluate``).

    Raises:
        ValueError: naming the images (positions in the batch, or from ``first``).
    """
    bad = nonfinite_maps(maps).nonzero().flatten().tolist()
    if bad:
        where = "images" if first else "images (positions in the batch)"
        shown = ", ".join(str(first + i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise ValueError(f"maps: the maps of {len(bad)} of {maps.shape[0]} {where} {shown} hold NaN or inf, "
                         "which no metric can score. Fix the explanation method (or the images), or with "
                         "evaluate() pass nonfinite='skip' to leave such images out and count them.")


def pixel_ranks(maps: Tensor, descending: bool = True) -> Tensor:
    """Rank of every pixel, ``(N, H*W)``: 0 for the most (``descending``) or least relevant.

    Ties go to the earlier row-major pixel (stable sort). The ``k`` pixels selected at a
    fraction ``f`` are those with rank ``< round(f * H * W)``.
    """
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks


@dataclass
class Prepared:
    """What every model-based metric needs for one batch (all on the model's device)."""

    inputs: Tensor  # (N, C, H, W), the caller's tensor (or a moved copy), never modified
    clean_probs: Tensor  # (N, K) softmax (sigmoid if multi-label) of the clean images
    target: Tensor  # (N,) long
    maps: Tensor  # (N, H, W) float32, upsampled (min-max scaled first if asked)


def prepare(model: nn.Module, inputs: Any, maps_or_explain: MapsOrExplain, target: TargetArg,
            where: str, minmax: bool = False, multi_label: bool = False) -> Prepared:
    """Check the arguments, run the clean forward pass, resolve the target, get the maps
    (:func:`prepare_maps`, with ``minmax``). With ``multi_label`` the clean probabilities are
    sigmoids; the default target (the top-1 class) is the same either way."""
    warn_if_training(model, where)
    x = check_images(inputs)
    # detached: nothing below builds a graph, even if the caller's tensor requires grad
    x = x.detach().to(model_device(model, x.device))
    clean = clean_forward(model, x, check_multi_label(multi_label))
    tgt = classes_per_image(target, clean.argmax(dim=1), clean.shape[1])
    raw = get_maps(maps_or_explain, x, tgt)
    maps = prepare_maps(raw.to(x.device), x.shape[0], (x.shape[-2], x.shape[-1]), minmax)
    return Prepared(inputs=x, clean_probs=clean, target=tgt, maps=maps)


def make_baseline(baseline: Any, inputs: Tensor) -> Tensor:
    """A baseline value broadcastable to ``inputs``: a number, or a tensor of shape ``(C, 1, 1)``,
    ``(C, H, W)``, ``(1, C, H, W)`` or ``(N, C, H, W)``; returned on the inputs' device/dtype."""
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, Tensor)):
        raise TypeError("baseline: expected a number or a tensor broadcastable to the inputs (N, C, H, W), "
                        f"got {type(baseline).__name__}.")
    value = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device)
    try:
        fits = torch.broadcast_shapes(value.shape, inputs.shape) == inputs.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"baseline: shape {tuple(value.shape)} does not broadcast to the inputs "
                         f"{tuple(inputs.shape)}. Use a number, a (C, 1, 1) per-channel value or a full "
                         "(N, C, H, W) tensor.")
    return value
