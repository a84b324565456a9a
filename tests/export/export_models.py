"""The models the export tests run on: the issue's torchvision, timm and transformers
architectures at small inputs (``weights=None`` / small configs), built on demand.

The large torchvision models are built as the same classes with fewer or narrower layers (a
ResNet of bottleneck blocks, a VGG-16 layout at an eighth of the width, a ViT-B/16 layout with
4 blocks of width 64, a Swin-T layout with one block per stage): the same module names, layer
types and adapter, so they test the same export path, in seconds instead of minutes. The
tests keep their names.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _tv(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=6, **kwargs)
    return build


def _resnet50_layout() -> nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, [1, 1, 1, 1], num_classes=6)


def _vgg16_layout() -> nn.Module:
    from torchvision.models import vgg

    cfg = [8, 8, "M", 16, 16, "M", 32, 32, 32, "M", 64, 64, 64, "M", 64, 64, 64, "M"]
    model = vgg.VGG(vgg.make_layers(cfg), num_classes=6)
    model.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 6))
    return model


def _vit_b_16_layout() -> nn.Module:
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=64, patch_size=16, num_layers=4, num_heads=2, hidden_dim=64,
                             mlp_dim=128, num_classes=6)


def _swin_t_layout() -> nn.Module:
    from torchvision.models import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                           window_size=[4, 4], stochastic_depth_prob=0.2, num_classes=6)


def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=6, **kwargs)
    return build


def _timm_swin() -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1, 1),
                           num_heads=(1, 2, 2), num_classes=6)


def _hf(model_type: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import _hf_models as hf

        return hf.build(model_type)
    return build


#: name -> (builder, input size given to TTAME or None for the model's own).
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int] | None]] = {
    "torchvision-resnet50": (_resnet50_layout, (3, 64, 64)),
    "torchvision-resnet18": (_tv("resnet18"), (3, 64, 64)),
    "torchvision-vgg16": (_vgg16_layout, (3, 64, 64)),
    "torchvision-vit_b_16": (_vit_b_16_layout, None),
    "torchvision-swin_t": (_swin_t_layout, (3, 64, 64)),
    "timm-vit": (_timm("vit_tiny_patch16_224", img_size=64), None),
    "timm-deit": (_timm("deit_tiny_distilled_patch16_224", img_size=64), None),
    "timm-swin": (_timm_swin, None),
    "timm-convnext": (_timm("convnext_atto"), (3, 64, 64)),
    "transformers-vit": (_hf("vit"), None),
    "transformers-swin": (_hf("swin"), None),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, int, int] | None]:
    builder, size = MODELS[name]
    torch.manual_seed(seed)
    return builder().eval(), size
