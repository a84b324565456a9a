"""The ``cnn`` adapter on torchvision CNNs: default stages, geometry, non-square inputs."""

from __future__ import annotations

import torch
import torchvision
from adapter_helpers import geometry, model_state, round_trip, seed  # noqa: F401 (seed: autouse)
from torch import nn
from torchvision.models.vgg import VGG, make_layers

from ttame_attr._core.ttame import TTAME


def test_resnet18_defaults_to_layer2_3_4() -> None:
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 64, 64))
    assert explainer.adapter.name == "cnn"
    assert explainer.layers == ["layer2", "layer3", "layer4"]
    assert geometry(explainer) == [
        ("nchw", 128, 8, 8, 0), ("nchw", 256, 4, 4, 0), ("nchw", 512, 2, 2, 0)
    ]
    assert explainer.map_size == (8, 8)
    round_trip(explainer, model, before)


def _small_vgg11() -> VGG:
    """torchvision's VGG with vgg11's layer sequence (same indices) and few channels.

    The 100M-parameter classifier of the real vgg11 is built on the meta device and replaced:
    initialising it would take most of this file's time budget.
    """
    features = make_layers([4, "M", 8, "M", 8, 8, "M", 16, 16, "M", 16, 16, "M"])
    with torch.device("meta"):
        model = VGG(nn.Sequential(), num_classes=10, init_weights=False)
    model.features = features
    model.classifier = nn.Linear(16 * 7 * 7, 10)
    return model


def test_vgg11_defaults_to_its_last_three_max_pools() -> None:
    model = _small_vgg11()
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 64, 64))
    pools = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert explainer.layers == pools[-3:] == ["features.10", "features.15", "features.20"]
    assert geometry(explainer) == [
        ("nchw", 8, 8, 8, 0), ("nchw", 16, 4, 4, 0), ("nchw", 16, 2, 2, 0)
    ]
    round_trip(explainer, model, before)


def test_non_square_input_keeps_its_aspect_ratio() -> None:
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 64, 96))
    assert explainer.layers == ["layer2", "layer3", "layer4"]
    assert [(i.height, i.width) for i in explainer.layer_info] == [(8, 12), (4, 6), (2, 3)]
    assert explainer.map_size == (8, 12)
    round_trip(explainer, model, before)


def test_densenet_norm5_output_is_marked_in_place_modified() -> None:
    model = torchvision.models.densenet121(weights=None, num_classes=10)
    explainer = TTAME(model, input_size=(3, 64, 64))
    assert explainer.layers == ["features.denseblock2", "features.denseblock3", "features"]
    assert [i.inplace_modified for i in explainer.layer_info] == [False, False, True]
