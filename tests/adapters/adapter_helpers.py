"""Helpers for the adapter tests: a fixed seed, and checks that the model is left as found.

Not a ``conftest.py``: the suite's root ``conftest`` is imported by name from other test
folders, and a second module of that name would shadow it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from ttame_attr._core.ttame import TTAME


@pytest.fixture(autouse=True)
def seed() -> None:
    """Every test starts from the same seed (import this fixture into a test module)."""
    torch.manual_seed(0)


def model_state(model: nn.Module) -> dict[str, Any]:
    """Weights, flags and hooks of ``model``: what an explainer must leave exactly as it was."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ),
    }


def round_trip(explainer: TTAME, model: nn.Module, before: dict[str, Any]) -> None:
    """One training step and one attribution: maps finite and of the input's size, model intact."""
    c, h, w = explainer.input_size
    explainer.fit([torch.randn(2, c, h, w)], epochs=1, progress=False)
    maps = explainer.attribute(torch.randn(2, c, h, w))
    assert maps.shape == (2, 1, h, w)
    assert torch.isfinite(maps).all()
    after = model_state(model)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"] == 0
    assert before["tensors"].keys() == after["tensors"].keys()
    for key, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][key]), key
    assert all(p.grad is None for p in model.parameters())


def geometry(explainer: TTAME) -> list[tuple[str, int, int, int, int]]:
    """``(layout, channels, h, w, prefix_tokens)`` of each selected layer."""
    return [(i.layout, i.channels, i.height, i.width, i.prefix_tokens) for i in explainer.layer_info]
