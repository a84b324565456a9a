"""The ``swin`` adapter: channels-last stage outputs of Swin transformers."""

from __future__ import annotations

from torch import Tensor, nn

from ttame_attr.adapters._base import BackboneAdapter, Layout, guess_layout, is_torchvision_model
from ttame_attr.adapters._registry import register_adapter

__all__ = ["SwinAdapter"]


@register_adapter("swin", priority=10)
class SwinAdapter(BackboneAdapter):
    """Swin transformers (v1 and v2), whose stages return ``(N, h, w, C)``.

    torchvision: ``features`` alternates stages and patch-merging layers; the default layers are
    the last three stages (``features.3``, ``features.5``, ``features.7`` for ``swin_t``).
    timm: ``layers.1``, ``layers.2``, ``layers.3`` (the last three stages). Older timm versions
    that return tokens ``(N, L, C)`` are laid out on the grid as well.
    """

    family = "swin"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return is_torchvision_model(model, "SwinTransformer") or (
            "Swin" in type(model).__name__ and isinstance(getattr(model, "layers", None), nn.Sequential))

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        if is_torchvision_model(self.model, "SwinTransformer"):
            # Stages are the odd entries: 0 is the patch embedding, then stage / merge pairs.
            return [f"features.{i}" for i in range(1, len(self.model.features), 2)][-3:]
        return [f"layers.{i}" for i in range(len(self.model.layers))][-3:]

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        if output.dim() == 3:
            return "tokens"
        if output.dim() != 4:
            raise ValueError(
                f"layers: the output of {name!r} has shape {tuple(output.shape)}; the swin adapter "
                "expects (N, h, w, C) stage outputs.")
        # Stage outputs are channels-last; a user may also pick an NCHW layer (after `permute`).
        layout = guess_layout(tuple(output.shape), input_hw, prefer="nhwc")
        if layout is None:
            raise ValueError(
                f"layers: the output of {name!r} has shape {tuple(output.shape)}, which is not a "
                "feature map (N, h, w, C) or (N, C, h, w).")
        return layout
