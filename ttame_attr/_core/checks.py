"""Argument checks shared by every layer (the metrics, the dataset reader, the losses)."""

from __future__ import annotations

from typing import Any

__all__ = ["check_positive_int"]


def check_positive_int(value: Any, name: str, allow_none: bool = True) -> int | None:
    """Check a positive integer (or ``None`` where allowed).

    Raises:
        ValueError: naming ``name``, when ``value`` is not a positive ``int`` (a bool is not).

    Example:
        >>> check_positive_int(3, "steps")
        3
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}.")
    return value
