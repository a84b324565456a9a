"""The tables of "How many images do I need?" (docs/studies.rst) are those of the committed run of
``benchmarks/budget.py`` (``benchmarks/results/budget.json``): every cell, rounded as printed, and
no cell for a row the run does not hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHES = {"CNN": "cnn", "ViT": "vit", "Swin": "swin"}
METRICS = {"AD 15%": ("ad_15", 2), "IC 15%": ("ic_15", 1)}
CAPTION = re.compile(r"^(AD 15%|IC 15%) of the (CNN|ViT|Swin) \((?:lower|higher) is better\):$")


def doc_tables() -> list[tuple[str, str, dict[tuple[str, int], str]]]:
    """(backbone, metric key, {(setting, images): printed cell}) of every table in the section."""
    text = (ROOT / "docs" / "studies.rst").read_text(encoding="utf-8")
    section = text.split("How many images do I need?\n", 1)[1].split("\nDead class maps", 1)[0]
    lines = section.splitlines()
    tables = []
    for i, line in enumerate(lines):
        match = CAPTION.match(line.strip())
        if not match:
            continue
        rule, head, _, *rest = lines[i + 2:]
        assert set(rule.replace(" ", "")) == {"="}, f"no table under {line!r}"
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
        sizes = [int(head[a:b].strip().replace(",", "")) for a, b in spans[1:]]
        cells: dict[tuple[str, int], str] = {}
        for row in rest:
            if set(row.replace(" ", "")) == {"="}:
                break
            setting = row[:spans[0][1]].strip()
            for (a, b), n in zip(spans[1:], sizes):
                cells[(setting, n)] = row[a:b].strip()
        tables.append((ARCHES[match[2]], METRICS[match[1]][0], cells))
    return tables


def test_every_doc_table_cell_is_the_committed_runs_figure() -> None:
    report = json.loads((ROOT / "benchmarks" / "results" / "budget.json").read_text())
    tables = doc_tables()
    assert {arch for arch, _, _ in tables} == set(report["backbones"]), \
        "the section should have tables for exactly the backbones of the committed run"
    decimals = dict(METRICS.values())
    for arch, key, cells in tables:
        rows = {(r["setting"], r["n_train"]): r for r in report["backbones"][arch]["rows"]}
        for (setting, n), printed in cells.items():
            if (setting, n) in rows:
                expected = f"{rows[(setting, n)][key]:.{decimals[key]}f}"
                assert printed == expected, f"{arch} {key} {setting} {n}: docs {printed!r}, run {expected}"
            else:
                assert printed == "", f"{arch} {key} {setting} {n}: docs {printed!r}, the run has no row"
        missing = set(rows) - set(cells)
        assert not missing, f"{arch} {key}: rows of the run missing from the docs table: {sorted(missing)}"
