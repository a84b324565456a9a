"""Trained classifiers on disk: :func:`load_or_train` trains once and caches the weights."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ttame_attr._core.storage import atomic_torch_save, atomic_write, safe_torch_load
from ttame_attr.classifiers._models import DEFAULT_CONFIGS, build_classifier, check_arch
from ttame_attr.classifiers._training import evaluate_accuracy, train_classifier
from ttame_attr.data import CLASS_NAMES, SyntheticShapes
from ttame_attr.data._synthetic import check_int

__all__ = ["RECIPES", "cache_key", "load_or_train"]

logger = logging.getLogger(__name__)

#: Training recipes of :func:`load_or_train`: training images, epochs and peak learning rate.
RECIPES: dict[str, dict[str, float | int]] = {
    "cnn": {"num_train": 20000, "epochs": 8, "lr": 3e-3},
    "vit": {"num_train": 30000, "epochs": 10, "lr": 2e-3},
    "swin": {"num_train": 30000, "epochs": 20, "lr": 2e-3},
}


class _Rendered(Dataset):
    """A :class:`SyntheticShapes` split rendered once (about one CNN epoch's time) and kept as uint8.

    Items are ``(image (3, H, W) float in [0, 1], label)``.
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


#: Bump when the cache's files change meaning; older entries are then trained again.
CACHE_FORMAT = 2
#: The modules whose code decides the trained weights: the models, their training loop and
#: the data they are trained on. Their source is hashed into the cache key.
_SOURCES = ("ttame_attr.classifiers._models", "ttame_attr.classifiers._training",
            "ttame_attr.data._synthetic")


#: Source digests of code checked to train bit-identical weights to an earlier digest's (a
#: refactor): the cache key keeps the earlier digest, so cached and shipped classifiers stay valid.
_SAME_WEIGHTS_AS = {
    # Issue 36: the classifiers' own loop instead of ttame_attr.training's epoch loop. Checked with
    # load_or_train(arch, image_size=32, num_train=96, epochs=2, batch_size=32) before and after:
    # every weight of cnn, vit and swin equal, and the same loss history.
    "2df0037dd7be67d9332e918341e360243b67ddb0af299d18d540f0989e4b0b57":
        "5e584673b1d3b515481b45906956404ec7201aa746f07f80f0aa5deb591f4332",
}


def _source_digest() -> str:
    """SHA-256 of the source of :data:`_SOURCES`."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()


def cache_key(arch: str, image_size: int, seed: int, recipe: dict) -> dict:
    """What a cached classifier depends on, as a dict for JSON.

    Besides the arguments: the cache format, the architecture's sizes, the weights' dtype, the
    torch version and a hash of the source of the code that builds, trains and feeds the model.
    """
    return {"format": CACHE_FORMAT, "arch": arch, "image_size": image_size, "seed": seed, "recipe": recipe,
            "config": DEFAULT_CONFIGS[arch], "dtype": "float32", "torch": torch.__version__,
            "source": _SAME_WEIGHTS_AS.get(_source_digest(), _source_digest())}


def _cache_stem(arch: str, image_size: int, seed: int, recipe: dict) -> str:
    """The cache files' name: the set-up and a hash of :func:`cache_key`."""
    key = json.dumps(cache_key(arch, image_size, seed, recipe), sort_keys=True, default=list)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{arch}_{image_size}px_seed{seed}_{digest}"


def load_or_train(arch: str, cache_dir: str | os.PathLike, *, image_size: int = 64, seed: int = 0,
                  num_train: int | None = None, epochs: int | None = None, lr: float | None = None,
                  batch_size: int = 128, num_eval: int = 2000, device: str | torch.device = "cpu",
                  progress: bool = False, retrain: bool = False) -> tuple[nn.Module, dict]:
    """Return a trained classifier for :class:`~ttame_attr.data.SyntheticShapes`, cached on disk.

    The first call trains ``build_classifier(arch)`` with :func:`train_classifier` on the
    ``"train"`` split (rendered once into memory), measures accuracy on the ``"val"`` and
    ``"test"`` splits, and writes ``<stem>.pt`` (the ``state_dict``) and ``<stem>.json`` (the
    metrics) into ``cache_dir``; the stem encodes the architecture, image size, seed and a hash of
    :func:`cache_key`, so changed code never loads stale weights. Later calls load the weights
    without running code from the file.

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
    check_arch(arch)
    recipe = dict(RECIPES[arch])
    for name, value in (("num_train", num_train), ("epochs", epochs), ("lr", lr)):
        if value is not None:
            recipe[name] = value
    recipe["batch_size"] = check_int("batch_size", batch_size, minimum=1)
    recipe["num_eval"] = check_int("num_eval", num_eval, minimum=1)
    cache = Path(cache_dir)
    stem = _cache_stem(arch, image_size, seed, recipe)
    weights_path, info_path = cache / f"{stem}.pt", cache / f"{stem}.json"
    device = torch.device(device)

    torch.manual_seed(seed)
    model = build_classifier(arch, len(CLASS_NAMES), image_size)
    if not retrain and weights_path.is_file() and info_path.is_file():
        model.load_state_dict(safe_torch_load(weights_path, map_location="cpu"))
        info = json.loads(info_path.read_text())
        info.update(path=str(weights_path), cached=True)
        logger.info("loaded %s classifier from %s", arch, weights_path)
        return model.to(device).eval(), info
    logger.info("training %s classifier (%s); cache: %s", arch, recipe, weights_path)
    info = _train_and_measure(model, arch, recipe, image_size, seed, device, progress)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights_path)
    atomic_write(info_path, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2)))
    info.update(path=str(weights_path), cached=False)
    return model.eval(), info


def _train_and_measure(model: nn.Module, arch: str, recipe: dict, image_size: int, seed: int,
                       device: torch.device, progress: bool) -> dict:
    """Train ``model`` with ``recipe`` and measure its validation and test accuracy."""
    train_set = _Rendered(SyntheticShapes(int(recipe["num_train"]), image_size, seed=seed, split="train"))
    train_loader = DataLoader(train_set, batch_size=int(recipe["batch_size"]), shuffle=True,
                              generator=torch.Generator().manual_seed(seed))
    val, test = (DataLoader(SyntheticShapes(int(recipe["num_eval"]), image_size, seed=seed, split=split,
                                            return_mask=False), batch_size=500)
                 for split in ("val", "test"))
    history = train_classifier(model, train_loader, val, int(recipe["epochs"]), lr=float(recipe["lr"]),
                               device=device, progress=progress, seed=seed)
    return {"arch": arch, "recipe": recipe, "val_accuracy": history.val_accuracy[-1],
            "test_accuracy": evaluate_accuracy(model, test, device), "train_seconds": history.seconds,
            "history": history.to_dict()}
