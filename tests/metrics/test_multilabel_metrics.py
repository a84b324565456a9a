"""Metrics of multi-label and single-logit models (sigmoid probabilities), by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ttame_attr.metrics import (
    ROAD,
    AverageDropIncrease,
    Deletion,
    average_drop_increase,
    deletion,
    energy_pointing_game_per_label,
    evaluate,
    insertion,
    label_pairs,
    pointing_game_per_label,
    road,
)


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def corner_model() -> nn.Module:
    """Two labels on 1x2x2 images: logit 0 = x[0, 0], logit 1 = x[1, 1] - 1."""
    linear = nn.Linear(4, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
        linear.bias.copy_(torch.tensor([0.0, -1.0]))
    return nn.Sequential(nn.Flatten(), linear).eval()


IMAGE = torch.tensor([[[[2.0, 0.0], [0.0, 3.0]]]])  # logits (2, 2): both labels positive
MAP = torch.tensor([[[[1.0, 0.0], [0.0, 0.5]]]])


def test_ad_ic_with_sigmoid_probabilities_by_hand() -> None:
    res = average_drop_increase(corner_model(), IMAGE, MAP, target=1, fractions=(1.0, 0.25), multi_label=True)
    y = sig(2.0)  # clean logit of label 1: 3 - 1
    # 100%: the whole map multiplies the image: x[1, 1] = 1.5, logit 0.5
    # 25%: the quantile keeps only the top pixel (threshold 0.625), x[1, 1] = 0, logit -1
    o = [sig(0.5), sig(-1.0)]
    assert res.clean_probs.tolist() == pytest.approx([y])
    assert res.masked_probs[0].tolist() == pytest.approx(o, rel=1e-6)
    assert res.average_drop[1.0] == pytest.approx(100 * (y - o[0]) / y, rel=1e-5)
    assert res.average_drop[0.25] == pytest.approx(100 * (y - o[1]) / y, rel=1e-5)
    assert res.increase_in_confidence == {1.0: 0.0, 0.25: 0.0}
    softmax = average_drop_increase(corner_model(), IMAGE, MAP, target=1, fractions=(1.0,))
    assert softmax.clean_probs.tolist() == pytest.approx([0.5])  # the softmax path is unchanged


def test_stateful_ad_ic_passes_the_option() -> None:
    metric = AverageDropIncrease(corner_model(), fractions=(1.0,), multi_label=True)
    metric.update(IMAGE, MAP, 1)
    assert metric.compute().masked_probs[0, 0].item() == pytest.approx(sig(0.5), rel=1e-6)


def test_single_logit_model_ad_ic() -> None:
    # softmax over one logit is always 1 (AD 0 whatever the map); the sigmoid reads the evidence
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    res = average_drop_increase(model, IMAGE, MAP, target=0, fractions=(1.0,), multi_label=True)
    assert res.clean_probs.item() == pytest.approx(sig(5.0))
    assert res.masked_probs.item() == pytest.approx(sig(3.5), rel=1e-6)  # 2 * 1 + 3 * 0.5
    flat = average_drop_increase(model, IMAGE, MAP, target=0, fractions=(1.0,))
    assert flat.average_drop[1.0] == 0.0 and flat.clean_probs.item() == 1.0


def test_deletion_and_insertion_curves_by_hand() -> None:
    # pixel ranks from MAP: (0,0) first, (1,1) second; two steps switch two pixels each
    res = deletion(corner_model(), IMAGE, MAP, target=1, steps=2, multi_label=True)
    expected = [sig(2.0), sig(-1.0), sig(-1.0)]
    assert res.curves[0].tolist() == pytest.approx(expected, rel=1e-6)
    auc = 0.5 * (expected[0] + expected[1]) / 2 + 0.5 * (expected[1] + expected[2]) / 2
    assert res.auc == pytest.approx(auc, rel=1e-6)
    ins = insertion(corner_model(), IMAGE, MAP, target=0, steps=2, baseline=0.0, multi_label=True)
    assert ins.curves[0].tolist() == pytest.approx([sig(0.0), sig(2.0), sig(2.0)], rel=1e-6)
    metric = Deletion(corner_model(), steps=2, multi_label=True)
    metric.update(IMAGE, MAP, 1)
    assert torch.equal(metric.compute().curves, res.curves)


class TwoLabelSquare(nn.Module):
    """Both labels positive while a bright square is there: logits ``100 m - 1``, ``100 m - 0.5``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1)
        return torch.stack([100 * m - 1.0, 100 * m - 0.5], dim=1)


def test_road_counts_a_label_while_it_stays_positive() -> None:
    x = torch.zeros(2, 1, 10, 10)
    x[:, :, 4:7, 4:7] = 1.0
    maps = x[:, 0].clone()
    fractions = (0.1, 0.5)
    res = road(TwoLabelSquare(), x, maps, target=0, fractions=fractions, noise_std=0.0, multi_label=True)
    # MoRF removes the square: a black image, logit -1; LeRF keeps it: label 0 stays positive
    assert res.morf_accuracy.tolist() == [0.0, 0.0] and res.lerf_accuracy.tolist() == [1.0, 1.0]
    assert res.morf_probs.flatten().tolist() == pytest.approx([sig(-1.0)] * 4, abs=1e-6)
    assert res.morf_top1.flatten().tolist() == [-1] * 4 and res.lerf_top1.flatten().tolist() == [0] * 4
    # softmax ROAD asks for the top-1 class, which is always label 1 here
    soft = road(TwoLabelSquare(), x, maps, target=0, fractions=fractions, noise_std=0.0)
    assert soft.lerf_accuracy.tolist() == [0.0, 0.0]
    stateful = ROAD(TwoLabelSquare(), fractions=fractions, noise_std=0.0, multi_label=True)
    stateful.update(x, maps, 0)
    assert torch.equal(stateful.compute().lerf_accuracy, res.lerf_accuracy)


