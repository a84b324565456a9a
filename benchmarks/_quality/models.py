"""Classifiers and fitted T-TAME heads for the quality benchmark, cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from _quality.cache import base_key, key_digest, package_digest, source_digest
from ttame_attr import TTAME
from ttame_attr.data import MEAN, STD, SyntheticShapes, normalize

logger = logging.getLogger(__name__)


#: Validation and test images the classifiers' accuracy is measured on. It is part of
#: ``load_or_train``'s cache key: ``train_classifiers.py --num-test`` defaults to it, so that the
#: classifiers it trains are the ones ``quality.py``, ``budget.py`` and ``tune_ttame.py`` load.
CLASSIFIER_NUM_EVAL = 2000
#: Trained classifiers kept in the repository (``<stem>.pt`` and ``<stem>.json`` as
#: ``load_or_train`` writes them), so that a committed result can be extended or checked on
#: another machine with the very classifier it was made with: retraining on another machine, or
#: with another number of threads, gives other weights. See ``benchmarks/classifiers/README.md``.
SHIPPED_CLASSIFIERS = Path(__file__).resolve().parent.parent / "classifiers"


@dataclass(frozen=True)
class TTAMEConfig:
    """How the T-TAME head of one backbone is trained (recorded in ``quality.json``).

    The recipe is the paper's (SGD Nesterov, momentum 0.9, weight decay 5e-4 on weights,
    OneCycleLR, batch 32, loss 1.5 CE + 2 area + 0.01 variation) except where noted in
    ``quality.py``: the number of training images and epochs and the maximum learning rate,
    chosen for this small dataset.
    """

    n_train: int = 8000
    epochs: int | None = 8  # None: fit's default (what a user gets from fit(loader))
    lr: float | None = 1e-3  # None: fit's default
    batch_size: int = 32
    layers: tuple[str, ...] | None = None  # None: the adapter's default
    mask_space: str = "auto"
    head_init: str = "zeros"  # TTAME's head_init: "zeros" (default) or "pytorch"
    seed: int = 0  # initialisation, shuffling and the training images (dataset seed)


def seed_cache(cache_dir: Path, arch: str, image_size: int, seed: int) -> list[Path]:
    """Copy the shipped classifiers of ``arch`` (:data:`SHIPPED_CLASSIFIERS`) that ``cache_dir``
    lacks into it, and return the copies. ``load_or_train`` then loads the one whose name carries
    its cache key; one trained by other code or another torch has another name and is not used."""
    copied = []
    for source in sorted(SHIPPED_CLASSIFIERS.glob(f"{arch}_{image_size}px_seed{seed}_*")):
        target = Path(cache_dir) / source.name
        if source.suffix in (".pt", ".json") and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied.append(target)
    if copied:
        logger.info("copied the shipped classifiers %s into %s", [p.name for p in copied], cache_dir)
    return copied


def kept_classifier(arch: str, image_size: int = 64) -> nn.Module:
    """The classifier of ``arch`` kept in ``benchmarks/classifiers/`` (seed 0; see its README), in
    train mode, for benchmarks that fine-tune a classifier that already knows the shapes."""
    from ttame_attr.classifiers import build_classifier

    paths = sorted(SHIPPED_CLASSIFIERS.glob(f"{arch}_{image_size}px_seed0_*.pt"))
    if not paths:
        raise FileNotFoundError(f"no kept {arch} classifier at {image_size} px in {SHIPPED_CLASSIFIERS}")
    net = build_classifier(arch, image_size=image_size)
    net.load_state_dict(torch.load(paths[0], map_location="cpu", weights_only=True))
    return net.train()


def fingerprint(model: nn.Module) -> str:
    """A hash of a model's weights: SHA-256 of the state_dict's names, dtypes, shapes and bytes
    (first 16 hex digits)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def get_classifier(
    arch: str,
    cache_dir: Path,
    image_size: int,
    quick: bool,
    seed: int = 0,
    recipe: dict[str, Any] | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained classifier in eval mode and facts about it (accuracy, training time).

    Full runs use :func:`ttame_attr.classifiers.load_or_train` (cached under ``cache_dir``). Quick runs
    train a tiny model for a few steps (smoke test only: its accuracy is near chance).
    ``recipe`` overrides ``num_train``, ``epochs`` or ``lr`` of the data package's recipe;
    ``retrain`` trains again even when ``load_or_train`` holds the classifier.
    """
    if quick:
        from ttame_attr.classifiers import build_classifier, train_classifier

        torch.manual_seed(seed)
        model = build_classifier(arch, image_size=image_size)
        data = SyntheticShapes(64, image_size=image_size, seed=seed, split="train")
        start = time.perf_counter()
        train_classifier(model, DataLoader(data, batch_size=32), None, epochs=1)
        model.eval()
        return model, {"quick": True, "seconds": time.perf_counter() - start}
    from ttame_attr.classifiers import load_or_train

    if not retrain:
        seed_cache(cache_dir, arch, image_size, seed)
    result = load_or_train(
        arch, cache_dir, image_size=image_size, seed=seed, num_eval=CLASSIFIER_NUM_EVAL, retrain=retrain,
        **(recipe or {}),
    )
    if isinstance(result, tuple):
        model, info = result[0], result[1]
        info = info if isinstance(info, dict) else getattr(info, "__dict__", {"info": str(info)})
    else:
        model, info = result, {}
    model.eval()
    return model, dict(info)


def ttame_loader(cfg: TTAMEConfig, image_size: int, offset: int = 0) -> DataLoader:
    """Normalised training images for T-TAME (labels are ignored by ``fit``)."""
    data = SyntheticShapes(
        cfg.n_train, image_size=image_size, seed=cfg.seed, split="train", offset=offset,
        transform=normalize, return_mask=False,
    )
    g = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=True)


def _ttame_kwargs(cfg: TTAMEConfig, image_size: int) -> dict[str, Any]:
    return {"input_size": (3, image_size, image_size), "normalization": (MEAN, STD),
            "mask_space": cfg.mask_space, "head_init": cfg.head_init}


def fit_head(model: nn.Module, arch: str, cfg: TTAMEConfig, image_size: int) -> tuple[TTAME, dict]:
    """A T-TAME explainer of ``model`` trained with ``cfg``, and facts about the training."""
    torch.manual_seed(cfg.seed)
    explainer = TTAME(model, list(cfg.layers) if cfg.layers else None, adapter=arch,
                      **_ttame_kwargs(cfg, image_size))
    start = time.perf_counter()
    given = {name: value for name, value in (("epochs", cfg.epochs), ("lr", cfg.lr)) if value is not None}
    history = explainer.fit(ttame_loader(cfg, image_size), progress=False, **given)
    return explainer, {
        "config": asdict(cfg),
        "layers": explainer.layers,
        "map_size": list(explainer.map_size),
        "mask_space": explainer.mask_space,
        "train_seconds": time.perf_counter() - start,
        "history": history.as_dicts(),
        "schedule": getattr(history, "schedule", None),
    }


def head_key(cfg: TTAMEConfig, arch: str, model_fingerprint: str, image_size: int) -> dict[str, Any]:
    """Key of a cached T-TAME head: format, dtype and library versions (:func:`base_key`), the
    SHA-256 of the whole ``ttame_attr`` package source (:func:`package_digest`: the training
    code is all in it) and of the source of :class:`TTAMEConfig`, :func:`ttame_loader`,
    :func:`_ttame_kwargs` and :func:`fit_head`, the config (seed included), the classifier's
    weights, the image size and the normalisation."""
    return {
        **base_key("ttame-head"), "package_source": package_digest(),
        "source": source_digest(TTAMEConfig, ttame_loader, _ttame_kwargs, fit_head),
        "config": asdict(cfg), "arch": arch, "model": model_fingerprint,
        "image_size": image_size, "normalization": [list(MEAN), list(STD)],
    }


def _same_key(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=list) == json.dumps(b, sort_keys=True, default=list)


def get_ttame(
    model: nn.Module,
    arch: str,
    cfg: TTAMEConfig,
    cache_dir: Path,
    image_size: int,
    read_cache: bool = True,
    write_cache: bool = True,
) -> tuple[TTAME, dict[str, Any]]:
    """A T-TAME explainer fitted with ``cfg``: loaded from ``cache_dir`` when an entry with
    exactly :func:`head_key` is there (and ``read_cache``), else trained (and written there when
    ``write_cache``; a stale entry of the same name is overwritten)."""
    key = head_key(cfg, arch, fingerprint(model), image_size)
    path = cache_dir / f"ttame_{arch}_{key_digest(key)}.pt"
    meta_path = path.with_suffix(".json")
    if read_cache and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if _same_key(meta.get("cache_key"), key):
            explainer = TTAME.load(path, model, **_ttame_kwargs(cfg, image_size))
            meta["cached"] = True
            return explainer, meta
        logger.warning("T-TAME head %s is stale (its key differs): training again", path)
    explainer, meta = fit_head(model, arch, cfg, image_size)
    meta["cache_key"] = key
    if write_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        explainer.save(path)
        meta_path.write_text(json.dumps(meta, indent=1, default=list))
    meta["cached"] = False
    return explainer, meta
