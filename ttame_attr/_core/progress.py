"""Progress bars: one helper for training, evaluation, the demo and the reference classifiers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    enabled: bool = True,
    desc: str | None = None,
    total: int | None = None,
    initial: int = 0,
    leave: bool = False,
) -> Any:
    """A tqdm bar (on stderr), or a silent one with the same methods when ``enabled`` is false.

    Iterate over it, or call ``update()`` / ``set_postfix()`` / ``close()`` by hand.
    """
    return tqdm(iterable, desc=desc, total=total, initial=initial, leave=leave,
                disable=not enabled)
