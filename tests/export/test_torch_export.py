"""``TTAME.export_program``: ``torch.export`` of the classifier with its head, dynamic batch,
outputs equal to eager, ``torch.export.save`` / ``load`` round trip; on the issue's models."""

from __future__ import annotations

import pytest
import torch
from export_models import MODELS, build
from tiny_models import assert_same_snapshot, model_snapshot

from ttame_attr import TTAME


@pytest.mark.parametrize("name", [m for m in MODELS if m != "torchvision-resnet18"])
def test_exported_program_equals_eager_for_any_batch(name, tmp_path) -> None:
    model, size = build(name)
    # head_init="pytorch": random fusion rows, so that the maps compared are not all 0.5
    kwargs = {"input_size": size} if size else {}
    explainer = TTAME(model, head_init="pytorch", **kwargs)
    before = model_snapshot(model)
    program = explainer.export_program(top_k=2)  # traced with a batch of 2
    assert_same_snapshot(before, model_snapshot(model))  # no hook left, nothing changed
    path = tmp_path / f"{name}.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    gen = torch.Generator().manual_seed(1)
    for batch in (3, 1):
        x = torch.rand(batch, *explainer.input_size, generator=gen)
        ref = explainer.explain(x, top_k=2)
        for runner in (program.module(), loaded):
            logits, classes, maps = runner(x)
            torch.testing.assert_close(logits, ref.logits, rtol=1e-5, atol=1e-5)
            assert torch.equal(classes, ref.classes)
            assert maps.shape == (batch, 2, *explainer.input_size[1:])
            expected = explainer.attribute(x, target=ref.classes)
            torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-5)


def test_static_batch_and_a_given_example(tiny_cnn) -> None:
    explainer = TTAME(tiny_cnn, input_size=(3, 32, 32), head_init="pytorch")
    x = torch.rand(4, 3, 32, 32)
    program = explainer.export_program(x, dynamic_batch=False, scale="raw", upsample=False)
    logits, classes, maps = program.module()(x)
    assert maps.shape == (4, 1, *explainer.map_size)
    torch.testing.assert_close(maps, explainer.attribute(x, target=classes, scale="raw", upsample=False),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="batch|shape|size|Guard|guard|Expected"):
        program.module()(torch.rand(3, 3, 32, 32))  # the batch was fixed at 4


@pytest.mark.parametrize("example", [torch.rand(2, 3, 16, 16), torch.rand(3, 32, 32), "images"])
def test_an_example_of_the_wrong_shape_is_refused(tiny_cnn, example) -> None:
    explainer = TTAME(tiny_cnn, input_size=(3, 32, 32), head_init="pytorch")
    with pytest.raises(ValueError, match=r"example: expected an image batch \(N, \*\(3, 32, 32\)\), got"):
        explainer.export_program(example)