def test_evaluate_scores_every_positive_label() -> None:
    images = torch.cat([IMAGE, torch.tensor([[[[-1.0, 0.0], [0.0, 3.0]]]])])  # labels {0, 1}, {1}
    seen = []

    def explain(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(target.tolist())
        return MAP.expand(x.shape[0], -1, -1, -1)

    out = evaluate(corner_model(), [images], explain, metrics={"adic": AverageDropIncrease(
        corner_model(), fractions=(1.0,), multi_label=True)}, multi_label=True)
    assert seen == [[0, 1, 1]]  # image 0: labels 0 (p = sig 2) and 1 (sig 2, tie: smaller first)
    assert out["adic"].clean_probs.tolist() == pytest.approx([sig(2.0), sig(2.0), sig(2.0)])
    by_name = evaluate(corner_model(), [images], explain, metrics=["ad_ic"], multi_label=True)
    assert by_name["ad_ic"].clean_probs.tolist() == pytest.approx([sig(2.0)] * 3)
    labelled = evaluate(corner_model(), [(images, torch.tensor([[0, 1], [1, 0]]))], explain,
                        metrics=["ad_ic"], target="label", multi_label=True)
    assert labelled["ad_ic"].target.tolist() == [1, 0] and seen[-1] == [1, 0]
    assert labelled["ad_ic"].clean_probs.tolist() == pytest.approx([sig(2.0), sig(-1.0)])


def test_bad_multi_label_flag() -> None:
    with pytest.raises(TypeError, match="multi_label"):
        average_drop_increase(corner_model(), IMAGE, MAP, multi_label="yes")
    with pytest.raises(TypeError, match="multi_label"):
        ROAD(corner_model(), multi_label=1)
    with pytest.raises(ValueError, match="threshold"):
        evaluate(corner_model(), [IMAGE], lambda x, t: MAP, multi_label=True, threshold=1.5)


def per_class_fixture() -> tuple[torch.Tensor, torch.Tensor]:
    masks = torch.zeros(2, 3, 4, 4)
    masks[0, 0, 0, :2] = 1  # image 0: class 0 top-left, class 2 bottom-right
    masks[0, 2, 3, 3] = 1
    masks[1, 1, 2:, :2] = 1  # image 1: class 1 bottom-left
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, 0, 0, 1] = 1.0  # hit
    maps[0, 2, 0, 0] = 1.0  # miss: points at class 0's object
    maps[1, 1, 3, 0] = 2.0  # hit
    maps[1, 1, 0, 3] = 1.0  # half as strong, outside
    return maps, masks


def test_pointing_game_per_label_by_hand() -> None:
    maps, masks = per_class_fixture()
    image, label = label_pairs(masks)
    assert image.tolist() == [0, 0, 1] and label.tolist() == [0, 2, 1]
    res = pointing_game_per_label(maps, masks)
    assert res.hits.tolist() == [True, False, True] and res.accuracy == pytest.approx(2 / 3)
    only = pointing_game_per_label(maps, masks, labels=torch.tensor([[1, 0, 0], [0, 1, 0]]))
    assert only.accuracy == 1.0 and only.hits.shape == (2,)
    # pair (0, 2) points at (0, 0), sqrt(18) = 4.24 px from its object at (3, 3)
    assert pointing_game_per_label(maps, masks, tolerance=4.2).hits.tolist() == [True, False, True]
    assert pointing_game_per_label(maps, masks, tolerance=4.3).hits.tolist() == [True, True, True]


def test_energy_pointing_game_per_label_by_hand() -> None:
    maps, masks = per_class_fixture()
    res = energy_pointing_game_per_label(maps, masks)
    # min-max: pair (1, 1) has 1.0 inside and 0.5 outside -> 2/3
    assert res.proportions.tolist() == pytest.approx([1.0, 0.0, 2 / 3])


def test_per_label_with_an_explanation_method() -> None:
    maps, masks = per_class_fixture()
    inputs = torch.rand(2, 3, 4, 4)
    calls = []

    def explain(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append((x.shape[0], target.tolist()))
        image = torch.tensor([0, 0, 1])
        return maps[image, target].unsqueeze(1)

    res = pointing_game_per_label(explain, masks, inputs=inputs)
    assert calls == [(3, [0, 2, 1])] and res.hits.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="inputs"):
        pointing_game_per_label(explain, masks)


def test_per_label_shape_errors() -> None:
    maps, masks = per_class_fixture()
    with pytest.raises(ValueError, match=r"masks: expected one mask per class"):
        pointing_game_per_label(maps, masks[:, 0])
    with pytest.raises(ValueError, match="labels: expected a multi-hot"):
        pointing_game_per_label(maps, masks, labels=torch.ones(2, 2))
    with pytest.raises(ValueError, match="maps: expected one map per class"):
        pointing_game_per_label(maps[:, :2], masks)
    with pytest.raises(ValueError, match="no \\(image, label\\) pair"):
        pointing_game_per_label(maps, torch.zeros_like(masks))
