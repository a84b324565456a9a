"""``ttame export``: the model with its head as one ONNX file or torch.export program."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import CNN, SIZE, assert_usage_error, run
from cli_tiny_models import tiny_cnn

from ttame_attr import IMAGENET_MEAN, IMAGENET_STD, TTAME


def reference(head, x: torch.Tensor, top_k: int):
    return TTAME.load(head, tiny_cnn().eval()).explain(x, top_k=top_k)


def test_export_onnx_runs_in_onnx_runtime_and_equals_eager(capsys, tmp_path, trained_head):
    import onnxruntime as ort

    out = tmp_path / "served" / "model.onnx"
    rc, stdout, _ = run(capsys, "export", CNN, *SIZE, "--head", str(trained_head), "--out", str(out),
                        "--top-k", "2")
    assert rc == 0
    lines = stdout.splitlines()
    assert lines[0].startswith(f"wrote {out} (onnx, ")
    assert lines[1] == ("input   images (any, 3, 32, 32) float32, normalised with mean (0.485, 0.456, 0.406) "
                        "std (0.229, 0.224, 0.225)")
    assert lines[2] == "outputs logits (any, 4), classes (any, 2) int64, maps (any, 2, 32x32) sigmoid"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["ttame_attr.normalization"]) == [list(IMAGENET_MEAN), list(IMAGENET_STD)]
    assert meta["ttame_attr.model_spec"] == CNN and json.loads(meta["ttame_attr.input_size"]) == [3, 32, 32]
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits, classes, maps = session.run(None, {"images": x.numpy()})
    ref = reference(trained_head, x, 2)
    np.testing.assert_allclose(logits, ref.logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(classes, ref.classes.numpy())
    np.testing.assert_allclose(maps, ref.maps.numpy(), rtol=1e-4, atol=1e-4)


def test_export_pt2_with_maps_at_map_size(capsys, tmp_path, trained_head):
    out = tmp_path / "model.pt2"
    rc, stdout, _ = run(capsys, "export", CNN, *SIZE, "--head", str(trained_head), "--out", str(out),
                        "--map-size", "--scale", "raw")
    assert rc == 0
    assert "maps (any, 1, 16x16) raw" in stdout  # the tiny CNN's first layer is 16x16 at 32 px
    program = torch.export.load(out).module()
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, classes, maps = program(x)
    explainer = TTAME.load(trained_head, tiny_cnn().eval())
    ref = explainer.explain(x)
    assert torch.equal(classes, ref.classes)
    expected = explainer.attribute(x, target=ref.classes, scale="raw", upsample=False)
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-5)


def test_static_batch_and_explicit_format(capsys, tmp_path, trained_head):
    out = tmp_path / "model.bin"
    rc, stdout, _ = run(capsys, "export", CNN, *SIZE, "--head", str(trained_head), "--out", str(out),
                        "--format", "pt2", "--static-batch")
    assert rc == 0 and "images (1, 3, 32, 32)" in stdout
    program = torch.export.load(out).module()
    assert program(torch.rand(1, 3, 32, 32))[2].shape == (1, 1, 32, 32)


def test_an_unknown_suffix_needs_a_format(capsys, tmp_path, trained_head):
    rc, _, err = run(capsys, "export", CNN, *SIZE, "--head", str(trained_head), "--out",
                     str(tmp_path / "m.x"))
    assert_usage_error(rc, err, "--out: cannot tell the format from", "name it .onnx or .pt2")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("top_k", ["0", "-1"])
def test_bad_top_k(capsys, tmp_path, trained_head, top_k):
    rc, _, err = run(capsys, "export", CNN, *SIZE, "--head", str(trained_head), "--out",
                     str(tmp_path / "m.onnx"), "--top-k", top_k)
    assert_usage_error(rc, err, f"--top-k: expected a positive integer, got {top_k}")


def test_a_head_for_another_model_is_refused_before_export(capsys, tmp_path, trained_head):
    out = tmp_path / "m.onnx"
    rc, _, err = run(capsys, "export", "cli_tiny_models:tiny_vit", "--head", str(trained_head),
                     "--out", str(out))
    assert_usage_error(rc, err, f"model: the checkpoint {str(trained_head)!r} (trained on a Sequential, "
                       "layers ['3', '5', '7']) does not fit this VisionTransformer: layers: "
                       "VisionTransformer has no module named '3'.",
                       "Load it with the model it was trained for.")
    assert not out.exists()


def test_a_missing_head(capsys, tmp_path):
    rc, _, err = run(capsys, "export", CNN, *SIZE, "--head", str(tmp_path / "none.pt"), "--out",
                     str(tmp_path / "m.onnx"))
    assert_usage_error(rc, err, "--head: no such file")
