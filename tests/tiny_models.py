"""Tiny seeded models (weights=None) and model-state snapshots shared by the tests.

Import with ``from tiny_models import ...`` (``tests/`` is on ``sys.path`` through the root
conftest); ``conftest`` itself is not imported by name, since sub-folders have their own.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Three resolution stages (16, 8, 4 at 32x32) and a linear classifier."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.dropout(self.pool(x).flatten(1)))


def make_tiny_cnn(num_classes: int = 5, seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(num_classes).eval()


def make_tiny_vit(num_classes: int = 5, seed: int = 0) -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=num_classes,
    ).eval()


def make_tiny_swin(num_classes: int = 5, seed: int = 0) -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(seed)
    return SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1, 1], num_heads=[1, 1, 1],
        window_size=[2, 2], num_classes=num_classes,
    ).eval()


def model_snapshot(model: nn.Module) -> dict:
    """Everything about a model that T-TAME must leave unchanged."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (
                len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
            for n, m in model.named_modules()
        },
    }


def assert_same_snapshot(before: dict, after: dict) -> None:
    assert before["requires_grad"] == after["requires_grad"]
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for key, grad in before["grads"].items():
        other = after["grads"][key]
        assert (grad is None) == (other is None), key
        if grad is not None:
            assert torch.equal(grad, other), key


def with_labels(model: torch.nn.Module, bias: list[float]) -> torch.nn.Module:
    """Make a tiny classifier's logits (nearly) ``bias`` for every image (its labels, known)."""
    fc = model.fc if hasattr(model, "fc") else model.heads.head
    with torch.no_grad():
        fc.weight.mul_(0.01)
        fc.bias.copy_(torch.tensor(bias))
    return model
