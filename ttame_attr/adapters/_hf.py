"""The ``hf`` adapter: Hugging Face ``transformers`` image classifiers, read per family.

Input size and channels come from ``model.config`` (or its ``vision_config``); the layers follow
the paper per family, found in the model's structure rather than by hard-coded paths (module names
change between transformers versions):

- isotropic ViTs (ViT, DeiT, BEiT, Data2Vec, DINOv2, CLIP, SigLIP, ...): the pre-attention norm of
  the last three blocks, as the paper takes torchvision's ``ln_1``; tokens on the patch grid,
  class / distillation / register tokens dropped;
- hierarchical transformers (Swin v1/v2, DonutSwin, FocalNet, LeViT, PVT, Hiera): the last block
  of each of the last three stages, before its downsampling, in its real layout;
- CNN families (ResNet, ConvNeXt, EfficientNet, MobileNet, RegNet, ...): the ends of the last
  three resolution stages, found by the dry run of the ``cnn`` adapter.

``transformers`` is never imported here: the model tells what it is.
"""

from __future__ import annotations

from torch import Tensor, nn

from ttame_attr.adapters._base import BackboneAdapter, Layout, _pair, guess_layout, to_nchw
from ttame_attr.adapters._cnn import CNNAdapter
from ttame_attr.adapters._nested import is_transformers_model
from ttame_attr.adapters._registry import register_adapter

__all__ = ["HFAdapter"]

#: Names of the norm before self-attention in the blocks of transformers' ViTs.
_PRE_NORMS = ("layernorm_before", "norm1", "layer_norm1")
#: Hierarchical families: the list of stages and, in each stage, the list of its blocks.
_STAGE_BLOCKS = {
    "swin": ("encoder.layers", "blocks"), "swinv2": ("encoder.layers", "blocks"),
    "donut-swin": ("encoder.layers", "blocks"), "focalnet": ("encoder.stages", "layers"),
    "dinat": ("encoder.levels", "layers"),
}
_TOKEN_FAMILIES = {*_STAGE_BLOCKS, "levit", "pvt", "pvt_v2", "hiera"}
#: CNN families whose stages the dry run would miss (CvT's attention holds smaller NCHW maps).
_STAGES = {"cvt": "encoder.stages"}


