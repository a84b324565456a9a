"""Average Drop (AD) and Increase in Confidence (IC), as evaluated in the T-TAME paper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from ttame_attr._core.maps import minmax_scale
from ttame_attr.metrics._common import (
    MapsOrExplain,
    TargetArg,
    check_fractions,
    check_positive_int,
    make_baseline,
    pixel_ranks,
    prepare,
    probabilities,
)
from ttame_attr.metrics._stateful import Accumulator, PerSampleResult

__all__ = ["ADICResult", "AverageDropIncrease", "average_drop_increase"]

DEFAULT_FRACTIONS: tuple[float, ...] = (1.0, 0.5, 0.15)


@dataclass(frozen=True)
class ADICResult(PerSampleResult):
    """Average Drop and Increase in Confidence at several kept fractions.

    Attributes:
        fractions: kept fractions of pixels, e.g. ``(1.0, 0.5, 0.15)``.
        average_drop: ``{fraction: AD}`` in percent (lower is better).
        increase_in_confidence: ``{fraction: IC}`` in percent (higher is better).
        clean_probs: ``(N,)`` softmax probability ``Y`` of the target class on the clean image.
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


@torch.no_grad()
def _masked_probs(model: nn.Module, inputs: Tensor, maps: Tensor, target: Tensor, fractions: Sequence[float],
                  baseline: Tensor, max_batch: int | None) -> Tensor:
    normed = minmax_scale(maps)
    ranks = pixel_ranks(normed, descending=True).view_as(normed)
    pixels = maps.shape[-2] * maps.shape[-1]
    columns = []
    for fraction in fractions:
        mask = (normed * (ranks < round(fraction * pixels))).unsqueeze(1).to(inputs.dtype)
        masked = baseline + (inputs - baseline) * mask
        columns.append(probabilities(model, masked, target, max_batch)[0])
    return torch.stack(columns, dim=1)


def average_drop_increase(
    model: nn.Module, inputs: Tensor, maps: MapsOrExplain, target: TargetArg = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS, baseline: float | Tensor = 0.0,
    max_batch: int | None = None,
) -> ADICResult:
    """Average Drop (AD) and Increase in Confidence (IC) of explanation maps.

    For every image the map of the target class is upsampled (bilinear) to the input size,
    min-max normalised to ``[0, 1]``, and all but its top ``fraction`` of pixels are set to 0
    (the kept pixels keep their soft values). The image is multiplied by this mask,
    ``masked = baseline + (inputs - baseline) * mask`` (``baseline = 0``: plain
    multiplication, as in the paper). With ``Y`` the softmax probability of the class on the
    clean image and ``O`` on the masked one::

        AD = 100 / N * sum(max(0, Y - O) / Y)      (lower is better)
        IC = 100 / N * sum(O > Y)                  (higher is better)

    A constant map (e.g. all zeros) normalises to all zeros, so its masked image is the
    baseline everywhere. Masking happens in the space ``inputs`` are given in. To mask in
    ``[0, 1]`` pixel space (the paper's "raw" masking for CNNs), pass unnormalised images and a
    model that normalises internally, e.g.
    ``nn.Sequential(torchvision.transforms.Normalize(mean, std), model)``.

    The model is expected in eval mode and its mode is never changed (training mode gets a
    logged warning). Forward passes run under ``torch.no_grad()`` on the model's device;
    explanation methods are called with gradients enabled.

    Args:
        model: the classifier; its output is turned into logits by
            :func:`ttame_attr._core.outputs.forward_logits`.
        inputs: images ``(N, C, H, W)``; not modified.
        maps: precomputed maps ``(N, 1, h, w)``, ``(N, h, w)`` or ``(N, C, h, w)`` (channels are
            averaged) at any resolution, or an explanation method ``explain(inputs, target)``
            (or an object with a Captum-style ``attribute(inputs, target=...)``) returning them.
        target: class to evaluate per image: ``None`` (the model's top-1 prediction on the
            clean image, as in the paper), an int, or a LongTensor ``(N,)``. Precomputed maps
            must be the maps of these classes.
        fractions: kept fractions of pixels, each in ``(0, 1]``.
        baseline: value of removed pixels: a number or a tensor broadcastable to
            ``(N, C, H, W)`` (e.g. ``(C, 1, 1)``).
        max_batch: most images per forward pass (default: ``N``).

    Returns:
        An :class:`ADICResult` with ``average_drop[f]`` and ``increase_in_confidence[f]`` for
        every fraction ``f`` and the per-sample values.

    Raises:
        TypeError: non-tensor inputs or maps, non-integer target.
        ValueError: wrong ranks or shapes, mismatched batch sizes, an empty batch, fractions
            outside ``(0, 1]``, target classes out of range.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> images = torch.rand(2, 3, 8, 8)
        >>> res = average_drop_increase(model, images, torch.rand(2, 1, 4, 4))
        >>> sorted(res.average_drop)
        [0.15, 0.5, 1.0]
    """
    fr = check_fractions(fractions)
    max_batch = check_positive_int(max_batch, "max_batch")
    prep = prepare(model, inputs, maps, target, "average_drop_increase")
    base = make_baseline(baseline, prep.inputs)
    y = prep.clean_probs.gather(1, prep.target.view(-1, 1)).squeeze(1)
    o = _masked_probs(model, prep.inputs, prep.maps, prep.target, fr, base, max_batch)
    return ADICResult.from_per_sample(fr, y, o, prep.target)


class AverageDropIncrease(Accumulator):
    """Stateful Average Drop / Increase in Confidence, accumulated over batches.

    ``compute()`` over several ``update()`` calls equals :func:`average_drop_increase` on the
    concatenated batches. Per-sample values are kept on the CPU.

    Args:
        model, fractions, baseline, max_batch: as in :func:`average_drop_increase`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> metric = AverageDropIncrease(model)
        >>> for _ in range(2):
        ...     _ = metric.update(torch.rand(4, 3, 8, 8), torch.rand(4, 1, 8, 8))
        >>> metric.compute().masked_probs.shape
        torch.Size([8, 3])
    """

    def __init__(self, model: nn.Module, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 baseline: float | Tensor = 0.0, max_batch: int | None = None) -> None:
        super().__init__(average_drop_increase, model, fractions=check_fractions(fractions),
                         baseline=baseline, max_batch=check_positive_int(max_batch, "max_batch"))
