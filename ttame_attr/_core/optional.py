"""Optional dependencies: import one, or say which extra of ``ttame-attr`` installs it."""

from __future__ import annotations

from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, needed_for: str, *, package: str | None = None,
            note: str = "") -> ModuleType:
    """``import module`` and return its top-level package, or raise an ImportError that says what
    needs it and how to install it.

    Args:
        module: the module to import, e.g. ``"sklearn"`` or ``"pyarrow.parquet"``.
        extra: the ``ttame-attr`` extra that installs it, e.g. ``"audit"``.
        needed_for: what needs it, the subject of the message (``"ttame_attr.audit"``).
        package: its name on PyPI when it differs (``"scikit-learn"`` for ``sklearn``).
        note: a last sentence for the message (another way to go on without it).

    Returns:
        The imported top-level package (``pyarrow`` for ``"pyarrow.parquet"``).

    Raises:
        ImportError: the module is not installed, naming ``pip install "ttame-attr[extra]"``.

    Example:
        >>> require("json", "core", "this example").__name__
        'json'
    """
    try:
        return __import__(module)  # the top-level package, with ``module`` imported
    except ImportError as err:
        name = package or module.split(".")[0]
        message = f'{needed_for} needs {name}: install it with `pip install "ttame-attr[{extra}]"`.'
        raise ImportError(message + (f" {note}" if note else "")) from err
