"""Reading an explanation store back: :class:`ExplanationStore`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ttame_attr._core.checks import check_positive_int
from ttame_attr.dataset._columns import decode_maps, require_pyarrow
from ttame_attr.dataset._manifest import read_manifest

__all__ = ["ExplanationStore"]


class ExplanationStore:
    """A store written by :func:`~ttame_attr.explain_dataset` (or ``ttame explain --store``).

    Rows are in the order of the images' ``index`` (their position in the dataset), whatever
    the shards and ranks that wrote them. The Parquet files can also be read directly
    (``pyarrow.parquet.read_table(STORE + "/shards")``, ``pandas.read_parquet``,
    ``datasets.load_dataset("parquet", data_files=STORE + "/shards/*.parquet")``); the maps
    are then float16 bytes, which :meth:`maps` decodes.

    Args:
        path: the store's folder.

    Raises:
        ValueError: if ``path`` is not a store (no ``manifest.json``, or not a store's), or its
            ``format_version`` is newer than this package reads.
        ImportError: without pyarrow (``pip install "ttame-attr[dataset]"``).

    Example:
        >>> store = ExplanationStore("explanations")  # doctest: +SKIP
        >>> table = store.table(["index", "path", "classes", "probabilities"])  # doctest: +SKIP
        >>> maps = store.maps([0, 1, 2])  # (3, top_k, h, w) float32  # doctest: +SKIP
        >>> for cls, rows in store.iter_classes(): ...  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"store: {str(self.path)!r} is not a folder; expected an explanation store "
                             "written by explain_dataset / `ttame explain --store`.")
        manifest = read_manifest(self.path)
        if manifest is None:
            raise ValueError(f"store: {str(self.path)!r} has no manifest.json; it is not an explanation "
                             "store (or its run had not started writing).")
        self.manifest: dict[str, Any] = manifest
        require_pyarrow()
        self._files = [self.path / s["file"] for s in manifest.get("shards", [])]
        missing = [str(f) for f in self._files if not f.is_file()]
        if missing:
            raise ValueError(f"store: the shard file(s) {missing[:3]} listed in the manifest are missing.")
        self._order: np.ndarray | None = None

    @property
    def map_size(self) -> tuple[int, int]:
        """``(h, w)`` of the maps."""
        h, w = self.manifest["map_size"]
        return int(h), int(w)

    @property
    def num_classes(self) -> int:
        """The classifier's number of classes."""
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        """Class names when the data gave them, else ``None``."""
        return self.manifest.get("class_names")

    @property
    def top_k(self) -> int:
        """How many classes (and maps) each row holds."""
        return int(self.manifest["options"]["top_k"])

    @property
    def complete(self) -> bool:
        """Whether every shard of the run is there."""
        return bool(self.manifest.get("complete"))

    def __len__(self) -> int:
        return int(sum(s["rows"] for s in self.manifest.get("shards", [])))

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return (f"ExplanationStore({str(self.path)!r}, rows={len(self)}, top_k={self.top_k}, "
                f"map_size={self.map_size}, {state})")

    def _read(self, columns: Sequence[str] | None) -> Any:
        pa = require_pyarrow()
        tables = [pa.parquet.read_table(f, columns=list(columns) if columns is not None else None,
                                        memory_map=True) for f in self._files]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    def _sorted(self) -> np.ndarray:
        """Positions in the concatenated shards, in ``index`` order."""
        if self._order is None:
            table = self._read(["index"])
            index = np.zeros(0, np.int64) if table is None else table.column("index").to_numpy()
            self._order = np.argsort(index, kind="stable")
        return self._order

    def table(self, columns: Sequence[str] | None = None) -> Any:
        """The rows as a ``pyarrow.Table`` sorted by ``index`` (``.to_pandas()`` for pandas).

        Args:
            columns: the columns to read (default: all); reading without ``"maps"`` is much
                lighter.
        """
        if columns is not None and (isinstance(columns, str) or not all(isinstance(c, str) for c in columns)):
            raise TypeError(f"columns: expected a list of column names, got {columns!r}.")
        table = self._read(columns)
        if table is None:
            return _empty(self.path)
        return table.take(self._sorted())

    def _positions(self, rows: Any) -> np.ndarray:
        n = len(self)
        if isinstance(rows, slice):
            return np.arange(n)[rows]
        if isinstance(rows, Tensor):
            rows = rows.detach().cpu().numpy()
        positions = np.asarray(rows)
        if positions.ndim == 0:
            positions = positions[None]
        if positions.size and (positions.dtype.kind not in "iu" or positions.ndim != 1):
            raise TypeError(f"rows: expected a 1-D list/array/tensor of ints or a slice, got {rows!r}.")
        positions = positions.astype(np.int64)
        bad = positions[(positions < -n) | (positions >= n)]
        if bad.size:
            raise IndexError(f"rows: {int(bad[0])} is out of range for a store of {n} rows.")
        return positions % max(n, 1)

    def maps(self, rows: Any) -> Tensor:
        """The maps of ``rows`` (positions in :meth:`table` order) as float32 ``(len(rows), top_k, h, w)``.

        Only the shards holding those rows are read.
        """
        pa = require_pyarrow()
        positions = self._positions(rows)
        k, (h, w) = self.top_k, self.map_size
        out = np.zeros((len(positions), k, h, w), dtype=np.float32)
        global_rows = self._sorted()[positions]
        bounds = np.cumsum([0] + [int(s["rows"]) for s in self.manifest["shards"]])
        shard_of = np.searchsorted(bounds, global_rows, side="right") - 1
        for shard in np.unique(shard_of):
            which = np.nonzero(shard_of == shard)[0]
            table = pa.parquet.read_table(self._files[shard], columns=["maps"], memory_map=True)
            column = table.column("maps")
            taken = column.take(pa.array(global_rows[which] - bounds[shard]))
            out[which] = decode_maps(taken, (k, h, w))
        return torch.from_numpy(out)

    @property
    def columns(self) -> list[str]:
        """The names of the store's columns (read from the first shard's schema)."""
        pa = require_pyarrow()
        return list(pa.parquet.read_schema(self._files[0]).names) if self._files else ["index"]

    def iter_batches(self, columns: Sequence[str], batch_size: int = 1024) -> Iterator[Any]:
        """The rows as ``pyarrow.RecordBatch`` es of at most ``batch_size`` rows, one shard after the other.

        A streaming read: each shard is read once, only ``columns``, and one batch is held at a
        time. The batches come in the shards' order, which need not be ``index`` order: include
        ``"index"`` in ``columns`` to place their rows.

        Args:
            columns: the columns to read.
            batch_size: the most rows per batch.

        Raises:
            TypeError: ``columns`` is not a list of names.
            ValueError: ``batch_size`` is not a positive int.
        """
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise TypeError(f"columns: expected a list of column names, got {columns!r}.")
        check_positive_int(batch_size, "batch_size", allow_none=False)
        pa = require_pyarrow()
        for file in self._files:
            yield from pa.parquet.ParquetFile(file, memory_map=True).iter_batches(batch_size=batch_size,
                                                                                   columns=list(columns))

    def by_class(self) -> dict[int, np.ndarray]:
        """``{predicted class: row positions}`` (``classes[0]`` of each row), classes in order."""
        table = self.table(["classes"])
        if table.num_rows == 0:
            return {}
        flat = table.column("classes").combine_chunks().flatten().to_numpy()
        predicted = flat.reshape(-1, self.top_k)[:, 0]
        order = np.argsort(predicted, kind="stable")
        values, starts = np.unique(predicted[order], return_index=True)
        groups = np.split(order, starts[1:])
        return {int(v): g for v, g in zip(values, groups)}

    def iter_classes(self) -> Iterator[tuple[int, np.ndarray]]:
        """``for cls, rows in store.iter_classes()``: :meth:`by_class`, in class order."""
        yield from self.by_class().items()


def _empty(path: Path) -> Any:
    pa = require_pyarrow()
    return pa.table({"index": pa.array([], type=pa.int64())})
