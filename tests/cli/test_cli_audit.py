"""``ttame audit STORE --out DIR``: the files it writes and its one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_usage_error, run

sys.path.insert(0, str(Path(__file__).parents[1] / "audit"))
from _stores import empty_store, old_store, shapes_store  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return shapes_store(tmp_path_factory.mktemp("store") / "store", n=32)[0]


def test_audit_writes_json_and_html(store, tmp_path, capsys) -> None:
    rc, out, err = run(capsys, "audit", str(store), "--out", str(tmp_path / "audit"), "--max-groups", "2")
    assert rc == 0, err
    data = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert data["summary"]["images"] == 32 and data["options"]["max_groups"] == 2
    assert (tmp_path / "audit" / "audit.html").read_text().startswith("<!DOCTYPE html>")
    assert out.startswith("audited 32 images") and "audit.html" in out


def test_missing_store(tmp_path, capsys) -> None:
    rc, _, err = run(capsys, "audit", str(tmp_path / "nope"), "--out", str(tmp_path / "a"))
    assert_usage_error(rc, err, "ttame audit: error:", "does not exist")
    assert not (tmp_path / "a").exists()


def test_folder_that_is_not_a_store(tmp_path, capsys) -> None:
    (tmp_path / "plain").mkdir()
    rc, _, err = run(capsys, "audit", str(tmp_path / "plain"))
    assert_usage_error(rc, err, "no manifest.json")


def test_empty_store(store, tmp_path, capsys) -> None:
    empty = empty_store(tmp_path / "empty", store)
    rc, _, err = run(capsys, "audit", str(empty), "--out", str(tmp_path / "a"))
    assert_usage_error(rc, err, "no explanations (0 rows)")
    assert not (tmp_path / "a").exists()


def test_store_from_an_older_version(store, tmp_path, capsys) -> None:
    rc, _, err = run(capsys, "audit", str(old_store(tmp_path / "old", store)))
    assert_usage_error(rc, err, "format_version 0", "older ttame_attr", "Explain the data again")


def test_store_from_a_newer_version(store, tmp_path, capsys) -> None:
    path = empty_store(tmp_path / "new", store)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    rc, _, err = run(capsys, "audit", str(path))
    assert_usage_error(rc, err, "format_version 99", "newer")


def test_bad_option(store, capsys) -> None:
    rc, _, err = run(capsys, "audit", str(store), "--threshold", "2")
    assert_usage_error(rc, err, "threshold")
