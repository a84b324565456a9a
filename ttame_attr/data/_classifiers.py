"""Three small classifiers for :class:`~ttame_attr.data.SyntheticShapes`, and how to train them.

``build_classifier`` makes a CNN (ResNet-style, NCHW stages ``layer1`` .. ``layer4``), a ViT
(torchvision ``VisionTransformer``) or a Swin transformer (timm ``SwinTransformer``), sized to
reach >= 95% held-out accuracy on 64x64 images after a few CPU minutes of
:func:`train_classifier`. :func:`load_or_train` caches the trained weights on disk.

Every model takes images normalised with :data:`~ttame_attr.data.MEAN` and
:data:`~ttame_attr.data.STD` (see :func:`~ttame_attr.data.normalize`), shape ``(N, 3, H, W)``,
and returns logits ``(N, num_classes)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr.data._synthetic import (
    CLASS_NAMES,
    SyntheticShapes,
    _check_int,
    normalize,
)

__all__ = [
    "ARCHITECTURES",
    "RECIPES",
    "SmallResNet",
    "TrainingHistory",
    "build_classifier",
    "evaluate_accuracy",
    "load_or_train",
    "train_classifier",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`build_classifier`.
ARCHITECTURES: tuple[str, ...] = ("cnn", "vit", "swin")


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
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

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
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages = []
        in_channels = width
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


def build_classifier(
    arch: str, num_classes: int = len(CLASS_NAMES), image_size: int = 64
) -> nn.Module:
    """Build an untrained small classifier for :class:`~ttame_attr.data.SyntheticShapes`.

    * ``"cnn"``: :class:`SmallResNet` (width 16, one block per stage), stages ``layer1`` ..
      ``layer4`` in NCHW (32, 16, 8 and 4 pixels on a 64x64 input).
    * ``"vit"``: torchvision ``VisionTransformer`` with 8x8 patches embedded by a convolutional
      stem (three stride-2 3x3 convs, ``conv_stem_configs``), 3 encoder layers, 4 heads, hidden
      size 96, MLP 192. Blocks ``encoder.layers.encoder_layer_{0,1,2}`` output tokens
      ``(N, 1 + (H / 8) * (W / 8), 96)``: one class token, then the patch grid row by row.
    * ``"swin"``: timm ``SwinTransformer`` (needs timm) with patch 4 and window 4, embed dim 32,
      depths ``(2, 2, 2)``, heads ``(2, 4, 8)``, MLP ratio 2, global *max* pooling, and the
      linear 4x4 patch projection ``patch_embed.proj`` replaced by two stride-2 3x3 convs.
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
        The model in training mode, on CPU, taking normalised ``(N, 3, image_size, image_size)``
        images and returning logits ``(N, num_classes)``.

    Raises:
        ValueError: if ``arch`` is unknown or a size is invalid.
        ImportError: if ``arch="swin"`` and timm is not installed.

    Example:
        >>> model = build_classifier("cnn", num_classes=8, image_size=32)
        >>> model(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 8])
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected one of {list(ARCHITECTURES)}, got {arch!r}.")
    _check_int("num_classes", num_classes, minimum=2)
    _check_int("image_size", image_size, minimum=16)
    if arch != "cnn" and image_size % 16 != 0:
        raise ValueError(
            f"image_size: the {arch!r} classifier needs a multiple of 16, got {image_size}. "
            "Use e.g. 32 or 64, or arch='cnn'."
        )
    return _build(arch, num_classes, image_size, **_DEFAULT_CONFIGS[arch])


# Sizes chosen so that each model reaches >= 95% on SyntheticShapes in a few CPU minutes.
_DEFAULT_CONFIGS: dict[str, dict] = {
    "cnn": {"width": 16, "blocks": 1},
    "vit": {
        "hidden_dim": 96,
        "num_layers": 3,
        "num_heads": 4,
        "mlp_dim": 192,
        "stem": (24, 48, 96),
    },
    "swin": {
        "embed_dim": 32,
        "depths": (2, 2, 2),
        "num_heads": (2, 4, 8),
        "stem": (16, 32),
        "global_pool": "max",
    },
}


