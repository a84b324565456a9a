"""Cache keys that cannot lie, and the entries of the quality benchmark's caches.

The benchmark owns three caches under ``--cache`` (the classifiers' files beside them belong to
:func:`ttame_attr.classifiers.load_or_train`, whose key changes with its own code):

* T-TAME heads, ``ttame_<arch>_<digest>.pt`` (+ ``.json``): :func:`_quality.models.head_key`;
* baseline maps, ``maps/<method>_<arch>_seed<s>_<digest>.pt``: :func:`maps_key`;
* evaluated pieces, ``pieces/<arch>_seed<s>_<digest>.pt``: every method's metrics on the
  images of one (backbone, seed): :func:`piece_key`.

Every key is a JSON dict holding :data:`CACHE_FORMAT`, the storage dtype (:data:`STORAGE_DTYPE`),
the versions of :data:`KEY_DISTRIBUTIONS` and ``ttame_attr``, SHA-256 hashes of the source that
computes the entry and of the evaluation images, and the settings. The file name carries the
first 16 hex digits of the key's SHA-256; the file holds the whole key, and an entry whose key
differs from the expected one is stale: it is recomputed and overwritten, never converted.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import torch
from _results import library_versions  # benchmarks/ is on sys.path (quality.py puts it there)
from torch import Tensor

logger = logging.getLogger(__name__)

#: Bump when an entry's files change meaning; older entries then miss and are recomputed.
CACHE_FORMAT = 2
#: The dtype maps and head weights are stored in.
STORAGE_DTYPE = "float32"
#: Libraries whose version is part of every key (besides ``ttame_attr``).
KEY_DISTRIBUTIONS = ("torch", "torchvision", "timm", "captum", "grad-cam", "numpy", "scipy")


def key_versions() -> dict[str, str]:
    versions = library_versions()
    return {name: versions[name] for name in (*KEY_DISTRIBUTIONS, "ttame_attr")}


def base_key(kind: str) -> dict[str, Any]:
    """The parts every key shares: format, kind of entry, storage dtype, library versions."""
    return {"format": CACHE_FORMAT, "kind": kind, "dtype": STORAGE_DTYPE,
            "versions": key_versions()}


def source_digest(*objects: Any) -> str:
    """SHA-256 of ``inspect.getsource`` of each object (function, class or module), in order,
    each preceded by its qualified name."""
    digest = hashlib.sha256()
    for obj in objects:
        name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)}"
        digest.update(name.encode() + b"\0" + inspect.getsource(obj).encode() + b"\0")
    return digest.hexdigest()


@cache
def package_digest() -> str:
    """SHA-256 of every ``.py`` file of the imported ``ttame_attr`` package (sorted relative paths
    and their bytes): whatever the package computes depends on nothing else of it."""
    import ttame_attr

    root = Path(ttame_attr.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def tensor_digest(*tensors: Tensor) -> str:
    """SHA-256 of the tensors' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def key_digest(key: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the key's canonical JSON."""
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:16]


def _canonical(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=list)


def maps_key(method: Any, sources: tuple[Any, ...], arch: str, model: str, images: str,
             seed: int) -> dict[str, Any]:
    """Key of one baseline's maps: besides :func:`base_key`, the hash of ``sources`` (the
    method's own code, see :func:`_quality.methods.method_sources`), its name and settings, the
    seed of its randomness, the classifier (``model``: :func:`_quality.pipeline.model_identity`,
    its weights, class and the source of the class's module), the normalisation and the
    evaluation images (``images``: :func:`tensor_digest` of images, labels, masks and predicted
    classes)."""
    from ttame_attr.data import MEAN, STD

    return {**base_key("maps"), "source": source_digest(*sources), "method": method.name,
            "settings": method.describe(), "arch": arch, "seed": seed, "model": model,
            "images": images, "normalization": [list(MEAN), list(STD)]}


def piece_key(arch: str, seed: int, model: str, images: str, methods: dict[str, str],
              metrics: dict[str, Any], evaluation_sources: tuple[Any, ...]) -> dict[str, Any]:
    """Key of one (backbone, seed) piece: the digests of every method's maps key (T-TAME: of its
    head key and method source), the metric settings, the hash of the evaluation code of the
    benchmark and of the whole ``ttame_attr`` package (the metrics live there)."""
    return {**base_key("piece"), "arch": arch, "seed": seed, "model": model, "images": images,
            "methods": methods, "metrics": metrics,
            "source": source_digest(*evaluation_sources), "package_source": package_digest()}


def load_entry(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The payload stored at ``path`` under exactly ``key``, else None (missing or stale)."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable entry is recomputed
        logger.warning("cache entry %s unreadable (%s): recomputing", path, err)
        return None
    if not isinstance(blob, dict) or blob.get("key") != _canonical(key):
        logger.warning("cache entry %s is stale (its key differs): recomputing", path)
        return None
    return blob["payload"]


def save_entry(path: Path, key: dict[str, Any], payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, str, numbers, lists, dicts) with its key, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"key": _canonical(key), "payload": payload}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
