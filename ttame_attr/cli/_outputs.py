"""Where the command line writes: output files and folders checked before the work starts, files
written without following symbolic links, and a trained head kept when its ``--out`` fails."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ttame_attr._core.storage import atomic_write
from ttame_attr.cli._errors import CLIError

__all__ = ["check_out_dir", "check_out_file", "rescue_write", "same_file", "write_output"]


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (where missing folders would be created)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _probe(option: str, folder: Path, path: Path) -> None:
    """Raise a :class:`CLIError` unless a file can be created in ``folder``."""
    if not folder.is_dir():
        raise CLIError(f"{option}: cannot write {str(path)!r}: {str(folder)!r} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CLIError(f"{option}: cannot write in {str(folder)!r} ({err.strerror or err}); choose a "
                       "writable place.") from None


def check_out_file(option: str, path: str | Path) -> Path:
    """Check, before any work, that the file ``path`` can be written (its missing folders created).

    Raises:
        CLIError: ``path`` is a folder, or its folder is a file or not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{option}: {str(path)!r} is a folder; give a file name, e.g. "
                       f"{str(path / 'out')!r}.")
    folder = path.parent if path.parent.exists() else _existing_ancestor(path)
    _probe(option, folder, path)
    return path


def check_out_dir(option: str, path: str | Path) -> Path:
    """Check, before any work, that the folder ``path`` exists or can be created, and is writable.

    Raises:
        CLIError: ``path`` is a file (or below one), or not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option}: {str(path)!r} exists and is a file; expected a folder. Give another "
                       "--out, or remove the file.")
    _probe(option, path if path.is_dir() else _existing_ancestor(path), path)
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (also through ``..``, symbolic links or hard links)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def write_output(path: Path, write: Callable[[str], None]) -> Path:
    """Write one output file through a temporary file and a rename: a symbolic link planted at
    ``path`` is replaced, never followed (so nothing outside the output folder is written)."""
    return atomic_write(path, write, durable=False, keep_suffix=True)


def rescue_write(option: str, path: Path, write: Callable[[Path], Path]) -> Path:
    """``write(path)``; if that fails with an ``OSError``, write to a fallback place instead (the
    current folder, then the temporary folder) and raise a :class:`CLIError` telling where the
    result went, so that hours of training are not lost to a full or read-only disk."""
    try:
        return write(path)
    except OSError as err:
        reason = f"{type(err).__name__}: {err}"
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        fallback = folder / f"rescued_{os.getpid()}_{path.name}"
        try:
            written = write(fallback)
        except OSError:
            continue
        raise CLIError(f"{option}: writing {str(path)!r} failed ({reason}); the result was kept in "
                       f"{str(written)!r} instead: move it where it belongs.")
    raise CLIError(f"{option}: writing {str(path)!r} failed ({reason}), and so did writing it to the "
                   "current and the temporary folder; the result is lost.")
