"""The HTML reports (the audit's and the demo's) in a real browser: headless Chromium.

Each page is copied with two scripts injected: one at the top of ``<head>`` records every error
event (script errors, and resources that fail to load), one at the end checks every ``<img>``
after the page's ``load`` event (``complete`` and ``naturalWidth > 0``) and writes the findings
into the DOM, which ``chromium --dump-dom`` prints. ``scripts/test.sh`` installs Debian's
``chromium`` when it is missing; without it these tests fail (they never skip).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fake_store import planted  # noqa: E402

from ttame_attr import audit  # noqa: E402
from ttame_attr.demo._report import write_report  # noqa: E402
from ttame_attr.viz._html import array_to_png  # noqa: E402

_HEAD = """<script>window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(e.message || ("failed to load " + (e.target && (e.target.src || e.target.href))));
}, true);</script>"""
_TAIL = """<script>window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt || i.src.slice(0, 40); });
  var out = document.createElement("pre");
  out.id = "__check";
  out.textContent = JSON.stringify({errors: window.__errors, images: imgs.length, broken: broken});
  document.body.appendChild(out);
});</script>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=10000"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: the HTML reports are checked in headless Chromium. "
                    "scripts/test.sh installs it (apt-get install -y chromium, as root); install it, rerun.")
    return path


def render(page: Path, tmp: Path) -> dict:
    """Open a copy of ``page`` in headless Chromium; ``{errors, images, broken}`` after load."""
    text = page.read_text(encoding="utf-8")
    text = text.replace("<head>", "<head>" + _HEAD, 1).replace("</body>", _TAIL + "</body>", 1)
    copy = tmp / f"checked_{page.name}"
    copy.write_text(text, encoding="utf-8")
    cmd = [chromium(), *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", copy.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="__check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no result from chromium (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _audit_page(tmp: Path) -> tuple[Path, int]:
    store, _ = planted(n_per_class=20)
    rng = np.random.default_rng(0)
    report = audit(store, images=lambda index: rng.random((3, 64, 64)).astype(np.float32), examples=3)
    _, page = report.write(tmp / "audit")
    return page, page.read_text().count("<img ")


def test_audit_report_renders_without_errors(tmp_path) -> None:
    page, n = _audit_page(tmp_path)
    result = render(page, tmp_path)
    assert result["errors"] == [] and result["broken"] == []
    assert result["images"] == n > 10


def test_demo_report_renders_without_errors(tmp_path) -> None:
    png = array_to_png(np.random.default_rng(0).random((20, 30, 3)))
    metrics = {m: {k: 1.0 for k in ("ad_100", "ad_50", "ad_15", "ic_100", "ic_50", "ic_15", "road_morf",
                                    "road_lerf", "pointing_game")} for m in ("T-TAME", "Grad-CAM")}
    page = write_report(tmp_path / "report.html", summary=[("data", "tiny")], metrics=metrics,
                        metrics_note="note", figures={"a": (png, "first"), "b": (png, "second")})
    result = render(page, tmp_path)
    assert result == {"errors": [], "images": 2, "broken": []}


def test_the_check_sees_broken_images_and_script_errors(tmp_path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head></head><body>"
                    "<img alt='gone' src='data:image/png;base64,AAAA'>"
                    "<script>undefined_function();</script></body></html>")
    result = render(page, tmp_path)
    assert result["broken"] == ["gone"]
    assert any("undefined_function" in e for e in result["errors"])
