"""A structural clone of a module: its own Module objects, the same parameter and buffer tensors."""

from __future__ import annotations

import copy

from torch import nn

__all__ = ["structural_clone"]

#: The per-module dicts the clone gets copies of, so that hooking it never touches the original.
_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)


def structural_clone(module: nn.Module, _memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """New Module objects for ``module`` and every submodule, sharing its Parameter and buffer
    tensors (nothing is copied: no extra memory, and weights loaded into the original show in
    the clone).

    The clone has its own hook dicts (holding the original's hooks, which keep working), its own
    ``.training`` flags and its own child dicts: registering hooks on it, calling ``.eval()`` or
    replacing a child leaves the original as it was. A submodule shared inside ``module`` stays
    shared inside the clone. Caches kept in a module's ``__dict__`` (``_fused_cache``) are not
    carried over.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).train()
        >>> twin = structural_clone(net).eval()
        >>> twin[0].weight is net[0].weight, twin[0] is net[0], net.training
        (True, False, True)
    """
    memo = {} if _memo is None else _memo
    if id(module) in memo:
        return memo[id(module)]
    clone = copy.copy(module)  # a new object with the same __dict__ values
    memo[id(module)] = clone
    clone._parameters = dict(module._parameters)
    clone._buffers = dict(module._buffers)
    clone._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    for name in _HOOK_DICTS:
        if name in module.__dict__:
            value = module.__dict__[name]
            clone.__dict__[name] = type(value)(value) if isinstance(value, dict) else copy.copy(value)
    clone._modules = {name: None if child is None else structural_clone(child, memo)
                      for name, child in module._modules.items()}
    clone.__dict__.pop("_fused_cache", None)
    return clone
