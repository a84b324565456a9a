"""The imputer says once per process which solver runs, and warns when the slow fallback does."""

from __future__ import annotations

import logging

import pytest
import torch

from ttame_attr.metrics import _imputation
from ttame_attr.metrics._imputation import noisy_linear_impute

LOGGER = "ttame_attr.metrics._imputation"


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new process: nothing announced yet."""
    monkeypatch.setattr(_imputation, "_ANNOUNCED", set())


def _impute_twice() -> None:
    images, removed = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool)
    removed[:, 2:5, 3:6] = True
    for _ in range(2):
        noisy_linear_impute(images, removed, noise_std=0.0)


def test_without_scipy_the_cpu_fallback_warns_once_naming_the_extra(monkeypatch, caplog) -> None:
    monkeypatch.setattr(_imputation, "_scipy_available", lambda: False)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _impute_twice()
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "conjugate gradient" in message and 'pip install "ttame-attr[metrics]"' in message


def test_with_scipy_the_solver_is_logged_once_at_info(caplog) -> None:
    assert _imputation._scipy_available(), "scipy is a dev dependency"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _impute_twice()
        noisy_linear_impute(torch.rand(1, 1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), solver="cg")
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [level for level, _ in messages] == [logging.INFO, logging.INFO]
    assert "sparse LU (scipy)" in messages[0][1] and "conjugate gradient" in messages[1][1]
