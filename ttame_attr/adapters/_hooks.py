"""Forward hooks on the user's model, registered for one block and removed on exit.

Every hook the package puts on a model is here: :func:`forward_hooks` serves capturing the
features T-TAME reads (:func:`capture_features`), the dry runs that find layers
(:func:`probe_modules`, on :func:`dry_run_input`) and the check for outputs changed in place
(:func:`record_output_versions`); :func:`capture_inputs` sees what a wrapped backbone receives.
The hooks live for the ``with`` block only, also when it raises.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DRY_RUN_BATCH", "ModuleCall", "StopForward", "as_tensor_output", "capture_features",
           "capture_inputs", "dry_run_input", "forward_hooks", "named_modules_or_error", "probe_modules",
           "record_output_versions"]

#: Batch size of the dry runs: outputs whose first dimension differs (windows or heads folded
#: into the batch, e.g. TNT's inner tokens or window attention) are not feature maps.
DRY_RUN_BATCH = 2

#: ``hook(name, module, output)``: what :func:`forward_hooks` calls after each hooked module.
Hook = Callable[[str, nn.Module, Any], None]


class StopForward(Exception):
    """Raised by a hook to end a forward pass once every needed feature is captured."""


def as_tensor_output(output: object) -> Tensor | None:
    """The tensor a hooked module produced (first element of a tuple output), if any."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextmanager
def forward_hooks(modules: Mapping[str, nn.Module], hook: Hook) -> Iterator[None]:
    """Call ``hook(name, module, output)`` after each of ``modules`` runs, for the block."""
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(
                lambda module, args, output, name=name: hook(name, module, output)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_inputs(module: nn.Module) -> Iterator[list[Any]]:
    """The first positional input of each call of ``module`` while the block runs."""
    seen: list[Any] = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0] if args else None))
    try:
        yield seen
    finally:
        handle.remove()


def named_modules_or_error(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Look up modules by name, with an error that lists the closest valid names."""
    found, modules = {}, None
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
        modules = dict(model.named_modules()) if modules is None else modules
        if name not in modules or not name:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f" Closest valid names: {', '.join(map(repr, close))}." if close else ""
            raise ValueError(
                f"layers: {type(model).__name__} has no module named {name!r}.{hint} "
                "Names are those of `model.named_modules()`; run `ttame layers` or see "
                "`TTAME(model).layers` for the defaults.")
        found[name] = modules[name]
    return found


@contextmanager
def capture_features(model: nn.Module, names: Iterable[str], *, clone: Iterable[str] = (),
                     stop_after: str | None = None) -> Iterator[dict[str, Tensor]]:
    """Capture the outputs of the named modules while the ``with`` block runs.

    Captured tensors keep their autograd history; they are the module's own output (no copy)
    unless named in ``clone``.

    Args:
        model: the network to hook.
        names: module names (``model.named_modules()``) to capture.
        clone: names whose output must be cloned when captured, because the model changes it in
            place afterwards.
        stop_after: raise :class:`StopForward` right after this module runs, to skip the rest of
            the forward pass when only features are needed. The caller catches it.

    Yields:
        A dict, filled during the forward pass, mapping each name to its captured output.
    """
    modules = named_modules_or_error(model, names)
    clone = set(clone)
    store: dict[str, Tensor] = {}

    def hook(name: str, module: nn.Module, output: Any) -> None:
        tensor = as_tensor_output(output)
        if tensor is None:
            raise TypeError(f"layers: module {name!r} returned {type(output).__name__}, not a tensor; "
                            "choose a module that outputs a feature tensor.")
        store[name] = tensor.clone() if name in clone else tensor
        if name == stop_after and len(store) == len(modules):
            raise StopForward

    with forward_hooks(modules, hook):
        yield store


@dataclass(frozen=True)
class ModuleCall:
    """The last call of one module during a dry run.

    Attributes:
        name: the module's name in ``model.named_modules()``.
        module: the module.
        shape: the shape of its output (the first tensor of a tuple output).
        order: when the call finished (1 for the first module to return).
        attention: the output looks like attention weights ``(..., L, L)``: non-negative and
            each row summing to 1 (a softmax), so it is no feature map.
    """

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    order: int
    attention: bool = False


def _looks_like_attention(tensor: Tensor) -> bool:
    """Square in its last two dimensions, non-negative, rows summing to 1."""
    if tensor.dim() < 3 or tensor.shape[-1] != tensor.shape[-2] or not tensor.is_floating_point():
        return False
    if tensor.numel() == 0 or bool((tensor < 0).any()):
        return False
    sums = tensor.float().sum(dim=-1)
    return bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))


def dry_run_input(module: nn.Module, input_size: tuple[int, ...]) -> Tensor:
    """Zeros ``(DRY_RUN_BATCH, *input_size)`` on the device and in the floating dtype of
    ``module``'s first parameter (CPU float32 when it has none or it is not floating)."""
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(DRY_RUN_BATCH, *input_size, device=device, dtype=dtype)


def probe_modules(model: nn.Module, x: Tensor, *, outputs: list[object] | None = None) -> list[ModuleCall]:
    """Run ``model(x)`` without gradients and record each module's last output shape.

    The model's ``.training`` flags are not touched: callers put it in eval mode if they need to.

    Args:
        model: the network.
        x: its input.
        outputs: if given, the model's own output is appended to it.

    Returns:
        One :class:`ModuleCall` per module that returned a tensor, ordered by when its last call
        finished.
    """
    calls: dict[str, ModuleCall] = {}
    finished = itertools.count(1)

    def hook(name: str, module: nn.Module, output: Any) -> None:
        tensor = as_tensor_output(output)
        if tensor is not None:
            calls[name] = ModuleCall(name, module, tuple(tensor.shape), next(finished),
                                     _looks_like_attention(tensor))

    with forward_hooks({name: m for name, m in model.named_modules() if name}, hook), torch.no_grad():
        output = model(x)
    if outputs is not None:
        outputs.append(output)
    return sorted(calls.values(), key=lambda c: c.order)


@contextmanager
def record_output_versions(model: nn.Module, names: list[str]) -> Iterator[dict[str, int]]:
    """Record the version counter of each named module's output at the moment it returns.

    Comparing it with the tensor's ``_version`` after the forward pass tells whether the model
    changed that output in place later on (DenseNet's ``relu(features, inplace=True)``), in which
    case captured values must be cloned.

    Yields:
        A dict, filled during the forward pass, from module name to output version.
    """
    versions: dict[str, int] = {}

    def hook(name: str, module: nn.Module, output: Any) -> None:
        tensor = as_tensor_output(output)
        if tensor is not None:
            versions[name] = tensor._version

    with forward_hooks(named_modules_or_error(model, names), hook):
        yield versions
