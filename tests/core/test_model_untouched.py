"""The user's model is exactly as it was after every call, and after errors inside them."""

from __future__ import annotations

import pytest
import torch
from tiny_models import assert_same_snapshot, make_tiny_cnn, model_snapshot

from ttame_attr import TTAME


def _user_model():
    model = make_tiny_cnn()
    model.train()  # the user left it in training mode, with one submodule in eval
    model.stem[1].eval()
    model.layer1[0].weight.requires_grad_(False)
    model.layer2.register_forward_hook(lambda m, a, o: None)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    return model


def test_every_public_call_leaves_the_model_as_found(tmp_path) -> None:
    model = _user_model()
    before = model_snapshot(model)
    e = TTAME(model, input_size=(3, 32, 32))
    assert_same_snapshot(before, model_snapshot(model))
    x = torch.rand(4, 3, 32, 32)
    e.fit([x, x], epochs=1, progress=False)
    assert_same_snapshot(before, model_snapshot(model))
    e.attribute(x)
    e.attribute(x, target=1)
    e.explain(x, top_k=2)
    e.class_maps(x)
    path = e.save(tmp_path / "h.pt")
    TTAME.load(path, model)
    assert_same_snapshot(before, model_snapshot(model))


def test_model_untouched_after_errors() -> None:
    model = _user_model()
    before = model_snapshot(model)
    e = TTAME(model, input_size=(3, 32, 32))
    with pytest.raises(ValueError):
        e.attribute(torch.rand(2, 3, 32, 32), target=99)
    with pytest.raises(ValueError):
        e.fit([torch.rand(2, 1, 32, 32)], progress=False)

    calls = {"n": 0}

    def explode(module, args, output):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise RuntimeError("boom from inside the model")

    handle = model.layer3.register_forward_hook(explode)
    before_with_hook = model_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        e.fit([torch.rand(2, 3, 32, 32)] * 3, epochs=1, progress=False)
    assert_same_snapshot(before_with_hook, model_snapshot(model))
    with pytest.raises(RuntimeError, match="boom"):
        e.attribute(torch.rand(2, 3, 32, 32), target=0)
    assert_same_snapshot(before_with_hook, model_snapshot(model))
    handle.remove()
    assert_same_snapshot(before, model_snapshot(model))
