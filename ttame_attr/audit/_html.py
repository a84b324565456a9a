"""``audit.html``: the classes ranked, and for each class shown its mean map, groups and images.

One self-contained file: every picture is an inline base64 PNG, no script, no external link.
Pictures need matplotlib (colour maps, the ``ttame-attr[audit]`` extra) and Pillow.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ttame_attr.viz import overlay
from ttame_attr.viz._html import STYLE, array_to_png, img_tag, kv_table

__all__ = ["write_html"]

_EXTRA_STYLE = """
.gallery { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; margin: 0.4em 0 1em; }
.gallery figure { margin: 0; width: 100px; font-size: 0.75em; color: #555; text-align: center;
                  overflow-wrap: anywhere; }
.gallery img { width: 96px; height: 96px; image-rendering: pixelated; }
.gallery figure.mean { border-right: 2px solid #bbb; padding-right: 6px; }
.flag { color: #b00020; font-weight: bold; } .ok { color: #2b7a2b; }
.bar { display: inline-block; height: 0.7em; background: #d9534f; vertical-align: middle; }
td.reason, th.reason { text-align: left; max-width: 560px; font-size: 0.9em; }
"""

_HOW_TO_READ = (
    "Each class is scored from its explanations alone (no labels): 0 means nothing unusual, 1 the "
    "strongest signal. <b>position</b>: the class's explanations peak at the same spot whatever the "
    "image, unlike other classes' (a mark, tag, watermark or border); <b>border</b>: its explanations "
    "peak on the image border more often than other classes'; <b>off object</b>: they peak off the "
    "object mask more often than other classes' (stores with masks only); <b>outlier group</b>: a group of "
    "its images is explained unlike the rest of the class and alike within itself. Open the galleries "
    "of a flagged class and look at what its maps light up.")


def _heat(values: np.ndarray, size: int = 96) -> bytes:
    """A map (any size) as a colour-mapped PNG of ``size`` pixels a side (min-max scaled)."""
    m = torch.as_tensor(np.asarray(values, dtype=np.float32))[None, None]
    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[0]
    return array_to_png(overlay(np.zeros((size, size, 3), np.float32), m, alpha=1.0))


def _overlay(image: np.ndarray | None, saliency: np.ndarray) -> bytes:
    """The map over its image (or the map alone when the image is unknown)."""
    if image is None:
        return _heat(saliency)
    m = torch.as_tensor(np.asarray(saliency, dtype=np.float32))[None, None]
    m = F.interpolate(m, size=image.shape[:2], mode="bilinear", align_corners=False)[0]
    return array_to_png(overlay(image, m, alpha=0.5))


def _figure(png: bytes, caption: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f"<figure{klass}>{img_tag(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _label(c: dict[str, Any]) -> str:
    return f"{c['class']} ({c['name']})" if c.get("name") else str(c["class"])


def _ranking(report: Any) -> str:
    head = "".join(f"<th>{t}</th>" for t in ("rank", "class", "images", "score", "flagged"))
    head = f"<tr>{head}<th class='reason'>main reason</th></tr>"
    rows = []
    for rank, c in enumerate(report.classes, 1):
        bar = f'<span class="bar" style="width:{int(60 * c["score"])}px"></span>'
        flag = '<span class="flag">yes</span>' if c["flagged"] else '<span class="ok">no</span>'
        rows.append(f"<tr><td>{rank}</td><td><a href='#class-{c['class']}'>{html.escape(_label(c))}</a></td>"
                    f"<td>{c['images']}</td><td>{c['score']:.2f} {bar}</td><td>{flag}</td>"
                    f"<td class='reason'>{html.escape(c['reasons'][0] if c['reasons'] else '')}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _example_figures(pics: dict[str, Any], captions: list[str]) -> list[str]:
    return [_figure(_overlay(img, m), cap) for img, m, cap in zip(pics["images"], pics["maps"], captions)]


def _class_section(rank: int, c: dict[str, Any], pics: dict[str, Any]) -> list[str]:
    status = "flagged" if c["flagged"] else "not flagged"
    parts = [f"<h2 id='class-{c['class']}'>#{rank} class {html.escape(_label(c))}: score {c['score']:.2f} "
             f"({status})</h2>",
             f"<p>{html.escape(c['reasons'][0] if c['reasons'] else 'nothing unusual')}.</p>"]
    if len(c["reasons"]) > 1:
        parts.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in c["reasons"][1:]) + "</ul>")
    parts.append("<div class='gallery'>" + _figure(_heat(pics["mean_map"], 128), f"mean map of {c['images']} "
                 "images", "mean") + "</div>")
    if c.get("flat_maps"):
        parts.append(f"<p class='note'>{c['flat_maps']} of its {c['images']} maps are flat (no evidence) and "
                     "are left out of its groups and signals.</p>")
    records = {g["group"]: g for g in c["groups"]}
    for g in pics["groups"]:
        rec = records[g["group"]]
        parts.append(f"<h3>group {rec['group']}: {rec['size']} images ({rec['share']:.0%}), score "
                     f"{rec['score']:.2f}</h3><p class='note'>{html.escape(rec['reasons'][0])}</p>")
        figs = [_figure(_heat(g["mean"]), "group's mean evidence", "mean")]
        figs += _example_figures(g, [f"image {i}" for i in g["index"]])
        parts.append("<div class='gallery'>" + "".join(figs) + "</div>")
    top = pics["top"]
    parts.append("<h3>Images to look at</h3><p class='note'>The class's most suspicious images, with their "
                 "scores.</p>")
    captions = [f"image {i}: {s:.2f}" for i, s in zip(top["index"], pics["top_scores"])]
    parts.append("<div class='gallery'>" + "".join(_example_figures(top, captions)) + "</div>")
    return parts


def write_html(report: Any, path: str | Path) -> Path:
    """Write the self-contained ``audit.html`` of ``report`` (an :class:`~ttame_attr.audit.AuditReport`;
    not imported here, even for type hints: ``_report`` imports this module) to ``path``; returns the path."""
    manifest = report.provenance.get("manifest", {})
    model = manifest.get("model") or {}
    summary = [("store", report.provenance.get("store")), ("model", model.get("spec") or model.get("class")),
               ("images", sum(c["images"] for c in report.classes)), ("classes", len(report.classes)),
               (f"flagged (score >= {report.options['threshold']:.2f})", len(report.flagged)),
               ("audited with", report.provenance.get("audited_with"))]
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>Classifier audit</title>", f"<style>{STYLE}{_EXTRA_STYLE}</style></head><body>",
             "<h1>Classifier audit</h1>", kv_table(summary), f"<p class='note'>{_HOW_TO_READ}</p>",
             "<h2>Classes, most suspicious first</h2>", _ranking(report)]
    for rank, c in enumerate(report.classes, 1):
        if c["class"] in report.pictures:
            parts += _class_section(rank, c, report.pictures[c["class"]])
    parts.append("<h2>Options</h2>" + kv_table(sorted(report.options.items())))
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
