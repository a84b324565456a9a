"""The reference classifier shipped with the package: the demo's trained CNN, and how it was made.

The package ships the weights of ``build_classifier("cnn")`` trained with the recipe of
:data:`~ttame_attr.classifiers.RECIPES` (20,000 images x 8 epochs: about 8 CPU-minutes, too long
for a demo) as ``weights/cnn64_seed0.pt`` (float16); :func:`write_reference_weights` made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ttame_attr._core.storage import atomic_torch_save, safe_torch_load
from ttame_attr.classifiers._cache import RECIPES, load_or_train
from ttame_attr.classifiers._models import build_classifier
from ttame_attr.data import CLASS_NAMES

__all__ = [
    "REFERENCE_WEIGHTS",
    "Normalized",
    "load_reference_classifier",
    "save_reference_weights",
    "write_reference_weights",
]

#: The shipped trained classifier (``build_classifier("cnn")``, 64 px, dataset seed 0).
REFERENCE_WEIGHTS = Path(__file__).resolve().parent / "weights" / "cnn64_seed0.pt"
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


def load_reference_classifier(path: str | Path = REFERENCE_WEIGHTS) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped trained classifier (eval mode, float32) and its training record.

    Args:
        path: a file written by :func:`save_reference_weights`.

    Returns:
        ``(model, info)``; ``info`` holds ``history`` (``train_loss``, ``train_accuracy``,
        ``val_accuracy`` per epoch), ``recipe`` and ``val_accuracy``.

    Raises:
        FileNotFoundError: if the weights file is missing.
        ValueError: if the file is not such a checkpoint.
    """
    payload = safe_torch_load(path, map_location="cpu")
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"path: {str(path)!r} is not a demo classifier checkpoint.")
    model = build_classifier(payload["arch"], num_classes=payload["num_classes"],
                             image_size=payload["image_size"])
    model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    return model.eval(), {k: v for k, v in payload.items() if k != "state_dict"}


def write_reference_weights(path: str | Path = REFERENCE_WEIGHTS, *, seed: int = 0, image_size: int = 64,
                            cache_dir: str | Path | None = None) -> Path:
    """Train the reference classifier with ``load_or_train("cnn")`` and write it in float16::

        python -c "from ttame_attr.classifiers import write_reference_weights as w; w()"

    Args:
        path: the file to write.
        seed: dataset and training seed.
        image_size: image side.
        cache_dir: ``load_or_train``'s cache folder (a temporary folder by default).

    Returns:
        The path written.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model, info = load_or_train("cnn", cache_dir or tmp, image_size=image_size, seed=seed)
    return save_reference_weights(model, info, path, seed=seed, image_size=image_size,
                                  num_classes=len(CLASS_NAMES), recipe=dict(RECIPES["cnn"]))


def save_reference_weights(model: nn.Module, info: dict[str, Any], path: str | Path, *, seed: int,
                           image_size: int, num_classes: int, recipe: dict[str, Any]) -> Path:
    """Write a trained ``build_classifier("cnn")`` and its ``load_or_train`` record (float16).

    Args:
        model: the trained classifier.
        info: the record ``load_or_train`` returned (history and accuracies).
        path: the file to write.
        seed: the dataset seed it was trained with.
        image_size: its image side.
        num_classes: its number of classes.
        recipe: its training recipe.

    Returns:
        The path written.
    """
    history = info.get("history", {})
    curves = ("train_loss", "train_accuracy", "val_accuracy")
    payload = {
        "format": _FORMAT, "arch": "cnn", "num_classes": num_classes, "image_size": image_size, "seed": seed,
        "recipe": recipe, "history": {k: [float(v) for v in history.get(k, [])] for k in curves},
        **{k: float(info.get(k, float("nan"))) for k in ("val_accuracy", "test_accuracy", "train_seconds")},
        "state_dict": {k: (v.detach().half() if v.is_floating_point() else v.detach())
                       for k, v in model.state_dict().items()},
    }
    return atomic_torch_save(payload, path)
