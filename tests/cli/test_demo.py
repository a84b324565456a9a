"""The demo pipeline on a tiny configuration: report, PNGs and JSON are written."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ttame_attr.demo import DemoConfig, run_demo
from ttame_attr.demo._report import metrics_table_rows


def test_tiny_demo_writes_report_pngs_and_json(tmp_path, monkeypatch):
    from ttame_attr.demo import _run

    trained: list[torch.nn.Module] = []
    real_train = _run.train_classifier

    def keep_the_classifier(model, *args, **kwargs):  # the real training; only keeps the network
        trained.append(model)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(_run, "train_classifier", keep_the_classifier)
    cfg = DemoConfig(image_size=32, train_images=64, val_images=32, eval_images=4, show_images=2,
                     train_classifier=True, classifier_epochs=1, ttame_epochs=1, batch_size=16,
                     seed=1, head_init="pytorch")  # four steps from the zero start leave maps so flat
    # that AD/IC's min-max normalisation ranks float noise (the demo and the check below differ)
    lines: list[str] = []
    result = run_demo(tmp_path / "out", cfg, progress=False, echo=lines.append)
    html = result.report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    # Three embedded figures, each a valid PNG, and no external references.
    chunks = html.split('src="data:image/png;base64,')[1:]
    assert len(chunks) == 3
    for chunk in chunks:
        assert base64.b64decode(chunk.split('"', 1)[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html
    assert sorted(p.name for p in result.pngs) == [
        "class_maps.png", "explanations.png", "training_curves.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in result.pngs)
    data = json.loads(result.json_path.read_text())
    assert set(data["metrics"]) == {"T-TAME", "Grad-CAM (pytorch-grad-cam)"}
    # Recompute the numbers from the classifier, the saved head and the test images.
    expected = _metrics_by_hand(trained[0], tmp_path / "out" / "ttame_head.pt", cfg)
    assert data["classifier"]["test_accuracy"] == pytest.approx(expected.pop("accuracy"))
    for method, values in expected.items():
        assert data["metrics"][method].keys() == values.keys()
        for key, value in values.items():
            assert data["metrics"][method][key] == pytest.approx(value, rel=1e-4, abs=1e-4), (
                method, key)
    assert len(data["ttame"]["history"]) == 1
    assert (tmp_path / "out" / "ttame_head.pt").is_file()
    assert any(line.startswith("Report: ") and line.endswith("report.html") for line in lines)
    # 64 images in batches of 16, one epoch: 4 steps, so recipe="auto" takes its largest rate, 1e-2
    assert "      4 steps at a maximum learning rate of 0.01 (learning rate scaled; the paper's is 1e-3 " \
           "for 320,000 steps)" in lines


def _metrics_by_hand(net, head, cfg) -> dict:
    """The demo's test-set numbers, recomputed outside the demo: accuracy, AD/IC (the paper's
    protocol in NumPy: min-max at the map's own size, bilinear upsampling, the 0/50/85%
    quantiles; for T-TAME its pre-sigmoid map at map size) and the pointing game (first
    maximal pixel inside the shape) of the saved T-TAME head's maps and of pytorch-grad-cam's
    Grad-CAM on ``net.layer4``. ROAD is
    recomputed with ``road`` (checked on its own in tests/metrics/test_road.py) on these
    maps, so the demo must score the right maps with the right model and seed."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ttame_attr import TTAME
    from ttame_attr.classifiers import Normalized
    from ttame_attr.data import MEAN, STD, SyntheticShapes
    from ttame_attr.metrics import road

    n, size = cfg.eval_images, cfg.image_size
    x, y, shapes = SyntheticShapes(n, size, cfg.seed, "test").generate(range(n))
    model = Normalized(net, MEAN, STD).eval()
    with torch.no_grad():
        clean = model(x).softmax(1)
    pred = clean.argmax(1)
    explainer = TTAME.load(head, model)
    ttame_maps = explainer.attribute(x, target=pred).detach()
    ttame_raw = explainer.attribute(x, target=pred, scale="raw", upsample=False).detach()
    with GradCAM(model=model, target_layers=[net.layer4]) as cam:
        cam_maps = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t))
                                                                 for t in pred])).float()[:, None]
    out: dict = {"accuracy": float((pred == y).float().mean())}
    for method, maps, adic_maps in (("T-TAME", ttame_maps, ttame_raw),
                                    ("Grad-CAM (pytorch-grad-cam)", cam_maps, cam_maps)):
        values: dict[str, float] = {}
        drops, ups, hits = {100: [], 50: [], 15: []}, {100: [], 50: [], 15: []}, []
        for i in range(n):
            m = maps[i, 0].numpy().astype(np.float64).ravel()
            hits.append(bool(shapes[i, 0].numpy().ravel()[int(np.argmax(m))] > 0.5))
            a = adic_maps[i, 0].numpy().astype(np.float64)
            span = a.max() - a.min()
            a = (a - a.min()) / span if span > 0 else np.zeros_like(a)
            normed = torch.nn.functional.interpolate(
                torch.from_numpy(a)[None, None], size=(size, size), mode="bilinear",
                align_corners=False)[0, 0].numpy().ravel()
            y_clean = float(clean[i, pred[i]])
            for pct in drops:
                keep = normed * (normed >= np.quantile(normed, 1 - pct / 100))
                masked = x[i:i + 1] * torch.from_numpy(keep.reshape(1, 1, size, size)).float()
                with torch.no_grad():
                    o = float(model(masked).softmax(1)[0, pred[i]])
                drops[pct].append(100.0 * max(0.0, y_clean - o) / y_clean)
                ups[pct].append(o > y_clean)
        for pct in drops:
            values[f"ad_{pct}"] = float(np.mean(drops[pct]))
            values[f"ic_{pct}"] = 100.0 * float(np.mean(ups[pct]))
        roads = road(model, x, maps, generator=torch.Generator().manual_seed(cfg.seed))
        values["road_morf"] = 100.0 * roads.morf_average
        values["road_lerf"] = 100.0 * roads.lerf_average
        values["pointing_game"] = 100.0 * float(np.mean(hits))
        out[method] = values
    return out


def test_metrics_table_rows_formats_every_column():
    rows = metrics_table_rows({"A": {k: 1.0 for k in (
        "ad_100", "ad_50", "ad_15", "ic_100", "ic_50", "ic_15", "road_morf", "road_lerf",
        "pointing_game")}})
    assert rows[0][0] == "method" and len(rows[0]) == 10
    assert rows[1] == ["A"] + ["1.00"] * 9


def test_python_m_demo_help():
    proc = subprocess.run([sys.executable, "-m", "ttame_attr.demo", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "--quick" in proc.stdout and "--out" in proc.stdout and "--seed" in proc.stdout


def test_shipped_classifier_loads_in_float32_and_classifies_held_out_images():
    import torch

    from ttame_attr.classifiers import Normalized, load_reference_classifier
    from ttame_attr.data import MEAN, STD, SyntheticShapes

    net, info = load_reference_classifier()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert not net.training
    assert info["recipe"]["num_train"] == 20000 and info["val_accuracy"] > 0.95
    x, y, _ = SyntheticShapes(64, 64, seed=0, split="test").generate(range(64))
    with torch.no_grad():
        accuracy = float((Normalized(net, MEAN, STD)(x).argmax(1) == y).float().mean())
    assert accuracy >= 0.9


def test_reference_weights_file_is_refused_when_foreign(tmp_path):
    import pytest
    import torch

    from ttame_attr.classifiers import load_reference_classifier

    path = tmp_path / "x.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not a demo classifier"):
        load_reference_classifier(path)
