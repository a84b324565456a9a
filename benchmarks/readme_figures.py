"""Figures quoted in README, checked against (or rewritten from) the committed results.

A figure in README is the text between an opening and a closing marker::

    timm <!-- results: benchmarks/results/zoo.json#coverage.timm.fraction -->74/74<!-- /results -->

    <!-- results: benchmarks/results/quality.md#cnn -->
    | method | AD 100% ↓ | ...
    <!-- /results -->

* ``FILE`` (before ``#``) is relative to the repository root: a results ``.json`` or ``.md``.
* ``FILE.json#PATH``: ``PATH`` is a dotted path into the JSON (dict keys, list indices), e.g.
  ``backbones.cnn.methods.T-TAME.ad_15``; a key that holds dots itself is found too (the longest
  key that matches wins). Keys may contain spaces, ``/``, ``+`` and ``-``.
* ``FILE.md#NAME``: the text between ``<!-- table: NAME -->`` and ``<!-- /table -->`` in the
  ``.md`` (``quality.md`` marks ``<backbone>`` and ``<backbone>-road``; ``zoo.md`` ``coverage``
  and ``failures``; ``speed.md`` ``ratios``; ``imputation.md`` ``solvers``).
* ``format="..."`` (optional, after the path): a Python format string applied to the value, e.g.
  ``#summary.cg_over_direct format="{:.1f}x" -->15.0x<!-- /results -->``, or ``{:.1%}``;
  without it strings are inserted as they are and numbers with ``str()``.
* Inline figure: markers and value on one line. Block (a whole table): the markers on their own
  lines; the value goes between them, ending with a newline.

Generated tables: a whole table built from one results ``.json`` by a named builder, one marker
pair per table::

    <!-- results-table: benchmarks/results/quality.json#ad-ic -->
    | method | CNN AD 15% ↓ | ...
    <!-- /results-table -->

The builders (``TABLES``): ``ad-ic`` (``quality.json``: AD 15% and IC 15%, mean ± std over the
seeds, per backbone; bold where the run claims the method first, italic for a best mean within
the spread), ``speed`` (``speed.json``: the ratios over a plain forward pass and a training step's
floor) and ``coverage`` (``zoo.json``: zero-config coverage per library).

``python benchmarks/readme_figures.py --check`` (the default) exits 1 and lists every figure or
table that differs from its source (or whose source is missing); ``--write`` rewrites them from
the committed results. ``tests/benchmarks/test_readme_figures.py`` runs the check on README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

OPEN = re.compile(r"<!--\s*results:")
MARK = re.compile(
    r"<!--\s*results:\s*(?P<file>[^#\s]+)#(?P<path>[^\n]+?)"
    r'(?:\s+format="(?P<fmt>[^"\n]*)")?\s*-->(?P<body>.*?)<!--\s*/results\s*-->',
    re.S,
)


TABLE_OPEN = re.compile(r"<!--\s*results-table:")
TABLE_MARK = re.compile(
    r"<!--\s*results-table:\s*(?P<file>[^#\s]+)#(?P<path>[^\s>]+)\s*-->(?P<body>.*?)"
    r"<!--\s*/results-table\s*-->",
    re.S,
)


class FigureError(ValueError):
    """A marker whose source cannot give a value."""


@dataclass
class Figure:
    """One marked figure of a README."""

    file: str
    path: str
    fmt: str | None
    body: str
    start: int  # of the body in the text
    end: int
    line: int

    table: bool = False  # a generated table: ``path`` names a builder of ``TABLES``

    @property
    def block(self) -> bool:
        return self.table or self.body.startswith("\n")

    def where(self) -> str:
        return f"line {self.line}: {self.file}#{self.path}"


def find_figures(text: str) -> list[Figure]:
    """Every marked figure of ``text``; raises :class:`FigureError` on an unclosed marker."""
    figures = [
        Figure(m["file"], m["path"].strip(), m["fmt"], m["body"], m.start("body"), m.end("body"),
               text.count("\n", 0, m.start()) + 1)
        for m in MARK.finditer(text)
    ]
    opened = len(OPEN.findall(text))
    if opened != len(figures):
        raise FigureError(f"{opened} opening markers but {len(figures)} closed figures: every "
                          "'<!-- results: FILE#PATH -->' needs a '<!-- /results -->'")
    tables = [
        Figure(m["file"], m["path"], None, m["body"], m.start("body"), m.end("body"),
               text.count("\n", 0, m.start()) + 1, table=True)
        for m in TABLE_MARK.finditer(text)
    ]
    opened = len(TABLE_OPEN.findall(text))
    if opened != len(tables):
        raise FigureError(f"{opened} opening table markers but {len(tables)} closed tables: every "
                          "'<!-- results-table: FILE#NAME -->' needs a '<!-- /results-table -->'")
    return sorted(figures + tables, key=lambda fig: fig.start)


def json_value(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``data`` (longest matching key first at each level)."""
    parts = path.split(".")
    value = data
    while parts:
        if isinstance(value, dict):
            for n in range(len(parts), 0, -1):
                key = ".".join(parts[:n])
                if key in value:
                    value, parts = value[key], parts[n:]
                    break
            else:
                raise FigureError(f"no key {parts[0]!r} (keys: {sorted(value)[:12]})")
        elif isinstance(value, list) and parts[0].lstrip("-").isdigit():
            index = int(parts.pop(0))
            if not -len(value) <= index < len(value):
                raise FigureError(f"index {index} out of range (length {len(value)})")
            value = value[index]
        else:
            raise FigureError(f"cannot look up {parts[0]!r} in a {type(value).__name__}")
    return value


