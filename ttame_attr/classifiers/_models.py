"""The three small classifiers of :class:`~ttame_attr.data.SyntheticShapes`: CNN, ViT, Swin.

Each reaches >= 95% held-out accuracy on 64x64 images after a few CPU minutes of
:func:`~ttame_attr.classifiers.train_classifier`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ttame_attr.data import CLASS_NAMES
from ttame_attr.data._synthetic import check_int

__all__ = ["ARCHITECTURES", "DEFAULT_CONFIGS", "SmallResNet", "build_classifier"]

#: Names accepted by :func:`build_classifier`.
ARCHITECTURES: tuple[str, ...] = ("cnn", "vit", "swin")
#: The sizes of each architecture.
DEFAULT_CONFIGS: dict[str, dict] = {
    "cnn": {"width": 16, "blocks": 1},
    "vit": {"hidden_dim": 96, "num_layers": 3, "num_heads": 4, "mlp_dim": 192, "stem": (24, 48, 96)},
    "swin": {"embed_dim": 32, "depths": (2, 2, 2), "num_heads": (2, 4, 8), "stem": (16, 32),
             "global_pool": "max"},
}


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a (projected, if needed) identity skip."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class SmallResNet(nn.Module):
    """A narrow ResNet for small images with NCHW stages ``layer1`` .. ``layer4``.

    A 3x3 stride-2 stem, then four stages of ``blocks`` basic blocks each; stages 2-4 halve the
    resolution. On a 64x64 input the stages output ``(N, w, 32, 32)``, ``(N, 2w, 16, 16)``,
    ``(N, 4w, 8, 8)`` and ``(N, 8w, 4, 4)`` for ``width = w``.

    Args:
        num_classes: number of output logits.
        width: channels of ``layer1``; later stages double it.
        blocks: basic blocks per stage.

    Example:
        >>> net = SmallResNet(num_classes=8, width=8)
        >>> net(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 8])
    """

    def __init__(self, num_classes: int, width: int = 16, blocks: int = 1) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, in_channels = [], width
        for i, out_channels in enumerate(widths):
            layers = [_BasicBlock(in_channels, out_channels, 1 if i == 0 else 2)]
            layers += [_BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def check_arch(arch: str) -> None:
    """Raise ``ValueError`` unless ``arch`` is one of :data:`ARCHITECTURES`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected one of {list(ARCHITECTURES)}, got {arch!r}.")


def build_classifier(arch: str, num_classes: int = len(CLASS_NAMES), image_size: int = 64) -> nn.Module:
    """Build an untrained small classifier for :class:`~ttame_attr.data.SyntheticShapes`.

    * ``"cnn"``: :class:`SmallResNet` (width 16, one block per stage), stages ``layer1`` ..
      ``layer4`` in NCHW (32, 16, 8 and 4 pixels on a 64x64 input).
    * ``"vit"``: torchvision ``VisionTransformer`` with 8x8 patches embedded by a convolutional
      stem (three stride-2 3x3 convs, ``conv_stem_configs``), 3 encoder layers, 4 heads, hidden
      size 96, MLP 192. Blocks ``encoder.layers.encoder_layer_{0,1,2}`` output tokens
      ``(N, 1 + (H / 8) * (W / 8), 96)``: one class token, then the patch grid row by row.
    * ``"swin"``: timm ``SwinTransformer`` (needs timm) with patch 4 and window 4, embed dim 32,
      depths ``(2, 2, 2)``, heads ``(2, 4, 8)``, MLP ratio 2, global *max* pooling, and the
      linear 4x4 patch projection ``patch_embed.proj`` replaced by 3x3 convs (two of stride 2).
      Stages ``layers.{0,1,2}`` output channels-last ``(N, h, w, C)`` with ``h = H / 4, H / 8,
      H / 16`` and ``C = 32, 64, 128``.

    The convolutional stems and max pooling make the transformers train in minutes on small
    data; with plain linear patch embeddings (and, for Swin, average pooling) they stayed near
    chance for several epochs in our runs.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: number of output logits, >= 2.
        image_size: side of the square input images; must be a multiple of 16 for ``"vit"``
            and ``"swin"`` (e.g. 32, 64).

    Returns:
        The model in training mode, on CPU, taking images normalised with
        :data:`~ttame_attr.data.MEAN` / :data:`~ttame_attr.data.STD`,
        ``(N, 3, image_size, image_size)``, and returning logits ``(N, num_classes)``.

    Raises:
        ValueError: if ``arch`` is unknown or a size is invalid.
        ImportError: if ``arch="swin"`` and timm is not installed.

    Example:
        >>> model = build_classifier("cnn", num_classes=8, image_size=32)
        >>> model(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 8])
    """
    check_arch(arch)
    check_int("num_classes", num_classes, minimum=2)
    check_int("image_size", image_size, minimum=16)
    if arch != "cnn" and image_size % 16 != 0:
        raise ValueError(f"image_size: the {arch!r} classifier needs a multiple of 16, got {image_size}. "
                         "Use e.g. 32 or 64, or arch='cnn'.")
    cfg = DEFAULT_CONFIGS[arch]
    if arch == "cnn":
        return SmallResNet(num_classes=num_classes, width=cfg["width"], blocks=cfg["blocks"])
    if arch == "vit":
        return _vit(num_classes, image_size, **cfg)
    return _swin(num_classes, image_size, **cfg)


def _vit(num_classes: int, image_size: int, stem: tuple[int, ...], **sizes: int) -> nn.Module:
    """A torchvision ViT with 8x8 patches embedded by stride-2 3x3 convs to ``stem`` channels."""
    from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer

    return VisionTransformer(image_size=image_size, patch_size=8, num_classes=num_classes,
                             conv_stem_configs=[ConvStemConfig(c, 3, 2) for c in stem], **sizes)


def _swin(num_classes: int, image_size: int, embed_dim: int, stem: tuple[int, ...], **options) -> nn.Module:
    """A timm Swin whose 4x4 patch projection is 3x3 convs (strides 2, 1, ..., 1, 2) through ``stem``."""
    try:
        from timm.models.swin_transformer import SwinTransformer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "build_classifier('swin') needs timm; install it with `pip install ttame-attr[timm]`."
        ) from err
    model = SwinTransformer(img_size=image_size, patch_size=4, window_size=4, embed_dim=embed_dim,
                            mlp_ratio=2.0, num_classes=num_classes, **options)
    layers: list[nn.Module] = []
    channels = 3
    for i, width in enumerate(stem):
        conv = nn.Conv2d(channels, width, 3, 2 if i == 0 else 1, 1, bias=False)
        layers += [conv, nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    model.patch_embed.proj = nn.Sequential(*layers, nn.Conv2d(channels, embed_dim, 3, 2, 1))
    return model
