"""Known-answer tests for the T-TAME loss terms, computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ttame_attr import TTAMELoss, area_loss, variation_loss


def test_variation_by_hand_single_map() -> None:
    a, b, c, d = 0.1, 0.4, 0.7, 0.2
    m = torch.tensor([[[[a, b], [c, d]]]])
    dx = (b - a) ** 2 + (d - c) ** 2
    dy = (c - a) ** 2 + (d - b) ** 2
    # four border slices: rows 0 and -1, columns 0 and -1; on a 2x2 map every pixel is in two
    border = (a**2 + b**2) + (c**2 + d**2) + (a**2 + c**2) + (b**2 + d**2)
    expected = (dx + dy + 0.3 * border) / (2 * 1)
    assert variation_loss(m).item() == pytest.approx(expected, rel=1e-6)


def test_variation_normalised_by_batch_not_maps() -> None:
    m = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    dx = ((m[..., :, 1:] - m[..., :, :-1]) ** 2).sum()
    dy = ((m[..., 1:, :] - m[..., :-1, :]) ** 2).sum()
    border = (m[..., 0, :] ** 2).sum() + (m[..., -1, :] ** 2).sum()
    border = border + (m[..., :, 0] ** 2).sum() + (m[..., :, -1] ** 2).sum()
    expected = (dx + dy + 0.3 * border) / 6
    assert variation_loss(m).item() == pytest.approx(expected.item(), rel=1e-5)


def test_variation_of_constant_interior_is_border_only() -> None:
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 1:3, 1:3] = 1.0  # interior square: differences but no border
    # rows 1 and 2 read 0 1 1 0: two unit jumps each in x; likewise columns in y
    assert variation_loss(m).item() == pytest.approx((4 + 4) / 2)


def test_area_by_hand() -> None:
    m = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    expected = sum((v + 0.0005) ** 0.3 for v in (0.0, 1.0, 0.5, 0.25)) / 4
    assert area_loss(m).item() == pytest.approx(expected, rel=1e-6)


def test_total_loss_with_paper_coefficients() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    labels = torch.tensor([1, 0])
    masks = torch.full((2, 2, 3, 3), 0.5)
    terms = TTAMELoss()(logits, labels, masks)
    ce = (-math.log(3 / 4) - math.log(4 / 5)) / 2
    area = 0.5005**0.3
    # constant map: no differences; border slices: 4 per map, 3 pixels each, 4 maps, /(2*2)
    var = 0.3 * (4 * 3 * 0.25) * 4 / 4
    assert terms.ce.item() == pytest.approx(ce, rel=1e-6)
    assert terms.area.item() == pytest.approx(area, rel=1e-6)
    assert terms.variation.item() == pytest.approx(var, rel=1e-6)
    assert terms.total.item() == pytest.approx(1.5 * ce + 2 * area + 0.01 * var, rel=1e-6)


def test_loss_coefficients_are_configurable() -> None:
    logits, labels = torch.zeros(1, 3), torch.tensor([2])
    masks = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    base = TTAMELoss()(logits, labels, masks)
    only_area = TTAMELoss(ce=0.0, area=1.0, var=0.0)(logits, labels, masks)
    assert only_area.total.item() == pytest.approx(base.area.item())


def test_variation_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="masks"):
        variation_loss(torch.rand(4, 4))
