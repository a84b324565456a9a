"""``zoo.py``, ``speed.py`` and ``imputation.py`` write ``<name>.json`` (with the run record) and
``<name>.md`` (tables that ``readme_figures.py`` can quote)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures as rf  # noqa: E402


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"ttame_{name}_bench", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _check_run(run: dict, script: str) -> None:
    assert run["command"].startswith(f"python benchmarks/{script}")
    assert {"platform", "cpu_count", "torch_threads"} <= set(run["machine"])
    assert {"torch", "torchvision", "timm", "captum", "grad-cam", "transformers", "ttame_attr"} <= set(
        run["versions"])
    assert {"commit", "dirty"} <= set(run["git"])


def test_zoo_coverage_and_markdown() -> None:
    zoo = _load("zoo")
    results = [zoo.Result("a", "torchvision"), zoo.Result("b", "torchvision", status="error",
                                                          error="ValueError: x | y"),
               zoo.Result("c", "timm"),
               zoo.Result("d", "torchvision", status="excluded", error="takes no pixel_values")]
    cov = zoo.coverage(results)
    assert cov["torchvision"] == {"ok": 1, "total": 2, "fraction": "1/2", "percent": 50.0,
                                  "excluded": 1}
    assert cov["timm"]["fraction"] == "1/1" and cov["timm"]["excluded"] == 0
    from _results import run_info

    payload = {"run": run_info("zoo.py", []), "coverage": cov, "total_seconds": 1.0, "threads": 1,
               "device": "cpu", "results": [vars(r) for r in results]}
    text = zoo.zoo_markdown(payload)
    assert "| torchvision | 1 | 2 | 50.0% | 1 |" in rf.md_section(text, "coverage")
    failures = rf.md_section(text, "failures")
    assert "| torchvision | b | error | ValueError: x / y |" in failures and "| d |" not in failures
    assert "| torchvision | d | takes no pixel_values |" in rf.md_section(text, "excluded")
    assert len(rf.md_section(text, "models").splitlines()) == 2 + 4
    args = zoo.parse_args(["--quick"])
    assert args.limit == 2 and args.cheap_first and args.out != ROOT / "benchmarks" / "results"
    assert zoo.parse_args([]).out == ROOT / "benchmarks" / "results"


def test_speed_writes_json_and_markdown(tmp_path: Path) -> None:
    speed = _load("speed")
    rows = [speed.Row("resnet50", "fp32", "fit step/floor", 1.031, 1.0, 1.1, 3, 1.15),
            speed.Row("resnet50", "fp32", "fit peak mem/floor", 1.1, 1.1, 1.1, 1, 1.25,
                      {"fit_peak_mib": 110.0, "floor_peak_mib": 100.0})]
    args = argparse.Namespace(out=tmp_path, json=None)
    from _results import run_info

    paths = speed.write_speed_results(args, run_info("speed.py", []), "header", {"batch": 8}, rows)
    data = json.loads(paths[0].read_text())
    _check_run(data["run"], "speed.py")
    assert rf.json_value(data, "ratios.resnet50.fp32.fit step/floor") == 1.031
    table = rf.md_section(paths[1].read_text(), "ratios")
    assert "| resnet50 | fp32 | fit step/floor | 1.031 | 1.00..1.10 | 3 | <= 1.15 | ok |" in table
    assert "1.100 (110 / 100 MiB)" in table
    assert speed.parse_args(["--quick"]).out != ROOT / "benchmarks" / "results"


def test_imputation_quick_run_writes_its_results(tmp_path: Path) -> None:
    imputation = _load("imputation")
    assert imputation.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "imputation.json").read_text())
    _check_run(data["run"], "imputation.py")
    assert data["settings"]["reps"] == 2 and "alternating" in data["settings"]["timing"]
    assert [r["fraction"] for r in data["fractions"]] == list(imputation.FRACTIONS)
    assert all(len(r["cg_seconds"]) == len(r["direct_seconds"]) == 2 for r in data["fractions"])
    cg = sum(r["cg_s_per_image"] for r in data["fractions"])
    assert data["summary"]["cg_s_per_image"] == cg
    table = rf.md_section((tmp_path / "imputation.md").read_text(), "solvers")
    assert table.splitlines()[-1].startswith("| all |")
