"""One streaming pass over an explanation store: a small summary of every image's top-1 map.

The maps are read once, as a stream of record batches of ``chunk_size`` rows (each shard read
once, only the columns needed), and reduced to a coarse grid of "evidence" (the map minus its
median, clipped at zero, summing to one). Only these coarse grids, a few numbers per image and
one running mean map per class stay in memory, so memory does not grow with the size of the
maps, only by ``grid cells`` floats (and the index and path) per image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MIN_CONTRAST", "ClassData", "StoreSummary", "border_cells", "collect", "grid_shape"]

#: A map whose coarse grid rises less than this above its median (maps in [0, 1]) is *flat*: it
#: shows no evidence (e.g. a class the head gave up on), and the audit leaves it out of its signals.
MIN_CONTRAST = 0.02

logger = logging.getLogger(__name__)


@dataclass
class ClassData:
    """The summary of the images predicted as one class.

    Attributes:
        cls: the predicted class.
        rows: ``(n,)`` row positions in the store.
        evidence: ``(n, gh * gw)`` float32 coarse evidence, each row summing to one.
        border: ``(n,)`` share of each image's evidence on the grid's outer ring.
        off_object: ``(n,)`` share of evidence off the object mask, or ``None`` without masks.
        off_peak: ``(n,)`` how much of each image's peak cell lies off the object (1: all of
            it), or ``None`` without masks.
        mean_map: ``(h, w)`` mean of the class's top-1 maps (raw values).
        ring: ``(cells,)`` bool, the grid's outer ring.
        blank: ``(n,)`` bool, the flat maps (no evidence; their ``evidence`` row is uniform).
    """

    cls: int
    rows: np.ndarray
    evidence: np.ndarray
    border: np.ndarray
    off_object: np.ndarray | None
    off_peak: np.ndarray | None
    mean_map: np.ndarray
    ring: np.ndarray
    blank: np.ndarray

    def subset(self, keep: np.ndarray) -> ClassData:
        """The same class restricted to the images where ``keep`` is True."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return ClassData(cls=self.cls, rows=self.rows[keep], evidence=self.evidence[keep],
                         border=self.border[keep], off_object=pick(self.off_object),
                         off_peak=pick(self.off_peak),
                         mean_map=self.mean_map, ring=self.ring, blank=self.blank[keep])

    @property
    def peaks(self) -> np.ndarray:
        """``(n,)`` grid cell holding each image's largest evidence."""
        return self.evidence.argmax(axis=1)

    @property
    def border_peak(self) -> np.ndarray:
        """``(n,)`` 1.0 where the image's evidence peaks on the grid's outer ring, else 0.0."""
        return self.ring[self.peaks].astype(np.float32)


@dataclass
class StoreSummary:
    """All classes' summaries, with what the report needs from the store."""

    classes: list[ClassData]
    grid: tuple[int, int]
    map_size: tuple[int, int]
    num_images: int
    has_masks: bool
    index: np.ndarray
    paths: list[str | None] | None
    class_names: list[str] | None
    extra: dict[str, Any] = field(default_factory=dict)


def grid_shape(map_size: tuple[int, int], grid: int) -> tuple[int, int]:
    """The coarse grid: ``grid`` cells a side, fewer where the maps have fewer pixels."""
    return min(grid, int(map_size[0])), min(grid, int(map_size[1]))


