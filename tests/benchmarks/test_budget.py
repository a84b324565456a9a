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
        # AD per predicted class: every scored image in one class, and the classes' AD weighted by
        # their images is the row's AD.
        per_class = r["ad_15_per_class"]
        assert sum(c["n"] for c in per_class.values()) == report["settings"]["n_images"]
        weighted = sum(c["n"] * c["ad"] for c in per_class.values()) / report["settings"]["n_images"]
        assert abs(weighted - r["ad_15"]) < 1e-3, (weighted, r["ad_15"])
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
    assert "<!-- table: budget-cnn -->" in md and "| defaults | 64 |" in md and "worst class AD15 |" in md
    assert (tmp_path / "budget.png").stat().st_size > 0
    assert "[cnn] paper        64 images" in first.stdout
    # A second run loads every head from the cache: same numbers, times marked.
    _run(*args[:-1], str(tmp_path / "again"), "--cache", str(tmp_path / "_cache_quick"))
    again = json.loads((tmp_path / "again" / "budget.json").read_text())["backbones"]["cnn"]["rows"]
    assert all(r["cached"] for r in again)
    assert [r["ad_15"] for r in again] == [r["ad_15"] for r in rows]
    assert "| paper | 32 |" in (tmp_path / "again" / "budget.md").read_text()
    again_md = (tmp_path / "again" / "budget.md").read_text().splitlines()
    assert all(line.split("|")[-3].strip().endswith("*") for line in again_md
               if line.startswith(("| defaults", "| paper")))


def _piece(path: Path, rows: list[tuple[str, str, int, float]], commit: str = "a" * 40,
           n_images: int = 300, val_accuracy: float = 0.95) -> Path:
    """A budget.json as a run of ``budget.py`` writes it, holding ``rows`` (backbone, setting, size, AD15)."""
    metrics = {"ic_15": 50.0, "pointing_game": 0.5, "energy_pointing_game": 0.2, "energy_pg_presigmoid": 0.1,
               "road_morf": 0.14}
    backbones: dict = {}
    for arch, setting, n, ad in rows:
        result = backbones.setdefault(arch, {"classifier": {"val_accuracy": val_accuracy}, "rows": []})
        result["rows"].append({"setting": setting, "n_train": n, "cached": False, "fit_seconds": n / 10,
                               "ad_15": ad, **metrics})
    command = f"python benchmarks/budget.py --backbones {' '.join(backbones)} --out {path.parent}"
    report = {"run": {"command": command, "date": "2026-01-01",
                      "versions": {"torch": "2.x"}, "git": {"commit": commit, "dirty": False}},
              "settings": {"n_images": n_images, "split": "val", "seed": 0, "quick": False, "tuned": {}},
              "backbones": backbones, "seconds": 5.0}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def _merge(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), "--merge", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_merge_combines_runs_made_piece_by_piece_without_fitting(tmp_path: Path) -> None:
    a = _piece(tmp_path / "a" / "budget.json",
               [("vit", "tuned", 4000, 20.0), ("vit", "defaults", 4000, 15.0)])
    b = _piece(tmp_path / "b" / "budget.json",
               [("cnn", "paper", 1000, 6.0), ("vit", "defaults", 1000, 14.0)])
    proc = _merge(str(a.parent), str(b), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "budget.json").read_text())
    # Backbones in the benchmark's order; rows by setting (defaults, paper, tuned), then size; each
    # row exactly as its run scored it.
    assert list(report["backbones"]) == ["cnn", "vit"]
    assert [(r["setting"], r["n_train"], r["ad_15"]) for r in report["backbones"]["vit"]["rows"]] == [
        ("defaults", 1000, 14.0), ("defaults", 4000, 15.0), ("tuned", 4000, 20.0)]
    assert report["settings"]["sizes"] == [1000, 4000]
    assert report["settings"]["settings"] == ["defaults", "paper", "tuned"]
    assert [p["file"] for p in report["merged_from"]] == [str(a), str(b)]
    md = (tmp_path / "out" / "budget.md").read_text()
    assert "Merged from 2 runs of commit aaaaaaaaaaaa" in md and "| tuned | 4000 | 20.00 |" in md
    assert (tmp_path / "out" / "budget.png").stat().st_size > 0
    # A merged report merges again (the merge ran at another commit; its pieces' commit counts),
    # listing the pieces it was made from.
    report["run"]["git"]["commit"] = "c" * 40
    (tmp_path / "out" / "budget.json").write_text(json.dumps(report))
    c = _piece(tmp_path / "c" / "budget.json", [("swin", "tuned", 4000, 9.0)])
    proc = _merge(str(tmp_path / "out"), str(c), "--out", str(tmp_path / "again"))
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "again" / "budget.json").read_text())
    assert list(again["backbones"]) == ["cnn", "vit", "swin"]
    assert [p["file"] for p in again["merged_from"]] == [str(a), str(b), str(c)]


