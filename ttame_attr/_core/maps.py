"""Scaling and resizing of saliency maps, shared by the explainer, the metrics and viz."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SCALES",
    "Scale",
    "check_map_options",
    "minmax_scale",
    "resize_maps",
    "scale_maps",
    "target_size",
]

#: What the values of a map are: see :meth:`ttame_attr.TTAME.attribute`.
Scale = Literal["raw", "sigmoid", "minmax"]
SCALES: tuple[str, ...] = ("raw", "sigmoid", "minmax")


#: The modes :func:`resize_maps` takes.
MODES: tuple[str, ...] = ("bilinear", "nearest", "bicubic", "area")


def check_map_options(scale: str, interpolate_mode: str) -> None:
    """Raise a ``ValueError`` naming ``scale`` or ``interpolate_mode`` if it is unknown."""
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}.")
    if interpolate_mode not in MODES:
        raise ValueError(
            "interpolate_mode: expected 'bilinear', 'nearest', 'bicubic' or 'area', got "
            f"{interpolate_mode!r}."
        )


def minmax_scale(maps: Tensor) -> Tensor:
    """Each map (its last two dimensions) min-max scaled to ``[0, 1]``; a constant map gives 0.

    Args:
        maps: ``(..., H, W)``; any leading dimensions (images, classes) are kept.

    Returns:
        A new tensor of the same shape and dtype.

    Example:
        >>> minmax_scale(torch.tensor([[[0.0, 2.0], [1.0, 4.0]]])).tolist()
        [[[0.0, 0.5], [0.25, 1.0]]]
    """
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    positive = span > 0
    scaled = torch.where(positive, (flat - low) / torch.where(positive, span, 1.0), 0.0)
    return scaled.reshape(maps.shape)


def scale_maps(maps: Tensor, scale: str) -> Tensor:
    """``"raw"``: as they are; ``"sigmoid"``: ``sigmoid(maps)``; ``"minmax"``: :func:`minmax_scale`."""
    if scale == "raw":
        return maps
    if scale == "sigmoid":
        return torch.sigmoid(maps)
    if scale == "minmax":
        return minmax_scale(maps)
    raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}.")


def target_size(upsample: bool | Sequence[int], input_hw: Sequence[int]) -> tuple[int, int] | None:
    """The ``(H, W)`` maps are resized to for ``upsample`` (``None``: keep their size).

    Raises:
        ValueError: unless ``upsample`` is ``True``, ``False`` or two positive ints.
    """
    if upsample is False:
        return None
    if upsample is True:
        return (int(input_hw[0]), int(input_hw[1]))
    size = tuple(upsample) if isinstance(upsample, (tuple, list)) else ()
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(
            f"upsample: expected True, False or a size (H, W) of two positive ints, got {upsample!r}."
        )
    return (size[0], size[1])


def resize_maps(maps: Tensor, size: tuple[int, int] | None, mode: str = "bilinear") -> Tensor:
    """``(N, K, h, w)`` maps resized to ``size`` (``align_corners=False``), or as they are."""
    if size is None or tuple(maps.shape[-2:]) == tuple(size):
        return maps
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(maps, size=size, mode=mode, align_corners=align)
