"""Noisy linear imputer: hand-computed values and agreement with pytorch-grad-cam."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from ttame_attr.metrics import noisy_linear_impute

SOLVERS = pytest.mark.parametrize("solver", ["direct", "cg"])

IMG = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 9.0, 8.0]]).view(1, 1, 3, 3)


@SOLVERS
def test_center_pixel_is_weighted_mean_of_eight_neighbours(solver: str) -> None:
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    out = noisy_linear_impute(IMG, removed, noise_std=0.0, solver=solver)
    direct = (2.0 + 4.0 + 6.0 + 9.0) / 6
    diagonal = (1.0 + 3.0 + 7.0 + 8.0) / 12
    assert out[0, 0, 1, 1].item() == pytest.approx(direct + diagonal, abs=1e-5)
    keep = ~removed[0]
    assert torch.equal(out[0, 0][keep], IMG[0, 0][keep])


@SOLVERS
def test_corner_pixel_renormalises_in_bounds_weights(solver: str) -> None:
    removed = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0, 0] = True
    out = noisy_linear_impute(IMG, removed, noise_std=0.0, solver=solver)
    expected = (2.0 / 6 + 4.0 / 6 + 5.0 / 12) / (1 / 6 + 1 / 6 + 1 / 12)
    assert out[0, 0, 0, 0].item() == pytest.approx(expected, abs=1e-5)


@SOLVERS
def test_two_adjacent_removed_pixels_solve_the_coupled_system(solver: str) -> None:
    # Remove (1, 0) and (1, 1). Unknowns a = x(1,0), b = x(1,1):
    #   a = (1/6*(1 + 7 + b) + 1/12*(2 + 9)) / (5/12 + 3/12)   [border pixel: weights sum 2/3]
    #   b = 1/6*(2 + 9 + a + 6) + 1/12*(1 + 3 + 7 + 8)
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 0] = removed[0, 1, 1] = True
    out = noisy_linear_impute(IMG.double(), removed, noise_std=0.0, solver=solver, tol=1e-12)
    # a = 1.5 * (8/6 + b/6 + 11/12) = 3.375 + b/4 ; b = 17/6 + a/6 + 19/12
    b = (17 / 6 + 19 / 12 + 3.375 / 6) / (1 - 1 / 24)
    a = 3.375 + b / 4
    assert out[0, 0, 1, 0].item() == pytest.approx(a, abs=1e-9)
    assert out[0, 0, 1, 1].item() == pytest.approx(b, abs=1e-9)


@SOLVERS
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pytorch_grad_cam_without_noise(seed: int, solver: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(3, 18, 22, generator=gen)
    removed = torch.rand(18, 22, generator=gen) < 0.6
    removed[:7, :9] = True  # a large hole too
    reference = NoisyLinearImputer(noise=0.0)(img, (~removed).float())
    ours = noisy_linear_impute(img[None], removed[None], noise_std=0.0, solver=solver)[0]
    assert torch.allclose(ours, reference, atol=2e-4)


@SOLVERS
def test_noise_only_on_removed_pixels_and_reproducible(solver: str) -> None:
    img = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    removed = torch.zeros(2, 6, 6, dtype=torch.bool)
    removed[:, 2:4, 2:4] = True
    clean = noisy_linear_impute(img, removed, noise_std=0.0, solver=solver)
    a = noisy_linear_impute(img, removed, 0.01, torch.Generator().manual_seed(5), solver=solver)
    b = noisy_linear_impute(img, removed, 0.01, torch.Generator().manual_seed(5), solver=solver)
    assert torch.equal(a, b)
    diff = (a - clean).abs()
    assert diff[:, :, ~removed[0]].max().item() == 0.0
    assert 0 < diff[:, :, removed[0]].std().item() < 0.05


@SOLVERS
def test_does_not_modify_input_and_keeps_dtype(solver: str) -> None:
    img = IMG.clone()
    removed = torch.ones(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = False
    out = noisy_linear_impute(img, removed, noise_std=0.0, solver=solver)
    assert torch.equal(img, IMG)
    assert out.dtype == img.dtype
    # one known pixel: the harmonic solution is that constant everywhere
    assert torch.allclose(out, torch.ones_like(out))


@SOLVERS
def test_everything_removed_gives_zero(solver: str) -> None:
    out = noisy_linear_impute(IMG, torch.ones(1, 3, 3, dtype=torch.bool), noise_std=0.0, solver=solver)
    assert torch.equal(out, torch.zeros_like(out))


def test_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match="images"):
        noisy_linear_impute([[1.0]], torch.zeros(1, 1, 1, dtype=torch.bool))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="removed"):
        noisy_linear_impute(IMG, [[True]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="images"):
        noisy_linear_impute(IMG[0], torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="removed"):
        noisy_linear_impute(IMG, torch.zeros(1, 4, 3, dtype=torch.bool))


def test_generator_on_another_device_is_rejected() -> None:
    # stand-in for a CUDA generator (none can be built on a CPU-only machine)
    gen = SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(ValueError, match="generator: it lives on cuda:0"):
        noisy_linear_impute(IMG, torch.zeros(1, 3, 3, dtype=torch.bool), 0.01, gen)  # type: ignore[arg-type]


def test_direct_and_cg_agree_on_large_holes() -> None:
    gen = torch.Generator().manual_seed(3)
    img = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    removed = torch.zeros(3, 32, 32, dtype=torch.bool)
    removed[0, 4:28, 2:20] = True  # a big block
    removed[1] = torch.rand(32, 32, generator=gen) < 0.9  # 90% scattered
    removed[2, :, :16] = True  # a half touching the border
    direct = noisy_linear_impute(img, removed, noise_std=0.0, solver="direct")
    cg = noisy_linear_impute(img, removed, noise_std=0.0, solver="cg", tol=1e-12, max_iter=5000)
    assert torch.allclose(direct, cg, atol=1e-8)
    # the same generator gives the same noise whichever solver ran
    a = noisy_linear_impute(img, removed, 0.01, torch.Generator().manual_seed(1), solver="direct")
    b = noisy_linear_impute(img, removed, 0.01, torch.Generator().manual_seed(1), solver="cg",
                            tol=1e-12, max_iter=5000)
    assert torch.allclose(a, b, atol=1e-8)


def test_unknown_solver_is_rejected() -> None:
    with pytest.raises(ValueError, match="solver: expected one of"):
        noisy_linear_impute(IMG, torch.zeros(1, 3, 3, dtype=torch.bool), solver="lu")
