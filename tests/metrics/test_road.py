"""ROAD MoRF / LeRF: known answers, stateful form, options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttame_attr.metrics import ROAD, ROADResult, road


class SquareModel(nn.Module):
    """Class 0 iff ``100 * mean(x) - 1 > 0``, else class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1)
        return torch.stack([self.scale * m - 1.0, torch.zeros_like(m)], dim=1)


def square_batch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n, 1, 10, 10)
    x[:, :, 4:7, 4:7] = 1.0  # 9 bright pixels on black, mean 0.09 -> class 0
    maps = x[:, 0].clone()  # the map points exactly at the square
    return x, maps


def test_morf_destroys_and_lerf_keeps_the_evidence() -> None:
    x, maps = square_batch()
    res = road(SquareModel().eval(), x, maps, noise_std=0.0)
    assert isinstance(res, ROADResult)
    assert res.fractions == (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
    # MoRF removes the whole square first; every known pixel is 0, so the imputation is 0.
    assert res.morf_accuracy.tolist() == [0.0] * 7
    # LeRF removes black pixels only (91 of them); imputations stay >= 0, the class stays.
    assert res.lerf_accuracy.tolist() == [1.0] * 7
    assert res.morf_average == 0.0 and res.lerf_average == 1.0
    assert res.combined == pytest.approx(0.5)
    assert torch.all(res.morf_prob < 0.5) and torch.all(res.lerf_prob > 0.5)
    assert res.morf_probs.shape == (2, 7) and res.lerf_top1.shape == (2, 7)


def test_constant_model_scores_one_everywhere() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.tensor([1.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b.expand(x.shape[0], -1)

    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    res = road(Constant().eval(), x, torch.rand(3, 6, 6), fractions=(0.2, 0.9))
    assert res.morf_accuracy.tolist() == [1.0, 1.0]
    assert res.lerf_accuracy.tolist() == [1.0, 1.0]


def test_target_labels_and_max_batch() -> None:
    x, maps = square_batch(3)
    a = road(SquareModel().eval(), x, maps, target=1, noise_std=0.0, fractions=(0.1, 0.5))
    assert a.morf_accuracy.tolist() == [1.0, 1.0]  # class 1 after the square is gone
    b = road(
        SquareModel().eval(), x, maps, target=1, noise_std=0.0, fractions=(0.1, 0.5), max_batch=4
    )
    assert torch.allclose(a.morf_probs, b.morf_probs) and torch.allclose(a.lerf_probs, b.lerf_probs)


def test_noise_is_reproducible_with_generator() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 4)).eval()
    r1 = road(model, x, maps, fractions=(0.5,), generator=torch.Generator().manual_seed(7))
    r2 = road(model, x, maps, fractions=(0.5,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(r1.morf_probs, r2.morf_probs)


def test_stateful_equals_functional_and_inputs_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    x = torch.rand(5, 3, 8, 8)
    maps = torch.rand(5, 8, 8)
    x0, m0 = x.clone(), maps.clone()
    full = road(model, x, maps, fractions=(0.3, 0.7), noise_std=0.0)
    metric = ROAD(model, fractions=(0.3, 0.7), noise_std=0.0)
    metric.update(x[:3], maps[:3])
    metric.update(x[3:], maps[3:])
    res = metric.compute()
    assert torch.equal(x, x0) and torch.equal(maps, m0)
    assert torch.allclose(res.morf_probs, full.morf_probs, atol=1e-6)
    assert torch.allclose(res.lerf_probs, full.lerf_probs, atol=1e-6)
    assert torch.equal(res.morf_accuracy, full.morf_accuracy)
    assert res.lerf_average == pytest.approx(full.lerf_average)


def test_bad_noise_std() -> None:
    x, maps = square_batch()
    with pytest.raises(ValueError, match="noise_std"):
        road(SquareModel().eval(), x, maps, noise_std=-1.0)


def test_unknown_solver_is_rejected_before_any_work() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    with pytest.raises(ValueError, match="solver: expected one of"):
        road(model, torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4), solver="lu")
    with pytest.raises(ValueError, match="solver: expected one of"):
        ROAD(model, solver="lu")


def test_direct_and_cg_solvers_give_the_same_scores() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).eval()
    x, maps = torch.rand(4, 3, 8, 8), torch.rand(4, 8, 8)
    runs = [
        road(model, x, maps, fractions=(0.3, 0.7), noise_std=0.0, solver=solver, tol=1e-10)
        for solver in ("direct", "cg")
    ]
    assert torch.allclose(runs[0].morf_probs, runs[1].morf_probs, atol=1e-5)
    assert torch.allclose(runs[0].lerf_probs, runs[1].lerf_probs, atol=1e-5)
