"""The ``vit`` adapter: token sequences of vision transformers turned into patch-grid maps."""

from __future__ import annotations

from torch import Tensor, nn

from ttame_attr.adapters._base import BackboneAdapter, Layout, is_torchvision_model
from ttame_attr.adapters._registry import register_adapter

__all__ = ["ViTAdapter"]


def _is_torchvision_vit(model: nn.Module) -> bool:
    """Whether ``model`` is torchvision's ``VisionTransformer``."""
    return is_torchvision_model(model, "VisionTransformer")


@register_adapter("vit", priority=10)
class ViTAdapter(BackboneAdapter):
    """Vision transformers whose blocks return tokens ``(N, L, C)``.

    The prefix tokens (class, distillation, register tokens) are dropped and the patch tokens
    reshaped to the patch grid, both read from the model: torchvision's ``VisionTransformer``
    (``image_size``, ``patch_size``, one class token) and timm's ViT family (``num_prefix_tokens``
    and ``patch_embed``, also DeiT, distilled DeiT and ViTs with register tokens).

    Default layers: the norm before self-attention of the last three encoder blocks
    (torchvision ``encoder.layers.encoder_layer_{i}.ln_1``, timm ``blocks.{i}.norm1``), as in
    the T-TAME paper.
    """

    family = "vit"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        blocks = getattr(model, "blocks", None)
        return _is_torchvision_vit(model) or (
            hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")
            and isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) > 0)

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        if _is_torchvision_vit(self.model):
            layers = list(self.model.encoder.layers.named_children())[-3:]
            return [f"encoder.layers.{name}.ln_1" for name, _ in layers]
        blocks = self.model.blocks
        return [f"blocks.{i}.norm1" if hasattr(blocks[i], "norm1") else f"blocks.{i}"
                for i in range(len(blocks))[-3:]]

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        if output.dim() == 4:
            # Some blocks (or user-chosen layers) already give (N, h, w, C) or (N, C, h, w).
            grid = self.grid(input_hw)
            return "nhwc" if grid is not None and tuple(output.shape[1:3]) == grid else "nchw"
        if output.dim() != 3:
            raise ValueError(
                f"layers: the output of {name!r} has shape {tuple(output.shape)}; the vit adapter "
                "expects tokens (N, L, C). Choose a transformer block or one of its norms.")
        return "tokens"

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int] | None:
        H, W = input_hw
        if _is_torchvision_vit(self.model):
            p = int(self.model.patch_size)
            return (H // p, W // p)
        embed = getattr(self.model, "patch_embed", None)
        if embed is None:
            return None
        dynamic = getattr(embed, "dynamic_feat_size", None)
        if callable(dynamic):
            h, w = dynamic((H, W))
            return (int(h), int(w))
        grid = getattr(embed, "grid_size", None)
        return None if grid is None else (int(grid[0]), int(grid[1]))
