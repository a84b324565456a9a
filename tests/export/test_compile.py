"""``torch.compile`` of ``as_module``: one graph (``fullgraph=True``), equal to eager."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_cnn, make_tiny_swin, make_tiny_vit

from ttame_attr import TTAME


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("build", [make_tiny_cnn, make_tiny_vit, make_tiny_swin], ids=["cnn", "vit", "swin"])
def test_one_graph_equal_to_eager(build) -> None:
    explainer = TTAME(build(), input_size=(3, 32, 32), head_init="pytorch")  # maps not all 0.5
    module = explainer.as_module(top_k=2)
    # aot_eager: the whole graph through dynamo and AOTAutograd (fullgraph fails on any graph
    # break), without inductor's C++ compile time.
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out, ref = compiled(x), module(x)
    assert torch.equal(out.classes, ref.classes)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.maps, ref.maps, rtol=1e-5, atol=1e-5)


def test_inductor_equal_to_eager() -> None:
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32), head_init="pytorch")
    module = explainer.as_module()
    compiled = torch.compile(module, fullgraph=True)  # the default backend (inductor)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = compiled(x)
    ref = explainer.explain(x)
    assert torch.equal(out.classes, ref.classes)
    torch.testing.assert_close(out.maps, explainer.attribute(x, target=ref.classes), rtol=1e-5, atol=1e-5)
