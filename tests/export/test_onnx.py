"""``TTAME.export_onnx``: one ONNX file that ONNX Runtime runs without torch or ``ttame_attr``,
outputs equal to eager within 1e-4, any batch, its input size and normalisation in its metadata."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from export_models import build
from tiny_models import assert_same_snapshot, model_snapshot

from ttame_attr import TTAME
from ttame_attr.export import ExportError

ONNX_MODELS = ["torchvision-resnet18", "timm-vit", "torchvision-swin_t", "transformers-vit"]

#: Runs every exported file in a fresh interpreter where ``import torch`` fails.
RUNNER = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None  # any import of torch (or of ttame_attr) fails from here on
    import numpy as np
    import onnxruntime as ort
    assert "ttame_attr" not in sys.modules
    for onnx_path, inputs, outputs in json.loads(sys.argv[1]):
        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        data = dict(np.load(inputs))
        results = {}
        for key, x in data.items():
            logits, classes, maps = session.run(None, {"images": x})
            results.update({f"{key}_logits": logits, f"{key}_classes": classes, f"{key}_maps": maps})
        results["metadata"] = np.array(json.dumps(session.get_modelmeta().custom_metadata_map))
        results["names"] = np.array(json.dumps([[i.name, i.shape] for i in session.get_inputs()]
                                               + [[o.name, o.shape] for o in session.get_outputs()]))
        np.savez(outputs, **results)
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``{name: (explainer, {batch key: images}, onnx results)}``, one ONNX Runtime process."""
    root = tmp_path_factory.mktemp("onnx")
    jobs, built = [], {}
    gen = torch.Generator().manual_seed(2)
    for name in ONNX_MODELS:
        model, size = build(name)
        # head_init="pytorch": random fusion rows, so that the maps compared are not all 0.5
        kwargs = {"input_size": size} if size else {}
        explainer = TTAME(model, head_init="pytorch", **kwargs)
        before = model_snapshot(model)
        path = explainer.export_onnx(root / f"{name}.onnx", top_k=2)
        assert_same_snapshot(before, model_snapshot(model))
        images = {f"b{n}": torch.rand(n, *explainer.input_size, generator=gen) for n in (3, 1)}
        np.savez(root / f"{name}_in.npz", **{k: v.numpy() for k, v in images.items()})
        jobs.append([str(path), str(root / f"{name}_in.npz"), str(root / f"{name}_out.npz")])
        built[name] = (explainer, images)
    subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], check=True, timeout=300)
    return {name: (*built[name], dict(np.load(job[2]))) for name, job in zip(ONNX_MODELS, jobs)}


@pytest.mark.slow  # the fixture exports four models to ONNX: minutes
@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_runtime_alone_equals_eager_for_any_batch(exported, name) -> None:
    explainer, images, results = exported[name]
    for key, x in images.items():
        ref = explainer.explain(x, top_k=2)
        np.testing.assert_allclose(results[f"{key}_logits"], ref.logits.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(results[f"{key}_classes"], ref.classes.numpy())
        assert results[f"{key}_classes"].dtype == np.int64
        maps = explainer.attribute(x, target=ref.classes).numpy()
        assert results[f"{key}_maps"].shape == maps.shape == (x.shape[0], 2, *explainer.input_size[1:])
        np.testing.assert_allclose(results[f"{key}_maps"], maps, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # the fixture exports four models to ONNX: minutes
@pytest.mark.parametrize("name", ONNX_MODELS)
def test_the_file_says_what_it_takes(exported, name) -> None:
    explainer, _, results = exported[name]
    meta = json.loads(str(results["metadata"]))
    assert json.loads(meta["ttame_attr.input_size"]) == list(explainer.input_size)
    norm = explainer.normalization
    assert json.loads(meta["ttame_attr.normalization"]) == (None if norm is None else [list(norm[0]),
                                                                                       list(norm[1])])
    assert meta["ttame_attr.top_k"] == "2" and meta["ttame_attr.scale"] == "sigmoid"
    assert meta["ttame_attr.num_classes"] == str(explainer.num_classes)
    names = json.loads(str(results["names"]))
    assert [n for n, _ in names] == ["images", "logits", "classes", "maps"]
    batch = names[0][1][0]
    assert isinstance(batch, str)  # a symbolic (dynamic) batch dimension
    assert names[0][1][1:] == list(explainer.input_size)


def test_without_onnxscript_the_error_says_what_to_install(tiny_cnn, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    explainer = TTAME(tiny_cnn, input_size=(3, 32, 32), head_init="pytorch")
    with pytest.raises(ImportError, match=r'export_onnx needs onnx and onnxscript .*ttame-attr\[export\]'):
        explainer.export_onnx(tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


class DataDependent(torch.nn.Module):
    """A backbone whose forward branches on the values of its input: not exportable."""

    def __init__(self) -> None:
        super().__init__()
        from tiny_models import make_tiny_cnn

        self.net = make_tiny_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0.5:
            return self.net(x)
        return -self.net(x)


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_a_backbone_that_cannot_be_exported_is_named(fmt, tmp_path) -> None:
    explainer = TTAME(DataDependent().eval(), input_size=(3, 32, 32))
    target = tmp_path / "served.onnx"
    target.write_bytes(b"the previous file")
    expected = r"^backbone: .* failed on the classifier itself, without T-TAME's part \(.*\)\. Try "
    with pytest.raises(ExportError, match=expected) as info:
        if fmt == "pt2":
            explainer.export_program()
        else:
            explainer.export_onnx(target)
    assert info.value.part == "backbone"
    assert target.read_bytes() == b"the previous file"  # a failed export replaces nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served.onnx"]
