"""Grad-CAM maps for the comparison: pytorch-grad-cam when installed, else Captum's LayerGradCam."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr._core.maps import minmax_scale

__all__ = ["gradcam_backend", "gradcam_maps"]


def gradcam_backend() -> str:
    """``"pytorch-grad-cam"`` if the ``grad-cam`` package is importable, else ``"captum"``."""
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        return "captum"
    return "pytorch-grad-cam"


def gradcam_maps(model: nn.Module, layer: nn.Module, inputs: Tensor, target: Tensor,
                 backend: str | None = None) -> Tensor:
    """Grad-CAM maps of the ``target`` classes, upsampled to the input and scaled to [0, 1].

    Args:
        model: the classifier (eval mode).
        layer: the convolutional layer whose activations and gradients are used.
        inputs: ``(N, C, H, W)`` images.
        target: ``(N,)`` classes.
        backend: ``"pytorch-grad-cam"``, ``"captum"`` or ``None`` (the first available).

    Returns:
        ``(N, 1, H, W)`` maps in [0, 1] (each min-max scaled; all-zero maps stay zero).
    """
    backend = backend or gradcam_backend()
    if backend == "pytorch-grad-cam":
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with GradCAM(model=model, target_layers=[layer]) as cam:
            out = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(t)) for t in target])
        return torch.from_numpy(out).float()[:, None]
    from captum.attr import LayerGradCam

    with torch.enable_grad():
        attr = LayerGradCam(model, layer).attribute(inputs, target=target.tolist(), relu_attributions=True)
    attr = F.interpolate(attr.detach(), size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    return minmax_scale(attr)