def _build(arch: str, num_classes: int, image_size: int, **cfg: object) -> nn.Module:
    """Build ``arch`` with explicit sizes (see ``_DEFAULT_CONFIGS`` for the keys)."""
    if arch == "cnn":
        return SmallResNet(num_classes=num_classes, width=cfg["width"], blocks=cfg["blocks"])
    if arch == "vit":
        from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer

        # A convolutional stem (three stride-2 3x3 convs = one 8x8 patch per token) makes the
        # ViT train far faster on small data than a single linear patch projection.
        stem = [ConvStemConfig(c, 3, 2) for c in cfg.get("stem", ())] or None
        return VisionTransformer(
            image_size=image_size,
            patch_size=8,
            num_layers=cfg["num_layers"],
            num_heads=cfg["num_heads"],
            hidden_dim=cfg["hidden_dim"],
            mlp_dim=cfg["mlp_dim"],
            num_classes=num_classes,
            conv_stem_configs=stem,
        )
    try:
        from timm.models.swin_transformer import SwinTransformer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "build_classifier('swin') needs timm; install it with `pip install ttame-attr[timm]`."
        ) from err
    model = SwinTransformer(
        img_size=image_size,
        patch_size=4,
        window_size=4,
        embed_dim=cfg["embed_dim"],
        depths=tuple(cfg["depths"]),
        num_heads=tuple(cfg["num_heads"]),
        mlp_ratio=2.0,
        num_classes=num_classes,
        global_pool=cfg.get("global_pool", "avg"),
    )
    stem = tuple(cfg.get("stem", ()))
    if stem:
        # Replace the linear 4x4 patch projection by 3x3 convs with the same 4x4 stride: a
        # stride-2 conv to stem[0] channels, stride-1 convs through stem[1:], and a stride-2
        # projection to embed_dim. The local features make the Swin learn shapes far faster.
        layers: list[nn.Module] = []
        channels = 3
        for i, width in enumerate(stem):
            layers += [
                nn.Conv2d(channels, width, 3, 2 if i == 0 else 1, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            channels = width
        layers.append(nn.Conv2d(channels, cfg["embed_dim"], 3, 2, 1))
        model.patch_embed.proj = nn.Sequential(*layers)
    return model


@dataclass
class TrainingHistory:
    """What :func:`train_classifier` measured, one entry per epoch.

    Attributes:
        train_loss: mean training loss of each epoch.
        train_accuracy: training accuracy of each epoch (on augmented images).
        val_accuracy: accuracy on the validation loader after each epoch.
        seconds: wall-clock seconds of the whole run.
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Return the history as a plain ``dict`` (e.g. for JSON)."""
        return asdict(self)


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random horizontal flips and 90-degree rotations of a ``(B, 3, H, W)`` batch.

    All class shapes have a mirror symmetry and appear at every rotation, so labels stay valid.
    """
    batch = images.shape[0]
    flip = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    turns = torch.randint(0, 4, (batch,), generator=generator).to(images.device)
    out = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    rotated = [torch.rot90(out, k, dims=(-2, -1)) for k in range(4)]
    result = rotated[0].clone()
    for k in range(1, 4):
        result[turns == k] = rotated[k][turns == k]
    return result


def _unpack(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(
            "loader batches: expected (images, labels) or (images, labels, masks), got "
            f"{type(batch).__name__}."
        )
    return batch[0].to(device), batch[1].to(device)


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable,
    device: str | torch.device = "cpu",
    normalize_inputs: bool = True,
) -> float:
    """Top-1 accuracy of ``model`` over a loader of ``(images, labels[, masks])`` batches.

    The model's training flag is restored afterwards.

    Args:
        model: classifier returning logits ``(N, K)``.
        loader: iterable of batches with images ``(N, 3, H, W)`` in ``[0, 1]``.
        device: where to run the model.
        normalize_inputs: normalise images with :data:`MEAN` / :data:`STD` first.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for batch in loader:
            images, labels = _unpack(batch, device)
            if normalize_inputs:
                images = normalize(images)
            correct += int((model(images).argmax(1) == labels).sum())
            total += labels.numel()
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def train_classifier(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    epochs: int,
    lr: float = 2e-3,
    device: str | torch.device = "cpu",
    progress: bool = False,
    *,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    augment: bool = True,
    normalize_inputs: bool = True,
    seed: int = 0,
) -> TrainingHistory:
    """Train ``model`` in place with AdamW and a one-cycle schedule.

    Batches are ``(images, labels)`` or ``(images, labels, masks)`` with images in ``[0, 1]``
    (as :func:`~ttame_attr.data.make_loaders` gives). Each batch is randomly flipped and rotated
    by multiples of 90 degrees (``augment``) and normalised (``normalize_inputs``). Progress is
    logged at INFO level (``progress=True``) or DEBUG level.

    Args:
        model: the classifier; trained in place and left in eval mode.
        train_loader: training batches; must have a ``len()``.
        val_loader: validation batches, evaluated after every epoch, or ``None``.
        epochs: number of passes over ``train_loader``, >= 1.
        lr: peak learning rate of the one-cycle schedule.
        device: where to train.
        progress: log one INFO line per epoch.
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        augment: apply the random flips / rotations.
        normalize_inputs: normalise images with :data:`MEAN` / :data:`STD`.
        seed: seed of the augmentation generator.

    Returns:
        The :class:`TrainingHistory`.

    Raises:
        ValueError: if ``epochs`` < 1 or ``lr`` <= 0.
    """
    _check_int("epochs", epochs, minimum=1)
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr: expected a positive float, got {lr!r}.")
    device = torch.device(device)
    model.to(device)
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(seed)
    history = TrainingHistory()
    log = logger.info if progress else logger.debug
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        loss_sum = 0.0
        correct = total = 0
        for batch in train_loader:
            images, labels = _unpack(batch, device)
            if augment:
                images = _augment(images, generator)
            if normalize_inputs:
                images = normalize(images)
            logits = model(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * labels.numel()
            correct += int((logits.argmax(1) == labels).sum())
            total += labels.numel()
        history.train_loss.append(loss_sum / max(total, 1))
        history.train_accuracy.append(correct / max(total, 1))
        if val_loader is not None:
            history.val_accuracy.append(
                evaluate_accuracy(model, val_loader, device, normalize_inputs)
            )
        log(
            "epoch %d/%d: loss %.4f, train acc %.4f, val acc %s, %.1f s",
            epoch + 1,
            epochs,
            history.train_loss[-1],
            history.train_accuracy[-1],
            f"{history.val_accuracy[-1]:.4f}" if history.val_accuracy else "n/a",
            time.perf_counter() - start,
        )
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


#: Training recipes of :func:`load_or_train`: training images, epochs and peak learning rate.
RECIPES: dict[str, dict[str, float | int]] = {
    "cnn": {"num_train": 20000, "epochs": 8, "lr": 3e-3},
    "vit": {"num_train": 30000, "epochs": 10, "lr": 2e-3},
    "swin": {"num_train": 30000, "epochs": 20, "lr": 2e-3},
}


class _Rendered(torch.utils.data.Dataset):
    """A :class:`SyntheticShapes` split rendered once and held in memory as uint8.

    Rendering once costs about as much as one epoch of the CNN, so multi-epoch training is
    much faster from memory. Items are ``(image (3, H, W) float in [0, 1], label)``.
    """

    def __init__(self, dataset: SyntheticShapes, chunk: int = 1000) -> None:
        images, labels = [], []
        for start in range(0, len(dataset), chunk):
            batch = dataset.generate(range(start, min(start + chunk, len(dataset))))
            images.append((batch[0] * 255.0).round_().to(torch.uint8))
            labels.append(batch[1])
        self.images = torch.cat(images)
        self.labels = torch.cat(labels)

    def __len__(self) -> int:
        return self.labels.numel()

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index].float() / 255.0, self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self.images[idx].float() / 255.0, self.labels[idx]))


