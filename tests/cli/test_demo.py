"""The demo pipeline on a tiny configuration: report, PNGs and JSON are written."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from ttame_attr.demo import DemoConfig, run_demo
from ttame_attr.demo._report import metrics_table_rows


def test_tiny_demo_writes_report_pngs_and_json(tmp_path):
    cfg = DemoConfig(image_size=32, train_images=64, val_images=32, eval_images=4, show_images=2,
                     train_classifier=True, classifier_epochs=1, ttame_epochs=1, batch_size=16,
                     seed=1)
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
    assert set(data["metrics"]) == {"T-TAME", next(k for k in data["metrics"] if k != "T-TAME")}
    for values in data["metrics"].values():
        assert set(values) == {"ad_100", "ad_50", "ad_15", "ic_100", "ic_50", "ic_15",
                               "road_morf", "road_lerf", "pointing_game"}
        assert all(0.0 <= v <= 100.0 for v in values.values())
    assert len(data["ttame"]["history"]) == 1
    assert (tmp_path / "out" / "ttame_head.pt").is_file()
    assert any(line.startswith("Report: ") and line.endswith("report.html") for line in lines)


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
