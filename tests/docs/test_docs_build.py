"""The Sphinx documentation builds with warnings as errors, and its examples pass as doctests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def sphinx(builder: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "sphinx", *extra, "-b", builder, str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )


def test_html_builds_without_warnings(tmp_path):
    proc = sphinx("html", tmp_path / "html", "-W", "--keep-going", "-q")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = tmp_path / "html"
    for page in ("index", "installation", "quickstart", "how_it_works", "adapters", "training",
                 "evaluation", "distributed", "cli", "production", "audit", "api", "changelog"):
        assert (html / f"{page}.html").is_file(), page
    api = (html / "api.html").read_text(encoding="utf-8")
    for name in ("TTAME", "average_drop_increase", "SyntheticShapes", "to_captum_vis",
                 "register_adapter", "run_demo", "ExplainedModel", "ExportError"):
        assert name in api
    assert (html / "_images" / "ttame_diagram.png").is_file()


def test_doctests_pass(tmp_path):
    proc = sphinx("doctest", tmp_path / "doctest", "-q")
    report = (tmp_path / "doctest" / "output.txt").read_text(encoding="utf-8")
    assert proc.returncode == 0, report[-4000:] + proc.stderr[-2000:]
    assert "0 failures in tests" in report
    # The pages' own examples ran (not only the docstrings').
    for page in ("quickstart", "adapters", "evaluation", "how_it_works", "cli", "production"):
        assert f"Document: {page}\n" in report