def _numbered(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children named ``0``, ``1``, ... of a module list, in order."""
    return sorted(((n, m) for n, m in module.named_children() if n.isdigit()), key=lambda c: int(c[0]))


def _find(model: nn.Module, path: str) -> str | None:
    """The name of the module ``path`` refers to, below the base model's prefix (or none)."""
    for name, _ in model.named_modules():
        if name == path or name.endswith("." + path):
            return name
    return None


def _prenorm_blocks(model: nn.Module, depth: object) -> tuple[str, list[str], str] | None:
    """``(block list, block names, norm child)`` of the one list of ``depth`` transformer blocks
    with a pre-attention norm (an isotropic ViT), or ``None``. Hierarchical models (SegFormer,
    MobileViT) have several such lists, of other lengths."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != depth:
            continue
        for norm in _PRE_NORMS:
            if all(isinstance(getattr(block, norm, None), nn.LayerNorm) for block in module):
                found.append((name, [f"{name}.{i}" for i in range(len(module))], norm))
    return found[0] if len(found) == 1 else None


@register_adapter("hf", priority=20)
class HFAdapter(BackboneAdapter):
    """Hugging Face ``transformers`` image classifiers (``AutoModelForImageClassification``).

    Layers per family, as the module docstring says; ``.logits`` of the output object is read by
    :func:`~ttame_attr.extract_logits`. Mean and std are not part of a transformers model: pass
    ``normalization=`` (an image processor works: ``AutoImageProcessor.from_pretrained(...)``)
    to mask in pixel space.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        config = getattr(model, "config", None)
        self.model_type = str(getattr(config, "model_type", ""))
        self.vision = getattr(config, "vision_config", None) or config
        depth = getattr(self.vision, "num_hidden_layers", None)
        self._blocks = _prenorm_blocks(model, depth) if self.model_type not in _TOKEN_FAMILIES else None
        self.family = "vit" if self._blocks else "swin" if self.model_type in _TOKEN_FAMILIES else "cnn"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return is_transformers_model(model)

    def input_size(self) -> tuple[int, int, int] | None:
        hw = _pair(getattr(self.vision, "image_size", None))
        if hw is None and self.model_type == "timm_wrapper":
            cfg = getattr(getattr(self.model, "timm_model", None), "pretrained_cfg", None) or {}
            size = cfg.get("input_size")
            return None if size is None else (int(size[0]), int(size[1]), int(size[2]))
        channels = getattr(self.vision, "num_channels", None) or 3
        return None if hw is None else (int(channels), *hw)

    def normalization(self, input_size: tuple[int, int, int] | None = None) -> None:
        return None  # in the image processor, not in the model: pass normalization=processor

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int] | None:
        patch = _pair(getattr(self.vision, "patch_size", None))
        if not self._blocks or patch is None:
            return None
        return (input_hw[0] // patch[0], input_hw[1] // patch[1])

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        if self._blocks:
            _, blocks, norm = self._blocks
            layers = [f"{block}.{norm}" for block in blocks[-3:]]
            self.reasons = {name: f"pre-attention norm of block {len(blocks) - 3 + i} of {len(blocks)} "
                                  "(the paper's ln_1)" for i, name in enumerate(layers)}
            return layers
        if self.model_type in _TOKEN_FAMILIES:
            layers = self._stage_layers()
            self.reasons = {name: f"last block of stage {len(layers) - 3 + i} before its downsampling"
                            for i, name in enumerate(layers)}
            return layers
        if self.model_type in _STAGES:
            stages = _find(self.model, _STAGES[self.model_type])
            layers = [f"{stages}.{s}" for s, _ in _numbered(self.model.get_submodule(stages))][-3:]
            self.reasons = {name: "one of the last three stages" for name in layers}
            return layers
        cnn = CNNAdapter(self.model)
        layers = cnn.default_layers(input_size)
        self.reasons = cnn.reasons
        return layers

    def _stage_layers(self) -> list[str]:
        model, kind = self.model, self.model_type
        if kind in _STAGE_BLOCKS:
            stages_path, child = _STAGE_BLOCKS[kind]
            stages = _find(model, stages_path)
            names = [f"{stages}.{s}.{child}.{_numbered(m.get_submodule(child))[-1][0]}"
                     for s, m in _numbered(model.get_submodule(stages))]
        elif kind == "levit":  # each stage ends with a subsample to the next resolution
            stages = _find(model, "encoder.stages")
            names = []
            for s, stage in _numbered(model.get_submodule(stages)):
                layers = _numbered(stage.layers)
                subsample = [i for i, (_, m) in enumerate(layers) if "Subsample" in type(m).__name__]
                last = layers[subsample[0] - 1 if subsample else -1][0]
                names.append(f"{stages}.{s}.layers.{last}")
        elif kind == "pvt":  # the last stage ends with the encoder's norm (with a class token)
            blocks = _find(model, "encoder.block")
            names = [f"{blocks}.{s}.{_numbered(m)[-1][0]}" for s, m in _numbered(model.get_submodule(blocks))]
            names[-1] = _find(model, "encoder.layer_norm")
        elif kind == "pvt_v2":  # stages return nested tuples: read their closing norm
            stages = _find(model, "encoder.layers")
            names = [f"{stages}.{s}.layer_norm" for s, _ in _numbered(model.get_submodule(stages))]
        else:  # hiera: stage outputs, laid out by convert()
            stages = _find(model, "encoder.stages")
            names = [f"{stages}.{s}" for s, _ in _numbered(model.get_submodule(stages))]
        return names[-3:]

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        if self.family == "cnn":
            return CNNAdapter(self.model).layout(name, output, input_hw)
        if output.dim() == 3:
            return "tokens"
        layout = guess_layout(tuple(output.shape), input_hw) if output.dim() == 4 else None
        if layout is None:
            raise ValueError(
                f"layers: the output of {name!r} has shape {tuple(output.shape)}, which is neither "
                "tokens (N, L, C) nor a feature map; choose a transformer block or one of its norms.")
        return layout

    def convert(self, name: str, output: Tensor, layout: Layout, input_hw: tuple[int, int]) -> Tensor:
        if self.model_type == "hiera" and layout == "tokens":
            encoder = self.model.get_submodule(_find(self.model, "encoder"))
            stage = int(name.rsplit(".", 1)[-1]) if name.rsplit(".", 1)[-1].isdigit() else None
            if stage is not None and hasattr(encoder, "reroll"):  # Hiera keeps tokens unrolled
                return to_nchw(encoder.reroll(output, stage_idx=stage), "nhwc")
        return super().convert(name, output, layout, input_hw)
