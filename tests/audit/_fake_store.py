"""An in-memory test double of :class:`ttame_attr.ExplanationStore`'s reader API.

It holds the rows in numpy arrays and answers ``len``, ``manifest``, ``map_size``,
``num_classes``, ``class_names``, ``top_k``, ``table(columns)``, ``maps(rows)``, ``by_class()``
and ``iter_classes()`` as the contract (STORE_CONTRACT.md) describes, so the audit can be tested
on maps drawn by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch


class FakeStore:
    """Rows of top-1 (or top-k) maps ``(N, K, h, w)`` with their classes, in ``index`` order."""

    def __init__(self, maps: np.ndarray, classes: np.ndarray, *, masks: np.ndarray | None = None,
                 paths: list[str] | None = None, class_names: list[str] | None = None,
                 num_classes: int | None = None) -> None:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim == 3:
            maps = maps[:, None]
        classes = np.asarray(classes, dtype=np.int64)
        if classes.ndim == 1:
            classes = classes[:, None]
        self._maps, self._classes = maps, classes
        self._masks = None if masks is None else np.asarray(masks, dtype=np.uint8).reshape(len(maps), -1)
        self._paths = paths
        self.path = "fake-store"
        n, k, h, w = maps.shape
        self.manifest: dict[str, Any] = {
            "format": "ttame_attr.store", "format_version": 1, "package_version": "test",
            "model": {"spec": None, "class": "Fake"}, "head_sha256": "0" * 64,
            "options": {"top_k": k, "scale": "sigmoid"}, "map_size": [h, w],
            "num_classes": num_classes or int(classes.max()) + 1 if n else num_classes or 1,
            "class_names": class_names, "input_size": [3, 4 * h, 4 * w],
            "shards": [{"file": "shards/00000.parquet", "rows": n, "sha256": ""}], "complete": True}

    def __len__(self) -> int:
        return len(self._maps)

    @property
    def map_size(self) -> tuple[int, int]:
        return tuple(self.manifest["map_size"])

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        return self.manifest["class_names"]

    @property
    def top_k(self) -> int:
        return self._maps.shape[1]

    def table(self, columns: list[str] | None = None) -> pa.Table:
        n = len(self)
        data: dict[str, Any] = {
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "path": pa.array(self._paths if self._paths is not None else [None] * n, type=pa.string()),
            "classes": pa.array(self._classes.astype(np.int32).tolist(), type=pa.list_(pa.int32())),
        }
        if self._masks is not None:
            data["object_mask"] = pa.array(self._masks.tolist(), type=pa.list_(pa.uint8()))
        wanted = columns if columns is not None else list(data)
        missing = [c for c in wanted if c not in data]
        if missing:
            raise KeyError(f"no column {missing}")
        return pa.table({c: data[c] for c in wanted})

    def maps(self, rows: Any) -> torch.Tensor:
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        return torch.from_numpy(self._maps[np.asarray(rows, dtype=np.int64)].copy())

    def by_class(self) -> dict[int, np.ndarray]:
        predicted = self._classes[:, 0]
        return {int(c): np.flatnonzero(predicted == c) for c in np.unique(predicted)}

    def iter_classes(self):
        yield from self.by_class().items()


def blob(h: int, w: int, y: float, x: float, radius: float) -> np.ndarray:
    """A map in [0, 1] with a Gaussian bump of ``radius`` pixels at ``(y, x)`` on a 0.1 floor."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.1 + 0.9 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * radius ** 2))).astype(np.float32)


def planted(n_per_class: int = 40, classes: int = 4, size: int = 16, marked_class: int = 2,
            marked_share: float = 0.8, seed: int = 0) -> tuple[FakeStore, np.ndarray]:
    """A store where every class's maps light its object at a random place, except that most of
    ``marked_class``'s light a fixed spot in the top-left corner instead. Returns the store and
    whether each row is marked."""
    rng = np.random.default_rng(seed)
    maps, labels, marked, masks = [], [], [], []
    for c in range(classes):
        for i in range(n_per_class):
            y, x = rng.uniform(3, size - 3, 2)
            is_marked = c == marked_class and i < marked_share * n_per_class
            mask = blob(size, size, y, x, 2.0) > 0.5
            maps.append(blob(size, size, 1.0, 1.0, 1.2) if is_marked else blob(size, size, y, x, 2.0))
            labels.append(c)
            marked.append(is_marked)
            masks.append(mask)
    order = rng.permutation(len(maps))
    store = FakeStore(np.stack(maps)[order], np.array(labels)[order], masks=np.stack(masks)[order],
                      class_names=[f"shape{c}" for c in range(classes)])
    return store, np.array(marked)[order]
