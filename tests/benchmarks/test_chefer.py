"""Chefer et al.'s transformer attribution (``benchmarks/_quality/chefer.py``): its LRP rules, values
derived by hand, relevance conserved through the encoder, and the map it returns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _quality import chefer  # noqa: E402


def _vit(representation_size: int | None = None) -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                              mlp_dim=32, num_classes=5, representation_size=representation_size).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts it at zero
    return model


def test_linear_rule_by_hand() -> None:
    # x = [1, -2], w = [1, -1]: positive contributions x+ w+ = 1 and x- w- = 2 (z+ = 3), so a
    # relevance of 6 splits 2 : 4.
    r = chefer.linear_rule(torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, -1.0]]), torch.tensor([[6.0]]))
    torch.testing.assert_close(r, torch.tensor([[2.0, 4.0]]))


def test_two_operand_rules_keep_the_relevance_and_split_it_by_contribution() -> None:
    u, v, r = torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 4.0]])
    ru, rv = chefer.add_rule(u, v, r)
    # gradient x input: u * R / (u + v) = [1, 3], v * R / (u + v) = [1, 1]; shares 4 : 2 of 6.
    torch.testing.assert_close(ru, torch.tensor([[1.0, 3.0]]))
    torch.testing.assert_close(rv, torch.tensor([[1.0, 1.0]]))
    a, b = torch.rand(2, 3, 4) + 0.1, torch.rand(2, 4, 5) + 0.1
    rel = torch.rand(2, 3, 5)
    ra, rb = chefer.bilinear_rule(a, b, rel, scale=0.5)
    torch.testing.assert_close(ra.flatten(1).sum(1) + rb.flatten(1).sum(1), rel.flatten(1).sum(1))


@pytest.mark.parametrize("representation_size", [None, 8])
def test_the_reimplemented_forward_is_the_models(representation_size) -> None:
    model = _vit(representation_size)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(chefer._forward(model, x)[0], model(x), atol=1e-6)


def test_relevance_is_conserved_through_the_blocks(monkeypatch) -> None:
    model, seen = _vit(), []
    original = chefer._block_relevance

    def spy(layer, block, relevance):
        out, attn = original(layer, block, relevance)
        seen.append((relevance.flatten(1).sum(1), out.flatten(1).sum(1)))
        return out, attn

    monkeypatch.setattr(chefer, "_block_relevance", spy)
    chefer.transformer_attribution(model, torch.randn(2, 3, 32, 32), torch.tensor([1, 3]))
    assert len(seen) == 2
    for before, after in seen:  # one unit of relevance per image (the one-hot start) all the way
        assert before.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
        assert after.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


def test_maps_are_class_specific_non_negative_and_leave_the_model_alone() -> None:
    model = _vit()
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.randn(2, 3, 32, 32)
    maps = chefer.CheferLRP(model)(x, torch.tensor([0, 0]))
    other = chefer.CheferLRP(model)(x, torch.tensor([4, 4]))
    assert maps.shape == (2, 1, 32, 32) and bool((maps >= 0).all())
    assert not torch.allclose(maps, other)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags and not model.training


def test_other_models_are_refused() -> None:
    with pytest.raises(TypeError, match="model: Chefer et al.'s attribution is implemented here for tor"):
        chefer.CheferLRP(torch.nn.Linear(2, 2))
