"""Every metric runs on each available device and agrees with the CPU.

On a CPU-only machine only "cpu" is parametrised; on a CUDA machine the same tests also check
that results stay on the GPU and match the CPU numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttame_attr import metrics as M

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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
    checks = [
        (lambda m, a, b: M.average_drop_increase(m, a, b), "masked_probs"),
        (lambda m, a, b: M.road(m, a, b, fractions=(0.2, 0.7), noise_std=0.0), "morf_probs"),
        (lambda m, a, b: M.deletion(m, a, b, steps=4), "curves"),
        (lambda m, a, b: M.insertion(m, a, b, steps=4), "curves"),
    ]
    for fn, name in checks:
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
    masks = torch.zeros(3, 12, 12, dtype=torch.bool, device=device)
    masks[:, 3:9, 3:9] = True
    pg = M.pointing_game(maps, masks, tolerance=2)
    assert pg.hits.device.type == device
    gen = torch.Generator(device=device).manual_seed(0)
    imputed = M.noisy_linear_impute(x.to(device), masks, 0.01, gen)
    assert imputed.device.type == device
