"""AD/IC with a TTAME explainer follows the authors' evaluation, and agrees with other libraries'
definitions once their units are converted (docs/evaluation.rst)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from ttame_attr import IMAGENET_MEAN, IMAGENET_STD, TTAME
from ttame_attr.metrics import AverageDropIncrease, average_drop_increase, evaluate, kept_mask


class Spy(nn.Module):
    """The wrapped model, remembering every batch it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, TTAME, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    explainer = TTAME(model, input_size=(3, 32, 32))
    with torch.no_grad():  # a head that is not the initial one, so maps vary across images
        for p in explainer.head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)) - mean) / std
    return model, explainer, x


def test_a_ttame_explainer_is_evaluated_on_its_raw_maps_at_map_size_in_pixel_space(setup) -> None:
    model, explainer, x = setup
    assert explainer.normalization == (IMAGENET_MEAN, IMAGENET_STD)  # torchvision: ImageNet, logged
    res = average_drop_increase(model, x, explainer)
    # The oracle, step by step: pre-sigmoid c of the predicted class at the map size, min-max per
    # image there, bilinear upsampling, the (1 - f) quantile, pixels multiplied, then normalised.
    with torch.no_grad():
        target = model(x).argmax(1)
        c = explainer.attribute(x, target=target, scale="raw", upsample=False)[:, 0]
        assert c.shape[-2:] == explainer.map_size != x.shape[-2:]
        flat = c.flatten(1)
        c = ((flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values
             - flat.min(1, keepdim=True).values)).view_as(c)
        up = F.interpolate(c[:, None], size=(32, 32), mode="bilinear", align_corners=False)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in explainer.normalization)
        expected = []
        for f in (1.0, 0.5, 0.15):
            q = torch.quantile(up.flatten(1), 1 - f, dim=1).view(-1, 1, 1, 1)
            masked = ((x * std + mean) * (up * (up >= q)) - mean) / std
            expected.append(model(masked).softmax(1)[torch.arange(6), target])
    torch.testing.assert_close(res.masked_probs, torch.stack(expected, 1), rtol=1e-4, atol=1e-5)
    assert res.target.tolist() == target.tolist()
    # not the generic route (sigmoid maps, upsampled, then min-max, inputs masked as given)
    generic = average_drop_increase(model, x, explainer.attribute)
    assert not torch.allclose(generic.masked_probs, res.masked_probs)


def test_masked_pixels_are_black_for_a_torchvision_cnn(setup) -> None:
    model, explainer, x = setup
    spy = Spy(model).eval()
    average_drop_increase(spy, x, explainer, fractions=(0.15,))
    masked = spy.seen[-1]
    std, mean = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    pixels = masked * std + mean
    removed = (pixels.abs() < 1e-5).all(dim=1)  # black in all three channels
    assert 0.80 <= removed.float().mean().item() <= 0.90  # 85% removed, pixel for pixel
    black = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1).expand(6, 3, 32 * 32)
    flat, gone = masked.flatten(2), removed.flatten(1)[:, None].expand(6, 3, -1)
    torch.testing.assert_close(flat[gone], black[gone])  # (0 - mean) / std, not a zero input


def test_evaluate_and_the_stateful_metric_use_the_protocol_too(setup) -> None:
    model, explainer, x = setup
    direct = average_drop_increase(model, x, explainer)
    via_evaluate = evaluate(model, [x[:3], x[3:]], explainer, metrics=["ad_ic"])["ad_ic"]
    torch.testing.assert_close(via_evaluate.masked_probs, direct.masked_probs)
    metric = AverageDropIncrease(model)
    metric.update(x, explainer)
    torch.testing.assert_close(metric.compute().masked_probs, direct.masked_probs)
    # A method compared with it gets the same masking when normalization= is given.
    raw = explainer.attribute(x, target=direct.target, scale="raw", upsample=False)
    same = evaluate(model, [x], lambda inputs, t: raw, metrics=["ad_ic"],
                    normalization="imagenet")["ad_ic"]
    torch.testing.assert_close(same.masked_probs, direct.masked_probs)


def _maps(n: int, size: int) -> torch.Tensor:
    """Maps already min-max scaled to exactly [0, 1] per image, at the input size."""
    m = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(2))
    flat = m.flatten(1)
    return ((flat - flat.min(1, keepdim=True).values)
            / (flat.max(1, keepdim=True).values - flat.min(1, keepdim=True).values)).view_as(m)


def test_pytorch_grad_cam_drop_in_confidence_is_our_drop_times_y_over_100(setup) -> None:
    # pytorch-grad-cam: DropInConfidence = max(0, Y - O) per image (an absolute drop, not
    # divided by Y nor in percent); IncreaseInConfidence = [O > Y]; both multiply the inputs
    # as given by the map as given. Same masks, same space -> same numbers after conversion.
    model, _, x = setup
    maps = _maps(6, 32)
    fractions = (1.0, 0.5, 0.15)
    res = average_drop_increase(model, x, maps, fractions=fractions, mask_space="input")
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in res.target]
    for i, f in enumerate(fractions):
        cams = kept_mask(maps[:, 0], f).numpy()
        drop = DropInConfidence()(x, cams, targets, model)
        increase = IncreaseInConfidence()(x, cams, targets, model)
        ours = (res.drop[:, i] * res.clean_probs / 100).numpy()
        np.testing.assert_allclose(drop.reshape(-1), ours, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(increase.reshape(-1) > 0, res.increase[:, i].numpy())
        assert res.increase_in_confidence[f] == pytest.approx(100 * float(np.mean(increase)))


def test_torchcam_fractions_are_our_percentages_over_100(setup) -> None:
    # torchcam's ClassificationMetric (0.4), from its documented definition:
    # drop = relu(Y - O) / (Y + 1e-7), increase = Y < O, summary() = their means as fractions,
    # the whole (already [0, 1]) map multiplied into the inputs as given: our fraction 1.0,
    # mask_space="input". (torchcam pins numpy<2, so it is not installed beside this suite.)
    model, _, x = setup
    maps = _maps(6, 32)
    res = average_drop_increase(model, x, maps, fractions=(1.0,), mask_space="input")
    with torch.no_grad():
        probs = model(x).softmax(1)
        y = probs.gather(1, res.target[:, None])[:, 0]
        o = model(maps * x).softmax(1).gather(1, res.target[:, None])[:, 0]
    torchcam_avg_drop = (torch.relu(y - o) / (y + 1e-7)).mean().item()
    torchcam_conf_increase = (y < o).float().mean().item()
    assert res.average_drop[1.0] / 100 == pytest.approx(torchcam_avg_drop, rel=1e-4)
    assert res.increase_in_confidence[1.0] / 100 == pytest.approx(torchcam_conf_increase)
