"""Pointing game (Zhang et al., ECCV 2016) and energy-based pointing game (Wang et al., 2020)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ttame_attr._core.images import check_images
from ttame_attr._core.maps import minmax_scale
from ttame_attr._core.targets import classes_per_image
from ttame_attr.metrics._common import MapsOrExplain, TargetArg, get_maps, prepare_maps
from ttame_attr.metrics._stateful import Accumulator, PerSampleResult

__all__ = ["EnergyPointingGame", "EnergyPointingResult", "PointingGame", "PointingGameResult",
           "energy_pointing_game", "pointing_game"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PointingGameResult(PerSampleResult):
    """Pointing game hits.

    Attributes:
        accuracy: hits / valid images (``nan`` if no image has a non-empty mask).
        hits: ``(N,)`` bool, the map's maximum falls inside the (dilated) mask.
        valid: ``(N,)`` bool, the mask has at least one pixel (empty masks are not counted).
        points: ``(N, 2)`` long ``(row, col)`` of each map's maximum at mask resolution.
    """

    accuracy: float
    hits: Tensor = field(repr=False)
    valid: Tensor = field(repr=False)
    points: Tensor = field(repr=False)

    SAMPLES: ClassVar[tuple[str, ...]] = ("hits", "valid", "points")

    @classmethod
    def from_per_sample(cls, hits: Tensor, valid: Tensor, points: Tensor) -> PointingGameResult:
        """Aggregate per-sample hits over the valid images."""
        n_valid = int(valid.sum())
        acc = float((hits & valid).sum()) / n_valid if n_valid else float("nan")
        return cls(accuracy=acc, hits=hits, valid=valid, points=points)


@dataclass(frozen=True)
class EnergyPointingResult(PerSampleResult):
    """Energy-based pointing game.

    Attributes:
        energy: mean share of the map's energy inside the mask, over all images.
        proportions: ``(N,)`` per-image ``sum(map * mask) / sum(map)`` of the min-max
            normalised map (0 where the normalised map is all zero).
    """

    energy: float
    proportions: Tensor = field(repr=False)

    SAMPLES: ClassVar[tuple[str, ...]] = ("proportions",)

    @classmethod
    def from_per_sample(cls, proportions: Tensor) -> EnergyPointingResult:
        """Aggregate per-sample proportions."""
        return cls(energy=float(proportions.mean()), proportions=proportions)


def _check_masks(masks: Any) -> Tensor:
    """Ground-truth masks as bool ``(N, H, W)``."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks: expected a torch.Tensor of shape (N, H, W) or (N, 1, H, W), got "
                        f"{type(masks).__name__}. Convert it with torch.as_tensor.")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(f"masks: expected shape (N, H, W) or (N, 1, H, W), got {tuple(masks.shape)}. Merge "
                         "several boxes/objects of one image into one mask (logical or).")
    if masks.shape[0] == 0:
        raise ValueError("masks: got an empty batch (N = 0); pass at least one mask.")
    if min(masks.shape[1:]) == 0:
        raise ValueError(f"masks: height and width must be at least 1, got shape {tuple(masks.shape)}.")
    if masks.is_complex():
        raise TypeError(f"masks: expected a bool or 0/1 tensor, got dtype {masks.dtype}.")
    if masks.is_floating_point():
        soft = masks[(masks > 0) & (masks < 1)]
        if soft.numel():
            raise ValueError(f"masks: expected bool or 0/1 masks, got {soft.numel()} values between 0 and 1 "
                             f"(e.g. {float(soft.flatten()[0])}), a soft or resized mask. Binarise it first, "
                             "e.g. masks >= 0.5 (resize masks with mode='nearest').")
    m = masks >= 1 if masks.is_floating_point() else masks.bool()
    empty = (~m.flatten(1).any(dim=1)).nonzero().flatten().tolist()
    if len(empty) == m.shape[0]:
        raise ValueError(f"masks: all {m.shape[0]} masks are empty (no pixel set), so there is nothing to "
                         "point at. Pass masks with the object's pixels set (bool or 0/1).")
    if empty:
        logger.warning("masks: %d of %d masks are empty (positions %s); those images are not scored",
                       len(empty), m.shape[0], empty[:10])
    return m


def _maps_at(maps: MapsOrExplain, masks: Tensor, inputs: Tensor | None, target: TargetArg) -> Tensor:
    """Maps ``(N, H, W)`` at the masks' resolution, on the masks' device."""
    given = inputs if inputs is not None and not isinstance(maps, Tensor) else maps
    n = given.shape[0] if isinstance(given, Tensor) and given.dim() > 0 else None
    if n is not None and n != masks.shape[0]:
        what = "images of `inputs`" if given is inputs else "maps"
        raise ValueError(f"masks: batch size {masks.shape[0]} does not match the {n} {what}. Pass one mask "
                         "(and one map) per image, in the same order.")
    if callable(maps) or callable(getattr(maps, "attribute", None)):
        if inputs is None or target is None:
            raise ValueError("maps: an explanation method was given, so `inputs` (N, C, H, W) and `target` "
                             "(the ground-truth class per image) are needed too. Pass them, or pass "
                             "precomputed maps.")
        x = check_images(inputs)
        placeholder = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        maps = get_maps(maps, x, classes_per_image(target, placeholder))
    if isinstance(maps, Tensor):
        maps = maps.to(masks.device)
    return prepare_maps(maps, masks.shape[0], (masks.shape[-2], masks.shape[-1]))


