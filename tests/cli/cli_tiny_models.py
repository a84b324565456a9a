"""Tiny models named as ``cli_tiny_models:NAME`` specs in the CLI tests (seeded, fast)."""

from __future__ import annotations

import torch
from torch import nn

NOT_A_MODEL = 42


def tiny_cnn(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )


def tiny_vit(num_classes: int = 4) -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16,
                             mlp_dim=32, num_classes=num_classes)


def tiny_conv_stem_vit(num_classes: int = 4) -> nn.Module:
    from torchvision.models import VisionTransformer
    from torchvision.models.vision_transformer import ConvStemConfig

    torch.manual_seed(0)
    stem = [ConvStemConfig(out_channels=8, kernel_size=3, stride=2),
            ConvStemConfig(out_channels=16, kernel_size=3, stride=2)]
    return VisionTransformer(image_size=32, patch_size=4, num_layers=3, num_heads=2, hidden_dim=16,
                             mlp_dim=32, num_classes=num_classes, conv_stem_configs=stem)


def returns_tensor() -> torch.Tensor:
    return torch.zeros(1)
