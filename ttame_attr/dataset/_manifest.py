"""The store's bookkeeping: ``manifest.json``, one record per finished shard, resume checks.

Layout of a store ``STORE/``:

- ``STORE/shards/shard-000042.parquet``: the rows of shard 42 (images ``42 * S`` to
  ``43 * S - 1`` of the dataset, ``S`` the shard size), written to a temporary file and renamed;
- ``STORE/records/shard-000042.json``: its record (rows, SHA-256, skipped images), written
  atomically *after* the Parquet file: a shard is finished exactly when its record exists and
  the file's hash matches it;
- ``STORE/manifest.json``: the run's identity (model, head hash, package version, options) and
  the list of finished shards, rewritten atomically by rank 0 (from the records) after each of
  its shards and at the end, ``complete`` once every shard is there.

Each rank writes only its own shards and records, so ranks never write the same file. The
``shards`` folder holds Parquet files only (temporary files start with ``.``, which pyarrow and
``datasets`` skip), so it can be read as one Parquet dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ttame_attr._core.storage import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "check_identity", "file_sha256", "finished_shards", "read_manifest",
           "record_path", "shard_path", "write_manifest", "write_record"]

logger = logging.getLogger(__name__)

FORMAT = "ttame_attr.store"
FORMAT_VERSION = 1
#: The manifest keys that identify a run: resuming with different values is refused.
IDENTITY_KEYS = ("format_version", "package_version", "model", "head_sha256", "options", "data",
                 "map_size", "num_classes", "input_size")


def shard_path(store: Path, shard: int) -> Path:
    """``STORE/shards/shard-000042.parquet``."""
    return store / "shards" / f"shard-{shard:06d}.parquet"


def record_path(store: Path, shard: int) -> Path:
    """``STORE/records/shard-000042.json``: the record written once the shard is finished."""
    return store / "records" / f"shard-{shard:06d}.json"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
    atomic_write(path, write)


def write_record(store: Path, shard: int, record: dict[str, Any]) -> None:
    """Write the record of a finished shard (atomically)."""
    _write_json(record_path(store, shard), record)


def read_manifest(store: Path) -> dict[str, Any] | None:
    """The parsed ``manifest.json``, ``None`` if there is none.

    Raises:
        ValueError: for a manifest that is not JSON, not a store's, or of a newer format.
    """
    path = store / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"store: cannot read {str(path)!r} ({err}); it is not an explanation store's "
                         "manifest. Use another store path.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"store: {str(path)!r} is not an explanation store's manifest (no "
                         f"format={FORMAT!r}). Use another store path.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"store: {str(store)!r} has format_version {version!r}, newer than this package "
                         f"reads ({FORMAT_VERSION}). Upgrade ttame-attr.")
    return manifest


def finished_shards(store: Path, verify: bool = True) -> dict[int, dict[str, Any]]:
    """``{shard: record}`` of the shards whose record exists (and whose file matches it).

    A shard whose file is missing or whose hash differs from its record is logged, its files
    are removed, and it is left out (so it is computed again).
    """
    found: dict[int, dict[str, Any]] = {}
    for path in sorted((store / "records").glob("shard-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            shard = int(record["shard"])
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("store: ignoring the unreadable shard record %s", path)
            continue
        parquet = store / record["file"]
        if verify and (not parquet.is_file() or file_sha256(parquet) != record["sha256"]):
            logger.warning("store: shard %d does not match its record (missing or changed file %s); "
                           "it is computed again", shard, parquet)
            path.unlink(missing_ok=True)
            parquet.unlink(missing_ok=True)
            continue
        found[shard] = record
    return found


def check_identity(manifest: dict[str, Any], identity: dict[str, Any], store: Path) -> None:
    """Refuse to resume a store written with another model, head, version or options.

    Raises:
        ValueError: naming each key that differs, its stored and its new value, and the fix.
    """
    differ = []
    for key in IDENTITY_KEYS:
        old, new = _jsonable(manifest.get(key)), _jsonable(identity.get(key))
        if isinstance(old, dict) and isinstance(new, dict):
            differ += [(f"{key}.{k}", old.get(k), new.get(k)) for k in sorted({*old, *new})
                       if old.get(k) != new.get(k)]
        elif old != new:
            differ.append((key, old, new))
    if differ:
        lines = "; ".join(f"{key}: stored {old!r}, now {new!r}" for key, old, new in differ)
        raise ValueError(f"store: {str(store)!r} was written by another run ({lines}). Resuming it would mix "
                         "the two; use a new store path, delete this one, or rerun with the stored "
                         "settings.")


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def write_manifest(store: Path, identity: dict[str, Any], num_shards: int,
                   verify: bool = False) -> dict[str, Any]:
    """(Re)write ``manifest.json`` from ``identity`` and the shard records present now.

    Returns:
        The manifest written.
    """
    records = finished_shards(store, verify=verify)
    shards = [records[s] for s in sorted(records)]
    manifest = {"format": FORMAT, **identity,
                "shards": shards, "num_shards": num_shards,
                "rows": sum(r["rows"] for r in shards),
                "skipped": sum(len(r.get("skipped", [])) for r in shards),
                "complete": len(records) == num_shards}
    _write_json(store / "manifest.json", manifest)
    return manifest
