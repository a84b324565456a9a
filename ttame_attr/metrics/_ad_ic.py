"""Average Drop (AD) and Increase in Confidence (IC), as evaluated in the T-TAME paper."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ttame_attr._core.parts import ExplainerParts
from ttame_attr._core.setup import Normalization, parse_normalization
from ttame_attr.metrics._common import (
    MapsOrExplain,
    TargetArg,
    check_fractions,
    check_multi_label,
    check_positive_int,
    in_eval_mode,
    make_baseline,
    pixel_ranks,
    prepare,
    probabilities,
)
from ttame_attr.metrics._stateful import Accumulator, PerSampleResult

__all__ = ["ADICResult", "AverageDropIncrease", "average_drop_increase", "kept_mask"]

DEFAULT_FRACTIONS: tuple[float, ...] = (1.0, 0.5, 0.15)
#: How the kept pixels of a fraction are chosen (see :func:`kept_mask`).
Keep = Literal["quantile", "rank"]


@dataclass(frozen=True)
class ADICResult(PerSampleResult):
    """Average Drop and Increase in Confidence at several kept fractions.

    Attributes:
        fractions: kept fractions of pixels, e.g. ``(1.0, 0.5, 0.15)``.
        average_drop: ``{fraction: AD}`` in percent (lower is better).
        increase_in_confidence: ``{fraction: IC}`` in percent (higher is better).
        clean_probs: ``(N,)`` softmax probability ``Y`` of the target class on the clean image
            (its sigmoid probability with ``multi_label``).
        masked_probs: ``(N, F)`` probability ``O`` on the masked image, one column per fraction.
        target: ``(N,)`` class evaluated for each image.
        drop: ``(N, F)`` per-sample ``100 * max(0, Y - O) / Y``.
        increase: ``(N, F)`` per-sample ``O > Y`` (bool).
    """

    fractions: tuple[float, ...]
    average_drop: dict[float, float]
    increase_in_confidence: dict[float, float]
    clean_probs: Tensor
    masked_probs: Tensor
    target: Tensor
    drop: Tensor = field(repr=False)
    increase: Tensor = field(repr=False)

    SETTINGS: ClassVar[tuple[str, ...]] = ("fractions",)
    SAMPLES: ClassVar[tuple[str, ...]] = ("clean_probs", "masked_probs", "target")

    @classmethod
    def from_per_sample(
        cls, fractions: Sequence[float], clean_probs: Tensor, masked_probs: Tensor, target: Tensor
    ) -> ADICResult:
        """Aggregate per-sample probabilities ``Y`` ``(N,)`` and ``O`` ``(N, F)``."""
        y = clean_probs.unsqueeze(1)
        drop = 100.0 * (y - masked_probs).clamp_min(0.0) / y.clamp_min(torch.finfo(y.dtype).tiny)
        increase = masked_probs > y
        ad = drop.mean(dim=0)
        ic = 100.0 * increase.float().mean(dim=0)
        fr = tuple(fractions)
        return cls(
            fractions=fr, average_drop={f: float(v) for f, v in zip(fr, ad)},
            increase_in_confidence={f: float(v) for f, v in zip(fr, ic)}, clean_probs=clean_probs,
            masked_probs=masked_probs, target=target, drop=drop, increase=increase,
        )


def kept_mask(maps: Tensor, fraction: float, keep: Keep = "quantile") -> Tensor:
    """The soft mask of AD/IC: ``maps`` ``(N, H, W)`` in ``[0, 1]`` with all but their top
    ``fraction`` set to 0 (the kept pixels keep their values).

    ``keep="quantile"`` (the paper's): pixels at or above each map's ``1 - fraction`` quantile
    (linear interpolation, as :func:`torch.quantile`; ties at the threshold are all kept);
    ``keep="rank"``: exactly ``round(fraction * H * W)`` pixels, ties broken by the earlier
    row-major pixel.

    Example:
        >>> kept_mask(torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]), 0.5).tolist()
        [[[0.0, 0.0], [0.5, 1.0]]]
    """
    flat = maps.flatten(1)
    if keep == "rank":
        ranks = pixel_ranks(maps, descending=True)
        kept = ranks < round(fraction * flat.shape[1])
    else:
        values = flat.sort(dim=1).values  # torch.quantile's linear rule, without its size limit
        position = (1.0 - fraction) * (flat.shape[1] - 1)
        low = int(position)
        high = min(low + 1, flat.shape[1] - 1)
        threshold = values[:, low] + (values[:, high] - values[:, low]) * (position - low)
        kept = flat >= threshold[:, None]
    return (flat * kept).view_as(maps)


def _check_keep(keep: Any) -> Keep:
    if keep not in ("quantile", "rank"):
        raise ValueError(f"keep: expected 'quantile' (the paper's) or 'rank', got {keep!r}.")
    return keep


def _masking(mask_space: Any, normalization: Any, explainer: Any, channels: int) -> Normalization | None:
    """The ``(mean, std)`` to un-normalise with before masking, or ``None`` to mask the inputs."""
    if mask_space not in ("auto", "input", "pixel"):
        raise ValueError(f"mask_space: expected 'auto', 'pixel' or 'input', got {mask_space!r}.")
    if normalization is None and explainer is not None:
        normalization = explainer.normalization
    if mask_space == "input" or (mask_space == "auto" and normalization is None):
        return None
    if normalization is None:
        raise ValueError("mask_space: 'pixel' needs the inputs' normalisation; pass "
                         "normalization=(mean, std) or normalization='imagenet' (or a TTAME explainer, "
                         "which knows it).")
    return parse_normalization(normalization, channels)


@torch.no_grad()
def _masked_probs(model: nn.Module, inputs: Tensor, maps: Tensor, target: Tensor, fractions: Sequence[float],
                  baseline: Tensor, keep: Keep, normalization: Normalization | None,
                  max_batch: int | None, multi_label: bool = False) -> Tensor:
    if normalization is not None:
        mean, std = (torch.tensor(v, device=inputs.device, dtype=inputs.dtype).view(-1, 1, 1)
                     for v in normalization)
        pixels = inputs * std + mean
    else:
        pixels = inputs
    columns = []
    for fraction in fractions:
        mask = kept_mask(maps, fraction, keep).unsqueeze(1).to(inputs.dtype)
        masked = baseline + (pixels - baseline) * mask
        if normalization is not None:
            masked = (masked - mean) / std
        columns.append(probabilities(model, masked, target, max_batch, multi_label)[0])
    return torch.stack(columns, dim=1)


@in_eval_mode("average_drop_increase")
def average_drop_increase(
    model: nn.Module, inputs: Tensor, maps: MapsOrExplain, target: TargetArg = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS, baseline: float | Tensor = 0.0,
    max_batch: int | None = None, *, keep: Keep = "quantile", mask_space: str = "auto",
    normalization: Any = None, multi_label: bool = False,
) -> ADICResult:
    """Average Drop (AD) and Increase in Confidence (IC) of explanation maps, the paper's way.

    For every image the map of the target class is min-max normalised to ``[0, 1]`` at its own
    resolution, upsampled (bilinear) to the input size, and all of it but the pixels at or
    above its ``1 - fraction`` quantile is set to 0 (the kept pixels keep their soft values:
    :func:`kept_mask`). The image is multiplied by this mask, ``masked = baseline + (image -
    baseline) * mask``, where the image is the un-normalised ``[0, 1]`` one when the inputs'
    normalisation is known (``mask_space``), then normalised again. With ``Y`` the softmax
    probability of the class on the clean image and ``O`` on the masked one::

        AD = 100 / N * sum(max(0, Y - O) / Y)      (lower is better)
        IC = 100 / N * sum(O > Y)                  (higher is better)

    Given a :class:`~ttame_attr.TTAME` explainer as ``maps``, the map is exactly the authors':
    the pre-sigmoid class map ``c`` at the head's map size (``attribute(scale="raw",
    upsample=False)``), and masking is in pixel space with the explainer's normalisation (for
    every model, ViTs included, as in the authors' evaluation). To evaluate its sigmoid maps
    upsampled first (as any other method's), pass ``explainer.attribute`` instead.

    A constant map (e.g. all zeros) normalises to all zeros, so its masked image is the
    baseline everywhere. The model runs in eval mode and each module's mode is restored
    afterwards (training mode gets a logged warning). Forward passes run under
    ``torch.no_grad()`` on the model's device; explanation methods are called with gradients
    enabled.

    Other libraries' numbers differ in units and protocol (``docs/evaluation.rst``):
    pytorch-grad-cam's ``DropInConfidence`` is the absolute drop ``max(0, Y - O)`` per image
    (``drop * Y / 100`` here) on maps it does not threshold, multiplied into the inputs as
    given; torchcam's ``ClassificationMetric`` reports fractions (``AD / 100``), divides by
    ``Y + 1e-7`` and multiplies the whole map into the inputs as given.

    Args:
        model: the classifier; its output is turned into logits by
            :func:`ttame_attr._core.outputs.forward_logits`.
        inputs: images ``(N, C, H, W)`` as the model takes them; not modified.
        maps: precomputed maps ``(N, 1, h, w)``, ``(N, h, w)`` or ``(N, C, h, w)`` (channels are
            averaged) at any resolution, an explanation method ``explain(inputs, target)`` (or an
            object with a Captum-style ``attribute(inputs, target=...)``) returning them, or a
            :class:`~ttame_attr.TTAME` explainer (see above).
        target: class to evaluate per image: ``None`` (the model's top-1 prediction on the
            clean image, as in the paper), an int, or a LongTensor ``(N,)``. Precomputed maps
            must be the maps of these classes.
        fractions: kept fractions of pixels, each in ``(0, 1]`` (paper: 100%, 50%, 15%).
        baseline: value of removed pixels, in the space masking happens in (0: black pixels,
            or zeros of the inputs): a number or a tensor broadcastable to ``(N, C, H, W)``.
        max_batch: most images per forward pass (default: ``N``).
        keep: ``"quantile"`` (the paper's per-image quantiles) or ``"rank"`` (exactly
            ``round(fraction * H * W)`` pixels).
        mask_space: ``"auto"`` (pixel space when the normalisation is known: given, or the
            explainer's; else the inputs as given), ``"pixel"`` or ``"input"``.
        normalization: ``(mean, std)`` of the inputs, ``"imagenet"`` or an image processor
            (default: the explainer's, when ``maps`` is a TTAME explainer).
        multi_label: ``True`` for a multi-label or single-logit ``(N, 1)`` model: ``Y`` and
            ``O`` are the sigmoid probabilities of the target label instead of softmax ones
            (the default target is still the top-1 label; evaluate every positive label by
            repeating each image once per label, as :func:`evaluate` does).

    Returns:
        An :class:`ADICResult` with ``average_drop[f]`` and ``increase_in_confidence[f]`` for
        every fraction ``f`` and the per-sample values.

    Raises:
        TypeError: non-tensor inputs or maps, non-integer target.
        ValueError: wrong ranks or shapes, mismatched batch sizes, an empty batch, fractions
            outside ``(0, 1]``, target classes out of range, an unknown ``keep`` or
            ``mask_space``, ``mask_space="pixel"`` without a normalisation.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> images = torch.rand(2, 3, 8, 8)
        >>> res = average_drop_increase(model, images, torch.rand(2, 1, 4, 4))
        >>> sorted(res.average_drop)
        [0.15, 0.5, 1.0]
    """
    fr = check_fractions(fractions)
    max_batch = check_positive_int(max_batch, "max_batch")
    keep = _check_keep(keep)
    explainer = maps if isinstance(maps, ExplainerParts) else None
    if explainer is not None:
        maps = functools.partial(_paper_maps, explainer)
    channels = inputs.shape[1] if isinstance(inputs, Tensor) and inputs.dim() == 4 else None
    space = _masking(mask_space, normalization, explainer, channels)
    prep = prepare(model, inputs, maps, target, "average_drop_increase", minmax=True,
                   multi_label=multi_label)
    base = make_baseline(baseline, prep.inputs)
    y = prep.clean_probs.gather(1, prep.target.view(-1, 1)).squeeze(1)
    o = _masked_probs(model, prep.inputs, prep.maps, prep.target, fr, base, keep, space, max_batch,
                      multi_label)
    return ADICResult.from_per_sample(fr, y, o, prep.target)


def _paper_maps(explainer: ExplainerParts, inputs: Tensor, target: Tensor) -> Tensor:
    """The authors' evaluation map: pre-sigmoid ``c`` of the target class at the map size."""
    return explainer.attribute(inputs, target=target, scale="raw", upsample=False)


class AverageDropIncrease(Accumulator):
    """Stateful Average Drop / Increase in Confidence, accumulated over batches.

    ``compute()`` over several ``update()`` calls equals :func:`average_drop_increase` on the
    concatenated batches. Per-sample values are kept on the CPU.

    Args:
        model, fractions, baseline, max_batch, keep, mask_space, normalization, multi_label: as
            in :func:`average_drop_increase`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> metric = AverageDropIncrease(model)
        >>> for _ in range(2):
        ...     _ = metric.update(torch.rand(4, 3, 8, 8), torch.rand(4, 1, 8, 8))
        >>> metric.compute().masked_probs.shape
        torch.Size([8, 3])
    """

    def __init__(self, model: nn.Module, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 baseline: float | Tensor = 0.0, max_batch: int | None = None, *, keep: Keep = "quantile",
                 mask_space: str = "auto", normalization: Any = None, multi_label: bool = False) -> None:
        if mask_space not in ("auto", "input", "pixel"):
            raise ValueError(f"mask_space: expected 'auto', 'pixel' or 'input', got {mask_space!r}.")
        super().__init__(average_drop_increase, model, fractions=check_fractions(fractions),
                         baseline=baseline, max_batch=check_positive_int(max_batch, "max_batch"),
                         keep=_check_keep(keep), mask_space=mask_space,
                         normalization=None if normalization is None else parse_normalization(normalization),
                         multi_label=check_multi_label(multi_label))
