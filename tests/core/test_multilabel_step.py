"""The multi-label training forward pass and multi-label explanations, on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import assert_same_snapshot, make_tiny_cnn, make_tiny_vit, model_snapshot, with_labels

from ttame_attr import TTAME, MultiLabelTTAMELoss
from ttame_attr._core.multilabel import explain_multilabel, multilabel_forward

X = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def explainer_of(model: torch.nn.Module) -> TTAME:
    return TTAME(model, input_size=(3, 32, 32), loss=MultiLabelTTAMELoss())


def test_pairs_own_maps_and_bce_by_hand() -> None:
    explainer = explainer_of(with_labels(make_tiny_cnn(3), [2.0, -2.0, 1.0]))  # labels {0, 2}
    features, logits = explainer.extractor(X, need_logits=True)
    out = multilabel_forward(explainer, X, [f.detach() for f in features], logits)
    assert out.pairs.image.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert out.pairs.label.tolist() == [0, 2] * 4  # most probable first
    with torch.no_grad():
        maps = torch.sigmoid(explainer.head(features, torch.tensor([0, 2] * 4)))  # (4, 8, h, w)
        assert torch.allclose(out.own[:, 0], maps[out.pairs.image, torch.arange(8)])
        masked = explainer.model(explainer.mask_images(X[out.pairs.image], out.own))
    picked = masked[torch.arange(8), out.pairs.label]
    assert out.terms.ce.item() == pytest.approx(F.softplus(-picked).mean().item(), rel=1e-5)
    assert out.fidelity.item() == pytest.approx((picked > 0).float().mean().item())


def test_gathered_pair_labels_are_the_maps_columns_and_the_own_maps_follow_the_offset() -> None:
    # As under DDP: another rank's 3 pair labels [1, 1, 0] come first, this rank's 8 at offset 3.
    explainer = explainer_of(with_labels(make_tiny_cnn(3), [2.0, -2.0, 1.0]))  # labels {0, 2}
    features, logits = explainer.extractor(X, need_logits=True)
    features = [f.detach() for f in features]
    seen = []

    def gather(labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        seen.append(labels.tolist())
        return torch.cat([torch.tensor([1, 1, 0]), labels]), 3

    out = multilabel_forward(explainer, X, features, logits, gather=gather)
    assert seen == [[0, 2] * 4]
    columns = torch.tensor([1, 1, 0] + [0, 2] * 4)
    with torch.no_grad():
        maps = torch.sigmoid(explainer.head(features, columns))  # (4, 11, h, w)
        assert torch.allclose(out.own[:, 0], maps[out.pairs.image, torch.arange(8) + 3])
        masked = explainer.model(explainer.mask_images(X[out.pairs.image], out.own))
    picked = masked[torch.arange(8), out.pairs.label]
    assert out.terms.ce.item() == pytest.approx(F.softplus(-picked).mean().item(), rel=1e-5)
    # the area term covers the maps of all 11 columns, not only this rank's 8
    assert out.terms.area.item() == pytest.approx((maps + 5e-4).pow(0.3).mean().item(), rel=1e-5)


def test_masked_images_are_bounded_and_each_image_keeps_its_top_label() -> None:
    explainer = explainer_of(with_labels(make_tiny_cnn(3), [3.0, 2.0, 1.0]))  # 3 labels: 12 pairs
    features, logits = explainer.extractor(X, need_logits=True)
    out = multilabel_forward(explainer, X, features, logits, generator=torch.Generator().manual_seed(0))
    assert len(out.pairs) == 8  # 2 * B
    first = {i: k for i, k in reversed(list(zip(out.pairs.image.tolist(), out.pairs.label.tolist())))}
    assert first == {0: 0, 1: 0, 2: 0, 3: 0}
    assert len(multilabel_forward(explainer, X, features, logits, max_pairs=5).pairs) == 5


def test_no_positive_label_trains_the_top1() -> None:
    explainer = explainer_of(with_labels(make_tiny_cnn(3), [-3.0, -1.0, -2.0]))
    features, logits = explainer.extractor(X, need_logits=True)
    out = multilabel_forward(explainer, X, features, logits)
    assert out.pairs.label.tolist() == [1, 1, 1, 1]


def test_single_logit_model_trains_label_zero() -> None:
    explainer = explainer_of(with_labels(make_tiny_cnn(1), [-0.5]))  # every image "negative"
    features, logits = explainer.extractor(X, need_logits=True)
    out = multilabel_forward(explainer, X, features, logits)
    assert out.pairs.label.tolist() == [0, 0, 0, 0] and torch.isfinite(out.terms.total)
    exp = explain_multilabel(explainer, X)
    assert exp.classes.tolist() == [[0]] * 4 and exp.maps.shape == (4, 1, 32, 32)


@pytest.mark.parametrize("make", [make_tiny_cnn, make_tiny_vit])
def test_a_few_steps_lower_the_loss_and_leave_the_model_alone(make) -> None:
    model = with_labels(make(4), [2.0, -2.0, 1.0, -1.0])
    before = model_snapshot(model)
    explainer = explainer_of(model)
    params = [p for p in explainer.head.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    explainer.head.train()
    totals = []
    for _ in range(12):
        with torch.no_grad():
            features, logits = explainer.extractor(X, need_logits=True)
        out = multilabel_forward(explainer, X, features, logits)
        optimizer.zero_grad()
        out.terms.total.backward(inputs=params)
        optimizer.step()
        totals.append(out.terms.total.item())
    explainer.head.eval()
    assert totals[-1] < totals[0]
    assert_same_snapshot(before, model_snapshot(model))


def test_explain_multilabel_positive_labels_and_top_k() -> None:
    explainer = explainer_of(with_labels(make_tiny_cnn(3), [2.0, -2.0, 1.0]))
    exp = explain_multilabel(explainer, X)
    assert exp.classes.tolist() == [[0, 2]] * 4 and exp.valid.all()
    assert exp.probabilities[0].tolist() == pytest.approx(torch.sigmoid(exp.logits[0, [0, 2]]).tolist())
    expected = explainer.attribute(X, target=torch.tensor([[0, 2]] * 4))
    assert torch.allclose(exp.maps, expected, atol=1e-6)
    top = explain_multilabel(explainer, X, top_k=3)
    assert top.classes.tolist() == [[0, 2, 1]] * 4 and top.maps.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="top_k"):
        explain_multilabel(explainer, X, top_k=4)


def test_explain_multilabel_pads_with_zero_maps() -> None:
    model = make_tiny_cnn(3)
    explainer = explainer_of(model)
    with torch.no_grad():
        logits = model(X)
    exp = explain_multilabel(explainer, X, threshold=float(torch.sigmoid(logits).median()))
    padded = ~exp.valid
    assert padded.any() and exp.valid[:, 0].all()  # some images have fewer labels than others
    assert (exp.classes[padded] == -1).all() and exp.maps[padded].abs().sum() == 0
    assert (exp.probabilities[padded] == 0).all()
