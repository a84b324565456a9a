"""Captum's own clients accept T-TAME's output."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from captum.attr import NoiseTunnel
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME

matplotlib.use("Agg")


@pytest.fixture
def explainer() -> TTAME:
    torch.manual_seed(0)
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    with torch.no_grad():
        e.head.fusion.weight.normal_()
    return e


def test_sensitivity_max(explainer, images) -> None:
    sens = sensitivity_max(explainer.attribute, images, target=1, n_perturb_samples=2)
    assert sens.shape == (4,) and torch.isfinite(sens).all() and (sens >= 0).all()


def test_infidelity_with_expanded_maps(explainer, images) -> None:
    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    maps = explainer.attribute(images, target=1).expand(-1, 3, -1, -1)
    value = infidelity(explainer.model, perturb, images, maps, target=1, n_perturb_samples=2)
    assert value.shape == (4,) and torch.isfinite(value).all()


def test_noise_tunnel(explainer, images) -> None:
    nt = NoiseTunnel(explainer)
    smooth = nt.attribute(images, nt_type="smoothgrad", nt_samples=3, target=2, stdevs=0.01)
    assert smooth.shape == (4, 1, 32, 32)
    # tiny noise: the smoothed map is close to the plain one
    torch.testing.assert_close(smooth, explainer.attribute(images, target=2), atol=0.05, rtol=0)


def test_visualize_image_attr(explainer, images) -> None:
    maps = explainer.attribute(images, target=0, scale="minmax")
    attr = maps[0].permute(1, 2, 0).numpy()  # (H, W, 1)
    image = images[0].permute(1, 2, 0).numpy()
    fig, _ = viz.visualize_image_attr(
        attr, image, method="blended_heat_map", sign="positive", use_pyplot=False
    )
    assert fig is not None and np.isfinite(attr).all()
