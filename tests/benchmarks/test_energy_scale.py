"""Smoke test of ``benchmarks/energy_scale.py --quick``: every scale scored, the table written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_scores_every_scale(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "energy_scale.py"), "--quick", "--backbones", "cnn",
           "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "energy_scale.json").read_text())["backbones"]["cnn"]
    assert set(res["energy_pointing_game"]) == {"pre-sigmoid", "sigmoid", "relu", "Grad-CAM"}
    assert all(0.0 <= v <= 1.0 for v in res["energy_pointing_game"].values())
    assert 0.0 < res["sigmoid_outside"] < 1.0 and 0.0 < res["sigmoid_inside"] < 1.0
    assert res["head_cached"] is False
    assert "<!-- table: energy -->" in (tmp_path / "energy_scale.md").read_text()
