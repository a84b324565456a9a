"""TTAME's constructor arguments turned into settings: device, input size, normalisation, masking."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ttame_attr.adapters._base import IMAGENET_MEAN, IMAGENET_STD, BackboneAdapter, Normalization

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalization",
    "model_device_dtype",
    "parse_normalization",
    "resolve_input_size",
    "resolve_mask_space",
    "resolve_normalization",
]

logger = logging.getLogger(__name__)



def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first floating parameter or buffer.

    Raises:
        ValueError: for a model on the meta device.
    """
    device, dtype = torch.device("cpu"), torch.float32
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            device, dtype = tensor.device, tensor.dtype
            break
    if device.type == "meta":
        raise ValueError(
            "model: its parameters are on the meta device and hold no values. Materialise "
            "it first (model.to_empty(device=...) and load its weights)."
        )
    return device, dtype


def resolve_input_size(
    input_size: Sequence[int] | None, adapter: BackboneAdapter, model: nn.Module
) -> tuple[int, int, int]:
    """``input_size`` as ``(C, H, W)``, or the size the model declares, or ``(3, 224, 224)``.

    Raises:
        ValueError: for anything but two or three positive ints.
    """
    if input_size is None:
        declared = adapter.input_size()
        if declared is None:
            logger.warning(
                "TTAME: %s does not declare its input size; assuming (3, 224, 224). Pass "
                "input_size=(C, H, W) if it expects another.", type(model).__name__
            )
            return (3, 224, 224)
        return declared
    size = tuple(input_size)
    if len(size) == 2:
        size = (3, *size)
    if len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(
            f"input_size: expected (C, H, W) positive ints such as (3, 224, 224), got "
            f"{input_size!r}."
        )
    return size  # type: ignore[return-value]


def parse_normalization(normalization: Any, channels: int | None = None) -> Normalization:
    """``(mean, std)`` as float tuples from ``"imagenet"``, a pair ``(mean, std)`` or an image
    processor (any object with ``image_mean`` and ``image_std``, such as a Hugging Face
    ``AutoImageProcessor``); ``channels``, when given, is the number of values each must have.

    Raises:
        TypeError, ValueError: for a malformed normalisation.
    """
    if isinstance(normalization, str):
        if normalization.lower() != "imagenet":
            raise ValueError(
                f"normalization: expected None, 'imagenet' or (mean, std), got {normalization!r}."
            )
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        if hasattr(normalization, "image_mean") and hasattr(normalization, "image_std"):
            normalization = (normalization.image_mean, normalization.image_std)
        try:
            mean, std = normalization
            mean, std = tuple(map(float, mean)), tuple(map(float, std))
        except (TypeError, ValueError) as err:
            raise TypeError(
                "normalization: expected None, 'imagenet', a pair (mean, std) of per-channel "
                f"sequences or an image processor with image_mean/image_std, got {normalization!r}."
            ) from err
    if any(s <= 0 for s in std):
        raise ValueError(f"normalization: std must be positive, got {std}.")
    if len(mean) != len(std) or (channels is not None and len(mean) != channels):
        expected = channels if channels is not None else len(mean)
        raise ValueError(
            f"normalization: expected {expected} channel means and {expected} stds (one per input "
            f"channel), got {len(mean)} and {len(std)}."
        )
    return mean, std


def resolve_normalization(
    normalization: Any, adapter: BackboneAdapter, input_size: tuple[int, int, int]
) -> Normalization | None:
    """``(mean, std)`` from ``normalization`` (:func:`parse_normalization`), or what the model
    declares when it is ``None`` (:meth:`~ttame_attr.BackboneAdapter.normalization`: timm's
    config, ImageNet's for torchvision classifiers; logged).

    Raises:
        TypeError, ValueError: for a malformed normalisation.
    """
    if normalization is None:
        declared = adapter.normalization(input_size)
        if declared is None:
            return None
        logger.info("TTAME: the model's inputs are taken to be normalised with mean %s, std %s (%s); "
                    "pass normalization=... or mask_space='input' if they are not", declared[0],
                    declared[1], type(adapter.model).__name__)
        normalization = declared
    return parse_normalization(normalization, input_size[0])


def resolve_mask_space(
    mask_space: str, normalization: Normalization | None, adapter: BackboneAdapter
) -> str:
    """``"input"`` or ``"pixel"`` for the ``mask_space`` argument (``"auto"`` decides).

    Raises:
        ValueError: for an unknown value, or ``"pixel"`` without a normalisation.
    """
    if mask_space not in ("auto", "input", "pixel"):
        raise ValueError(f"mask_space: expected 'auto', 'input' or 'pixel', got {mask_space!r}.")
    if mask_space == "pixel" and normalization is None:
        raise ValueError(
            "mask_space='pixel' needs the input normalisation: pass normalization=(mean, std) "
            "or normalization='imagenet'."
        )
    if mask_space == "auto":
        # The paper masks CNN inputs in [0, 1] pixels and ViT inputs as the model takes them.
        return "pixel" if normalization is not None and adapter.family != "vit" else "input"
    return mask_space
