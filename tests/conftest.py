"""Shared fixtures: tiny, seeded models (weights=None) that keep the suite fast."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyCNN, make_tiny_cnn, make_tiny_swin, make_tiny_vit
from torch import nn

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is a dev dependency; only the fuzz tests need it
    _hypothesis_settings = None
else:
    # Every property test is deterministic: the same examples on every run and machine, no
    # example database carried between runs, and a fixed number of examples (a test's own
    # @settings(max_examples=...) still applies; derandomize and database come from here).
    _hypothesis_settings.register_profile(
        "ttame", derandomize=True, database=None, max_examples=50, deadline=None
    )
    _hypothesis_settings.load_profile("ttame")


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return make_tiny_cnn()


@pytest.fixture
def tiny_vit() -> nn.Module:
    return make_tiny_vit()


@pytest.fixture
def tiny_swin() -> nn.Module:
    return make_tiny_swin()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
