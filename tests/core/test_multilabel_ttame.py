"""TTAME(model, multi_label=True): fit, explain, attribute, save/load and export (issue 31)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import assert_same_snapshot, make_tiny_cnn, make_tiny_vit, model_snapshot, with_labels
from torch.utils.data import DataLoader

from ttame_attr import TTAME, MultiLabelExplanation, MultiLabelTTAMELoss, TrainStep, TTAMELoss
from ttame_attr.data import MultiShapes, normalize

X = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def shapes_loader(n: int = 48, batch_size: int = 16) -> DataLoader:
    images, _, _ = MultiShapes(n, image_size=32, seed=0, split="train").generate(range(n))
    return DataLoader(normalize(images), batch_size=batch_size)


def test_the_default_loss_follows_multi_label() -> None:
    assert isinstance(TTAME(make_tiny_cnn(3), input_size=(3, 32, 32), multi_label=True).loss_fn,
                      MultiLabelTTAMELoss)
    softmax = TTAME(make_tiny_cnn(3), input_size=(3, 32, 32))
    assert type(softmax.loss_fn) is TTAMELoss and softmax.multi_label is False
    mine = TTAMELoss(area=3.0)
    assert TTAME(make_tiny_cnn(3), input_size=(3, 32, 32), multi_label=True, loss=mine).loss_fn is mine


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"multi_label": "yes"}, TypeError, "multi_label: expected True or False"),
    ({"multi_label": True, "threshold": 1.5}, ValueError, "threshold: expected a probability in (0, 1)"),
    ({"multi_label": True, "max_masked": 0}, ValueError, "max_masked: expected a positive int"),
])
def test_bad_options_are_named(kwargs, error, words) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        TTAME(make_tiny_cnn(3), input_size=(3, 32, 32), **kwargs)


@pytest.mark.parametrize("make", [make_tiny_cnn, make_tiny_vit])
def test_fit_lowers_the_loss_and_explain_gives_the_positive_labels(make) -> None:
    model = make(MultiShapes.num_classes)
    before = model_snapshot(model)
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True)
    history = explainer.fit(shapes_loader(), epochs=3, lr=0.05, progress=False, seed=0)
    assert history.epochs[-1].loss < history.epochs[0].loss
    out = explainer.explain(X)
    assert isinstance(out, MultiLabelExplanation)
    probs = model(X).sigmoid()
    for i in range(X.shape[0]):
        expected = (probs[i] > 0.5).nonzero().flatten().tolist() or [int(probs[i].argmax())]
        got = out.classes[i][out.valid[i]].tolist()
        assert sorted(got) == sorted(expected)
        assert torch.allclose(out.probabilities[i][out.valid[i]], probs[i, got])
    assert out.maps.shape == (4, out.classes.shape[1], 32, 32)
    assert torch.equal(out.maps[~out.valid], torch.zeros_like(out.maps[~out.valid]))
    assert_same_snapshot(before, model_snapshot(model))


def test_a_step_masks_one_image_per_pair_within_max_masked() -> None:
    model = with_labels(make_tiny_cnn(3), [3.0, 2.0, 1.0])  # every image has 3 labels: 12 pairs
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True, max_masked=6)
    result = TrainStep(explainer, total_steps=4)(X)
    assert result.stepped and result.labels.shape == (6,) and result.peaks.shape == (6,)
    assert result.batch_size == 4
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True)  # default bound 2 * B = 8
    assert TrainStep(explainer, total_steps=4)(X).labels.shape == (8,)


def test_an_image_with_no_positive_label_explains_its_top1() -> None:
    model = with_labels(make_tiny_cnn(3), [-3.0, -1.0, -2.0])
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True)
    out = explainer.explain(X)
    assert out.classes.tolist() == [[1]] * 4 and out.valid.all()
    assert torch.allclose(out.probabilities, torch.sigmoid(model(X)[:, 1:2]))
    assert torch.allclose(out.maps, explainer.attribute(X, target=1))
    result = TrainStep(explainer, total_steps=2)(X)
    assert result.labels.tolist() == [1, 1, 1, 1]


def test_single_logit_model_fits_and_target_0_explains_the_positive_evidence() -> None:
    model = make_tiny_cnn(1)
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True)
    history = explainer.fit(shapes_loader(32), epochs=2, lr=0.05, progress=False, seed=0)
    assert len(history.epochs) == 2 and all(e.skipped_steps == 0 for e in history.epochs)
    out = explainer.explain(X)
    assert out.classes.tolist() == [[0]] * 4
    assert torch.allclose(out.probabilities[:, 0], model(X)[:, 0].sigmoid())
    assert torch.allclose(out.maps, explainer.attribute(X, target=0))
    assert torch.allclose(explainer.attribute(X), explainer.attribute(X, target=0))
    with pytest.raises(ValueError, match="target"):
        explainer.attribute(X, target=1)


def test_save_and_load_keep_multi_label_and_threshold(tmp_path) -> None:
    model = make_tiny_cnn(3)
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True, threshold=0.3)
    assert explainer.config()["multi_label"] is True and explainer.config()["threshold"] == 0.3
    for path in (tmp_path / "head.safetensors", tmp_path / "folder"):
        if path.suffix == "":
            explainer.save_pretrained(path)
            loaded = TTAME.from_pretrained(path, model)
        else:
            explainer.save(path)
            loaded = TTAME.load(path, model)
        assert loaded.multi_label is True and loaded.threshold == 0.3
        assert isinstance(loaded.loss_fn, MultiLabelTTAMELoss)
    softmax = TTAME(model, input_size=(3, 32, 32))
    softmax.save(tmp_path / "soft.safetensors")
    assert TTAME.load(tmp_path / "soft.safetensors", model).multi_label is False


def test_a_config_without_multi_label_loads_as_softmax() -> None:
    from ttame_attr._core.head_file import explainer_from_config

    model = make_tiny_cnn(3)
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True)
    config = explainer.config()
    del config["multi_label"], config["threshold"]  # as written by earlier versions
    loaded = explainer_from_config(TTAME, config, explainer.state_dict(), model, "old.safetensors")
    assert loaded.multi_label is False and type(loaded.loss_fn) is TTAMELoss


def test_exported_program_equals_eager_explain() -> None:
    model = with_labels(make_tiny_cnn(4), [2.0, -2.0, 1.0, -1.0])
    with torch.no_grad():
        model.fc.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True)
    eager = explainer.explain(X)
    module = explainer.as_module()
    logits, classes, probs, maps = module(X)
    width = eager.classes.shape[1]
    assert classes.shape == (4, 4) and (classes[:, width:] == -1).all()
    assert torch.equal(classes[:, :width], eager.classes)
    assert torch.allclose(probs[:, :width], eager.probabilities)
    assert torch.allclose(maps[:, :width], eager.maps, atol=1e-6)
    assert torch.equal(maps[:, width:], torch.zeros_like(maps[:, width:]))
    program = explainer.export_program(top_k=3, example=X)
    out = program.module()(X)
    direct = explainer.as_module(top_k=3)(X)
    assert len(out) == 4
    for got, want in zip(out, direct):
        assert torch.allclose(got.float(), want.float(), atol=1e-6)
