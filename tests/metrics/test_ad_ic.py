"""Average Drop / Increase in Confidence: known answers, options, and non-mutation."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ttame_attr.metrics import ADICResult, AverageDropIncrease, average_drop_increase, kept_mask


class MeanModel(nn.Module):
    """Two classes, logits ``[w * m, -w * m]`` with ``m`` the mean over all pixels/channels."""

    def __init__(self, w: float = 2.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1)
        return torch.stack([self.w * m, -self.w * m], dim=1)


class ConstantModel(nn.Module):
    """Ignores the image: the same logits for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.3, -1.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def softmax2(a: float, b: float) -> tuple[float, float]:
    ea, eb = math.exp(a), math.exp(b)
    return ea / (ea + eb), eb / (ea + eb)


def prob(pixels: list[float], mask: list[float], cls: int, w: float = 2.0) -> float:
    m = sum(p * k for p, k in zip(pixels, mask)) / len(pixels)
    return softmax2(w * m, -w * m)[cls]


# Three 1-channel 2x2 images (row-major pixels) with the map [[0, 1], [2, 3]] for all:
# normalised map [0, 1/3, 2/3, 1]; kept masks: 100% -> [0, 1/3, 2/3, 1],
# 50% (k = 2) -> [0, 0, 2/3, 1], 15% (k = round(0.6) = 1) -> [0, 0, 0, 1].
MASKS = {
    1.0: [0.0, 1 / 3, 2 / 3, 1.0],
    0.5: [0.0, 0.0, 2 / 3, 1.0],
    0.15: [0.0, 0.0, 0.0, 1.0],
}
IMAGES = [
    [1.0, 2.0, 3.0, 4.0],  # class 0; masking shrinks the mean: confidence drops
    [-1.0, -2.0, -3.0, -0.5],  # class 1; masking shrinks |mean|: drops
    [-3.0, -1.0, 2.0, 3.0],  # class 0 (mean 0.25); masking drops the negatives: increase
]


def hand_result() -> tuple[dict[float, float], dict[float, float]]:
    ad: dict[float, float] = {}
    ic: dict[float, float] = {}
    for frac, mask in MASKS.items():
        drops, incs = [], []
        for pix in IMAGES:
            cls = 0 if sum(pix) > 0 else 1
            y = prob(pix, [1.0] * 4, cls)
            o = prob(pix, mask, cls)
            drops.append(max(0.0, y - o) / y)
            incs.append(1.0 if o > y else 0.0)
        ad[frac] = 100.0 * sum(drops) / 3
        ic[frac] = 100.0 * sum(incs) / 3
    return ad, ic


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(IMAGES).view(3, 1, 2, 2)
    maps = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2).expand(3, 1, 2, 2).clone()
    return x, maps


def test_hand_computed_ad_ic_three_examples() -> None:
    x, maps = batch()
    res = average_drop_increase(MeanModel().eval(), x, maps)
    ad, ic = hand_result()
    assert isinstance(res, ADICResult)
    assert res.fractions == (1.0, 0.5, 0.15)
    assert res.target.tolist() == [0, 1, 0]
    for frac in MASKS:
        assert res.average_drop[frac] == pytest.approx(ad[frac], rel=1e-5)
        assert res.increase_in_confidence[frac] == pytest.approx(ic[frac])
    # the third image gains confidence at every fraction: IC = 100/3
    assert res.increase_in_confidence[0.5] == pytest.approx(100 / 3)
    assert res.masked_probs.shape == (3, 3)
    assert res.drop.shape == (3, 3)
    assert res.increase[2].all()


def test_constant_model_gives_zero_drop_and_increase() -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    res = average_drop_increase(ConstantModel().eval(), x, maps)
    for frac in res.fractions:
        assert res.average_drop[frac] == 0.0
        assert res.increase_in_confidence[frac] == 0.0
    assert res.target.tolist() == [2, 2, 2, 2]


