"""Checkpoints in the exact layout of the paper's authors' code (Lightning), built from a head of
this package: nothing is downloaded, and the converted head must equal the one it was built from.

Layout: ``state_dict`` holds the backbone under ``generic.body.`` (the model's own keys) and the
attention mechanism under ``generic.attn_mech.`` (``generic.attn_mech.1.`` for a ViT, inside an
``nn.Sequential`` after the token reshape): ``convs.{i}`` (1x1 conv), ``bns.{i}`` (BatchNorm2d),
``fuser`` (the fusion conv); ``hyper_parameters`` names the model, the layers (FX node names),
the attention version and the training method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ttame_attr import TTAME

CNN_LAYERS = ["layer2", "layer3", "layer4"]
VIT_NODES = [f"encoder.layers.encoder_layer_{i}.ln" for i in range(3)]  # the modules ...ln_1


def resnet18(seed: int = 0) -> nn.Module:
    """A torchvision resnet18 (the stand-in for resnet50: same layer names), 10 classes."""
    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=10).eval()


def tiny_vit(seed: int = 0) -> nn.Module:
    """A tiny torchvision VisionTransformer (the stand-in for vit_b_16: same module names)."""
    torch.manual_seed(seed)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                                hidden_dim=16, mlp_dim=32, num_classes=10).eval()


def random_head(explainer: TTAME, seed: int = 1) -> TTAME:
    """Give every weight and BatchNorm statistic of the head a distinct random value, so that a
    swapped or misplaced tensor changes the maps."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in explainer.head.state_dict().items():
            if name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
            elif value.is_floating_point():
                value.copy_(torch.randn(value.shape, generator=g) * 0.1)
    return explainer


def authors_state_dict(explainer: TTAME, model: nn.Module, nested: bool) -> dict[str, torch.Tensor]:
    """The authors' ``state_dict`` holding ``explainer``'s head and ``model``'s weights."""
    prefix = "generic.attn_mech." + ("1." if nested else "")
    state = {f"generic.body.{k}": v.clone() for k, v in model.state_dict().items()}
    for key, value in explainer.state_dict().items():
        if key.startswith("branches."):
            _, i, part, name = key.split(".")
            state[f"{prefix}{'convs' if part == 'conv' else 'bns'}.{i}.{name}"] = value.clone()
        else:
            state[prefix + key.replace("fusion.", "fuser.")] = value.clone()
    return state


def write_checkpoint(path: Path, state: dict[str, Any], **hyper_parameters: Any) -> Path:
    """``torch.save`` a Lightning-style checkpoint."""
    torch.save({"epoch": 7, "global_step": 1000, "pytorch-lightning_version": "2.1.3", "state_dict": state,
                "hyper_parameters": hyper_parameters, "optimizer_states": [], "lr_schedulers": []}, path)
    return path


def cnn_checkpoint(path: Path, model: nn.Module, **overrides: Any) -> tuple[TTAME, Path]:
    """An authors' resnet checkpoint (pixel-space masking, 64x64) and the head it holds."""
    explainer = random_head(TTAME(model, CNN_LAYERS, input_size=(3, 64, 64), normalization="imagenet",
                                  mask_space="pixel"))
    hp = {"model_name": "resnet18", "layers": CNN_LAYERS, "attention_version": "TAME",
          "train_method": "raw_normalize", "num_classes": 10, "img_size": 64, "batch_size": 32, "lr": 1e-3,
          **overrides}
    return explainer, write_checkpoint(path, authors_state_dict(explainer, model, nested=False), **hp)


def vit_checkpoint(path: Path, model: nn.Module) -> tuple[TTAME, Path]:
    """An authors' ViT checkpoint (input-space masking) and the head it holds."""
    layers = [node + "_1" for node in VIT_NODES]
    explainer = random_head(TTAME(model, layers, normalization="imagenet", mask_space="input"))
    hp = {"model_name": "vit_b_16", "layers": VIT_NODES, "attention_version": "TAME", "train_method": "new",
          "num_classes": 10, "img_size": 32}
    return explainer, write_checkpoint(path, authors_state_dict(explainer, model, nested=True), **hp)
