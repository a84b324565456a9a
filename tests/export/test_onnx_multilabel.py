"""``export_onnx`` of a multi-label explainer: four outputs equal to the eager module (issue 31)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr.export import MULTILABEL_OUTPUT_NAMES


@pytest.mark.slow  # an ONNX export: tens of seconds on a busy CPU
def test_multi_label_onnx_file_equals_the_module(tmp_path) -> None:
    import onnxruntime as ort
    model = make_tiny_cnn(4)
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([2.0, -2.0, 1.0, -1.0]))
    explainer = TTAME(model, input_size=(3, 32, 32), multi_label=True, head_init="pytorch")
    path = explainer.export_onnx(tmp_path / "m.onnx", top_k=3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(MULTILABEL_OUTPUT_NAMES)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["ttame_attr.multi_label"]) is True and meta["ttame_attr.top_k"] == "3"
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got = session.run(None, {"images": x.numpy()})
    want = explainer.as_module(top_k=3)(x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4)