def md_section(text: str, name: str) -> str:
    """The text between ``<!-- table: name -->`` and the next ``<!-- /table -->``."""
    m = re.search(rf"<!--\s*table:\s*{re.escape(name)}\s*-->\n(.*?)<!--\s*/table\s*-->", text, re.S)
    if m is None:
        raise FigureError(f"no '<!-- table: {name} -->' section")
    return m[1]


def _render(value: Any, fmt: str | None) -> str:
    if fmt is not None:
        try:
            return fmt.format(value)
        except (ValueError, TypeError, IndexError, KeyError) as err:
            raise FigureError(f"format {fmt!r} cannot format {value!r}: {err}") from err
    if isinstance(value, (dict, list)):
        raise FigureError("the value is a JSON object or list: point at a single value")
    return value if isinstance(value, str) else str(value)


def expected_body(fig: Figure, root: Path, loaded: dict[Path, Any] | None = None) -> str:
    """What the figure's body should be, from its source file under ``root``."""
    loaded = {} if loaded is None else loaded
    source = root / fig.file
    if source not in loaded:
        if not source.is_file():
            raise FigureError(f"{fig.file} does not exist")
        text = source.read_text()
        loaded[source] = json.loads(text) if source.suffix == ".json" else text
    data = loaded[source]
    if fig.table:
        if fig.path not in TABLES:
            raise FigureError(f"no table builder {fig.path!r} (builders: {sorted(TABLES)})")
        if source.suffix != ".json":
            raise FigureError("a generated table reads a results .json")
        return "\n" + TABLES[fig.path](data).rstrip("\n") + "\n"
    value = json_value(data, fig.path) if source.suffix == ".json" else md_section(data, fig.path)
    text = _render(value, fig.fmt)
    if fig.block:
        return "\n" + text.rstrip("\n") + "\n"
    if "\n" in text.strip("\n"):
        raise FigureError("a multi-line value in an inline figure: put the markers on lines of "
                          "their own")
    return text.strip("\n")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _mean_std(method: dict, first: dict, name: str, key: str) -> str:
    """``mean ± std`` of ``method``'s ``key`` to one decimal; bold when the run claims it first,
    italic when it has the best mean within the spread."""
    try:
        mean, std = method[key], method["std"][key]
    except KeyError as err:
        raise FigureError(f"no {err} for {name}") from err
    text = f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"
    rank = first.get(key, {})
    if rank.get("first") == name:
        return f"**{text}**"
    return f"*{text}*" if name in rank.get("tied_best", ()) else text


