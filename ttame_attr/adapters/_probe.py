"""Dry runs: record what every module of a model outputs for one input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ttame_attr.adapters._base import as_tensor_output

__all__ = ["ModuleCall", "probe_modules", "record_output_versions"]


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


def probe_modules(
    model: nn.Module, x: Tensor, *, outputs: list[object] | None = None
) -> list[ModuleCall]:
    """Run ``model(x)`` without gradients and record each module's last output shape.

    Hooks are registered on every named module and removed before returning, also on error.
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
    counter = [0]
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            tensor = as_tensor_output(output)
            if tensor is not None:
                counter[0] += 1
                calls[name] = ModuleCall(
                    name, module, tuple(tensor.shape), counter[0], _looks_like_attention(tensor)
                )

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            output = model(x)
        if outputs is not None:
            outputs.append(output)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(calls.values(), key=lambda c: c.order)


@contextmanager
def record_output_versions(model: nn.Module, names: list[str]) -> Iterator[dict[str, int]]:
    """Record the version counter of each named module's output at the moment it returns.

    Comparing it with the tensor's ``_version`` after the forward pass tells whether the model
    changed that output in place later on (DenseNet's ``relu(features, inplace=True)``), in which
    case captured values must be cloned. The hooks are removed on exit, also on error.

    Yields:
        A dict, filled during the forward pass, from module name to output version.
    """
    modules = dict(model.named_modules())
    versions: dict[str, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            tensor = as_tensor_output(output)
            if tensor is not None:
                versions[name] = tensor._version

        return hook

    try:
        for name in names:
            if name in modules:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield versions
    finally:
        for handle in handles:
            handle.remove()
