"""One streaming pass over an explanation store: a small summary of every image's top-1 map.

The maps are read once, ``chunk_size`` consecutive rows at a time (so each read touches one or
two of the store's shards), and reduced to a coarse grid of
"evidence" (the map minus its median, clipped at zero, summing to one). Only these coarse grids,
a few numbers per image and one running mean map per class stay in memory, so memory does not
grow with the size of the maps, only by ``grid cells`` floats per image.
"""

from __future__ import annotations

import logging
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


def _mask_fraction(masks: Any, start: int, stop: int, map_size: tuple[int, int],
                   grid: tuple[int, int]) -> torch.Tensor:
    """``(B, gh * gw)`` fraction of each grid cell covered by the object mask, rows ``start:stop``."""
    flat = masks.slice(start, stop - start).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    mask = torch.from_numpy(np.asarray(flat, dtype=np.float32).reshape(stop - start, 1, *map_size))
    return F.adaptive_avg_pool2d(mask, grid).flatten(1)


def _stream(store: Any, predicted: np.ndarray, num_classes: int, grid: tuple[int, int], chunk_size: int,
            masks: Any | None) -> tuple[np.ndarray, ...]:
    """Read every top-1 map once, in contiguous chunks of rows (whole shards at a time).

    Returns ``(evidence (n, cells), border (n,), off_object (n,), off_peak (n,), map sums
    (classes, h, w))``, the two ``off`` arrays ``None`` without masks.
    """
    n = len(predicted)
    ring = torch.from_numpy(border_cells(grid))
    evidence = np.zeros((n, grid[0] * grid[1]), dtype=np.float32)
    blank = np.zeros(n, dtype=bool)
    border = np.zeros(n, dtype=np.float32)
    off = np.zeros(n, dtype=np.float32) if masks is not None else None
    off_peak = np.zeros(n, dtype=np.float32) if masks is not None else None
    sums = None
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        maps = store.maps(slice(start, stop))[:, 0].float()  # (B, h, w): the predicted class's map
        if sums is None:
            sums = torch.zeros(num_classes, *maps.shape[-2:], dtype=torch.float64)
        sums.index_add_(0, torch.from_numpy(predicted[start:stop]), maps.double())
        ev, flat = evidence_of(maps, grid)
        evidence[start:stop] = ev.numpy()
        blank[start:stop] = flat.numpy()
        border[start:stop] = ev[:, ring].sum(1).numpy()
        if off is not None:
            fraction = _mask_fraction(masks, start, stop, tuple(maps.shape[-2:]), grid)
            off[start:stop] = (1.0 - (ev * fraction).sum(1)).clamp(0, 1).numpy()
            peak = fraction.gather(1, ev.argmax(1, keepdim=True))[:, 0]
            off_peak[start:stop] = (1.0 - peak).clamp(0, 1).numpy()
    return evidence, border, off, off_peak, blank, sums.numpy()


def _object_masks(store: Any) -> Any | None:
    """The store's ``object_mask`` column, or ``None`` when the store has none."""
    try:
        return store.table(columns=["object_mask"]).column("object_mask")
    except (KeyError, ValueError):  # pyarrow's ArrowKeyError / ArrowInvalid for a missing column
        return None


def collect(store: Any, grid: int, chunk_size: int) -> StoreSummary:
    """Read the store once, class by class, into a :class:`StoreSummary`."""
    map_size = tuple(int(v) for v in store.map_size)
    cells = grid_shape(map_size, grid)
    info = store.table(columns=["index", "path"])
    index = np.asarray(info.column("index").to_numpy(), dtype=np.int64)
    paths = info.column("path").to_pylist()
    if all(p is None for p in paths):
        paths = None
    masks = _object_masks(store)
    has_masks = masks is not None
    by_class = {int(c): np.asarray(r, dtype=np.int64) for c, r in store.iter_classes() if len(r)}
    predicted = np.zeros(len(index), dtype=np.int64)
    for cls, rows in by_class.items():
        predicted[rows] = cls
    num_classes = max([int(store.num_classes)] + [c + 1 for c in by_class])
    evidence, border, off, off_peak, blank, sums = _stream(store, predicted, num_classes, cells, chunk_size,
                                                           masks)
    ring = border_cells(cells)
    classes = [ClassData(cls=cls, rows=rows, evidence=evidence[rows], border=border[rows],
                         off_object=off[rows] if off is not None else None,
                         off_peak=off_peak[rows] if off_peak is not None else None,
                         mean_map=(sums[cls] / len(rows)).astype(np.float32), ring=ring, blank=blank[rows])
               for cls, rows in sorted(by_class.items())]
    logger.info("read %d images of %d predicted classes", len(index), len(classes))
    names = store.class_names
    return StoreSummary(classes=classes, grid=cells, map_size=map_size, num_images=len(index),
                        has_masks=has_masks, index=index, paths=paths,
                        class_names=list(names) if names is not None else None)
