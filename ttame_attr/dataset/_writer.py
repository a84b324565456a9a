"""Writing shards off the critical path: a thread with a bounded queue."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ttame_attr._core.storage import atomic_write
from ttame_attr.dataset._columns import require_pyarrow, to_arrow
from ttame_attr.dataset._manifest import file_sha256, shard_path, write_manifest, write_record

__all__ = ["ShardWriter"]

logger = logging.getLogger(__name__)

_STOP = object()


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One dict of columns from the batches' dicts (``path`` lists joined, arrays concatenated)."""
    if not parts:
        return {}
    out: dict[str, Any] = {}
    for key in parts[0]:
        if key == "path":
            out[key] = [p for part in parts for p in part[key]]
        else:
            out[key] = np.concatenate([part[key] for part in parts])
    return out


class ShardWriter:
    """Writes finished shards in a background thread; at most ``depth`` shards wait in memory.

    Each shard goes to ``STORE/shards/shard-NNNNNN.parquet`` (temporary file, fsync, rename),
    then its record; with ``manifest=True`` (rank 0) ``manifest.json`` is rewritten after it.
    An error in the thread is raised in the caller at the next :meth:`put` or at :meth:`close`.

    Args:
        store: the store's folder.
        identity: the run's identity (written into the manifest).
        num_shards: the total number of shards of the run (all ranks).
        rank: this process's rank (recorded with each shard).
        manifest: whether this process rewrites ``manifest.json``.
        depth: the queue's bound.
    """

    def __init__(self, store: Path, identity: dict[str, Any], num_shards: int, rank: int = 0,
                 manifest: bool = True, depth: int = 2) -> None:
        self.store, self.identity, self.num_shards = store, identity, num_shards
        self.rank, self.manifest = rank, manifest
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ttame-shard-writer", daemon=True)
        self._thread.start()

    def put(self, shard: int, first: int, parts: list[dict[str, Any]], skipped: list[list[Any]]) -> None:
        """Queue shard ``shard`` (``parts``: the batches' columns; ``skipped``: ``[index, path,
        reason]`` of its unreadable images); blocks while ``depth`` shards are waiting."""
        self._raise()
        self._queue.put((shard, first, parts, skipped))

    def close(self) -> None:
        """Wait until every queued shard is written; raise the thread's error if any."""
        self._queue.put(_STOP)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"store: writing a shard failed: {self._error}") from self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            try:
                self._write(*item)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller
                self._error = err

    def _write(self, shard: int, first: int, parts: list[dict[str, Any]], skipped: list[list[Any]]) -> None:
        pq = require_pyarrow().parquet
        columns = _concat(parts)
        table = to_arrow(columns) if columns else _empty_table(self.identity)
        path = shard_path(self.store, shard)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        record = {"shard": shard, "file": str(path.relative_to(self.store)), "rows": table.num_rows,
                  "sha256": file_sha256(path), "rank": self.rank, "first_index": first,
                  "skipped": skipped}
        write_record(self.store, shard, record)
        logger.info("store: wrote shard %d (%d rows) to %s", shard, table.num_rows, path)
        if self.manifest:
            write_manifest(self.store, self.identity, self.num_shards)


def _empty_table(identity: dict[str, Any]) -> Any:
    """A table of no rows with the store's columns (a shard whose images were all unreadable)."""
    k = identity["options"]["top_k"]
    h, w = identity["map_size"]
    empty2 = np.zeros((0, k), dtype=np.float32)
    columns: dict[str, Any] = {"index": np.zeros(0, np.int64), "path": [], "label": np.zeros(0, np.int64),
                               "maps": np.zeros((0, k, h, w), np.float16),
                               "classes": np.zeros((0, k), np.int32), "probabilities": empty2}
    from ttame_attr.dataset._columns import STAT_COLUMNS
    columns.update({name: empty2 for name in STAT_COLUMNS})
    return to_arrow(columns)
