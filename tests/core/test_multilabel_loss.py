"""Known-answer tests of the multi-label T-TAME loss."""

from __future__ import annotations

import math

import pytest
import torch

from ttame_attr import MultiLabelTTAMELoss, TTAMELoss


def test_bce_term_by_hand() -> None:
    # pair 0 keeps label 1 (logit 2), pair 1 keeps label 0 (logit -1); other logits ignored
    logits = torch.tensor([[9.0, 2.0, -9.0], [-1.0, 7.0, 7.0]])
    masks = torch.zeros(2, 2, 2, 2)
    terms = MultiLabelTTAMELoss()(logits, torch.tensor([1, 0]), masks)
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    assert terms.ce.item() == pytest.approx(expected, rel=1e-6)
    assert terms.area.item() == pytest.approx(5e-4 ** 0.3, rel=1e-5)
    assert terms.variation.item() == 0.0
    assert terms.total.item() == pytest.approx(1.5 * expected + 2 * 5e-4 ** 0.3, rel=1e-6)


def test_area_and_variation_on_all_maps() -> None:
    # B = 1 image, M = 2 label maps of 2x2; the second map (a label it lacks) is penalised too
    a, b, c, d = 0.1, 0.4, 0.7, 0.2
    masks = torch.tensor([[[[a, b], [c, d]], [[1.0, 1.0], [1.0, 1.0]]]])
    terms = MultiLabelTTAMELoss(ce=0.0)(torch.zeros(1, 2), torch.tensor([0]), masks)
    area = (sum((v + 5e-4) ** 0.3 for v in (a, b, c, d)) + 4 * 1.0005 ** 0.3) / 8
    var_first = (b - a) ** 2 + (d - c) ** 2 + (c - a) ** 2 + (d - b) ** 2 + 0.3 * 2 * (a*a + b*b + c*c + d*d)
    var_second = 0.3 * 2 * 4.0  # constant map: no differences, each pixel on two border slices
    # the paper's V (sum over the maps / (2 B)), scaled by B / M = 1 / 2
    var = (var_first + var_second) / 2 * (1 / 2)
    assert terms.area.item() == pytest.approx(area, rel=1e-6)
    assert terms.variation.item() == pytest.approx(var, rel=1e-6)
    assert terms.total.item() == pytest.approx(2 * area + 0.01 * var, rel=1e-6)


def test_repeating_the_columns_changes_no_term() -> None:
    # (B, B) maps, the paper's case, against the same maps with every column twice (M = 2 B): the
    # balance of the three terms must not depend on how many pairs a batch masks
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(4, 4, 6, 6, generator=g)
    logits = torch.randn(4, 5, generator=g)
    labels = torch.tensor([0, 3, 1, 4])
    once = MultiLabelTTAMELoss()(logits, labels, masks)
    twice = MultiLabelTTAMELoss()(logits.repeat(2, 1), labels.repeat(2), masks.repeat(1, 2, 1, 1))
    for name in ("total", "ce", "area", "variation"):
        assert getattr(twice, name).item() == pytest.approx(getattr(once, name).item(), rel=1e-5), name


def test_same_area_and_variation_as_the_softmax_loss() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 3, 5, 5, generator=g)
    logits = torch.randn(3, 4, generator=g)
    labels = torch.tensor([0, 3, 1])
    ml = MultiLabelTTAMELoss()(logits, labels, masks)
    sm = TTAMELoss()(logits, labels, masks)
    assert ml.area == sm.area and ml.variation == sm.variation


def test_gradient_reaches_the_masked_logits_of_the_kept_label_only() -> None:
    logits = torch.zeros(2, 3, requires_grad=True)
    MultiLabelTTAMELoss()(logits, torch.tensor([2, 0]), torch.full((2, 2, 3, 3), 0.5)).total.backward()
    grad = logits.grad
    # d/dz BCE(z, 1) = sigmoid(z) - 1 = -0.5 at z = 0, averaged over 2 pairs, times 1.5
    assert grad[0, 2].item() == pytest.approx(-0.375) and grad[1, 0].item() == pytest.approx(-0.375)
    assert grad[0, :2].abs().sum() == 0 and grad[1, 1:].abs().sum() == 0


def test_single_logit_model() -> None:
    terms = MultiLabelTTAMELoss()(torch.tensor([[0.0], [math.log(3.0)]]), torch.tensor([0, 0]),
                                  torch.zeros(2, 2, 2, 2))
    assert terms.ce.item() == pytest.approx((math.log(2.0) + math.log(4.0 / 3.0)) / 2, rel=1e-6)


def test_label_shape_checked() -> None:
    with pytest.raises(ValueError, match="labels: expected shape"):
        MultiLabelTTAMELoss()(torch.zeros(2, 3), torch.tensor([0, 1, 2]), torch.zeros(2, 3, 2, 2))


def test_scale_variation_false_is_the_papers_unscaled_variation() -> None:
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(2, 4, 5, 5, generator=g)  # B = 2 images, M = 4 columns
    logits, labels = torch.randn(4, 3, generator=g), torch.tensor([0, 1, 2, 0])
    paper = MultiLabelTTAMELoss(scale_variation=False)(logits, labels, masks)
    scaled = MultiLabelTTAMELoss()(logits, labels, masks)
    softmax = TTAMELoss()(logits[:2], labels[:2], masks)
    assert paper.variation.item() == pytest.approx(softmax.variation.item())
    assert scaled.variation.item() == pytest.approx(paper.variation.item() * 2 / 4, rel=1e-6)
    # a data-parallel rank's rows: B is the global batch's images
    ranked = MultiLabelTTAMELoss()(logits, labels, masks, images=6)
    assert ranked.variation.item() == pytest.approx(paper.variation.item() * 6 / 4, rel=1e-6)
    assert "scale_variation=True" in repr(MultiLabelTTAMELoss())
    with pytest.raises(TypeError, match="scale_variation: expected True"):
        MultiLabelTTAMELoss(scale_variation="yes")
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="images: expected a positive int"):
            MultiLabelTTAMELoss()(logits, labels, masks, images=bad)
