"""``benchmarks/head_init.py``: both initialisations fitted and scored side by side, and its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import head_init  # noqa: E402

from ttame_attr._core.head_file import read_safetensors  # noqa: E402


def _row(init: str, seed: int, fidelity: float, dead_fit=(), dead_val=()) -> dict:
    return {"init": init, "seed": seed, "dead_fit": list(dead_fit), "dead_val": list(dead_val),
            "fidelity": fidelity, "ad_15": 10.0 * (seed + 1), "ic_15": 40.0, "pointing_game": 0.5,
            "energy_pointing_game": 0.2, "road_morf": 0.1, "fit_seconds": 1.0, "cached": False}


def test_summary_counts_heads_with_dead_classes_and_gives_mean_and_sample_sd() -> None:
    rows = [_row("pytorch", 0, 0.99), _row("pytorch", 1, 0.74, dead_fit=[0, 5]),
            _row("pytorch", 2, 0.87, dead_val=[4]), _row("zeros", 0, 0.98)]
    s = head_init.summary(rows)
    assert s["pytorch"]["heads"] == 3 and s["pytorch"]["heads_with_dead_classes"] == 2
    assert s["zeros"]["heads_with_dead_classes"] == 0
    assert s["pytorch"]["fidelity"]["mean"] == pytest.approx((0.99 + 0.74 + 0.87) / 3)
    assert s["pytorch"]["ad_15"]["sd"] == pytest.approx(10.0)  # 10, 20, 30: sample sd 10
    assert s["zeros"]["fidelity"]["sd"] is None  # one seed: no spread
    text = head_init.table({"rows": rows, "summary": s})
    assert "| pytorch | 1 | disc, ring | – | 0.740 |" in text
    assert "| pytorch | 2 of 3 | 0.867 ± 0.125 |" in text


def test_config_is_the_quality_benchmarks_with_the_init_and_seed() -> None:
    from quality import TTAME_CONFIGS

    cfg = head_init.config("cnn", "pytorch", 2, quick=False)
    assert (cfg.head_init, cfg.seed) == ("pytorch", 2)
    assert (cfg.n_train, cfg.epochs, cfg.lr) == (TTAME_CONFIGS["cnn"].n_train, TTAME_CONFIGS["cnn"].epochs,
                                                 TTAME_CONFIGS["cnn"].lr)


def test_quick_run_fits_both_inits_and_reports(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "benchmarks" / "head_init.py"), "--quick", "--threads", "1",
               "--seeds", "0", "--out", str(tmp_path)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "head_init.json").read_text())
    rows = report["backbones"]["cnn"]["rows"]
    assert [(r["init"], r["seed"], r["config"]["head_init"]) for r in rows] == [
        ("pytorch", 0, "pytorch"), ("zeros", 0, "zeros")]
    assert all(0 <= r["fidelity"] <= 1 and r["cached"] is False for r in rows)
    # The two heads differ: the cached files hold the fusion each init started from, trained.
    heads = sorted((tmp_path / "_cache_quick").glob("ttame_cnn_*.pt"))
    assert len(heads) == 2
    weights = [read_safetensors(h)["state_dict"]["fusion.weight"] for h in heads]
    assert not torch.equal(weights[0], weights[1])
    assert "<!-- table: head-init-cnn -->" in (tmp_path / "head_init.md").read_text()


@pytest.mark.parametrize("script", ["head_init", "budget", "blank_class"])
def test_shared_run_options_defaults_caps_and_refusals(script: str, capsys) -> None:
    """``budget.py``, ``head_init.py`` and ``blank_class.py`` share their run options
    (``_results.add_run_options``): the same defaults, the same ``--quick`` cap, the same refusal
    of a bad ``--n-images`` or ``--threads``, and ``--threads`` applied when parsing."""
    import importlib
    mod = importlib.import_module(script)
    full_default = {"head_init": 400, "budget": 300, "blank_class": 400}[script]
    quick_cap = {"head_init": 16, "budget": 8, "blank_class": 32}[script]
    args = mod.parse_args([])
    assert args.n_images == full_default
    assert args.out == ROOT / "benchmarks" / "results"
    assert args.cache == ROOT / "benchmarks" / "_cache"
    assert not args.no_cache and args.threads is None
    quick = mod.parse_args(["--quick", "--n-images", "1000"])
    assert quick.n_images == quick_cap
    assert quick.cache == quick.out / "_cache_quick" and quick.out != args.out
    assert mod.parse_args(["--quick", "--n-images", "3"]).n_images == 3
    with pytest.raises(SystemExit):
        mod.parse_args(["--n-images", "0"])
    assert "--n-images: expected a positive number of images, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mod.parse_args(["--threads", "0"])
    assert "--threads: expected a positive number of threads, got 0" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        mod.parse_args(["--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
