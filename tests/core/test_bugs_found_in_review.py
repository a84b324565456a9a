"""Bugs found by reviewing the core against the paper's reference code (each failed before)."""

from __future__ import annotations

import inspect

import torch
from tiny_models import make_tiny_cnn
from torch import nn

from ttame_attr import TTAME, AttentionHead, TrainStep, fit


def test_a_cached_fold_from_no_grad_does_not_cut_the_gradient_later() -> None:
    # Random fusion rows: with the default zero start the branches get no gradient at all.
    head = AttentionHead([4], num_classes=3, map_size=(4, 4), init="pytorch").eval()
    features = [torch.randn(2, 4, 4, 4)]
    with torch.no_grad():
        head(features)  # fills the fused-weight cache of the eval fast path
    head(features).sum().backward()
    branch = head.branches[0]
    assert branch.conv.weight.grad is not None and branch.conv.weight.grad.abs().sum() > 0
    assert branch.bn.weight.grad is not None


def test_fit_spells_out_its_options_on_the_method() -> None:
    method = inspect.signature(TTAME.fit)
    function = inspect.signature(fit)
    assert "lr" in method.parameters and "checkpoint_path" in method.parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in method.parameters.values())
    # One definition: the method and the function take the same options.
    assert list(method.parameters)[1:] == list(function.parameters)[1:]
    assert TTAME.fit.__doc__ == fit.__doc__


class _HalfFriendly(nn.Module):
    """A small CNN whose layers all run in bfloat16 on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(self.a(x)).mean((2, 3)))


def test_a_low_precision_model_gets_a_float32_head_that_learns() -> None:
    torch.manual_seed(0)
    model = _HalfFriendly().to(torch.bfloat16).eval()
    explainer = TTAME(model, input_size=(3, 16, 16))
    assert all(p.dtype == torch.float32 for p in explainer.head.parameters())
    before = {k: v.clone() for k, v in explainer.head.state_dict().items()}
    step = TrainStep(explainer, total_steps=4, lr=1e-3)
    # A float16-style gradient scaler: unscaling float32 gradients works (float16 ones would not).
    step.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=True)
    x = torch.rand(4, 3, 16, 16, dtype=torch.bfloat16)
    assert step(x).stepped
    moved = max(float((explainer.head.state_dict()[k].float() - v.float()).abs().max())
                for k, v in before.items() if v.is_floating_point())
    assert moved > 0  # a small update survives (in bfloat16 weights it would round away)
    maps = explainer.attribute(x, target=1)
    assert maps.shape == (4, 1, 16, 16) and torch.isfinite(maps).all()


class _Wide(nn.Module):
    """Feature maps twice as wide as high (64x128 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)  # 64 x 128
        self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)  # 32 x 64
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(self.a(x)).mean((2, 3)))


def test_the_map_size_cap_keeps_the_aspect_ratio() -> None:
    explainer = TTAME(_Wide().eval(), ["a", "b"], input_size=(3, 64, 128), max_map_size=56)
    assert explainer.map_size == (28, 56)  # the longer side capped, the ratio kept
    small = TTAME(make_tiny_cnn(), input_size=(3, 32, 32), max_map_size=56)
    assert small.map_size == (16, 16)  # below the cap: the largest map's own size
