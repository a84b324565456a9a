"""Dry runs: record what every module of a model outputs for one input."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ttame_attr.adapters._base import as_tensor_output

__all__ = ["ModuleCall", "probe_modules"]


@dataclass(frozen=True)
class ModuleCall:
    """The last call of one module during a dry run."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    order: int


def probe_modules(model: nn.Module, x: Tensor) -> list[ModuleCall]:
    """Run ``model(x)`` without gradients and record each module's last output shape.

    Hooks are registered on every named module and removed before returning, also on error.
    The model's ``.training`` flags are not touched: callers put it in eval mode if they need to.

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
                calls[name] = ModuleCall(name, module, tuple(tensor.shape), counter[0])

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(calls.values(), key=lambda c: c.order)
