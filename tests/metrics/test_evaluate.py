"""evaluate(): several metrics over a loader, one explanation per batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttame_attr.metrics import (
    METRIC_NAMES,
    AverageDropIncrease,
    Deletion,
    average_drop_increase,
    deletion,
    evaluate,
    road,
)

torch.manual_seed(0)
MODEL = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()
X = torch.rand(5, 3, 6, 6)
Y = torch.tensor([0, 1, 2, 3, 0])
LOADER = [(X[:2], Y[:2]), (X[2:], Y[2:])]


def explain(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # a target-dependent toy explanation: channel (target % 3) of the image
    return inputs[torch.arange(inputs.shape[0]), target % 3][:, None]


def test_evaluate_matches_functional_forms() -> None:
    calls: list[int] = []

    def counted(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(inputs.shape[0])
        return explain(inputs, target)

    out = evaluate(
        MODEL,
        LOADER,
        counted,
        metrics={
            "ad_ic": AverageDropIncrease(MODEL),
            "deletion": Deletion(MODEL, steps=3),
            "road": "road",
        },
    )
    assert calls == [2, 3]  # one explanation per batch, shared by all metrics
    ref = average_drop_increase(MODEL, X, explain)
    assert torch.allclose(out["ad_ic"].masked_probs, ref.masked_probs, atol=1e-6)
    assert out["deletion"].auc == pytest.approx(deletion(MODEL, X, explain, steps=3).auc, abs=1e-6)
    assert out["road"].morf_probs.shape == (5, 7)
    assert set(METRIC_NAMES) == {"ad_ic", "road", "deletion", "insertion"}


def test_evaluate_with_labels_and_tensor_batches() -> None:
    out = evaluate(MODEL, LOADER, explain, metrics=["ad_ic"], target="label")
    assert out["ad_ic"].target.tolist() == Y.tolist()
    out = evaluate(MODEL, [X], explain, metrics=["road"], max_batches=1)
    assert out["road"].target.shape == (5,)
    with pytest.raises(ValueError, match="labels"):
        evaluate(MODEL, [X], explain, metrics=["ad_ic"], target="label")


def test_evaluate_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric name 'auc'"):
        evaluate(MODEL, LOADER, explain, metrics=["auc"])
    with pytest.raises(TypeError, match="update"):
        evaluate(MODEL, LOADER, explain, metrics={"x": 3})
    with pytest.raises(ValueError, match="no batches"):
        evaluate(MODEL, [], explain, metrics=["ad_ic"])
    with pytest.raises(TypeError, match="loader"):
        evaluate(MODEL, ["not a batch"], explain, metrics=["ad_ic"])
    with pytest.raises(ValueError, match="target"):
        evaluate(MODEL, LOADER, explain, target="truth")  # type: ignore[arg-type]


def test_road_accepts_the_same_explain() -> None:
    res = road(MODEL, X, explain, fractions=(0.5,), noise_std=0.0)
    assert res.morf_accuracy.shape == (1,)
