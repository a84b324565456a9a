"""``hf:NAME_OR_PATH`` model specs, on tiny transformers models saved with ``save_pretrained``
(the real ``from_pretrained`` path, no download)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import run

from ttame_attr import TTAME
from ttame_attr.cli._hf import processor_preprocessing
from ttame_attr.cli._models import load_model, model_preprocessing

transformers = pytest.importorskip("transformers")

# Not ImageNet's, so that a test cannot pass on the fallback.
MEAN = (0.1, 0.2, 0.3)
STD = (0.4, 0.5, 0.6)
_VIT = dict(patch_size=8, num_hidden_layers=4, hidden_size=32, num_attention_heads=2, intermediate_size=64,
            num_labels=3)


def _vit(image_size: int, seed: int = 0):
    torch.manual_seed(seed)
    return transformers.ViTForImageClassification(transformers.ViTConfig(image_size=image_size, **_VIT))


@pytest.fixture(scope="session")
def hf_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT (32 px, patch 8, 4 blocks, 3 labels) with its image processor, saved."""
    folder = tmp_path_factory.mktemp("hf_vit")
    _vit(32).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=list(MEAN),
                                   image_std=list(STD)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_config_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT built for 48 px, saved without an image processor."""
    folder = tmp_path_factory.mktemp("hf_config_only")
    _vit(48).save_pretrained(folder)
    return folder


def _one_line_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("ttame ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def layer_rows(out: str) -> dict[str, tuple[str, ...]]:
    """``{layer: (layout, (C, h, w), prefix tokens, why)}`` of the ``ttame layers`` table."""
    rows = [re.match(r"^(\S+)\s+(nchw|nhwc|tokens)\s+(\(\d+, \d+, \d+\))\s+(\d+)\s+(.+)$", line)
            for line in out.splitlines()]
    return {m.group(1): m.groups()[1:] for m in rows if m}


def test_layers_of_a_saved_vit_read_the_processor(hf_vit, capsys):
    rc, out, err = run(capsys, "layers", f"hf:{hf_vit}")
    assert rc == 0, err
    assert "(ViTForImageClassification), input (3, 32, 32), 3 classes" in out
    assert "adapter    hf" in out and "map size   (4, 4)" in out
    model = _vit(32)
    blocks = next(name for name, m in model.named_modules()
                  if isinstance(m, torch.nn.ModuleList) and len(m) == 4)  # vit.layers / vit.encoder.layer
    table = layer_rows(out)
    assert list(table) == [f"{blocks}.{i}.layernorm_before" for i in (1, 2, 3)]
    for i, (layout, shape, prefix, why) in enumerate(table.values(), start=1):
        assert (layout, shape, prefix) == ("tokens", "(32, 4, 4)", "1")  # 32 px / patch 8, a class token
        assert why.startswith(f"pre-attention norm of block {i} of 4")


def test_model_preprocessing_is_the_processors(hf_vit):
    model, processor = load_model(f"hf:{hf_vit}")
    assert type(model).__name__ == "ViTForImageClassification" and not model.training
    assert type(processor).__name__.startswith("ViTImageProcessor")
    size, mean, std = model_preprocessing(model, processor)
    assert size == (3, 32, 32)
    assert mean == pytest.approx(MEAN) and std == pytest.approx(STD)


def test_a_folder_without_processor_falls_back_to_the_config(hf_config_only, capsys, caplog):
    caplog.set_level(logging.WARNING)
    model, processor = load_model(f"hf:{hf_config_only}")
    assert processor is None
    size, mean, std = model_preprocessing(model, processor)
    assert size == (3, 48, 48)
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and std == pytest.approx((0.229, 0.224, 0.225))
    assert any("no image processor" in r.getMessage() and "(3, 48, 48)" in r.getMessage()
               for r in caplog.records), caplog.text
    rc, out, _ = run(capsys, "layers", f"hf:{hf_config_only}")
    assert rc == 0 and "input (3, 48, 48)" in out and "map size   (6, 6)" in out


def test_fit_explain_evaluate_on_a_saved_vit(hf_vit, image_dir, tmp_path, capsys):
    head = tmp_path / "vit_head.pt"
    rc, out, err = run(capsys, "fit", f"hf:{hf_vit}", str(image_dir), "--epochs", "1", "--batch-size", "4",
                       "--out", str(head), "-q")
    assert rc == 0, err
    assert "adapter 'hf'" in out and "8 images" in out and head.is_file()
    explainer = TTAME.load(head, _vit(32))
    assert explainer.input_size == (3, 32, 32)
    assert explainer.num_classes == 3
    assert explainer.normalization[0] == pytest.approx(MEAN)
    assert explainer.normalization[1] == pytest.approx(STD)
    assert [name.rsplit(".", 2)[-2:] for name in explainer.layers] == [
        ["1", "layernorm_before"], ["2", "layernorm_before"], ["3", "layernorm_before"]]

    maps_dir = tmp_path / "maps"
    rc, out, err = run(capsys, "explain", f"hf:{hf_vit}", str(image_dir), "--head", str(head),
                       "--out", str(maps_dir), "--top-k", "2")
    assert rc == 0, err
    maps = sorted(maps_dir.glob("*.npy"))
    assert len(maps) == 8
    m = np.load(maps[0])
    assert m.shape == (2, 32, 32) and 0 <= m.min() and m.max() <= 1
    assert len(list(maps_dir.glob("*_top2_class*.png"))) == 8

    report = tmp_path / "m.json"
    rc, out, err = run(capsys, "evaluate", f"hf:{hf_vit}", str(image_dir), "--head", str(head),
                       "--limit", "4", "--no-road", "--json", str(report), "-q")
    assert rc == 0, err
    table = json.loads(report.read_text())
    assert table["images"] == 4 and table["skipped"] == []
    assert set(table["metrics"]) == {f"{k} {p}%" for k in ("AD", "IC") for p in (100, 50, 15)}
    assert all(0 <= v <= 100 for v in table["metrics"].values())


def test_num_classes_gives_a_fresh_head_and_pretrained_changes_nothing(hf_vit, capsys):
    model, _ = load_model(f"hf:{hf_vit}", num_classes=5)
    assert model.config.num_labels == 5 and model.classifier.out_features == 5
    saved = _vit(32).state_dict()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if not k.startswith("classifier."))
    rc, out, err = run(capsys, "layers", f"hf:{hf_vit}", "--num-classes", "5", "--pretrained")
    assert rc == 0, err
    assert "5 classes" in out


def test_weights_file_into_an_hf_model(hf_vit, tmp_path):
    other = _vit(32, seed=7).state_dict()
    path = tmp_path / "vit.pth"
    torch.save({"model": {f"module.{k}": v for k, v in other.items()}}, path)
    model, _ = load_model(f"hf:{hf_vit}", weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other[key]), key


def test_missing_transformers_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    rc, _, err = run(capsys, "layers", "hf:google/vit-base-patch16-224")
    _one_line_error(rc, err, "transformers", 'pip install "ttame-attr[transformers]"')


def test_hf_spec_errors(tmp_path, hf_vit, capsys):
    rc, _, err = run(capsys, "layers", "hf:")
    _one_line_error(rc, err, "hf:")
    rc, _, err = run(capsys, "layers", f"hf:{tmp_path / 'missing'}")
    _one_line_error(rc, err, "no such folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run(capsys, "layers", f"hf:{empty}")
    _one_line_error(rc, err, "config.json")
    rc, _, err = run(capsys, "layers", f"hf:{hf_vit / 'config.json'}")
    _one_line_error(rc, err, "is a file", "--weights")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "vit", ')
    rc, _, err = run(capsys, "layers", f"hf:{broken}")
    _one_line_error(rc, err, f"loading hf:{broken}", "failed")  # with the cause
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((hf_vit / "config.json").read_text())
    rc, _, err = run(capsys, "layers", f"hf:{no_weights}")
    _one_line_error(rc, err, f"loading hf:{no_weights}", "failed")


@pytest.mark.parametrize(
    ("processor", "expected"),
    [
        (SimpleNamespace(size={"shortest_edge": 40}, image_mean=[0.5] * 3, image_std=[0.25] * 3),
         ((3, 40, 40), (0.5,) * 3, (0.25,) * 3)),
        (SimpleNamespace(size={"shortest_edge": 40}, do_center_crop=True,
                         crop_size={"height": 32, "width": 24}, image_mean=0.5, image_std=0.5),
         ((3, 32, 24), (0.5,) * 3, (0.5,) * 3)),
        (SimpleNamespace(size={"height": 30, "width": 20}, do_center_crop=False, crop_size={"height": 8},
                         image_mean=[0.1, 0.2, 0.3], image_std=[1, 1, 1]),
         ((3, 30, 20), (0.1, 0.2, 0.3), (1.0,) * 3)),
        (SimpleNamespace(size=64, do_normalize=False, image_mean=[0.5] * 3, image_std=[0.5] * 3),
         ((3, 64, 64), (0.0,) * 3, (1.0,) * 3)),
        (SimpleNamespace(size={}, image_mean=[0.5] * 3, image_std=[0.5] * 3), None),
        (SimpleNamespace(size={"height": 8, "width": 8}), None),
    ],
)
def test_processor_preprocessing(processor, expected):
    assert processor_preprocessing(processor) == expected


def test_real_processors_sizes():
    clip = transformers.CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 36, "width": 36})
    assert processor_preprocessing(clip)[0] == (3, 36, 36)  # it centre-crops: the crop is the input
    convnext = transformers.ConvNextImageProcessor(size={"shortest_edge": 64})
    size, mean, std = processor_preprocessing(convnext)
    assert size == (3, 64, 64)
    assert mean == pytest.approx(tuple(convnext.image_mean))
    assert std == pytest.approx(tuple(convnext.image_std))


def test_transformers_is_imported_only_for_hf_specs():
    code = ("import sys\nsys.path.insert(0, %r)\nfrom ttame_attr.cli import main\n"
            "assert main(['layers', 'cli_tiny_models:tiny_cnn', '--input-size', '32']) == 0\n"
            "assert main(['layers', 'torchvision:resnet18', '--num-classes', '3',\n"
            "             '--input-size', '64']) == 0\n"
            "assert 'transformers' not in sys.modules, 'transformers was imported'\n")
    result = subprocess.run([sys.executable, "-c", code % str(Path(__file__).parent)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
