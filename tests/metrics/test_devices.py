"""Every metric runs on an accelerator and agrees with the CPU; float64 models on the CPU.

The device tests are parametrised over the accelerators (CUDA); where one is absent its case is
collected and reported as SKIPPED with the reason, never replaced by a CPU-vs-CPU comparison.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttame_attr import metrics as M

DEVICES = [
    pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="CUDA is not available on this machine")),
]

CHECKS = [
    (lambda m, a, b: M.average_drop_increase(m, a, b), "masked_probs"),
    (lambda m, a, b: M.road(m, a, b, fractions=(0.2, 0.7), noise_std=0.0), "morf_probs"),
    (lambda m, a, b: M.deletion(m, a, b, steps=4), "curves"),
    (lambda m, a, b: M.insertion(m, a, b, steps=4), "curves"),
]


def setup(device: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()
    x = torch.rand(3, 3, 12, 12)
    maps = torch.rand(3, 1, 6, 6)
    return model.to(device), x.to(device), maps.to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_results_stay_on_device_and_match_cpu(device: str) -> None:
    model, x, maps = setup(device)
    cpu_model, cpu_x, cpu_maps = setup("cpu")
    for fn, name in CHECKS:
        res = getattr(fn(model, x, maps), name)
        ref = getattr(fn(cpu_model, cpu_x, cpu_maps), name)
        assert res.device.type == device
        assert torch.allclose(res.cpu(), ref, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_cpu_inputs_follow_the_model_and_pointing_follows_masks(device: str) -> None:
    model, _, _ = setup(device)
    _, x, maps = setup("cpu")
    res = M.average_drop_increase(model, x, maps)
    assert res.masked_probs.device.type == device
    cpu_model, _, _ = setup("cpu")
    ref = M.average_drop_increase(cpu_model, x, maps)
    assert torch.allclose(res.masked_probs.cpu(), ref.masked_probs, atol=1e-4)
    masks = torch.zeros(3, 12, 12, dtype=torch.bool, device=device)
    masks[:, 3:9, 3:9] = True
    pg = M.pointing_game(maps, masks, tolerance=2)
    assert pg.hits.device.type == device
    gen = torch.Generator(device=device).manual_seed(0)
    imputed = M.noisy_linear_impute(x.to(device), masks, 0.01, gen)
    assert imputed.device.type == device


def test_float64_model_on_cpu_matches_float32() -> None:
    """Not a device test: a float64 model and inputs give float32 results equal (to float32
    precision) to the float32 run."""
    model, x, maps = setup("cpu")
    model64 = setup("cpu")[0].double()
    for fn, name in CHECKS:
        res = getattr(fn(model64, x.double(), maps.double()), name)
        ref = getattr(fn(model, x, maps), name)
        assert res.dtype == ref.dtype == torch.float32, name
        assert res.shape == ref.shape, name
        torch.testing.assert_close(res, ref, rtol=1e-5, atol=1e-6)