def _disk(radius: float, device: torch.device) -> Tensor:
    r = int(radius)
    ax = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    return ((ax.view(-1, 1) ** 2 + ax.view(1, -1) ** 2) <= radius**2).float()


@torch.no_grad()
def pointing_game(maps: MapsOrExplain, masks: Tensor, tolerance: float = 0.0, inputs: Tensor | None = None,
                  target: TargetArg = None) -> PointingGameResult:
    """Pointing game: a hit when the map's maximum lies inside the ground-truth mask.

    Maps are upsampled bilinearly to the masks' size. The maximum is the first maximal pixel
    in row-major order. With ``tolerance > 0`` a hit also counts when the maximum lies within
    ``tolerance`` pixels (Euclidean, at mask resolution) of the mask, as in Zhang et al.
    (15 px on the original image). Images with an empty mask are not counted (``valid``).

    Args:
        maps: maps ``(N, 1, h, w)``, ``(N, h, w)`` or ``(N, C, h, w)`` (channels averaged), or
            an explanation method called as ``explain(inputs, target)`` (or an object with
            ``attribute(inputs, target=...)``).
        masks: ground truth, bool or 0/1 ``(N, H, W)`` or ``(N, 1, H, W)`` (soft values are
            refused; an empty mask is logged and its image not counted).
        tolerance: radius in pixels around the mask that still counts as a hit (>= 0).
        inputs: images ``(N, C, H, W)``, only needed with an explanation method.
        target: ground-truth class per image (int or ``(N,)``), only with an explanation
            method.

    Returns:
        A :class:`PointingGameResult`.

    Raises:
        TypeError: non-tensor maps or masks.
        ValueError: wrong ranks, mismatched batch sizes, empty batch, negative tolerance, soft
            masks, every mask empty, maps holding NaN or inf.

    Example:
        >>> masks = torch.zeros(1, 8, 8, dtype=torch.bool)
        >>> masks[0, 2:4, 2:4] = True
        >>> pointing_game(masks.float(), masks).accuracy
        1.0
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"tolerance: expected a number of pixels >= 0, got {tolerance!r}.")
    m = _check_masks(masks)
    sal = _maps_at(maps, m, inputs, target)
    w = m.shape[-1]
    idx = sal.flatten(1).argmax(dim=1)
    region = m
    if tolerance > 0:
        disk = _disk(float(tolerance), m.device)
        pad = disk.shape[-1] // 2
        region = F.conv2d(m[:, None].float(), disk[None, None], padding=pad)[:, 0] > 0.5
    hits = region.flatten(1).gather(1, idx.view(-1, 1)).squeeze(1)
    valid = m.flatten(1).any(dim=1)
    points = torch.stack([idx // w, idx % w], dim=1)
    return PointingGameResult.from_per_sample(hits, valid, points)


@torch.no_grad()
def energy_pointing_game(maps: MapsOrExplain, masks: Tensor, inputs: Tensor | None = None,
                         target: TargetArg = None) -> EnergyPointingResult:
    """Energy-based pointing game: share of the min-max normalised map inside the mask (e.g. a box).

    Args:
        maps, masks, inputs, target: as in :func:`pointing_game`.

    Returns:
        An :class:`EnergyPointingResult`; per-image ``sum(map * mask) / sum(map)``.

    Raises:
        TypeError: non-tensor maps or masks.
        ValueError: wrong ranks, mismatched batch sizes, empty batch, soft masks, every mask
            empty, maps holding NaN or inf.

    Example:
        >>> masks = torch.zeros(1, 4, 4)
        >>> masks[0, :2] = 1
        >>> energy_pointing_game(masks, masks).energy
        1.0
    """
    m = _check_masks(masks)
    sal = minmax_scale(_maps_at(maps, m, inputs, target))
    inside = (sal * m).flatten(1).sum(dim=1)
    total = sal.flatten(1).sum(dim=1)
    proportions = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return EnergyPointingResult.from_per_sample(proportions)


class _MaskMetric(Accumulator):
    """A stateful metric of maps against ground-truth masks (no model)."""

    def update(  # type: ignore[override]
        self, maps: MapsOrExplain, masks: Tensor, inputs: Tensor | None = None, target: TargetArg = None
    ) -> Any:
        """Evaluate one batch (the functional metric's arguments), keep it, return its result."""
        return self._keep(self._metric(maps, masks, inputs=inputs, target=target, **self._options))


class PointingGame(_MaskMetric):
    """Stateful pointing game accumulated over batches; see :func:`pointing_game`.

    Args:
        tolerance: as in :func:`pointing_game`.

    Example:
        >>> metric = PointingGame(tolerance=1)
        >>> masks = torch.zeros(2, 8, 8)
        >>> masks[:, 4, 4] = 1
        >>> _ = metric.update(masks, masks)
        >>> metric.compute().accuracy
        1.0
    """

    def __init__(self, tolerance: float = 0.0) -> None:
        super().__init__(pointing_game, None, tolerance=tolerance)


class EnergyPointingGame(_MaskMetric):
    """Stateful energy-based pointing game; see :func:`energy_pointing_game`.

    Example:
        >>> metric = EnergyPointingGame()
        >>> masks = torch.ones(2, 4, 4)
        >>> _ = metric.update(torch.rand(2, 4, 4), masks)
        >>> metric.compute().energy
        1.0
    """

    def __init__(self) -> None:
        super().__init__(energy_pointing_game, None)
