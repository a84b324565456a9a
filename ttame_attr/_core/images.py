"""The one check of the image batches the explainer, training and the metrics take."""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["check_images"]


def check_images(inputs: Any, name: str = "inputs", channels: int | None = None) -> Tensor:
    """``inputs`` if it is a non-empty floating ``(N, C, H, W)`` tensor holding values.

    Args:
        inputs: the batch to check.
        name: the argument's name, for messages.
        channels: the ``C`` the model takes, if known.

    Raises:
        TypeError, ValueError: naming ``name``, what was expected and how to fix it.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), got "
                        f"{type(inputs).__name__}. Convert the images with torch.as_tensor / "
                        "torchvision transforms first.")
    if inputs.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D (N, C, H, W) batch, got shape "
                         f"{tuple(inputs.shape)}. Use x.unsqueeze(0) for a single image.")
    if inputs.shape[0] == 0:
        raise ValueError(f"{name}: got an empty batch (N = 0, shape {tuple(inputs.shape)}). Pass at "
                         "least one image; skip empty batches before the call.")
    if min(inputs.shape[1:]) == 0:
        raise ValueError(f"{name}: channels, height and width must be at least 1, got shape "
                         f"{tuple(inputs.shape)}. Pass (N, C, H, W) images.")
    if not inputs.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {inputs.dtype}. Convert "
                        "it with x.float() (and normalise it as the model expects).")
    if inputs.device.type == "meta":
        raise ValueError(f"{name}: the tensor is on the meta device and holds no values; pass real "
                         "images.")
    if channels is not None and inputs.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got {inputs.shape[1]} (shape "
                         f"{tuple(inputs.shape)}). Images must be (N, {channels}, H, W).")
    return inputs
