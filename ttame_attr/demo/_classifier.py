"""The demo's classifier: built by ``ttame_attr.data`` when available, trained with progress bars."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClassifierHistory", "Normalized", "build_demo_classifier", "train_demo_classifier"]

logger = logging.getLogger(__name__)


class Normalized(nn.Module):
    """``net((x - mean) / std)``: a classifier that takes images in [0, 1].

    Masking such a model's input multiplies pixels, as the paper does for CNNs ("raw" masking),
    so T-TAME, Grad-CAM and the metrics all work in the same [0, 1] space.

    Args:
        net: the classifier taking normalised images.
        mean: per-channel mean.
        std: per-channel std.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.skip(x))


class _FallbackCNN(nn.Module):
    """A narrow four-stage residual CNN (used when ``ttame_attr.data`` has no classifiers)."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = _Block(width, width, 1)
        self.layer2 = _Block(width, 2 * width, 2)
        self.layer3 = _Block(2 * width, 4 * width, 2)
        self.layer4 = _Block(4 * width, 8 * width, 2)
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def build_demo_classifier(num_classes: int, image_size: int) -> nn.Module:
    """The small CNN of the demo, untrained; ``ttame_attr.data.build_classifier("cnn")`` if present.

    Its stages are ``layer1`` .. ``layer4``; the last one is Grad-CAM's layer.
    """
    try:
        from ttame_attr.data import build_classifier
    except ImportError:
        logger.info("demo: ttame_attr.data.build_classifier not available, using the built-in CNN")
        return _FallbackCNN(num_classes)
    return build_classifier("cnn", num_classes=num_classes, image_size=image_size)


@dataclass
class ClassifierHistory:
    """Per-epoch training loss and accuracy, and held-out accuracy, of the demo classifier."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        return asdict(self)


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random flips and 90-degree turns (the synthetic classes are symmetric under both)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    k = int(torch.randint(0, 4, (1,), generator=generator))
    return torch.rot90(x, k, dims=(-2, -1))


def train_demo_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    val_images: Tensor,
    val_labels: Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    bar: Callable[..., object] | None = None,
) -> ClassifierHistory:
    """Train ``model`` (taking [0, 1] images) with AdamW and a one-cycle schedule; eval mode after.

    Args:
        model: the classifier, trained in place.
        images: ``(N, 3, H, W)`` training images in [0, 1].
        labels: ``(N,)`` their classes.
        val_images: held-out images for the accuracy curve.
        val_labels: their classes.
        epochs: passes over the training images.
        batch_size: images per step.
        lr: peak learning rate.
        seed: seed of the shuffling and augmentation.
        bar: ``tqdm``-like factory for progress bars, or ``None``.
    """
    generator = torch.Generator().manual_seed(seed)
    steps = max(1, images.shape[0] // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps,
                                                   pct_start=0.15)
    history = ClassifierHistory()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(images.shape[0], generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        iterator = range(steps)
        progress = None
        if bar is not None:
            progress = bar(iterator, desc=f"classifier epoch {epoch + 1}/{epochs}", leave=False)
            iterator = progress  # type: ignore[assignment]
        for step in iterator:
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = _augment(images[idx], generator)
            y = labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * y.numel()
            correct += int((logits.argmax(1) == y).sum())
            seen += y.numel()
        if progress is not None:
            progress.close()  # type: ignore[attr-defined]
        model.eval()
        with torch.no_grad():
            preds = torch.cat([model(v).argmax(1) for v in val_images.split(256)])
        history.loss.append(total_loss / seen)
        history.accuracy.append(correct / seen)
        history.val_accuracy.append(float((preds == val_labels).float().mean()))
        logger.info("classifier epoch %d: loss %.3f, held-out accuracy %.3f", epoch + 1,
                    history.loss[-1], history.val_accuracy[-1])
    model.eval()
    return history
