"""Forward hooks that capture selected layers' outputs for the duration of one call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from ttame_attr.adapters._base import as_tensor_output

__all__ = ["StopForward", "capture_features", "named_modules_or_error"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass once every needed feature is captured."""


def named_modules_or_error(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Look up modules by name, with an error that lists the closest valid names."""
    import difflib

    found = {}
    modules: dict[str, nn.Module] | None = None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"layers: expected module names (str), got {type(name).__name__}.")
        if name:
            # A walk down the name's path: much cheaper than listing every module of the model
            # on each call (this runs once per forward pass).
            try:
                found[name] = model.get_submodule(name)
                continue
            except AttributeError:
                pass
        if modules is None:
            modules = dict(model.named_modules())
        if name not in modules or not name:
            valid = [n for n in modules if n]
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
            hint = f" Closest valid names: {', '.join(map(repr, close))}." if close else ""
            raise ValueError(
                f"layers: {type(model).__name__} has no module named {name!r}.{hint} "
                "Names are those of `model.named_modules()`; run `ttame layers` or see "
                "`TTAME(model).layers` for the defaults."
            )
        found[name] = modules[name]
    return found


@contextmanager
def capture_features(
    model: nn.Module,
    names: Iterable[str],
    *,
    clone: Iterable[str] = (),
    stop_after: str | None = None,
) -> Iterator[dict[str, Tensor]]:
    """Capture the outputs of the named modules while the ``with`` block runs.

    The hooks are removed when the block exits, also on error. Captured tensors keep their
    autograd history; they are the module's own output (no copy) unless named in ``clone``
    (needed when the model changes the tensor in place afterwards).

    Args:
        model: the network to hook.
        names: module names (``model.named_modules()``) to capture.
        clone: names whose output must be cloned when captured.
        stop_after: raise :class:`StopForward` right after this module runs, to skip the rest of
            the forward pass when only features are needed. The caller catches it.

    Yields:
        A dict, filled during the forward pass, mapping each name to its captured output.
    """
    modules = named_modules_or_error(model, names)
    clone = set(clone)
    store: dict[str, Tensor] = {}
    handles = []

    def make_hook(name: str):
        copy = name in clone
        stop = name == stop_after

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = as_tensor_output(output)
            if tensor is None:
                raise TypeError(
                    f"layers: module {name!r} returned {type(output).__name__}, not a tensor; "
                    "choose a module that outputs a feature tensor."
                )
            store[name] = tensor.clone() if copy else tensor
            if stop and len(store) == len(modules):
                raise StopForward

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()
