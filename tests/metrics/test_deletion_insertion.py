"""Deletion / insertion curves and AUC: known curves, blur, stateful form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttame_attr.metrics import CurveResult, Deletion, Insertion, deletion, gaussian_blur, insertion


class MeanProbModel(nn.Module):
    """Two classes whose softmax is exactly ``[p, 1 - p]`` with ``p = mean(x)`` (x in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.flatten(1).mean(dim=1).clamp(1e-12, 1 - 1e-12) + self.dummy
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_linear_deletion_curve_has_auc_one_half() -> None:
    x = torch.ones(2, 1, 4, 4)
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(0))
    res = deletion(MeanProbModel().eval(), x, maps, target=0, steps=8)
    assert isinstance(res, CurveResult) and res.kind == "deletion"
    expected = torch.linspace(1, 0, 9)
    assert torch.allclose(res.curves, expected.expand(2, -1), atol=1e-5)
    assert torch.allclose(res.fractions, torch.linspace(0, 1, 9))
    assert res.auc == pytest.approx(0.5, abs=1e-5)
    assert res.aucs.shape == (2,)


def test_linear_insertion_curve_from_black_has_auc_one_half() -> None:
    x = torch.ones(1, 1, 4, 4)
    res = insertion(MeanProbModel().eval(), x, torch.rand(1, 4, 4), target=0, steps=4, baseline=0.0)
    assert torch.allclose(res.mean_curve, torch.linspace(0, 1, 5), atol=1e-5)
    assert res.auc == pytest.approx(0.5, abs=1e-5)


def test_hand_computed_deletion_order_follows_the_map() -> None:
    # p = mean; deleting the largest pixel first: 0.25, 0.15, 0.075, 0.025, 0
    x = torch.tensor([0.4, 0.3, 0.2, 0.1]).view(1, 1, 2, 2)
    res = deletion(MeanProbModel().eval(), x, x[:, 0], target=0, steps=4)
    assert torch.allclose(res.curves[0], torch.tensor([0.25, 0.15, 0.075, 0.025, 0.0]), atol=1e-6)
    assert res.auc == pytest.approx(0.25 * (0.125 + 0.15 + 0.075 + 0.025), abs=1e-6)
    # the reversed map deletes the smallest first: a higher (worse) AUC
    worse = deletion(MeanProbModel().eval(), x, -x[:, 0], target=0, steps=4)
    assert worse.auc > res.auc


def test_default_steps_is_one_row_per_step_and_default_target_is_prediction() -> None:
    x = torch.full((1, 1, 6, 5), 0.8)
    res = deletion(MeanProbModel().eval(), x, torch.rand(1, 6, 5))
    assert res.curves.shape == (1, 7)
    assert res.target.tolist() == [0]


def test_gaussian_blur_keeps_constants_inside_and_zero_pads() -> None:
    img = torch.ones(1, 2, 15, 15)
    out = gaussian_blur(img, kernel_size=5, sigma=1.0)
    assert torch.allclose(out[..., 2:-2, 2:-2], torch.ones(1, 2, 11, 11), atol=1e-6)
    assert out[0, 0, 0, 0].item() < 0.9  # zero padding darkens the border, as in RISE
    assert torch.equal(img, torch.ones(1, 2, 15, 15))
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_blur(img, kernel_size=4)


def test_insertion_starts_from_blur() -> None:
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    res = insertion(MeanProbModel().eval(), x, torch.rand(1, 8, 8), target=0, steps=2)
    assert res.curves[0, 0].item() == pytest.approx(gaussian_blur(x).mean().item(), abs=1e-5)
    assert res.curves[0, -1].item() == pytest.approx(x.mean().item(), abs=1e-5)


def test_stateful_equals_functional_and_chunking() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()
    x = torch.rand(5, 3, 6, 6)
    maps = torch.rand(5, 1, 3, 3)
    for fn, cls in ((deletion, Deletion), (insertion, Insertion)):
        full = fn(model, x, maps, steps=6)
        chunked = fn(model, x, maps, steps=6, max_batch=4)
        assert torch.allclose(full.curves, chunked.curves, atol=1e-6)
        metric = cls(model, steps=6)
        metric.update(x[:2], maps[:2])
        metric.update(x[2:], maps[2:])
        res = metric.compute()
        assert torch.allclose(res.curves, full.curves, atol=1e-6)
        assert res.auc == pytest.approx(full.auc, abs=1e-6)


def test_stateful_rejects_batches_with_other_curve_length() -> None:
    model = MeanProbModel().eval()
    metric = Deletion(model)
    metric.update(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match="steps"):
        metric.update(torch.rand(1, 1, 6, 6), torch.rand(1, 6, 6))


def test_bad_arguments() -> None:
    model = MeanProbModel().eval()
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="steps"):
        deletion(model, x, torch.rand(1, 4, 4), steps=0)
    with pytest.raises(ValueError, match="baseline"):
        insertion(model, x, torch.rand(1, 4, 4), baseline="noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline"):
        deletion(model, x, torch.rand(1, 4, 4), baseline=torch.zeros(3, 1, 1))
