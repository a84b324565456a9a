"""Pointing games of multi-label images: every labelled object scored against its own map."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ttame_attr._core.images import check_images
from ttame_attr.metrics._common import MapsOrExplain, get_maps
from ttame_attr.metrics._pointing import (
    EnergyPointingResult,
    PointingGameResult,
    energy_pointing_game,
    pointing_game,
)

__all__ = ["energy_pointing_game_per_label", "label_pairs", "pointing_game_per_label"]


def _check_per_class(masks: Any, labels: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(masks, Tensor) or masks.dim() != 4:
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks: expected one mask per class, (N, K, H, W), got {shape}. For one object "
                         "per image use pointing_game.")
    if labels is None:
        return masks, masks.flatten(2).gt(0.5 if masks.is_floating_point() else 0).any(dim=2)
    if not isinstance(labels, Tensor) or tuple(labels.shape) != tuple(masks.shape[:2]):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected a multi-hot tensor {tuple(masks.shape[:2])} (images, classes) "
                         f"matching masks, got {shape}.")
    return masks, (labels > 0.5) if labels.is_floating_point() else labels.bool()


def _labelled_pairs(masks: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """The checked masks and the ``(image, label)`` index pairs to score (at least one)."""
    masks, present = _check_per_class(masks, labels)
    image, label = present.nonzero(as_tuple=True)
    if not image.numel():
        raise ValueError("labels: no (image, label) pair to score; every image needs at least one label.")
    return masks, image, label


def label_pairs(masks: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ``(image, label)`` pairs the per-label pointing games score, in their order.

    Args:
        masks: ``(N, K, H, W)`` ground truth, one mask per class.
        labels: ``(N, K)`` multi-hot labels; default: the classes whose mask is not empty.

    Returns:
        ``(image, label)``, two ``(P,)`` long tensors, image by image, classes ascending.
    """
    _, present = _check_per_class(masks, labels)
    image, label = present.nonzero(as_tuple=True)
    return image, label


def _pair_maps(maps: MapsOrExplain, masks: Tensor, image: Tensor, label: Tensor,
               inputs: Tensor | None) -> Tensor:
    """The map of each pair: row ``label`` of the image's ``(K, h, w)`` maps, or the method's."""
    if isinstance(maps, Tensor):
        if maps.dim() != 4 or maps.shape[:2] != masks.shape[:2]:
            raise ValueError(f"maps: expected one map per class, {tuple(masks.shape[:2])} + (h, w) like "
                             f"the masks, got {tuple(maps.shape)}. Pass e.g. explainer.attribute(x, "
                             "target=torch.arange(K).expand(N, K)), or the explanation method itself.")
        return maps[image.to(maps.device), label.to(maps.device)].unsqueeze(1)
    if inputs is None:
        raise ValueError("inputs: an explanation method was given as maps, so the images (N, C, H, W) "
                         "are needed to call it; pass inputs=..., or pass precomputed maps.")
    x = check_images(inputs)
    return get_maps(maps, x[image.to(x.device)], label.to(x.device))


@torch.no_grad()
def pointing_game_per_label(maps: MapsOrExplain, masks: Tensor, labels: Tensor | None = None,
                            tolerance: float = 0.0, inputs: Tensor | None = None) -> PointingGameResult:
    """Pointing game over every labelled object of multi-label images.

    Each ``(image, label)`` pair (:func:`label_pairs`) is one trial: a hit when the maximum of
    the map of that label lies in the mask of that label's object (:func:`pointing_game`).

    Args:
        maps: ``(N, K, h, w)`` maps of every class, or an explanation method
            ``explain(inputs, target)`` (or an object with ``attribute``), called once on the
            images repeated per pair with the pairs' labels as targets.
        masks: ``(N, K, H, W)`` bool or 0/1 ground truth, one mask per class.
        labels: ``(N, K)`` multi-hot labels to score; default: the classes with a non-empty mask.
        tolerance: as in :func:`pointing_game`.
        inputs: ``(N, C, H, W)`` images, only needed with an explanation method.

    Returns:
        A :class:`PointingGameResult` whose per-sample fields are per pair, in
        :func:`label_pairs`' order.

    Raises:
        ValueError: masks not ``(N, K, H, W)``, labels or maps that do not match them, no pair
            at all, an explanation method without ``inputs``.

    Example:
        >>> masks = torch.zeros(1, 3, 4, 4)
        >>> masks[0, 0, 0, 0] = masks[0, 2, 3, 3] = 1
        >>> pointing_game_per_label(masks, masks).accuracy
        1.0
    """
    masks, image, label = _labelled_pairs(masks, labels)
    return pointing_game(_pair_maps(maps, masks, image, label, inputs), masks[image, label], tolerance)


@torch.no_grad()
def energy_pointing_game_per_label(maps: MapsOrExplain, masks: Tensor, labels: Tensor | None = None,
                                   inputs: Tensor | None = None) -> EnergyPointingResult:
    """Energy-based pointing game over every labelled object of multi-label images.

    Per ``(image, label)`` pair, the share of the min-max normalised map of that label inside
    that label's mask (:func:`energy_pointing_game`). Arguments as in
    :func:`pointing_game_per_label`.

    Returns:
        An :class:`EnergyPointingResult` with one proportion per pair.

    Example:
        >>> masks = torch.zeros(1, 2, 4, 4)
        >>> masks[0, 1, :2] = 1
        >>> energy_pointing_game_per_label(masks, masks).energy
        1.0
    """
    masks, image, label = _labelled_pairs(masks, labels)
    return energy_pointing_game(_pair_maps(maps, masks, image, label, inputs), masks[image, label])
