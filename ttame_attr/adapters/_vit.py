"""The ``vit`` adapter: token sequences of vision transformers turned into patch-grid maps."""

from __future__ import annotations

from torch import Tensor, nn

from ttame_attr._core.modes import eval_mode
from ttame_attr.adapters._base import BackboneAdapter, Layout, is_torchvision_model
from ttame_attr.adapters._hooks import DRY_RUN_BATCH, dry_run_input, probe_modules
from ttame_attr.adapters._registry import register_adapter

__all__ = ["ViTAdapter"]

#: ``(name, (h, w), (grid_h, grid_w))``: a stem stage, its size and the model's patch grid.
StemStage = tuple[str, tuple[int, int], tuple[int, int]]


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
    the T-TAME paper. A ViT whose patches come from a convolutional stem (torchvision's
    ``conv_stem_configs``, timm's hybrid ViTs) gets its stem stage finer than the patch grid as
    a suggestion (:meth:`stem_stage`, :attr:`suggestions`), not as a default.
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
            children = list(self.model.encoder.layers.named_children())[-3:]
            layers = [f"encoder.layers.{name}.ln_1" for name, _ in children]
        else:
            blocks = self.model.blocks
            layers = [f"blocks.{i}.norm1" if hasattr(blocks[i], "norm1") else f"blocks.{i}"
                      for i in range(len(blocks))[-3:]]
        self.reasons = {name: "one of the last three blocks (the paper's)" for name in layers}
        self.suggestions = {}
        stage = self.stem_stage(input_size)
        if stage is not None:
            name, (h, w), grid = stage
            self.suggestions[name] = (
                f"the convolutional stem's {h}x{w} stage, finer than the {grid[0]}x{grid[1]} patch "
                "grid: added to the layers, it gives the head maps of its size (docs: 'ViTs with a "
                "convolutional stem')")
        return layers

    def stem_stage(self, input_size: tuple[int, int, int]) -> StemStage | None:
        """The coarsest stage of the model's convolutional stem that is finer than its patch grid.

        The stem is torchvision's ``conv_proj`` when it is a ``conv_stem_configs`` stack, or timm's
        ``patch_embed.backbone`` (hybrid ViTs); plain patchifying ViTs have none. The stem alone
        runs once on zeros, in eval mode (its modes are restored, its statistics untouched).

        Returns:
            ``(name, (h, w), patch grid)``, the module that ends that stage last, or ``None``
            (no convolutional stem, or none of its outputs is finer than the grid).
        """
        stem = self._stem()
        grid = self.grid(tuple(input_size[1:]))
        if stem is None or grid is None:
            return None
        prefix, module = stem
        outputs: list[object] = []
        try:
            with eval_mode(module):
                calls = [(f"{prefix}.{c.name}", c.shape)
                         for c in probe_modules(module, dry_run_input(module, input_size), outputs=outputs)]
        except (RuntimeError, TypeError, ValueError):  # a stem that cannot run alone: no suggestion
            return None
        if isinstance(outputs[0], Tensor):
            calls.append((prefix, tuple(outputs[0].shape)))
        best: StemStage | None = None
        for name, shape in calls:  # in the order the calls ended: a later equal size wins
            if len(shape) == 4 and shape[0] == DRY_RUN_BATCH and shape[2] > grid[0] and shape[3] > grid[1] \
                    and (best is None or shape[2] <= best[1][0]):
                best = (name, (int(shape[2]), int(shape[3])), grid)
        return best

    def _stem(self) -> tuple[str, nn.Module] | None:
        """``(name, module)`` of a convolutional stem that takes the image, or ``None``."""
        if _is_torchvision_vit(self.model):
            proj = getattr(self.model, "conv_proj", None)
            return ("conv_proj", proj) if isinstance(proj, nn.Sequential) else None
        backbone = getattr(getattr(self.model, "patch_embed", None), "backbone", None)
        return ("patch_embed.backbone", backbone) if isinstance(backbone, nn.Module) else None

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