def border_cells(grid: tuple[int, int]) -> np.ndarray:
    """``(gh * gw,)`` bool: the cells on the grid's outer ring."""
    gh, gw = grid
    ring = np.zeros((gh, gw), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return ring.reshape(-1)


def evidence_of(maps: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, h, w)`` maps -> ``(B, gh * gw)`` coarse evidence summing to one, and ``(B,)`` flat.

    Evidence is the map's excess over its own median (clipped at zero): a map's uniform
    background, which T-TAME's sigmoid masks and Grad-CAM's both have, then counts for nothing.
    A flat map (excess below :data:`MIN_CONTRAST`) gets uniform evidence and is marked flat.
    """
    coarse = F.adaptive_avg_pool2d(maps[:, None].float(), grid).flatten(1)
    excess = (coarse - coarse.median(dim=1, keepdim=True).values).clamp_min(0)
    flat = excess.amax(dim=1) < MIN_CONTRAST
    total = excess.sum(dim=1, keepdim=True)
    uniform = torch.full_like(excess, 1.0 / excess.shape[1])
    return torch.where(flat[:, None], uniform, excess / total.clamp_min(1e-12)), flat


def _mask_fraction(masks: np.ndarray, map_size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """``(B, gh * gw)`` fraction of each grid cell covered by ``(B, h * w)`` object masks."""
    mask = torch.from_numpy(np.asarray(masks, dtype=np.float32).reshape(len(masks), 1, *map_size))
    return F.adaptive_avg_pool2d(mask, grid).flatten(1)


#: One chunk of rows: ``(positions in index order, (B, h, w) float32 top-1 maps, (B, h * w)
#: object masks or None)``.
Chunk = tuple[np.ndarray, torch.Tensor, "np.ndarray | None"]


def _flat_list(column: Any, width: int) -> np.ndarray:
    """``(B, width)`` numpy array of a pyarrow list column of ``width`` values per row."""
    values = column.flatten() if hasattr(column, "flatten") else column
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(-1, width)


def _store_chunks(store: Any, index: np.ndarray, chunk_size: int, has_masks: bool) -> Iterator[Chunk]:
    """Chunks of an :class:`~ttame_attr.ExplanationStore`: one streaming read of the columns needed,
    each shard read once, a record batch of ``chunk_size`` rows at a time."""
    from ttame_attr.dataset._columns import decode_maps

    k, (h, w) = store.top_k, store.map_size
    for batch in store.iter_batches(["index", "maps"] + (["object_mask"] if has_masks else []), chunk_size):
        positions = np.searchsorted(index, batch.column("index").to_numpy())
        maps = torch.from_numpy(decode_maps(batch.column("maps"), (k, h, w))[:, 0].astype(np.float32))
        yield positions, maps, _flat_list(batch.column("object_mask"), h * w) if has_masks else None


def _reader_chunks(store: Any, n: int, chunk_size: int, has_masks: bool) -> Iterator[Chunk]:
    """Chunks of any store with the reader API (``maps``, ``table``): ``chunk_size`` consecutive rows
    at a time."""
    cells = int(np.prod(store.map_size))
    masks = store.table(columns=["object_mask"]).column("object_mask") if has_masks else None
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        mask = None
        if masks is not None:
            mask = _flat_list(masks.slice(start, stop - start).combine_chunks(), cells)
        yield np.arange(start, stop), store.maps(slice(start, stop))[:, 0].float(), mask


def _stream(chunks: Iterator[Chunk], predicted: np.ndarray, slot: np.ndarray, num_classes: int,
            map_size: tuple[int, int], grid: tuple[int, int], has_masks: bool) -> dict[str, Any]:
    """Reduce every top-1 map, chunk by chunk, to its coarse evidence and a few numbers, each image's
    at its ``slot`` (the images grouped by predicted class, so that each class's arrays are views).

    Returns ``{"evidence" (n, cells), "border", "off_object", "off_peak" (n,), "blank", "sums"
    (classes, h, w)}``, the two ``off`` arrays ``None`` without masks.
    """
    n = len(predicted)
    ring = torch.from_numpy(border_cells(grid))
    out: dict[str, Any] = {"evidence": np.zeros((n, grid[0] * grid[1]), dtype=np.float32),
                           "blank": np.zeros(n, dtype=bool), "border": np.zeros(n, dtype=np.float32),
                           "off_object": np.zeros(n, dtype=np.float32) if has_masks else None,
                           "off_peak": np.zeros(n, dtype=np.float32) if has_masks else None,
                           "sums": torch.zeros(num_classes, *map_size, dtype=torch.float64)}
    for positions, maps, masks in chunks:
        out["sums"].index_add_(0, torch.from_numpy(predicted[positions]), maps.double())
        at = slot[positions]
        ev, flat = evidence_of(maps, grid)
        out["evidence"][at] = ev.numpy()
        out["blank"][at] = flat.numpy()
        out["border"][at] = ev[:, ring].sum(1).numpy()
        if has_masks:
            fraction = _mask_fraction(masks, map_size, grid)
            out["off_object"][at] = (1.0 - (ev * fraction).sum(1)).clamp(0, 1).numpy()
            peak = fraction.gather(1, ev.argmax(1, keepdim=True))[:, 0]
            out["off_peak"][at] = (1.0 - peak).clamp(0, 1).numpy()
    out["sums"] = out["sums"].numpy()
    return out


def _has_masks(store: Any) -> bool:
    """Whether the store has an ``object_mask`` column."""
    if hasattr(store, "columns") and not callable(store.columns):
        return "object_mask" in store.columns
    try:
        store.table(columns=["object_mask"])
    except (KeyError, ValueError):  # pyarrow's ArrowKeyError / ArrowInvalid for a missing column
        return False
    return True


def collect(store: Any, grid: int, chunk_size: int) -> StoreSummary:
    """Read the store once, chunk by chunk, into a :class:`StoreSummary`.

    The predicted classes are read first (:meth:`iter_classes`), then the maps: from an
    :class:`~ttame_attr.ExplanationStore` as a stream of record batches (only the ``index``,
    ``maps`` and ``object_mask`` columns, each shard once), from any other object with the reader
    API through its ``maps``. Each class's arrays are views of one array grouped by class.
    """
    map_size = tuple(int(v) for v in store.map_size)
    cells = grid_shape(map_size, grid)
    info = store.table(columns=["index", "path"])
    index = np.asarray(info.column("index").to_numpy(), dtype=np.int64)
    paths = info.column("path").to_pylist()
    if all(p is None for p in paths):
        paths = None
    has_masks = _has_masks(store)
    predicted = np.zeros(len(index), dtype=np.int64)
    for cls, rows in store.iter_classes():
        predicted[np.asarray(rows, dtype=np.int64)] = int(cls)
    order = np.argsort(predicted, kind="stable")  # the images grouped by class, in index order within
    slot = np.empty_like(order)
    slot[order] = np.arange(len(order))
    streaming = hasattr(store, "iter_batches") and bool(np.all(index[1:] > index[:-1]))
    chunks = (_store_chunks(store, index, chunk_size, has_masks) if streaming
              else _reader_chunks(store, len(index), chunk_size, has_masks))
    num_classes = max(int(store.num_classes), int(predicted.max(initial=0)) + 1)
    read = _stream(chunks, predicted, slot, num_classes, map_size, cells, has_masks)
    ring = border_cells(cells)
    classes = []
    values, starts, counts = np.unique(predicted[order], return_index=True, return_counts=True)
    for cls, start, count in zip(values, starts, counts):
        part = slice(int(start), int(start + count))  # views, not copies
        pick = {k: read[k][part] if read[k] is not None else None
                for k in ("evidence", "border", "off_object", "off_peak", "blank")}
        mean_map = (read["sums"][cls] / count).astype(np.float32)
        classes.append(ClassData(cls=int(cls), rows=order[part], mean_map=mean_map, ring=ring, **pick))
    logger.info("read %d images of %d predicted classes", len(index), len(classes))
    names = store.class_names
    return StoreSummary(classes=classes, grid=cells, map_size=map_size, num_images=len(index),
                        has_masks=has_masks, index=index, paths=paths,
                        class_names=list(names) if names is not None else None)