def test_baseline_value_replaces_zero() -> None:
    # With baseline b: masked = b + (x - b) * mask. Map keeps only the last pixel at 15%.
    x, maps = batch()
    res = average_drop_increase(MeanModel().eval(), x, maps, fractions=(0.15,), baseline=1.0)
    pix = IMAGES[0]
    masked = [1.0 + (p - 1.0) * k for p, k in zip(pix, MASKS[0.15])]
    expected = prob(masked, [1.0] * 4, 0)
    assert res.masked_probs[0, 0].item() == pytest.approx(expected, rel=1e-5)


def _oracle_masked_probs(model, x, low, target, fractions):
    """The paper's steps by hand: channel mean, min-max at map size, bilinear upsample,
    keep at or above the (1 - f) quantile (torch.quantile), multiply, softmax of ``target``."""
    m = low.mean(1)
    flat = m.flatten(1)
    m = ((flat - flat.min(1, keepdim=True).values)
         / (flat.max(1, keepdim=True).values - flat.min(1, keepdim=True).values)).view_as(m)
    up = F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    columns = []
    for f in fractions:
        q = torch.quantile(up.flatten(1), 1 - f, dim=1)[:, None, None]
        mask = (up * (up >= q))[:, None]
        columns.append(model(x * mask).softmax(1)[torch.arange(x.shape[0]), target])
    return torch.stack(columns, 1)


def test_explicit_target_channel_maps_minmax_at_map_size_then_upsampled() -> None:
    torch.manual_seed(0)
    model = MeanModel().eval()
    x = torch.rand(2, 3, 8, 8)
    low = torch.rand(2, 3, 4, 4)
    res = average_drop_increase(model, x, low, target=1)
    assert res.target.tolist() == [1, 1]
    with torch.no_grad():
        expected = _oracle_masked_probs(model, x, low, torch.tensor([1, 1]), res.fractions)
    torch.testing.assert_close(res.masked_probs, expected)
    # minmax before upsampling is not minmax after it (bilinear never reaches the corners' extremes)
    after = average_drop_increase(model, x, F.interpolate(low.mean(1, keepdim=True), size=(8, 8),
                                                          mode="bilinear"), target=1)
    assert not torch.allclose(after.masked_probs, res.masked_probs)
    three_d = average_drop_increase(model, x, low.mean(1), target=[1, 1])
    torch.testing.assert_close(three_d.masked_probs, res.masked_probs)


def test_explain_fn_gets_predicted_target_with_grad_and_a_copy() -> None:
    model = MeanModel().eval()
    x, maps = batch()
    seen: dict[str, object] = {}

    def explain(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen["grad"] = torch.is_grad_enabled()
        seen["target"] = target.tolist()
        inputs.mul_(0)  # a careless method must not touch the caller's tensor
        return maps

    before = x.clone()
    res = average_drop_increase(model, x, explain)
    ad, _ = hand_result()
    assert seen == {"grad": True, "target": [0, 1, 0]}
    assert torch.equal(x, before)
    assert res.average_drop[0.5] == pytest.approx(ad[0.5], rel=1e-5)


def test_captum_style_attribute_object_and_tuple_output() -> None:
    x, maps = batch()

    class Method:
        def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor]:
            return (maps,)

    res = average_drop_increase(MeanModel().eval(), x, Method())
    assert res.average_drop[1.0] == pytest.approx(hand_result()[0][1.0], rel=1e-5)


def test_nothing_is_mutated_and_mode_kept(caplog: pytest.LogCaptureFixture) -> None:
    model = MeanModel()  # left in training mode on purpose
    x, maps = batch()
    x0, m0 = x.clone(), maps.clone()
    w0 = model.w.detach().clone()
    with caplog.at_level(logging.WARNING, logger="ttame_attr.metrics"):
        average_drop_increase(model, x, maps)
        average_drop_increase(model, x, maps)
    assert model.training
    assert caplog.text.count("training mode") == 1  # warned once per model, not per batch
    assert torch.equal(x, x0) and torch.equal(maps, m0) and torch.equal(model.w, w0)
    assert model.w.grad is None


def test_max_batch_chunks_give_same_result() -> None:
    x, maps = batch()
    a = average_drop_increase(MeanModel().eval(), x, maps)
    b = average_drop_increase(MeanModel().eval(), x, maps, max_batch=1)
    assert torch.allclose(a.masked_probs, b.masked_probs)


