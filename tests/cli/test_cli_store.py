"""``ttame explain --store``: a dataset into an explanation store, and the errors for a bad store path."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from cli_helpers import CNN, SIZE, assert_usage_error, run

from ttame_attr import ExplanationStore


def _explain(capsys, image_dir: Path, head: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "explain", CNN, str(image_dir), *SIZE, "--head", str(head), "-q", "--workers", "0",
               *extra)


def test_store_equals_the_per_file_maps(capsys, image_dir, trained_head, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store_args = ("--store", "st", "--shard-size", "3", "--top-k", "2")
    rc, out, _ = _explain(capsys, image_dir, trained_head, *store_args)
    assert rc == 0, out
    assert len(out.strip().splitlines()) == 1 and "8 images" in out  # no line per image
    assert not Path("ttame_explanations").exists()  # no overlays unless --overlays
    store = ExplanationStore("st")
    assert len(store) == 8 and len(store.manifest["shards"]) == 3 and store.class_names == ["a", "b"]
    assert store.manifest["model"]["spec"] == CNN and store.manifest["head_file"]["sha256"]
    rc, _, _ = _explain(capsys, image_dir, trained_head, "--out", "files", "--format", "pt", "--top-k", "2",
                        "--no-overlay")
    assert rc == 0
    table = store.table(["path", "classes", "probabilities", "label"])
    columns = [table.column(c).to_pylist() for c in ("path", "classes", "probabilities")]
    for path, classes, probs in zip(*columns):
        saved = torch.load(Path("files") / f"{Path(path).stem}.pt", weights_only=True)
        assert saved["classes"].tolist() == classes
        torch.testing.assert_close(saved["probabilities"], torch.tensor(probs), rtol=1e-5, atol=1e-6)
    assert table.column("label").to_pylist() == [0] * 4 + [1] * 4
    rc, out, _ = _explain(capsys, image_dir, trained_head, *store_args, "--overlays", "--out", "png")
    assert rc == 0 and len(list(Path("png").glob("*.png"))) == 16  # resumed (nothing to do), overlays


def test_bad_store_paths(capsys, image_dir, trained_head, tmp_path):
    rc, _, err = _explain(capsys, image_dir, trained_head, "--store", str(trained_head))
    assert_usage_error(rc, err, "--store", "is a file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    rc, _, err = _explain(capsys, image_dir, trained_head, "--store", str(tmp_path / "busy"))
    assert_usage_error(rc, err, "--store", "not empty")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    rc, _, err = _explain(capsys, image_dir, trained_head, "--store", str(tmp_path / "s"), "--target", "1")
    assert_usage_error(rc, err, "--target", "--store")
    rc, _, err = _explain(capsys, image_dir, trained_head, "--store", str(tmp_path / "s"), "--shard-size",
                          "0")
    assert_usage_error(rc, err, "--shard-size")
    assert _explain(capsys, image_dir, trained_head, "--store", str(tmp_path / "s"))[0] == 0
    rc, _, err = _explain(capsys, image_dir, trained_head, "--store", str(tmp_path / "s"), "--top-k", "2")
    assert_usage_error(rc, err, "another run", "options.top_k: stored 1, now 2")
    rc, _, err = _explain(capsys, image_dir, trained_head, "--store", str(tmp_path / "s"), "--no-resume")
    assert_usage_error(rc, err, "already holds a store")


def test_unreadable_files_are_skipped_and_listed(capsys, image_dir, trained_head, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(image_dir, data)
    (data / "a" / "broken.png").write_bytes(b"not an image")
    rc, _, err = _explain(capsys, data, trained_head, "--store", str(tmp_path / "s1"))
    assert_usage_error(rc, err, "broken.png", "--skip-unreadable")
    rc, out, _ = _explain(capsys, data, trained_head, "--store", str(tmp_path / "s2"), "--skip-unreadable")
    assert rc == 0 and "skipped 1 unreadable image" in out
    assert str((data / "a" / "broken.png").resolve()) in (tmp_path / "s2" / "skipped.txt").read_text()
    assert len(ExplanationStore(tmp_path / "s2")) == 8