def table_ad_ic(data: dict) -> str:
    """``quality.json``: AD 15% and IC 15% of every method, per backbone."""
    backbones = json_value(data, "backbones")
    methods: list[str] = []
    for report in backbones.values():
        methods += [m for m in report["methods"] if m not in methods]
    head = ["method"]
    for name in backbones:
        label = {"cnn": "CNN", "vit": "ViT", "swin": "Swin"}.get(name, name)
        head += [f"{label} AD 15% ↓", f"{label} IC 15% ↑"]
    lines = [_row(head), "|---|" + "---:|" * (len(head) - 1)]
    for method in methods:
        cells = [method]
        for report in backbones.values():
            scores = report["methods"].get(method)
            cells += ([_mean_std(scores, report.get("first", {}), method, key)
                       for key in ("ad_15", "ic_15")] if scores else ["–", "–"])
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


SPEED_ROWS = ("attribute/forward", "explain/forward", "gradcam/forward", "fit step/floor",
              "fit peak mem/floor")


def table_speed(data: dict) -> str:
    """``speed.json``: time (and memory) ratios per model, fp32."""
    ratios = json_value(data, "ratios")
    lines = [_row(["ratio (A / B)", *ratios]), "|---|" + "---:|" * len(ratios)]
    for row in SPEED_ROWS:
        cells = [row]
        for by_precision in ratios.values():
            value = by_precision.get("fp32", {}).get(row)
            cells.append("" if value is None else f"{value:.2f}")
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def table_coverage(data: dict) -> str:
    """``zoo.json``: models that work zero-config, per library."""
    coverage = json_value(data, "coverage")
    lines = [_row(["library", "models that work", "excluded (with the reason)"]), "|---|---:|---:|"]
    for library, row in coverage.items():
        lines.append(_row([library, row["fraction"], str(row.get("excluded", 0))]))
    return "\n".join(lines) + "\n"


TABLES = {"ad-ic": table_ad_ic, "speed": table_speed, "coverage": table_coverage}


def check(readme: Path, root: Path | None = None) -> list[str]:
    """Problems of ``readme``'s figures (empty: every figure equals its source)."""
    root = readme.resolve().parent if root is None else root
    try:
        figures = find_figures(readme.read_text())
    except FigureError as err:
        return [f"{readme}: {err}"]
    problems, loaded = [], {}
    for fig in figures:
        try:
            want = expected_body(fig, root, loaded)
        except FigureError as err:
            problems.append(f"{readme} {fig.where()}: {err}")
            continue
        if fig.body != want:
            problems.append(f"{readme} {fig.where()}: README has {fig.body.strip()!r}, the "
                            f"results say {want.strip()!r}")
    return problems


def write(readme: Path, root: Path | None = None) -> int:
    """Rewrite every figure of ``readme`` from its source; returns how many changed."""
    root = readme.resolve().parent if root is None else root
    text = readme.read_text()
    changed, loaded, pieces, last = 0, {}, [], 0
    for fig in find_figures(text):
        want = expected_body(fig, root, loaded)
        changed += want != fig.body
        pieces += [text[last:fig.start], want]
        last = fig.end
    pieces.append(text[last:])
    if changed:
        readme.write_text("".join(pieces))
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare (the default)")
    mode.add_argument("--write", action="store_true", help="rewrite the figures from the results")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--root", type=Path, default=None,
                   help="folder the results paths are relative to (default: the README's)")
    args = p.parse_args(argv)
    if args.write:
        try:
            n = write(args.readme, args.root)
        except FigureError as err:
            print(f"{args.readme}: {err}", file=sys.stderr)
            return 1
        print(f"{args.readme}: {n} figure(s) rewritten")
        return 0
    problems = check(args.readme, args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        n = len(find_figures(args.readme.read_text()))
        print(f"{args.readme}: {n} figure(s), all equal to the committed results")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
