"""The user's model in eval mode for one block, every submodule's `.training` flag restored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode", "training_submodules"]


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block, then restore every submodule's ``.training``.

    Restores the exact per-module flags (a model may mix train and eval submodules), also when
    the block raises. Costs nothing when everything is already in eval mode.
    """
    saved = [(m, True) for module in modules for m in training_submodules(module)]
    try:
        for module, _ in saved:
            module.training = False
        yield
    finally:
        for module, flag in saved:
            module.training = flag


def training_submodules(root: nn.Module) -> list[nn.Module]:
    """Every submodule of ``root`` (itself included, each once) whose ``.training`` is set.

    The same set as ``[m for m in root.modules() if m.training]`` without building the dotted
    names ``modules()`` builds: this runs on every forward pass, where a ViT-B's 150 modules
    cost a visible share of a GPU forward's time.
    """
    found: list[nn.Module] = []
    stack = [root]
    seen: set[int] = set()
    while stack:
        module = stack.pop()
        key = id(module)
        if key in seen:
            continue
        seen.add(key)
        if module.training:
            found.append(module)
        for child in module._modules.values():
            if child is not None:
                stack.append(child)
    return found
