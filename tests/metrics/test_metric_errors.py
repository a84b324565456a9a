"""Clear errors for bad arguments, shared by every model-based metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ttame_attr.metrics import average_drop_increase, deletion, insertion, road

MODEL = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
X = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
MAPS = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
METRICS = [average_drop_increase, road, deletion, insertion]


@pytest.mark.parametrize("metric", METRICS)
def test_inputs_errors(metric) -> None:
    with pytest.raises(TypeError, match="inputs.*torch.Tensor"):
        metric(MODEL, X.numpy(), MAPS)
    with pytest.raises(ValueError, match=r"inputs.*\(N, C, H, W\).*unsqueeze"):
        metric(MODEL, X[0], MAPS)
    with pytest.raises(ValueError, match="inputs.*empty batch"):
        metric(MODEL, X[:0], MAPS[:0])
    with pytest.raises(TypeError, match="inputs.*floating"):
        metric(MODEL, (X * 255).long(), MAPS)


@pytest.mark.parametrize("metric", METRICS)
def test_maps_errors(metric) -> None:
    with pytest.raises(ValueError, match="maps: batch size 1 does not match the 2 images"):
        metric(MODEL, X, MAPS[:1])
    with pytest.raises(ValueError, match=r"maps: expected shape \(N, 1, h, w\)"):
        metric(MODEL, X, MAPS[0, 0])
    with pytest.raises(TypeError, match="maps"):
        metric(MODEL, X, [[0.0]])
    with pytest.raises(TypeError, match="maps: the explanation method returned ndarray"):
        metric(MODEL, X, lambda x, t: np.zeros((2, 4, 4)))


@pytest.mark.parametrize("metric", METRICS)
def test_target_errors(metric) -> None:
    with pytest.raises(ValueError, match=r"target: class indices must lie in \[0, 5\)"):
        metric(MODEL, X, MAPS, target=5)
    with pytest.raises(TypeError, match="target.*long"):
        metric(MODEL, X, MAPS, target=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target: expected shape \(2,\)"):
        metric(MODEL, X, MAPS, target=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="model"):
        metric(lambda x: x, X, MAPS)


@pytest.mark.parametrize("bad", [0.0, 1.5, 50, -0.1, (), "half"])
def test_fraction_errors(bad) -> None:
    with pytest.raises((ValueError, TypeError), match="fractions"):
        average_drop_increase(MODEL, X, MAPS, fractions=bad)
    with pytest.raises((ValueError, TypeError), match="fractions"):
        road(MODEL, X, MAPS, fractions=bad)


def test_max_batch_error() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        average_drop_increase(MODEL, X, MAPS, max_batch=0)


def test_model_output_shapes_via_forward_logits() -> None:
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = MODEL

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.inner(x)}

    a = average_drop_increase(DictModel().eval(), X, MAPS)
    b = average_drop_increase(MODEL, X, MAPS)
    assert torch.allclose(a.masked_probs, b.masked_probs)


@pytest.mark.parametrize("metric", METRICS)
def test_inputs_requiring_grad_build_no_graph(metric) -> None:
    x = X.clone().requires_grad_(True)
    res = metric(MODEL, x, MAPS)
    tensors = [v for v in vars(res).values() if isinstance(v, torch.Tensor)]
    assert tensors and not any(t.requires_grad for t in tensors)
    assert x.grad is None and all(p.grad is None for p in MODEL.parameters())