def test_stateful_equals_functional_over_split_batches() -> None:
    torch.manual_seed(3)
    model = MeanModel().eval()
    x = torch.randn(6, 2, 5, 5)
    maps = torch.rand(6, 1, 5, 5)
    full = average_drop_increase(model, x, maps)
    metric = AverageDropIncrease(model)
    metric.update(x[:2], maps[:2])
    metric.update(x[2:], maps[2:])
    res = metric.compute()
    assert metric.num_samples == 6
    assert torch.allclose(res.masked_probs, full.masked_probs)
    for frac in full.fractions:
        assert res.average_drop[frac] == pytest.approx(full.average_drop[frac], rel=1e-6)
        assert res.increase_in_confidence[frac] == pytest.approx(full.increase_in_confidence[frac])
    metric.reset()
    with pytest.raises(RuntimeError, match="update"):
        metric.compute()


def test_rank_keep_ties_use_earliest_pixels() -> None:
    # keep="rank": exactly round(f * H * W) pixels; a two-level map keeps the earliest of equals.
    model = MeanModel().eval()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).view(1, 1, 2, 2)
    maps = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).view(1, 1, 2, 2)
    res = average_drop_increase(model, x, maps, fractions=(0.25,), keep="rank")
    # k = 1: only pixel 0 (value 1, mask 1) kept -> mean = 1/4
    assert res.masked_probs[0, 0].item() == pytest.approx(prob([1.0, 0, 0, 0], [1] * 4, 0))


def test_quantile_keep_keeps_every_tie_at_the_threshold() -> None:
    # keep="quantile" (default): the 0.75 quantile of [0, 1, 1, 1] is 1; all three ones are kept.
    model = MeanModel().eval()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).view(1, 1, 2, 2)
    maps = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).view(1, 1, 2, 2)
    res = average_drop_increase(model, x, maps, fractions=(0.25,))
    assert res.masked_probs[0, 0].item() == pytest.approx(prob([1.0, 2.0, 3.0, 0.0], [1] * 4, 0))


def test_kept_mask_matches_torch_quantile_on_random_maps() -> None:
    maps = torch.rand(5, 13, 11, generator=torch.Generator().manual_seed(4))
    for f in (1.0, 0.5, 0.15, 0.01):
        q = torch.quantile(maps.flatten(1), 1 - f, dim=1)[:, None, None]
        torch.testing.assert_close(kept_mask(maps, f), maps * (maps >= q))
        kept = (kept_mask(maps, f, keep="rank") > 0).flatten(1).sum(1)
        assert kept.tolist() == [round(f * 143)] * 5


def test_pixel_space_masking_blackens_the_unnormalised_image() -> None:
    # With a normalisation, masked = normalise(pixels * mask): a removed pixel becomes the
    # normalised value of black, (0 - mean) / std, not 0.
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.5, 0.25)
    seen = []

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)

    pixels = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    x = (pixels - m) / s
    maps = torch.zeros(1, 1, 4, 4)
    maps[..., :2] = 1.0  # left half 1, right half 0
    average_drop_increase(Spy(), x, maps, fractions=(1.0,), normalization=(mean, std))
    masked = seen[-1]
    torch.testing.assert_close(masked[..., :2], x[..., :2])
    torch.testing.assert_close(masked[..., 2:], (-m / s).expand(1, 3, 4, 2))
    average_drop_increase(Spy(), x, maps, fractions=(1.0,), normalization=(mean, std), mask_space="input")
    assert (seen[-1][..., 2:] == 0).all()  # mask_space="input": the normalised tensor is zeroed
    with pytest.raises(ValueError, match="normalization"):
        average_drop_increase(Spy(), x, maps, mask_space="pixel")
    with pytest.raises(ValueError, match="keep"):
        average_drop_increase(Spy(), x, maps, keep="top")
    with pytest.raises(ValueError, match="mask_space"):
        AverageDropIncrease(Spy(), mask_space="pixels")
