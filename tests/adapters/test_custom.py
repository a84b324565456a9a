"""Hand-made models: channels-last stages, and a stage output changed in place afterwards."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from adapter_helpers import geometry, model_state, round_trip, seed  # noqa: F401 (seed: autouse)
from torch import nn

from ttame_attr._core.ttame import TTAME


class _ChannelsLastStage(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, h, w, C) -> (N, h', w', C')
        return F.relu(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


class ChannelsLastNet(nn.Module):
    """A network whose stages pass channels-last tensors ``(N, h, w, C)`` to each other."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.stage1 = _ChannelsLastStage(6, 12, 1)
        self.stage2 = _ChannelsLastStage(12, 24, 2)
        self.stage3 = _ChannelsLastStage(24, 48, 2)
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).permute(0, 2, 3, 1)
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(x.mean(dim=(1, 2)))


def test_channels_last_stages_are_detected_and_permuted() -> None:
    model = ChannelsLastNet()
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 32, 32))
    assert explainer.adapter.name == "cnn"
    assert explainer.layers == ["stage1", "stage2", "stage3"]
    assert geometry(explainer) == [
        ("nhwc", 12, 16, 16, 0), ("nhwc", 24, 8, 8, 0), ("nhwc", 48, 4, 4, 0)
    ]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        s1 = model.stage1(model.stem(x).permute(0, 2, 3, 1))
        s2 = model.stage2(s1)
        s3 = model.stage3(s2)
        expected = explainer.head([s.permute(0, 3, 1, 2) for s in (s1, s2, s3)], None)
    assert torch.allclose(explainer.class_maps(x), expected, atol=1e-5)
    round_trip(explainer, model, before)


class InplaceAfterFeatures(nn.Module):
    """Like DenseNet: ``relu(self.features(x), inplace=True)`` changes the stage's output."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        return self.fc(out.mean(dim=(2, 3)))


def test_in_place_modification_is_detected_and_captured_values_are_the_layer_output() -> None:
    model = InplaceAfterFeatures().eval()  # eval: the manual computation must not touch BN
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 32, 32))
    assert explainer.layers == ["features.0", "features"]
    assert [i.inplace_modified for i in explainer.layer_info] == [False, True]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model.features[0](x)
        stage = model.features[2](model.features[1](first))  # before the in-place ReLU
        assert (stage < 0).any()  # so that reading the post-ReLU tensor would show
        expected = explainer.head([first, stage], None)
    assert torch.allclose(explainer.class_maps(x), expected, atol=1e-5)
    round_trip(explainer, model, before)
