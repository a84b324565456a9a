"""The scale check of ``benchmarks/audit.py``: the audit's time and peak memory against the explain step's.

At ``n / 10`` and ``n`` images (``--scale-images``) of the planted-shortcut data:

- **explain**: ``explain_dataset`` writing the store from the images already rendered in memory (a
  ``TensorDataset``: no image decoding, so the cheapest explain step there is; the ratio below is
  the least favourable to the audit), timed in the benchmark's process;
- **audit**: in a fresh process (as ``ttame audit STORE --out DIR`` runs it, the store already
  written): the one-off import of scikit-learn, ``audit(store)`` and ``report.write(out)``
  (``audit.json`` and ``audit.html``), with the process's peak RSS (``VmHWM``, which ``exec``
  resets) after its imports and at the end.

Both are given in wall-clock seconds and in CPU seconds of their process (which other processes
competing for the cores do not inflate). The audit's cost per image is the difference of its CPU
time (without the import) between the two sizes, divided by the difference of images.

The tiny 64-px CNN explains an image in about a millisecond, so the audit's fixed costs (the
scikit-learn import, k-means on at most 1,000 maps per class, the HTML) weigh against it at 20,000
images; ``--scale-realistic N`` also times ``explain_dataset`` with torchvision's ResNet-50 at
224 px (``weights=None``: the cost does not depend on the weights) on ``N`` images and gives the
audit's time over that explain cost *extrapolated* to the scale check's images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from ttame_attr import TTAME, explain_dataset

# Run with ``python -c PROBE STORE OUT``; prints one JSON line.
PROBE = r"""
import json, re, sys, time

def hwm():
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) / 1024

def now():
    return time.perf_counter(), time.process_time()

marks = [now()]
from ttame_attr import audit
marks.append(now())
import sklearn.cluster, sklearn.metrics  # the audit's one-off import of scikit-learn, timed on its own
marks.append(now())
after_imports = hwm()
report = audit(sys.argv[1], max_images=1000)
marks.append(now())
report.write(sys.argv[2])
marks.append(now())
print(json.dumps({"wall": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
                  "cpu": [b[1] - a[1] for a, b in zip(marks, marks[1:])],
                  "rss_after_imports_mib": after_imports, "peak_rss_mib": hwm()}))
