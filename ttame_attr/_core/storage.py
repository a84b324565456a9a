"""Files the package writes and reads: atomic writes, loads that never run code, and the checks
every file gets (its format tag and version, finite values).

Used by the head file (:meth:`TTAME.save <ttame_attr.TTAME.save>`), the training checkpoint
and the reference classifiers' weights.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "all_finite",
    "atomic_export_save",
    "atomic_torch_save",
    "atomic_write",
    "check_payload",
    "nonfinite_entries",
    "safe_torch_load",
    "write_bytes_atomically",
]


def atomic_write(path: str | Path, write: Callable[[str], None], *, durable: bool = True,
                 keep_suffix: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    The file and its folder are fsynced, so a crash while writing leaves the previous file
    intact, never a truncated one; the temporary file is removed on error. The file gets the
    mode of the file it replaces, or for a new file the one the umask gives (``0o666 & ~umask``),
    not ``mkstemp``'s owner-only ``0o600``. A symbolic link at ``path`` is replaced by the file,
    never followed.

    Args:
        path: the file to write.
        write: writes the contents to the temporary path it is given.
        durable: fsync the file and its folder (off for many small outputs).
        keep_suffix: end the temporary name with ``path``'s suffix (for writers that choose the
            format from it, or append theirs: PIL, ``numpy.save``).

    Raises:
        OSError: with ``errno.ENOSPC`` / ``EDQUOT`` and a message naming the file when the disk is
            full (the previous file, if any, is kept); other ``OSError`` as they come.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _target_mode(path)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        try:
            write(tmp)
            if durable:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        except OSError as err:
            if err.errno in _DISK_FULL:
                kept = "the previous file is kept" if path.exists() else "no file was written"
                raise OSError(err.errno, f"no space left on the device of {str(path.parent)!r} while "
                                         f"writing {str(path)!r}; {kept}. Free some space and retry, or "
                                         "write elsewhere.") from err
            raise
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)
    return path


#: ``errno`` values of a full disk or an exhausted quota.
_DISK_FULL = tuple(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)


def _target_mode(path: Path) -> int:
    """The permission bits ``path`` should get: those of the file it replaces, else the umask's
    (also for a symbolic link, whose target is not the file being written)."""
    try:
        found = path.lstat()
        if stat.S_ISREG(found.st_mode):
            return stat.S_IMODE(found.st_mode)
    except OSError:
        pass
    umask = os.umask(0o022)  # read it (there is no getter), then put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomically(path: str | Path, serialize: Callable[[io.BytesIO], None]) -> Path:
    """``serialize(buffer)`` into memory, then :func:`atomic_write` the bytes.

    For writers that fail badly on a full disk when given a path (``torch.export.save`` aborts
    the process from C++): here the disk is written by Python, so a full disk is an ``OSError``.
    """
    buffer = io.BytesIO()
    serialize(buffer)
    data = buffer.getbuffer()
    return atomic_write(path, lambda tmp: _write_all(tmp, data))


def _write_all(tmp: str, data: Any) -> None:
    with open(tmp, "wb") as f:
        f.write(data)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`write_bytes_atomically` (a full disk: one clear ``OSError``)."""
    return write_bytes_atomically(path, lambda buffer: torch.save(obj, buffer))


def atomic_export_save(program: Any, path: str | Path) -> Path:
    """``torch.export.save`` of an ``ExportedProgram`` (``.pt2``) through
    :func:`write_bytes_atomically`: a full disk keeps the previous file and raises an ``OSError``."""
    return write_bytes_atomically(path, lambda buffer: torch.export.save(program, buffer))


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def safe_torch_load(path: str | Path, map_location: Any = None) -> Any:
    """``torch.load(weights_only=True)`` with clear errors for missing, corrupt or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {str(path)!r}.")
    _check_zip_crcs(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK"):  # safetensors: length, JSON
        raise ValueError(f"path: {str(path)!r} is a safetensors file (such as a head written by "
                         "TTAME.save), not a torch checkpoint.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise ValueError(
                f"path: {str(path)!r} is not a readable checkpoint (corrupted?): {err}"
            ) from err
        found = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line), "")
        raise ValueError(
            f"path: {str(path)!r} is refused: it holds more than tensors and plain values "
            f"(loading it could run code), or it is damaged{f' ({found})' if found else ''}. Nothing "
            "from it was executed. Only files of tensors and plain values are accepted (those written "
            "by ttame_attr, and checkpoints of the paper's authors saved with plain hyper-parameters)."
        ) from err
    except Exception as err:  # noqa: BLE001 - any failure to parse a damaged file
        # RuntimeError, EOFError, zipfile.BadZipFile, OSError, and for damaged pickles also
        # KeyError, IndexError, UnicodeDecodeError, ...: all mean the same to the caller.
        raise ValueError(
            f"path: {str(path)!r} is not a readable checkpoint (truncated or corrupted?): "
            f"{type(err).__name__}: {err}"
        ) from err


def _check_zip_crcs(path: Path) -> None:
    """Refuse a torch zip file whose members fail their CRC-32 (``torch.load`` does not check
    them, so a changed byte inside tensor data would load as a different value)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error):
        return  # not a readable zip: torch.load gives the error below (or reads an old pickle)
    if bad is not None:
        raise ValueError(f"path: {str(path)!r} is not a readable checkpoint (corrupted: the "
                         f"checksum of {bad!r} does not match).")


def check_payload(
    payload: Any,
    path: str | Path,
    *,
    fmt: str,
    version: int,
    what: str,
    foreign_hint: str,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """Check a file's contents: a dict tagged ``format == fmt``, not newer, with ``required``.

    Args:
        payload: what the file held.
        path: the file, for messages.
        fmt: the expected ``payload["format"]``.
        version: the newest ``payload["format_version"]`` this code reads.
        what: the kind of file, for messages (``"a T-TAME head"``).
        foreign_hint: what to do with a file of another kind.
        required: keys the payload must have.

    Raises:
        ValueError: naming the file and what is wrong.
    """
    name = str(path)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"path: {name!r} is not {what} saved by ttame_attr. {foreign_hint}")
    if payload.get("format_version", 0) > version:
        raise ValueError(
            f"path: {name!r} was written by a newer ttame_attr (format "
            f"{payload['format_version']}); upgrade ttame_attr to read it."
        )
    missing = [key for key in required if key not in payload]
    if missing:
        raise ValueError(
            f"path: {name!r} claims to be {what} but is incomplete (missing {missing}); the file "
            "is damaged or was not written by ttame_attr."
        )
    return payload


def _tensors(obj: Any) -> Iterable[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def all_finite(obj: Any) -> bool:
    """Whether every floating-point tensor in ``obj`` (a tensor, or nested dicts / lists of them)
    is free of NaN and inf. One device synchronisation."""
    peaks = [t.detach().abs().amax().float() for t in _tensors(obj)
             if t.is_floating_point() and t.numel()]
    return not peaks or bool(torch.isfinite(torch.stack([p.to(peaks[0].device) for p in peaks])).all())


def nonfinite_entries(state: Mapping[str, Tensor]) -> list[str]:
    """Names of the floating-point entries of a ``state_dict`` that hold NaN or inf."""
    return [name for name, value in state.items()
            if isinstance(value, Tensor) and value.is_floating_point() and not all_finite(value)]
