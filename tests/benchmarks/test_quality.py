"""Smoke test of ``benchmarks/quality.py --quick``: it runs end to end and writes its outputs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "quality.py"
METHODS = ["T-TAME", "Grad-CAM", "Grad-CAM++", "Score-CAM", "RISE", "IG"]
#: The ViT also gets the transformer baselines (LeGrad needs torchcam, Python 3.11+).
VIT_METHODS = METHODS + ["Chefer-LRP"] + (["LeGrad"] if sys.version_info >= (3, 11) else [])
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


#: The hash of ttame_attr's sources when the quick run started (every cache key holds it).
_PACKAGE: dict[str, str] = {}


def _package_digest() -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _quality.cache import package_digest

    return package_digest.__wrapped__()  # not the per-process cached value


def _require_unchanged_package() -> None:
    """Cache hits across invocations need the same package source: skip if it was edited
    while the tests ran (the keys then change with it, as they must)."""
    if _package_digest() != _PACKAGE.get("digest"):
        pytest.skip("ttame_attr's sources changed during the test: every cache key changed too")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("quality")
    _PACKAGE["digest"] = _package_digest()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--threads", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_quick_run_writes_every_output(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    for name in ["quality.json", "quality.md"] + [
        f"{b}.{ext}" for b in ("cnn", "vit", "swin") for ext in ("md", "png")
    ]:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert (out / "cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_structure(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    report = json.loads((out / "quality.json").read_text())
    assert report["settings"]["quick"] is True
    assert sorted(report["backbones"]) == ["cnn", "swin", "vit"]
    for arch, res in report["backbones"].items():
        assert res["n_images"] == 2
        assert list(res["methods"]) == (VIT_METHODS if arch == "vit" else METHODS), arch
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
        assert [r.split("|")[1].strip() for r in rows[1:]] == VIT_METHODS
        assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows)
    assert "| 10% | 20% | 30% | 40% | 50% | 70% | 90% |" in tables[1]
    # seconds per image are printed for every backbone and method
    assert "Seconds per image:" in stdout
    for arch in ("cnn", "vit", "swin"):
        line = next(s for s in stdout.splitlines() if s.strip().startswith(f"{arch}:"))
        assert all(m in line for m in (VIT_METHODS if arch == "vit" else METHODS))


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_results_json_records_the_run_and_the_spread(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    report = json.loads((out / "quality.json").read_text())
    run = report["run"]
    assert run["command"].startswith("python benchmarks/quality.py --quick --out ")
    assert {"platform", "cpu_count", "torch_threads"} <= set(run["machine"])
    assert run["machine"]["torch_threads"] == 1
    assert {"torch", "torchvision", "timm", "captum", "grad-cam", "ttame_attr"} <= set(run["versions"])
    assert set(run["git"]) >= {"commit", "dirty"}
    assert report["settings"]["seeds"] == [0] and report["settings"]["classifier_seed"] == 0
    assert "n - 1" in report["settings"]["std"] and "sum of the two" in report["settings"]["first_rule"]
    for res in report["backbones"].values():
        assert res["seeds"] == [0]
        for values in res["methods"].values():
            assert values["std"]["ad_15"] is None  # one seed: no spread
            assert values["timing"] == "interleaved"
        assert all(c["first"] is None for c in res["first"].values())  # ...so no claim
        assert res["pieces"]["0"]["from_cache"] is False
        # A run that may read caches is not clean, even where it found nothing to read.
        assert res["pieces"]["0"]["computed"]["read_cache"] is True and res["clean"] is False
        assert res["pieces"]["0"]["computed"]["git"]["commit"] == run["git"]["commit"]
    assert "Not a clean run: some pieces read a cache" in (out / "cnn.md").read_text()
    assert report["tables"]["cnn"] in (out / "quality.md").read_text()
    assert "<!-- table: cnn -->" in (out / "quality.md").read_text()


def test_seeds_in_several_invocations_then_aggregated_from_the_cache(
    quick_run: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = quick_run
    cache = out / "_cache_quick"  # holds seed 0 of every backbone (the quick run)
    one = _run("--backbones", "cnn", "--seeds", "1", "--out", str(tmp_path / "s1"),
               "--cache", str(cache))
    assert "[cnn seed 1] T-TAME head (trained" in one.stdout
    both = _run("--backbones", "cnn", "--seeds", "0", "1", "--out", str(tmp_path / "all"),
                "--cache", str(cache))
    _require_unchanged_package()
    assert both.stdout.count("piece cached") == 2 and "T-TAME head" not in both.stdout
    report = json.loads((tmp_path / "all" / "quality.json").read_text())
    res = report["backbones"]["cnn"]
    assert res["seeds"] == [0, 1] and all(p["from_cache"] for p in res["pieces"].values())
    assert res["eval_images"]["0"]["offset"] != res["eval_images"]["1"]["offset"]
    assert res["eval_images"]["0"]["digest"] != res["eval_images"]["1"]["digest"]
    assert res["ttame"]["per_seed"]["1"]["cached"] is False
    first = json.loads((out / "quality.json").read_text())["backbones"]["cnn"]["methods"]
    for name, values in res["methods"].items():
        seed0 = values["per_seed"]["0"]
        assert seed0["ad_15"] == first[name]["ad_15"], name  # seed 0 loaded, not recomputed
        pair = [seed0["ad_15"], values["per_seed"]["1"]["ad_15"]]
        assert values["ad_15"] == pytest.approx(sum(pair) / 2)
        assert values["std"]["ad_15"] == pytest.approx(abs(pair[0] - pair[1]) / 2 ** 0.5)
    for key, claim in res["first"].items():
        best, second = res["methods"][claim["best"]], res["methods"][claim["second"]]
        spread = best["std"][key] + second["std"][key]
        assert claim["claimed"] == (abs(best[key] - second[key]) > spread), key
    assert "mean ± sample standard deviation (n - 1) over the 2 seeds" in (
        tmp_path / "all" / "cnn.md").read_text()


def test_no_cache_recomputes_heads_maps_and_pieces(quick_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = quick_run
    proc = _run("--backbones", "cnn", "--no-cache", "--out", str(tmp_path),
                "--cache", str(out / "_cache_quick"))
    assert "piece cached" not in proc.stdout and "(maps from the map cache)" not in proc.stdout
    assert "[cnn seed 0] T-TAME head (trained" in proc.stdout
    res = json.loads((tmp_path / "quality.json").read_text())["backbones"]["cnn"]
    assert res["clean"] is True and res["pieces"]["0"]["computed"]["read_cache"] is False
    assert "Every piece computed without reading a cache (seed 0: clean" in (tmp_path / "cnn.md").read_text()
    # The clean piece, aggregated by a later run that reads it from the cache, stays clean.
    later = _run("--backbones", "cnn", "--out", str(tmp_path / "later"), "--cache", str(out / "_cache_quick"))
    _require_unchanged_package()
    assert "piece cached" in later.stdout
    res = json.loads((tmp_path / "later" / "quality.json").read_text())["backbones"]["cnn"]
    assert res["clean"] is True and res["pieces"]["0"]["from_cache"] is True
    # Another figure size changes the piece's key but not the maps': the baselines' maps come
    # from the map cache, T-TAME's head from the head cache, and the table marks their timings.
    again = _run("--backbones", "cnn", "--figure-images", "2", "--out", str(tmp_path / "again"),
                 "--cache", str(out / "_cache_quick"))
    _require_unchanged_package()
    assert again.stdout.count("(maps from the map cache)") == len(METHODS) - 1
    assert "[cnn seed 0] T-TAME head (cached" in again.stdout
    res = json.loads((tmp_path / "again" / "quality.json").read_text())["backbones"]["cnn"]
    assert res["clean"] is False
    assert [m["timing"] for m in res["methods"].values()] == ["interleaved"] + ["map cache"] * 5
    rows = [r for r in (tmp_path / "again" / "cnn.md").read_text().splitlines()
            if r.startswith("| ") and r.split("|")[1].strip() in METHODS][: len(METHODS)]
    assert [r.rstrip(" |").endswith("*") for r in rows] == [False] + [True] * 5


def test_help_says_what_no_cache_leaves_alone(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("ttame_quality_bench", SCRIPT)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    with pytest.raises(SystemExit):
        quality.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--retrain-classifiers" in text and "are NOT retrained" in text
    args = quality.parse_args(["--seed", "3"])  # the old --seed is --seeds' abbreviation
    assert args.seeds == [3] and args.read_cache and not args.retrain_classifiers
    assert quality.parse_args([]).seeds == [0, 1, 2]
    assert quality.parse_args(["--quick"]).seeds == [0]