def test_merge_with_backbones_replaces_one_backbones_rows(tmp_path: Path) -> None:
    # The Swin rows of a merged report were fitted on a classifier that is gone; new Swin rows on
    # another classifier replace them: merge the report's other backbones, then add the new pieces.
    a = _piece(tmp_path / "a" / "budget.json", [("cnn", "paper", 1000, 6.0)])
    b = _piece(tmp_path / "b" / "budget.json", [("swin", "paper", 1000, 14.0)])
    assert _merge(str(a), str(b), "--out", str(tmp_path / "old")).returncode == 0
    new = _piece(tmp_path / "new" / "budget.json", [("swin", "paper", 1000, 12.0)], val_accuracy=0.9)
    proc = _merge(str(tmp_path / "old"), str(new), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "has another swin classifier" in proc.stderr, proc.stderr
    proc = _merge(str(tmp_path / "old"), "--backbones", "cnn", "--out", str(tmp_path / "cnn"))
    assert proc.returncode == 0, proc.stderr
    cnn = json.loads((tmp_path / "cnn" / "budget.json").read_text())
    assert list(cnn["backbones"]) == ["cnn"]
    # The piece that scored only the Swin is no longer a source; the report says what it left out.
    assert [p["file"] for p in cnn["merged_from"]] == [str(a)]
    old_file = str(tmp_path / "old" / "budget.json")
    assert cnn["left_out"] == [{"file": old_file, "backbones": ["swin"]}]
    assert f"Left out: the swin rows of `{old_file}`." in (tmp_path / "cnn" / "budget.md").read_text()
    proc = _merge(str(tmp_path / "cnn"), str(new), "--out", str(tmp_path / "final"))
    assert proc.returncode == 0, proc.stderr
    final = json.loads((tmp_path / "final" / "budget.json").read_text())
    assert [r["ad_15"] for r in final["backbones"]["swin"]["rows"]] == [12.0]
    assert final["backbones"]["swin"]["classifier"] == {"val_accuracy": 0.9}
    assert [p["file"] for p in final["merged_from"]] == [str(a), str(new)]
    assert final["left_out"] == cnn["left_out"]
    proc = _merge(str(tmp_path / "old"), "--backbones", "vit", "--out", str(tmp_path / "none"))
    assert proc.returncode == 2 and "no rows of --backbones vit" in proc.stderr, proc.stderr


def test_merge_refuses_runs_that_cannot_be_compared(tmp_path: Path) -> None:
    a = _piece(tmp_path / "a.json", [("vit", "tuned", 4000, 20.0)])
    twice = _piece(tmp_path / "twice.json", [("vit", "tuned", 4000, 21.0)])
    other_commit = _piece(tmp_path / "c.json", [("cnn", "tuned", 4000, 4.0)], commit="b" * 40)
    other_images = _piece(tmp_path / "i.json", [("cnn", "tuned", 4000, 4.0)], n_images=100)
    out = str(tmp_path / "out")
    for piece, words in ((twice, "both hold the vit row tuned / 4000 images"),
                         (other_commit, "differ in commit"),
                         (other_images, "differ in settings['n_images']")):
        proc = _merge(str(a), str(piece), "--out", out)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    proc = _merge(str(tmp_path / "missing"), "--out", out)
    assert proc.returncode == 2 and "expected a budget.json file or a folder holding one" in proc.stderr
    proc = _merge(str(a), "--sizes", "1000", "--out", out)
    assert proc.returncode == 2 and "--sizes would be ignored" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_supersede_replaces_rows_rerun_at_a_later_commit(tmp_path: Path) -> None:
    # A change of code alters one backbone's defaults only: those rows are rerun at the new commit
    # and replace the old ones; the other rows keep the commit that fitted them.
    old = _piece(tmp_path / "old" / "budget.json",
                 [("cnn", "defaults", 1000, 4.0), ("swin", "defaults", 1000, 16.0),
                  ("swin", "paper", 1000, 11.0)])
    new = _piece(tmp_path / "new" / "budget.json", [("swin", "defaults", 1000, 7.0)], commit="b" * 40)
    out = tmp_path / "out"
    # Without --supersede the commits must agree.
    proc = _merge(str(old), str(new), "--out", str(out))
    assert proc.returncode == 2 and "differ in commit" in proc.stderr, proc.stderr
    proc = _merge(str(old), str(new), "--supersede", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "budget.json").read_text())
    swin = report["backbones"]["swin"]["rows"]
    assert [(r["setting"], r["ad_15"], r["commit"]) for r in swin] == [
        ("defaults", 7.0, "b" * 40), ("paper", 11.0, "a" * 40)]
    assert report["backbones"]["cnn"]["rows"][0]["commit"] == "a" * 40
    assert report["fitted"]["commit"] is None and report["fitted"]["commits"] == ["a" * 40, "b" * 40]
    assert report["left_out"] == [{"file": str(old), "rows": ["swin defaults 1000"]}]
    md = (out / "budget.md").read_text()
    assert "runs of commits aaaaaaaaaaaa, bbbbbbbbbbbb" in md
    assert f"replaced by a later run's: the rows swin defaults 1000 of `{old}`" in md
    assert "| defaults | 1000 | 7.00 |" in md and md.count("| bbbbbbbbbbbb |") == 1
    # A mixed report merges again only with --supersede (its rows keep their own commits).
    proc = _merge(str(out), str(new), "--out", str(tmp_path / "again"))
    assert proc.returncode == 2 and "differ in commit" in proc.stderr, proc.stderr
    proc = _merge(str(out), "--supersede", "--backbones", "swin", "--out", str(tmp_path / "again"))
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "again" / "budget.json").read_text())
    assert [r["commit"] for r in again["backbones"]["swin"]["rows"]] == ["b" * 40, "a" * 40]
    # --supersede belongs to --merge.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--supersede"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "--supersede only applies to --merge" in proc.stderr, proc.stderr