"""


def _probe(store: Path, out: Path, code: Path | None = None) -> dict[str, Any]:
    """The audit of ``store`` in a fresh process: its times (import, call, write) and peak memory;
    with ``code``, the ``ttame_attr`` of that checkout (run from another folder, so that it is the
    one imported)."""
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(store), str(out)], check=True,
                          capture_output=True, text=True, env=env, cwd=None if code is None else out.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale_check(explainer: TTAME, render: Callable[[int], Dataset], images: int, tmp: Path,
                baseline: Path | None = None) -> dict[str, Any]:
    """Explain and audit ``render(n)`` for ``n`` = ``images // 10`` and ``images``; times, ratios and
    peak memory; with ``baseline`` (another checkout), its audit of the same stores too."""
    out: dict[str, Any] = {}
    sizes = (images // 10, images)
    for n in sizes:
        data = render(n)
        t0, c0 = time.perf_counter(), time.process_time()
        store = explain_dataset(explainer, data, tmp / f"scale_{n}", batch_size=256, progress=False)
        explain, explain_cpu = time.perf_counter() - t0, time.process_time() - c0
        out["map_size"] = list(store.map_size)
        p = _probe(tmp / f"scale_{n}", tmp / f"scale_{n}_audit")
        _, sk, call, write = p["wall"]
        audit_wall, audit_cpu = sk + call + write, sum(p["cpu"][1:])
        out[str(n)] = {"explain_seconds": round(explain, 2), "explain_cpu_seconds": round(explain_cpu, 2),
                       "audit_seconds": round(audit_wall, 2), "audit_cpu_seconds": round(audit_cpu, 2),
                       "audit_parts_seconds": {"import_sklearn": round(sk, 2), "audit": round(call, 2),
                                               "write": round(write, 2)},
                       "audit_without_import_cpu_seconds": round(p["cpu"][2] + p["cpu"][3], 3),
                       "audit_over_explain": round(audit_wall / explain, 4),
                       # both steps as timed in a running process, their imports left out on both sides
                       "audit_step_over_explain": round((call + write) / explain, 4),
                       "audit_over_explain_cpu": round(audit_cpu / explain_cpu, 4),
                       "audit_peak_rss_mib": round(p["peak_rss_mib"], 1),
                       "rss_after_imports_mib": round(p["rss_after_imports_mib"], 1)}
        if baseline is not None:
            b = _probe(tmp / f"scale_{n}", tmp / f"scale_{n}_baseline", baseline)
            out[str(n)]["baseline"] = {"audit_seconds": round(sum(b["wall"][1:]), 2),
                                       "audit_cpu_seconds": round(sum(b["cpu"][1:]), 2),
                                       "audit_peak_rss_mib": round(b["peak_rss_mib"], 1)}
        print(f"   scale {n}: {out[str(n)]}", flush=True)
    if sizes[1] > sizes[0]:
        small, big = out[str(sizes[0])], out[str(sizes[1])]
        images = sizes[1] - sizes[0]
        out["per_image_us"] = {
            "audit_cpu": round(1e6 * (big["audit_without_import_cpu_seconds"]
                                      - small["audit_without_import_cpu_seconds"]) / images, 1),
            "explain_cpu": round(1e6 * (big["explain_cpu_seconds"] - small["explain_cpu_seconds"]) / images,
                                 1),
            "peak_rss_growth_bytes": round((big["audit_peak_rss_mib"] - small["audit_peak_rss_mib"])
                                           * 2 ** 20 / images)}
    return out


def realistic_explain(images: int, seed: int = 0) -> dict[str, Any]:
    """``explain_dataset`` with torchvision's ResNet-50 (``weights=None``) at 224 px on ``images``
    random images, after a warm-up batch: the explain step's time per image with a realistic model."""
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    explainer = TTAME(resnet50(weights=None).eval(), input_size=(3, 224, 224))
    data = TensorDataset(torch.rand(images, 3, 224, 224), torch.zeros(images, dtype=torch.long))
    with tempfile.TemporaryDirectory(prefix="ttame_audit_resnet50_") as tmp:
        warmup = TensorDataset(*data[:8])
        explain_dataset(explainer, warmup, Path(tmp) / "warmup", batch_size=8, progress=False)
        t0, c0 = time.perf_counter(), time.process_time()
        store = explain_dataset(explainer, data, Path(tmp) / "store", batch_size=32, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        map_size = list(store.map_size)
    out = {"model": "torchvision resnet50 (weights=None), T-TAME head, 224x224", "images": images,
           "map_size": map_size, "explain_seconds": round(wall, 2), "explain_cpu_seconds": round(cpu, 2),
           "ms_per_image": round(1e3 * wall / images, 1), "cpu_ms_per_image": round(1e3 * cpu / images, 1)}
    print(f"   realistic explain: {out}", flush=True)
    return out


def _cell(s: dict[str, Any], key: str, fmt: str = "{}") -> str:
    return fmt.format(s[key]) if key in s else "–"


def scale_markdown(scale: dict[str, Any], title: str, realistic: dict[str, Any] | None = None) -> list[str]:
    """The markdown lines of one scale check (older runs lack the CPU columns: shown as –)."""
    lines = ["", f"**{title}**", "",
             "| images | explain s (CPU s) | audit s (CPU s) | of which: sklearn import / audit() / write s "
             "| audit / explain (CPU) | audit() + write / explain | audit peak RSS MiB (after imports) |",
             "|---:|---:|---:|---|---:|---:|---:|"]
    for n, s in scale.items():
        if not n.isdigit():
            continue  # "map_size", "per_image_us"
        parts = s.get("audit_parts_seconds")
        split = " / ".join(str(parts[k]) for k in ("import_sklearn", "audit", "write")) if parts else "–"
        lines.append(f"| {n} | {s['explain_seconds']} ({_cell(s, 'explain_cpu_seconds')}) | "
                     f"{s['audit_seconds']} ({_cell(s, 'audit_cpu_seconds')}) | {split} | "
                     f"{s['audit_over_explain']:.3f} ({_cell(s, 'audit_over_explain_cpu', '{:.3f}')}) | "
                     f"{_cell(s, 'audit_step_over_explain', '{:.3f}')} | "
                     f"{s['audit_peak_rss_mib']} ({_cell(s, 'rss_after_imports_mib')}) |")
    if not any(isinstance(s, dict) and "audit_parts_seconds" in s for s in scale.values()):
        lines += ["", "(An earlier version of the check: ``audit()`` alone in a fresh process, "
                      "scikit-learn's import included, without writing audit.json/html; wall-clock only.)"]
    lines += ["", "audit / explain: the audit as ``ttame audit`` runs it, in a fresh process that "
                  "also imports scikit-learn; audit() + write / explain: the audit step on the same "
                  "footing as the explain step, which is timed in the benchmark's running process "
                  "(torch and the model already loaded): neither counts its process's imports."]
    base = {n: s["baseline"] for n, s in scale.items() if isinstance(s, dict) and "baseline" in s}
    if base:
        lines += ["", "The audit of the baseline checkout on the same stores, side by side: " + "; ".join(
            f"{n} images {b['audit_seconds']} s ({b['audit_cpu_seconds']} CPU s), peak RSS "
            f"{b['audit_peak_rss_mib']} MiB" for n, b in base.items()) + "."]
    if "per_image_us" in scale:
        u = scale["per_image_us"]
        lines += ["", f"Per image (difference between the two sizes, CPU): audit {u['audit_cpu']} µs "
                      f"(without the scikit-learn import; it includes the clustering's growth until a class "
                      f"reaches the 1,000 maps k-means is fitted on), explain {u['explain_cpu']} µs; the "
                      f"audit's peak RSS grows by {u['peak_rss_growth_bytes']} bytes per image (with the "
                      "silhouettes' bounded working memory)."]
    if realistic:
        n = max(int(k) for k in scale if k.isdigit())
        audit_s = scale[str(n)]["audit_seconds"]
        extrapolated = realistic["ms_per_image"] * n / 1e3
        lines += ["", f"Against a realistic model ({realistic['model']}, maps {realistic['map_size']}): its "
                      f"explain step took {realistic['ms_per_image']} ms per image ({realistic['images']} "
                      f"images, {realistic['cpu_ms_per_image']} CPU ms); *extrapolated* to {n} images, "
                      f"{extrapolated:.0f} s, so the audit above ({audit_s} s, on maps "
                      f"{scale.get('map_size', '?')}) would be {audit_s / extrapolated:.4f} of it."]
    return lines
