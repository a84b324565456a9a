"""The demo's self-contained HTML report (images embedded as base64 PNGs)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ttame_attr.viz._html import STYLE, img_tag, kv_table

__all__ = ["metrics_table_rows", "write_report"]

#: (column title, key in the per-method metrics dict, True if higher is better)
_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("AD 100% &darr;", "ad_100", False),
    ("AD 50% &darr;", "ad_50", False),
    ("AD 15% &darr;", "ad_15", False),
    ("IC 100% &uarr;", "ic_100", True),
    ("IC 50% &uarr;", "ic_50", True),
    ("IC 15% &uarr;", "ic_15", True),
    ("ROAD MoRF &darr;", "road_morf", False),
    ("ROAD LeRF &uarr;", "road_lerf", True),
    ("Pointing game &uarr;", "pointing_game", True),
)


def metrics_table_rows(metrics: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    """The metrics table as text rows (header first), as printed by the demo."""
    header = ["method"] + [html.unescape(t) for t, _, _ in _COLUMNS]
    return [header] + [[method] + [f"{values[key]:.2f}" for _, key, _ in _COLUMNS]
                       for method, values in metrics.items()]


def _metrics_html(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """The metrics table in HTML, the best value of each column marked."""
    best = {key: (max if higher else min)(v[key] for v in metrics.values()) for _, key, higher in _COLUMNS}
    head = "".join(f"<th>{t}</th>" for t, _, _ in _COLUMNS)
    body = []
    for method, values in metrics.items():
        cells = "".join(
            f'<td class="{"best" if values[key] == best[key] else ""}">{values[key]:.2f}</td>'
            for _, key, _ in _COLUMNS
        )
        body.append(f"<tr><td>{html.escape(method)}</td>{cells}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(body)}</table>"


def write_report(path: str | Path, *, summary: Sequence[tuple[str, Any]],
                 metrics: Mapping[str, Mapping[str, float]], metrics_note: str,
                 figures: Mapping[str, tuple[bytes, str]], notes: Sequence[str] = ()) -> Path:
    """Write ``report.html``: a summary, the metrics table and the figures with captions.

    Args:
        path: the HTML file to write.
        summary: ``(label, value)`` rows of the set-up (data, model, accuracy, timings).
        metrics: ``{method: {metric key: value}}``.
        metrics_note: a paragraph explaining the metrics.
        figures: ``{title: (png bytes, caption)}`` in display order.
        notes: warnings the library gave during the run (e.g. that the head may be under-trained),
            listed under the set-up; the section says so when there are none.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>T-TAME demo report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>T-TAME demo report</h1>",
        "<p>A small CNN was trained on the synthetic shapes dataset of <code>ttame_attr.data</code> "
        "(each image holds one class-defining shape among distractor shapes and clutter), then a "
        "T-TAME attention head was trained to explain it, without labels, and compared with "
        "Grad-CAM on held-out images.</p>",
        "<h2>Set-up</h2>",
        kv_table(summary),
        "<h2>Notes</h2>",
        ("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes
         else "<p class='note'>The library gave no warning during this run.</p>"),
        "<h2>Metrics</h2>",
        _metrics_html(metrics),
        f"<p class='note'>{metrics_note}</p>",
    ]
    for title, (png, caption) in figures.items():
        parts += [f"<h2>{html.escape(title)}</h2>", img_tag(png, title),
                  f"<p class='note'>{html.escape(caption)}</p>"]
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
