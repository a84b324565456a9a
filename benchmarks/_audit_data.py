"""The planted shortcut of ``benchmarks/audit.py``: shapes with a corner mark, and an in-memory store.

- :class:`MarkedShapes`: :class:`~ttame_attr.data.SyntheticShapes` where a share of one class's
  images carries a small fixed mark (a magenta square) in the top-left corner, and no other
  class's image does (``mark_all=True`` marks every image, to test the classifier's reliance).
- :class:`ArrayStore`: maps held in memory behind the reader API of
  :class:`ttame_attr.ExplanationStore`, for the Grad-CAM baseline (Grad-CAM maps are not written
  by ``explain_dataset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ttame_attr.data import SyntheticShapes

#: The mark: a square of this side (pixels at 64x64, scaled with the image), this far from the corner.
MARK_SIDE, MARK_OFFSET = 6, 3
MARK_COLOUR = (1.0, 0.0, 1.0)


def paint_mark(images: Tensor) -> Tensor:
    """A copy of ``(B, 3, H, W)`` images with the mark in the top-left corner."""
    out = images.clone()
    scale = images.shape[-1] / 64
    a, b = round(MARK_OFFSET * scale), round((MARK_OFFSET + MARK_SIDE) * scale)
    out[:, :, a:b, a:b] = torch.tensor(MARK_COLOUR).view(1, 3, 1, 1)
    return out


class MarkedShapes(Dataset):
    """SyntheticShapes items ``(image, label, mask)``; class ``shortcut``'s images marked with
    probability ``share`` (decided per item from ``seed``), or every image with ``mark_all``."""

    CHUNK = 256

    def __init__(self, num_samples: int, *, split: str, seed: int = 0, shortcut: int | None = 3,
                 share: float = 0.8, mark_all: bool = False, image_size: int = 64) -> None:
        self.base = SyntheticShapes(num_samples, image_size=image_size, seed=seed, split=split)
        self.shortcut, self.share, self.mark_all = shortcut, share, mark_all
        self.class_names = self.base.class_names
        rng = np.random.default_rng([seed, {"train": 0, "val": 1, "test": 2}[split], 7])
        self.draw = rng.random(num_samples)
        self._chunk: tuple[int, list] | None = None

    def __len__(self) -> int:
        return len(self.base)

    def marked(self, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Whether items ``indices`` (with their ``labels``) carry the mark."""
        if self.mark_all:
            return np.ones(len(indices), dtype=bool)
        if self.shortcut is None:
            return np.zeros(len(indices), dtype=bool)
        return (labels == self.shortcut) & (self.draw[indices] < self.share)

    def generate(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
        idx = np.asarray(list(indices), dtype=np.int64)
        images, labels, masks = self.base.generate(idx.tolist())
        marked = self.marked(labels.numpy(), idx)
        if marked.any():
            images[torch.from_numpy(marked)] = paint_mark(images[torch.from_numpy(marked)])
        return images, labels, masks, marked

    def __getitems__(self, indices: Sequence[int]) -> list[tuple]:
        images, labels, masks, _ = self.generate(indices)
        return [(img, int(lab), m) for img, lab, m in zip(images, labels, masks)]

    def __getitem__(self, index: int) -> tuple:
        """One item, rendered with its chunk of ``CHUNK`` items (a reader going through the items
        in order, as ``explain_dataset`` does one by one, renders each chunk once)."""
        start = index - index % self.CHUNK
        if self._chunk is None or self._chunk[0] != start:
            self._chunk = (start, self.__getitems__(range(start, min(len(self), start + self.CHUNK))))
        return self._chunk[1][index - start]


class ArrayStore:
    """Top-1 maps ``(N, h, w)`` and predicted classes in memory, behind the store's reader API."""

    def __init__(self, maps: np.ndarray, classes: np.ndarray, masks: np.ndarray | None,
                 class_names: Sequence[str], model: str) -> None:
        self._maps = np.asarray(maps, dtype=np.float32)[:, None]
        self._classes = np.asarray(classes, dtype=np.int64)
        self._masks = masks
        h, w = self._maps.shape[-2:]
        self.manifest: dict[str, Any] = {
            "format": "ttame_attr.store", "format_version": 1, "package_version": "benchmark",
            "model": {"spec": None, "class": model}, "head_sha256": None, "options": {"top_k": 1},
            "map_size": [h, w], "num_classes": len(class_names), "class_names": list(class_names),
            "input_size": None, "shards": [], "complete": True}
        self.map_size, self.num_classes, self.class_names, self.top_k = (h, w), len(class_names), list(
            class_names), 1

    def __len__(self) -> int:
        return len(self._maps)

    def table(self, columns: Sequence[str] | None = None) -> Any:
        import pyarrow as pa

        n = len(self)
        data = {"index": pa.array(np.arange(n, dtype=np.int64)), "path": pa.array([None] * n, pa.string())}
        if self._masks is not None:
            flat = self._masks.reshape(n, -1).astype(np.uint8)
            data["object_mask"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
        cols = list(columns) if columns is not None else list(data)
        missing = [c for c in cols if c not in data]
        if missing:
            raise KeyError(f"no column {missing}")
        return pa.table({c: data[c] for c in cols})

    def maps(self, rows: Any) -> Tensor:
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        return torch.from_numpy(self._maps[rows].copy())

    def by_class(self) -> dict[int, np.ndarray]:
        return {int(c): np.flatnonzero(self._classes == c) for c in np.unique(self._classes)}

    def iter_classes(self):
        yield from self.by_class().items()
