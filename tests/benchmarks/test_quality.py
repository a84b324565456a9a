"""Smoke test of ``benchmarks/quality.py --quick``: it runs end to end and writes its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "quality.py"
METHODS = ["T-TAME", "Grad-CAM", "Grad-CAM++", "Score-CAM", "RISE", "IG"]
METRIC_KEYS = [
    "ad_100", "ad_50", "ad_15", "ic_100", "ic_50", "ic_15", "road_morf", "road_lerf",
    "deletion_auc", "insertion_auc", "pointing_game", "energy_pointing_game",
    "seconds_per_image",
]
#: The goal metrics and whether higher is better (AD, ROAD MoRF: lower; IC, pointing: higher).
GOAL_HIGHER_IS_BETTER = {
    "ad_100": False, "ad_50": False, "ad_15": False, "ic_100": True, "ic_50": True,
    "ic_15": True, "road_morf": False, "pointing_game": True,
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("quality")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--threads", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_quick_run_writes_every_output(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    for name in ["results.json", "results.md"] + [
        f"{b}.{ext}" for b in ("cnn", "vit", "swin") for ext in ("md", "png")
    ]:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert (out / "cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_structure(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["quick"] is True
    assert sorted(report["backbones"]) == ["cnn", "swin", "vit"]
    for arch, res in report["backbones"].items():
        assert res["n_images"] == 2
        assert list(res["methods"]) == METHODS, arch
        assert res["ttame"]["layers"], arch
        for method, values in res["methods"].items():
            for key in METRIC_KEYS:
                assert isinstance(values[key], float), (arch, method, key)
            assert 0.0 <= values["ad_15"] <= 100.0
            assert 0.0 <= values["ic_15"] <= 100.0
            assert 0.0 <= values["road_morf"] <= 1.0
            assert 0.0 <= values["energy_pointing_game"] <= 1.0
            assert len(values["road_morf_curve"]) == len(values["road_fractions"]) == 7
            assert values["seconds_per_image"] > 0.0
            assert values["road_morf"] == pytest.approx(
                sum(values["road_morf_curve"]) / len(values["road_morf_curve"]))
        # T-TAME's rank on each goal metric, recomputed from the table's numbers: 1 + the
        # number of methods strictly better (ties share the better rank).
        expected = {}
        for key, higher in GOAL_HIGHER_IS_BETTER.items():
            mine = res["methods"]["T-TAME"][key]
            others = [v[key] for v in res["methods"].values()]
            expected[key] = 1 + sum(1 for v in others if (v > mine if higher else v < mine))
        assert res["goal_ranks"] == expected, arch


def test_markdown_table_has_a_row_per_method(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    text = (out / "vit.md").read_text()
    tables = [t for t in text.split("\n\n") if t.startswith("| method |")]
    assert len(tables) == 2  # the metrics, then the ROAD MoRF curve per removed fraction
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
        assert [r.split("|")[1].strip() for r in rows[1:]] == METHODS
        assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows)
    assert "| 10% | 20% | 30% | 40% | 50% | 70% | 90% |" in tables[1]
    # seconds per image are printed for every backbone and method
    assert "Seconds per image:" in stdout
    for arch in ("cnn", "vit", "swin"):
        line = next(s for s in stdout.splitlines() if s.strip().startswith(f"{arch}:"))
        assert all(m in line for m in METHODS)