def _cache_stem(arch: str, image_size: int, seed: int, recipe: dict) -> str:
    key = json.dumps(
        {
            "arch": arch,
            "image_size": image_size,
            "seed": seed,
            "recipe": recipe,
            "config": _DEFAULT_CONFIGS[arch],
            "version": 1,
        },
        sort_keys=True,
        default=list,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{arch}_{image_size}px_seed{seed}_{digest}"


def load_or_train(
    arch: str,
    cache_dir: str | os.PathLike,
    *,
    image_size: int = 64,
    seed: int = 0,
    num_train: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 128,
    num_eval: int = 2000,
    device: str | torch.device = "cpu",
    progress: bool = False,
    retrain: bool = False,
) -> tuple[nn.Module, dict]:
    """Return a trained classifier for :class:`~ttame_attr.data.SyntheticShapes`, cached on disk.

    The first call trains ``build_classifier(arch)`` with :func:`train_classifier` on the
    ``"train"`` split (rendered once into memory), measures accuracy on ``num_eval`` images of
    the ``"val"`` and ``"test"`` splits, and writes ``<stem>.pt`` (the ``state_dict``) and
    ``<stem>.json`` (the metrics) into ``cache_dir``; the stem encodes the architecture, image
    size, seed and a hash of the recipe. Later calls load the weights with
    ``torch.load(..., weights_only=True)``.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        cache_dir: folder for the cached files; created if missing.
        image_size: image side in pixels.
        seed: dataset seed, also seeds the model initialisation and the shuffling.
        num_train: training images (default from :data:`RECIPES`).
        epochs: training epochs (default from :data:`RECIPES`).
        lr: peak learning rate (default from :data:`RECIPES`).
        batch_size: training batch size.
        num_eval: images of the validation and of the test split used to measure accuracy.
        device: where to train.
        progress: log per-epoch progress at INFO level.
        retrain: ignore an existing cache entry and train again.

    Returns:
        ``(model, info)``: the model in eval mode on ``device``, and a dict with
        ``val_accuracy``, ``test_accuracy``, ``train_seconds``, ``history``, ``path`` (of the
        ``.pt`` file) and ``cached`` (``True`` if loaded from disk).

    Raises:
        ValueError: if ``arch`` is unknown or a size is invalid.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected one of {list(ARCHITECTURES)}, got {arch!r}.")
    recipe = dict(RECIPES[arch])
    for name, value in (("num_train", num_train), ("epochs", epochs), ("lr", lr)):
        if value is not None:
            recipe[name] = value
    recipe["batch_size"] = _check_int("batch_size", batch_size, minimum=1)
    recipe["num_eval"] = _check_int("num_eval", num_eval, minimum=1)
    cache = Path(cache_dir)
    stem = _cache_stem(arch, image_size, seed, recipe)
    weights_path, info_path = cache / f"{stem}.pt", cache / f"{stem}.json"
    device = torch.device(device)

    torch.manual_seed(seed)
    model = build_classifier(arch, len(CLASS_NAMES), image_size)
    if not retrain and weights_path.is_file() and info_path.is_file():
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        info = json.loads(info_path.read_text())
        info.update(path=str(weights_path), cached=True)
        logger.info("loaded %s classifier from %s", arch, weights_path)
        return model.to(device).eval(), info

    logger.info("training %s classifier (%s); cache: %s", arch, recipe, weights_path)
    train_set = _Rendered(
        SyntheticShapes(int(recipe["num_train"]), image_size, seed=seed, split="train")
    )
    loader_gen = torch.Generator().manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, generator=loader_gen
    )
    eval_loaders = {
        split: torch.utils.data.DataLoader(
            SyntheticShapes(num_eval, image_size, seed=seed, split=split, return_mask=False),
            batch_size=500,
        )
        for split in ("val", "test")
    }
    history = train_classifier(
        model,
        train_loader,
        eval_loaders["val"],
        int(recipe["epochs"]),
        lr=float(recipe["lr"]),
        device=device,
        progress=progress,
        seed=seed,
    )
    info = {
        "arch": arch,
        "recipe": recipe,
        "val_accuracy": history.val_accuracy[-1],
        "test_accuracy": evaluate_accuracy(model, eval_loaders["test"], device),
        "train_seconds": history.seconds,
        "history": history.to_dict(),
    }
    cache.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, weights_path)
    info_path.write_text(json.dumps(info, indent=2))
    info.update(path=str(weights_path), cached=False)
    return model.eval(), info
