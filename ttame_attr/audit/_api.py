"""``ttame_attr.audit``: a classifier's shortcuts, class by class, from a store of explanations."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ttame_attr.audit._cluster import cluster, require_sklearn
from ttame_attr.audit._collect import StoreSummary, collect
from ttame_attr.audit._pictures import gather_pictures
from ttame_attr.audit._report import AuditReport
from ttame_attr.audit._score import ClassScore, ImageScores, baselines, image_reasons, score_class_with_blanks

__all__ = ["audit"]

logger = logging.getLogger(__name__)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}.")
    return value


#: The oldest store layout the audit reads (``format_version`` of the store's manifest).
MIN_STORE_VERSION = 1
_NEEDED_KEYS = ("map_size", "num_classes", "options")


def _open(store: Any) -> Any:
    """An ``ExplanationStore`` from a path, or the reader given; its manifest checked."""
    if isinstance(store, (str, os.PathLike)):
        from ttame_attr.dataset._reader import ExplanationStore

        store = ExplanationStore(Path(store))
    for attr in ("maps", "iter_classes", "table", "map_size", "manifest"):
        if not hasattr(store, attr):
            raise TypeError(f"store: expected a store path or an ExplanationStore, got "
                            f"{type(store).__name__} (no {attr!r}). Open one with "
                            "ttame_attr.ExplanationStore(path).")
    manifest = store.manifest
    version = manifest.get("format_version")
    missing = [k for k in _NEEDED_KEYS if k not in manifest]
    if not isinstance(version, int) or version < MIN_STORE_VERSION or missing:
        what = f"lacks {missing}" if missing and isinstance(version, int) and version >= MIN_STORE_VERSION \
            else f"has format_version {version!r}"
        raise ValueError(f"store: {getattr(store, 'path', 'the store')} {what}: it was written by an older "
                         f"ttame_attr; the audit reads format_version >= {MIN_STORE_VERSION}. Explain the "
                         "data again with this version (`ttame explain ... --store DIR` or explain_dataset).")
    return store


def _provenance(store: Any) -> dict[str, Any]:
    from ttame_attr._version import __version__

    manifest = {k: v for k, v in dict(store.manifest).items() if k != "shards"}
    manifest["shards"] = len(store.manifest.get("shards", []))
    return {"store": str(getattr(store, "path", "")) or None, "manifest": manifest,
            "audited_with": f"ttame_attr {__version__}"}


def _class_record(summary: StoreSummary, cs: ClassScore, threshold: float, where: Any) -> dict[str, Any]:
    names = summary.class_names
    groups = [{"group": g.group, "size": int(len(g.members)), "share": round(len(g.members) / cs.size, 4),
               "score": round(g.score, 4), "reasons": g.reasons, "signals": g.signals,
               "typical": [where(cs.cls, int(i)) for i in g.typical]} for g in cs.groups]
    return {"class": cs.cls, "name": names[cs.cls] if names is not None and cs.cls < len(names) else None,
            "images": cs.size, "flat_maps": cs.blank, "score": round(cs.score, 4),
            "flagged": bool(cs.score >= threshold),
            "reasons": cs.reasons, "signals": cs.signals, "groups": groups}


def _image_records(summary: StoreSummary, scored: list[tuple[ClassScore, ImageScores]],
                   max_images: int | None) -> list[dict[str, Any]]:
    """The most suspicious images (all of them when ``max_images`` is None), most suspicious first."""
    scores = np.concatenate([im.score for _, im in scored])
    owner = np.concatenate([np.full(len(im.score), j) for j, (_, im) in enumerate(scored)])
    within = np.concatenate([np.arange(len(im.score)) for _, im in scored])
    order = np.lexsort((np.concatenate([summary.classes[j].rows for j in range(len(scored))]), -scores))
    if max_images is not None:
        order = order[:max_images]
    out = []
    for k in order:
        cs, im = scored[owner[k]]
        i = int(within[k])
        row = int(summary.classes[owner[k]].rows[i])
        group = int(cs.groups_of[i])
        out.append({"index": int(summary.index[row]),
                    "path": summary.paths[row] if summary.paths is not None else None,
                    "class": cs.cls, "score": round(float(scores[k]), 4), "group": group,
                    "reasons": image_reasons(im, i, group, summary.grid)})
    return out


def audit(store: Any, *, images: Any = None, grid: int = 8, max_groups: int = 4, min_group_size: int = 5,
          examples: int = 6, threshold: float = 0.5, max_images: int | None = 1000, chunk_size: int = 512,
          seed: int = 0, show_classes: int = 3) -> AuditReport:
    """Audit a classifier from a store of its explanations: the shortcuts it learned, class by class.

    Reads the store once, class by class in chunks (memory does not grow with the maps), and
    finds, per predicted class, from the maps alone: its mean explanation; groups of images
    explained the same way (k-means, scikit-learn); evidence at a fixed image position, on the
    border, off the object (when the store has object masks) and groups far from the class's
    other explanations. Each class, group and image gets a suspicion score in [0, 1] with its
    reasons in words. See :doc:`/audit` for how to read them.

    Args:
        store: an :class:`~ttame_attr.ExplanationStore` or the path of one.
        images: where the HTML report finds the pictures of its example images: a dataset or
            sequence indexed by the store's ``index`` column (items an image tensor
            ``(3, H, W)`` in [0, 1], or a tuple starting with one), or a callable
            ``index -> image``. Default: the store's ``path`` column if it has one, else the
            report shows maps without images.
        grid: side of the coarse grid the maps are reduced to (SpRAy's downsampling).
        max_groups: most groups per class (1: no clustering).
        min_group_size: fewest images in a group.
        examples: typical images shown per group (and most suspicious per class).
        threshold: a class is flagged when its score reaches this (default 0.5).
        max_images: how many images ``report.images`` lists (most suspicious first); ``None``: all.
        chunk_size: maps read at a time.
        seed: seeds the clustering.
        show_classes: the HTML report details the flagged classes and at least this many.

    Returns:
        An :class:`AuditReport`; ``report.write(out)`` writes ``audit.json`` and ``audit.html``.

    Raises:
        TypeError: if ``store`` is not a store or an option has the wrong type.
        ValueError: if an option is out of range, or the store is empty or not a store.
        ImportError: if scikit-learn is missing (``pip install "ttame-attr[audit]"``).

    Example:
        >>> report = audit("explanations/")  # doctest: +SKIP
        >>> report.write("audit/")  # doctest: +SKIP
    """
    for name, value, low in (("grid", grid, 2), ("max_groups", max_groups, 1),
                             ("min_group_size", min_group_size, 1), ("examples", examples, 1),
                             ("chunk_size", chunk_size, 1), ("seed", seed, 0),
                             ("show_classes", show_classes, 0)):
        _check_int(name, value, low)
    if max_images is not None:
        _check_int("max_images", max_images, 1)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold: expected a number in [0, 1], got {threshold!r}.")
    if max_groups > 1:
        require_sklearn()
    store = _open(store)
    if len(store) == 0:
        raise ValueError("store: the store holds no explanations (0 rows); explain a dataset into it first "
                         "(ttame_attr.explain_dataset).")
    summary = collect(store, grid, chunk_size)
    bases = baselines(summary)
    scored = []
    for data, base in zip(summary.classes, bases):
        def group(evidence: np.ndarray, cls: int = data.cls) -> np.ndarray:
            return cluster(evidence, max_groups, min_group_size, seed + cls)

        scored.append(score_class_with_blanks(data, group, base, summary.grid, examples))

    def where(cls: int, i: int) -> dict[str, Any]:
        j = next(j for j, d in enumerate(summary.classes) if d.cls == cls)
        row = int(summary.classes[j].rows[i])
        return {"index": int(summary.index[row]), "path": summary.paths[row] if summary.paths else None}

    classes = [_class_record(summary, cs, float(threshold), where) for cs, _ in scored]
    order = sorted(range(len(classes)), key=lambda j: (-classes[j]["score"], classes[j]["class"]))
    options = {"grid": grid, "max_groups": max_groups, "min_group_size": min_group_size,
               "examples": examples, "threshold": float(threshold), "max_images": max_images,
               "chunk_size": chunk_size, "seed": seed, "show_classes": show_classes}
    report = AuditReport(classes=[classes[j] for j in order],
                         images=_image_records(summary, scored, max_images), options=options,
                         provenance=_provenance(store))
    shown = [scored[j] for j in order if classes[j]["flagged"] or order.index(j) < show_classes]
    report.pictures = gather_pictures(store, summary, shown, images, examples)
    logger.info("audited %d images: %d of %d classes flagged", summary.num_images, len(report.flagged),
                len(classes))
    return report
