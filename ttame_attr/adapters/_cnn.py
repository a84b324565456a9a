"""The ``cnn`` adapter: NCHW (or channels-last) feature maps, stages found by a dry run.

It is also the fallback for models no other adapter recognises.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ttame_attr.adapters._base import BackboneAdapter, Layout, guess_layout, module_depth
from ttame_attr.adapters._probe import ModuleCall, probe_modules
from ttame_attr.adapters._registry import register_adapter

__all__ = ["CNNAdapter", "find_resolution_stages"]

logger = logging.getLogger(__name__)

_POOLING_HEADS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def find_resolution_stages(
    calls: list[ModuleCall],
    input_hw: tuple[int, int],
    num_classes: int | None,
    count: int = 3,
) -> list[str]:
    """Pick the modules that end the last ``count`` resolution stages of a network.

    For every spatial resolution (``h, w``) produced by some module, the candidate is the
    shallowest module with that output (ties: the one that finished last), so whole stages such
    as ``layer3`` win over the blocks and layers inside them. Adaptive pooling layers (classifier
    heads) and outputs with ``num_classes`` channels (class-score maps such as SqueezeNet's) are
    skipped, as are 1x1 maps.

    Returns:
        Up to ``count`` module names, earliest stage first.
    """
    best: dict[tuple[int, int], ModuleCall] = {}
    for call in calls:
        layout = guess_layout(call.shape, input_hw)
        if layout is None or isinstance(call.module, _POOLING_HEADS):
            continue
        if layout == "nchw":
            c, h, w = call.shape[1], call.shape[2], call.shape[3]
        else:
            h, w, c = call.shape[1], call.shape[2], call.shape[3]
        if h * w <= 1 or (num_classes is not None and c == num_classes):
            continue
        key = (h, w)
        current = best.get(key)
        if (
            current is None
            or module_depth(call.name) < module_depth(current.name)
            or (module_depth(call.name) == module_depth(current.name) and call.order > current.order)
        ):
            best[key] = call
    stages = sorted(best.values(), key=lambda c: c.order)
    return [c.name for c in stages[-count:]]


@register_adapter("cnn", priority=-100)
class CNNAdapter(BackboneAdapter):
    """Feature maps that are already images: CNNs (ResNet, VGG, EfficientNet, ConvNeXt, ...).

    Default layers: the modules that end the last three resolution stages, found by a dry run
    (see :func:`find_resolution_stages`); for torchvision's VGG, the last three max-pools, as in
    the T-TAME paper. Channels-last 4-D outputs are recognised and permuted. Matches every model,
    so it is also the fallback for unknown architectures.
    """

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return True

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        features = getattr(self.model, "features", None)
        if type(self.model).__name__ == "VGG" and isinstance(features, nn.Sequential):
            pools = [f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
            if len(pools) >= 3:
                return pools[-3:]
        calls = self._dry_run(input_size)
        num_classes = calls[-1].shape[-1] if calls and len(calls[-1].shape) == 2 else None
        layers = find_resolution_stages(calls, input_size[1:], num_classes)
        if not layers:
            raise ValueError(
                f"layers: could not find any feature map in {type(self.model).__name__} "
                f"(no module returns an image-like tensor for an input of size {input_size}). "
                "Pass `layers=[...]` with the names of the modules to read."
            )
        return layers

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        layout = guess_layout(tuple(output.shape), input_hw)
        if layout is None:
            raise ValueError(
                f"layers: the output of {name!r} has shape {tuple(output.shape)}, which is not a "
                "feature map (N, C, h, w) or (N, h, w, C). Choose a layer that returns an image-like "
                "tensor, or use adapter='vit' for token outputs."
            )
        return layout

    def _dry_run(self, input_size: tuple[int, int, int]) -> list[ModuleCall]:
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        x = torch.zeros(1, *input_size, device=device, dtype=dtype)
        return probe_modules(self.model, x)
