"""Pieces of the package's self-contained HTML reports (the demo's and the audit's)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["STYLE", "array_to_png", "img_tag", "kv_table"]

#: The reports' style sheet.
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
td.best { font-weight: bold; background: #eef7ee; }
img { max-width: 100%; border: 1px solid #eee; }
img.wide { width: 100%; }
ul.notes li { background: #fff6e0; padding: 4px 8px; margin: 4px 0; }
.note { color: #555; font-size: 0.9em; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def img_tag(png: bytes, alt: str, **attrs: Any) -> str:
    """An ``<img>`` with the PNG embedded as base64 (``attrs``: extra attributes, e.g. width)."""
    data = base64.b64encode(png).decode("ascii")
    extra = "".join(f' {k}="{html.escape(str(v))}"' for k, v in attrs.items())
    return f'<img alt="{html.escape(alt)}"{extra} src="data:image/png;base64,{data}">'


def kv_table(items: Sequence[tuple[str, Any]]) -> str:
    """A two-column HTML table of ``(label, value)`` rows."""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"


def array_to_png(image: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` float image in [0, 1] as PNG bytes (Pillow)."""
    from PIL import Image

    data = (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return buffer.getvalue()
