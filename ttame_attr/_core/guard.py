"""Keep the user's model exactly as it was found."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block, then restore every submodule's ``.training``.

    Restores the exact per-module flags (a model may mix train and eval submodules), also when
    the block raises. Costs nothing when everything is already in eval mode.
    """
    saved = [(m, m.training) for module in modules for m in module.modules() if m.training]
    try:
        for module, _ in saved:
            module.training = False
        yield
    finally:
        for module, flag in saved:
            module.training = flag
