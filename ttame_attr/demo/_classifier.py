"""The demo's classifier: the small CNN of ``ttame_attr.data``, shipped trained or trained here.

The package ships the weights of ``build_classifier("cnn")`` trained with the data module's
recipe (:data:`ttame_attr.data.RECIPES`, 20,000 images x 8 epochs: about 8 CPU-minutes, too
long for a 5-minute demo) as ``weights/cnn64_seed0.pt`` (float16). :func:`write_reference_weights`
regenerates that file. Without it (or with ``--train-classifier``) the demo trains a classifier
on the spot with a smaller budget, which gives a weaker classifier and rougher maps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "WEIGHTS_PATH",
    "Normalized",
    "load_reference_classifier",
    "save_reference_weights",
    "train_classifier_here",
    "write_reference_weights",
]

logger = logging.getLogger(__name__)

#: The shipped trained classifier (``build_classifier("cnn")``, 64 px, dataset seed 0).
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "cnn64_seed0.pt"
_FORMAT = "ttame_attr.demo.classifier"


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


class _BarLoader:
    """Wrap a loader so that every pass over it shows a tqdm bar (``len`` preserved)."""

    def __init__(self, loader: Any, bar: Callable[..., Any], desc: str, epochs: int) -> None:
        self.loader, self.bar, self.desc, self.epochs, self.epoch = loader, bar, desc, epochs, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.epoch += 1
        yield from self.bar(self.loader, desc=f"{self.desc} epoch {self.epoch}/{self.epochs}",
                            leave=False)


def load_reference_classifier(path: str | Path = WEIGHTS_PATH) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped trained classifier (eval mode, float32) and its training record.

    Returns:
        ``(model, info)``; ``info`` holds ``history`` (``train_loss``, ``train_accuracy``,
        ``val_accuracy`` per epoch), ``recipe`` and ``val_accuracy``.

    Raises:
        FileNotFoundError: if the weights file is missing.
        ValueError: if the file is not such a checkpoint.
    """
    from ttame_attr._core.storage import safe_torch_load
    from ttame_attr.data import build_classifier

    payload = safe_torch_load(path, map_location="cpu")
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"path: {str(path)!r} is not a demo classifier checkpoint.")
    model = build_classifier(payload["arch"], num_classes=payload["num_classes"],
                             image_size=payload["image_size"])
    model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), info


def train_classifier_here(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    *,
    epochs: int,
    image_size: int,
    seed: int,
    lr: float = 3e-3,
    batch_size: int = 128,
    bar: Callable[..., Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``build_classifier("cnn")`` on rendered images with ``ttame_attr.data``'s loop.

    Args:
        train: ``(images (N, 3, H, W) in [0, 1], labels (N,))``.
        val: held-out images and labels for the accuracy curve.
        epochs: passes over the training images.
        image_size: ``H = W``.
        seed: seeds the weights, the shuffling and the augmentation.
        lr: peak learning rate.
        batch_size: images per step.
        bar: a ``tqdm``-like factory for progress bars, or ``None``.

    Returns:
        ``(model, info)`` as :func:`load_reference_classifier`.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from ttame_attr.data import CLASS_NAMES, build_classifier, train_classifier

    torch.manual_seed(seed)
    model = build_classifier("cnn", num_classes=len(CLASS_NAMES), image_size=image_size)
    loader: Iterable[Any] = DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))
    if bar is not None:
        loader = _BarLoader(loader, bar, "classifier", epochs)
    val_loader = DataLoader(TensorDataset(*val), batch_size=256)
    history = train_classifier(model, loader, val_loader, epochs, lr=lr, seed=seed)
    info = {
        "history": history.to_dict(),
        "recipe": {"num_train": int(train[0].shape[0]), "epochs": epochs, "lr": lr,
                   "batch_size": batch_size},
        "val_accuracy": history.val_accuracy[-1],
    }
    return model.eval(), info


def write_reference_weights(
    path: str | Path = WEIGHTS_PATH, *, seed: int = 0, image_size: int = 64,
    cache_dir: str | Path | None = None,
) -> Path:
    """Train the reference classifier with ``ttame_attr.data.load_or_train("cnn")`` and write it.

    This is how the shipped ``weights/cnn64_seed0.pt`` was made (the data module's recipe,
    20,000 images x 8 epochs, about 8 CPU-minutes), stored in float16::

        python -c "from ttame_attr.demo._classifier import write_reference_weights as w; w()"

    Args:
        path: the file to write.
        seed: dataset and training seed.
        image_size: image side.
        cache_dir: ``load_or_train``'s cache folder (a temporary folder by default).
    """
    import tempfile

    from ttame_attr.data import CLASS_NAMES, RECIPES, load_or_train

    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_or_train("cnn", cache_dir or tmp, image_size=image_size, seed=seed)
    return save_reference_weights(model, info, path, seed=seed, image_size=image_size,
                                  num_classes=len(CLASS_NAMES), recipe=dict(RECIPES["cnn"]))


def save_reference_weights(
    model: nn.Module, info: dict[str, Any], path: str | Path, *, seed: int, image_size: int,
    num_classes: int, recipe: dict[str, Any],
) -> Path:
    """Write a trained ``build_classifier("cnn")`` and its ``load_or_train`` record (float16)."""
    from ttame_attr._core.storage import atomic_torch_save

    history = info.get("history", {})
    payload = {
        "format": _FORMAT,
        "arch": "cnn",
        "num_classes": num_classes,
        "image_size": image_size,
        "seed": seed,
        "recipe": recipe,
        "history": {k: [float(v) for v in history.get(k, [])]
                    for k in ("train_loss", "train_accuracy", "val_accuracy")},
        "val_accuracy": float(info.get("val_accuracy", float("nan"))),
        "test_accuracy": float(info.get("test_accuracy", float("nan"))),
        "train_seconds": float(info.get("train_seconds", float("nan"))),
        "state_dict": {k: (v.detach().half() if v.is_floating_point() else v.detach())
                       for k, v in model.state_dict().items()},
    }
    return atomic_torch_save(payload, path)
