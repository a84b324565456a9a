"""``export.py`` times explained against plain inference per runtime and writes ``export.json``
(with the run record) and ``export.md`` (the ``ratios`` table that ``readme_figures.py`` quotes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures as rf  # noqa: E402


def _load():
    spec = importlib.util.spec_from_file_location("ttame_export_bench", ROOT / "benchmarks" / "export.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


export = _load()


def test_ratios_rows_and_table_on_hand_made_times() -> None:
    r = export.ratio_of([2.0, 3.0, 4.0], [1.0, 2.0, 2.0])
    assert r.median == 1.5 and (r.low, r.high) == (1.5, 2.0) and r.rounds == [2.0, 1.5, 2.0]
    assert r.cell() == "1.500 (1.50..2.00)"
    times = {"eager": {"plain": [1.0, 1.0, 1.0], "explained": [1.1, 1.2, 1.0]},
             "compile": {"plain": [0.8, 0.9, 1.0], "explained": [1.0, 1.2, 1.1]}}
    eager, compiled = export.make_rows("resnet50", times)
    assert eager.explained_over_plain.median == pytest.approx(1.1) and eager.plain_vs_eager is None
    assert eager.verdict == "ok" and compiled.compile_goal == 1.0
    assert compiled.plain_vs_eager.median == pytest.approx(0.9)
    assert compiled.explained_vs_eager.median == pytest.approx(1.1 / 1.1)
    assert compiled.explained_over_plain.median == pytest.approx(1.1 / 0.9)  # > 1.15
    assert compiled.verdict == "MISSED: explained/plain"
    vit = export.make_rows("vit_b_16", {"compile": times["compile"]})[0]
    assert vit.goal == 1.05 and vit.compile_goal is None and vit.plain_vs_eager is None
    table = export.markdown_table([eager, compiled]).splitlines()
    assert len(table) == 4 and table[0].count("goal") == 2
    assert table[2] == "| resnet50 | eager | 1.100 (1.00..1.20) | <= 1.15 |  |  |  | ok |"
    assert table[3] == ("| resnet50 | compile | 1.222 (1.10..1.33) | <= 1.15 | 0.900 (0.80..1.00) | "
                        "1.000 (0.91..1.10) | <= 1.00 | MISSED: explained/plain |")
    assert export.round_order(["eager", "compile", "onnx"], 1) == [
        ("compile", "explained"), ("compile", "plain"), ("onnx", "explained"), ("onnx", "plain"),
        ("eager", "explained"), ("eager", "plain")]


def test_quick_run_writes_json_and_markdown(tmp_path: Path) -> None:
    # The compile runtime traces with the "eager" backend here: inductor takes minutes on CPU.
    assert export.main(["--quick", "--out", str(tmp_path), "--threads", "1",
                        "--compile-backend", "eager"]) == 0
    data = json.loads((tmp_path / "export.json").read_text())
    run = data["run"]
    assert run["command"].startswith("python benchmarks/export.py --quick")
    assert {"platform", "cpu_count", "torch_threads"} <= set(run["machine"])
    assert {"torch", "torchvision", "ttame_attr"} <= set(run["versions"])
    assert {"commit", "dirty"} <= set(run["git"])
    assert data["skipped"] == [] and data["settings"]["batch"] == 2 and data["settings"]["reps"] == 2
    for runtime in export.RUNTIMES:
        ratios = data["ratios"]["resnet18"][runtime]
        assert rf.json_value(data, f"ratios.resnet18.{runtime}.explained/plain") > 0
        assert runtime == "eager" or ratios["plain/eager"] > 0 and ratios["explained/eager"] > 0
    assert [len(r["explained/plain"]["rounds"]) for r in data["rows"]] == [2, 2, 2]
    table = rf.md_section((tmp_path / "export.md").read_text(), "ratios").splitlines()
    assert "| goal |" in table[0] and "verdict" in table[0]
    assert [line.split(" | ")[:2] for line in table[2:]] == [
        ["| resnet18", runtime] for runtime in export.RUNTIMES]
    # The compile row's verdict follows its own measured ratios (timings vary from run to run;
    # the verdict must say "MISSED" exactly for the ratios above the goal).
    assert table[3].split(" | ")[6] == "<= 1.00"
    row = next(r for r in data["rows"] if r["runtime"] == "compile")
    missed = [name for name, key in (("compile/eager plain", "plain/eager"),
                                     ("compile/eager explained", "explained/eager"))
              if row[key]["median"] > 1.0]
    assert row["verdict"] == ("MISSED: " + ", ".join(missed) if missed else "ok")
    assert table[3].endswith(f"{row['verdict']} |")


def test_default_out_is_the_committed_results() -> None:
    args = export.parse_args([])
    assert args.out == ROOT / "benchmarks" / "results"
    assert args.models == list(export.MODELS) and args.runtimes == list(export.RUNTIMES)
    assert args.batch == 8
    assert export.parse_args(["--quick"]).out != ROOT / "benchmarks" / "results"
