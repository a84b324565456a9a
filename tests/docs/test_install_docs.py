"""The installation page gives commands that work today, lists every extra, and the pages a
newcomer reads first show a (small) figure of real outputs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FIGURE = DOCS / "_static" / "example_explanations.png"


def _extras() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return re.findall(r"^([a-z][a-z0-9_-]*) = \[", section, flags=re.M)


def test_installation_lists_every_extra() -> None:
    page = (DOCS / "installation.rst").read_text(encoding="utf-8")
    extras = _extras()
    assert {"timm", "demo", "metrics", "export", "dev"} <= set(extras)
    missing = [e for e in extras if f"``{e}``" not in page]
    assert missing == []


def test_installation_says_pypi_is_not_there_yet_and_gives_what_works() -> None:
    page = (DOCS / "installation.rst").read_text(encoding="utf-8")
    assert "not on PyPI yet" in page
    assert "pip install .  " in page and 'pip install ".[timm,export]"' in page
    assert "python -m build" in page and "py3-none-any.whl" in page
    assert "https://download.pytorch.org/whl/cpu" in page
    # the PyPI line only after the sentence that says it is for after a release
    assert page.index("After a release on PyPI") < page.index("   pip install ttame-attr  ")


def test_index_and_quickstart_show_the_example_figure() -> None:
    assert FIGURE.is_file() and FIGURE.read_bytes()[:4] == b"\x89PNG"
    assert FIGURE.stat().st_size < 150_000
    for page in ("index.rst", "quickstart.rst"):
        assert "_static/example_explanations.png" in (DOCS / page).read_text(encoding="utf-8"), page
