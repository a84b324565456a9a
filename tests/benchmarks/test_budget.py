"""Smoke test of ``benchmarks/budget.py --quick``: heads per size and setting, scored, cached, reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "budget.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_quick_run_fits_scores_caches_and_reports(tmp_path: Path) -> None:
    args = ("--backbones", "cnn", "--sizes", "32", "64", "--settings", "defaults", "paper",
            "--out", str(tmp_path))
    first = _run(*args)
    report = json.loads((tmp_path / "budget.json").read_text())
    rows = report["backbones"]["cnn"]["rows"]
    assert [(r["setting"], r["n_train"]) for r in rows] == [
        ("defaults", 32), ("defaults", 64), ("paper", 32), ("paper", 64)]
    for r in rows:
        assert r["cached"] is False and r["fit_seconds"] > 0
        assert 0 <= r["pointing_game"] <= 1 and 0 <= r["energy_pointing_game"] <= 1
        assert 0 <= r["energy_pg_presigmoid"] <= 1
        assert 0 <= r["road_morf"] <= 1 and r["ad_15"] >= 0
    # defaults: fit(loader) alone, so fit's own schedule: 32 and 64 images at batch 32 are 1 and 2
    # steps per epoch, far under 4,000 steps, so recipe="auto" runs its 64 epochs at most, at lr
    # 1e-2; paper (quick): 1 epoch at lr 1e-3.
    assert rows[0]["config"]["epochs"] is None and rows[0]["config"]["lr"] is None
    assert rows[0]["epochs_run"] == 64 and rows[0]["final"]["steps"] == 64
    assert rows[1]["final"]["steps"] == 128
    assert rows[0]["schedule"]["recipe"] == "auto" and rows[0]["schedule"]["lr"] == 1e-2
    assert rows[2]["epochs_run"] == 1 and rows[2]["config"]["lr"] == 1e-3
    assert rows[2]["schedule"]["source"] == {"epochs": "given", "lr": "given"}
    assert report["settings"]["split"] == "val"
    md = (tmp_path / "budget.md").read_text()
    assert "<!-- table: budget-cnn -->" in md and "| defaults | 64 |" in md
    assert (tmp_path / "budget.png").stat().st_size > 0
    assert "[cnn] paper        64 images" in first.stdout
    # A second run loads every head from the cache: same numbers, times marked.
    _run(*args[:-1], str(tmp_path / "again"), "--cache", str(tmp_path / "_cache_quick"))
    again = json.loads((tmp_path / "again" / "budget.json").read_text())["backbones"]["cnn"]["rows"]
    assert all(r["cached"] for r in again)
    assert [r["ad_15"] for r in again] == [r["ad_15"] for r in rows]
    assert "| paper | 32 |" in (tmp_path / "again" / "budget.md").read_text()
    assert all(line.endswith("* |") for line in (tmp_path / "again" / "budget.md").read_text().splitlines()
               if line.startswith(("| defaults", "| paper")))
