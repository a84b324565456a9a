"""Optimised attribution and training paths against straightforward computations, tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ttame_attr import TrainStep
from ttame_attr._core.loss import TTAMELoss
from ttame_attr._core.ttame import TTAME


def _randomise_bn(explainer: TTAME) -> None:
    g = torch.Generator().manual_seed(3)
    for m in explainer.head.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def explainer() -> TTAME:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=6).eval()
    ex = TTAME(model, input_size=(3, 64, 64), normalization="imagenet", head_init="pytorch")  # non-flat maps
    _randomise_bn(ex)
    return ex


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _straightforward(explainer: TTAME, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All class maps with ``forward_full`` and the logits, from one plain hooked forward."""
    with torch.no_grad():
        features, logits = explainer.extractor(x, need_logits=True)
        return explainer.head.forward_full(features), logits


def test_attribute_predicted_class_equals_full_fusion(explainer, images):
    full, logits = _straightforward(explainer, images)
    with torch.no_grad():
        maps = explainer.attribute(images, scale="raw", upsample=False)
    pred = logits.argmax(dim=1)
    torch.testing.assert_close(maps[:, 0], full[torch.arange(3), pred], rtol=1e-5, atol=1e-5)
    up = explainer.attribute(images)  # sigmoid, upsampled to the input
    expected = torch.sigmoid(F.interpolate(full[torch.arange(3), pred][:, None], size=(64, 64),
                                           mode="bilinear", align_corners=False))
    torch.testing.assert_close(up, expected, rtol=1e-5, atol=1e-5)


def test_five_targets_equal_full_fusion_and_single_targets(explainer, images):
    full, _ = _straightforward(explainer, images)
    targets = torch.tensor([[0, 5, 2, 2, 1], [3, 4, 0, 1, 2], [5, 5, 5, 0, 1]])
    with torch.no_grad():
        five = explainer.attribute(images, target=targets, scale="raw", upsample=False)
        one = explainer.attribute(images, target=targets[:, 1], scale="raw", upsample=False)
    expected = torch.stack([full[i, targets[i]] for i in range(3)])
    torch.testing.assert_close(five, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one[:, 0], five[:, 1], rtol=1e-5, atol=1e-5)


def test_explain_maps_equal_full_fusion_of_top_classes(explainer, images):
    full, logits = _straightforward(explainer, images)
    out = explainer.explain(images, top_k=2, scale="raw", upsample=False)
    top = logits.softmax(dim=1).topk(2, dim=1).indices
    torch.testing.assert_close(out.classes, top)
    expected = torch.stack([full[i, top[i]] for i in range(3)])
    torch.testing.assert_close(out.maps, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, logits)


def test_mask_images_in_pixel_space_by_formula(explainer, images):
    masks = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    up = F.interpolate(masks, size=(64, 64), mode="bilinear", align_corners=False)
    expected = ((images * std + mean) * up - mean) / std
    torch.testing.assert_close(explainer.mask_images(images, masks), expected)
    # Twice (cached constants) and in another dtype give the same result.
    torch.testing.assert_close(explainer.mask_images(images, masks), expected)
    torch.testing.assert_close(
        explainer.mask_images(images.double(), masks.double()), expected.double(),
        rtol=1e-5, atol=1e-5,
    )


def test_training_loss_equals_straightforward_computation(explainer, images):
    trainer = TrainStep(explainer, total_steps=4, amp=False)
    explainer.head.train()
    try:
        terms, fidelity = trainer.loss(images)
        with torch.no_grad():
            labels = explainer.model(images).argmax(dim=1)
            features, _ = explainer.extractor(images, need_logits=True)
            masks = torch.sigmoid(explainer.head.forward_full(features)[:, labels])  # (B, B, h, w)
            own = torch.stack([masks[i, i] for i in range(3)])[:, None]
            logits_masked = explainer.model(explainer.mask_images(images, own))
            expected = TTAMELoss()(logits_masked, labels, masks)
    finally:
        explainer.head.eval()
    torch.testing.assert_close(terms.total.detach(), expected.total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.area.detach(), expected.area, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.variation.detach(), expected.variation, rtol=1e-4, atol=1e-5)
    assert float(fidelity) == float((logits_masked.argmax(1) == labels).float().mean())
