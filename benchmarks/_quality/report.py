"""Markdown tables and overlay figures of the quality benchmark."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import Tensor

#: (key in the per-method results, column title, higher is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("ad_100", "AD 100% ↓", False),
    ("ad_50", "AD 50% ↓", False),
    ("ad_15", "AD 15% ↓", False),
    ("ic_100", "IC 100% ↑", True),
    ("ic_50", "IC 50% ↑", True),
    ("ic_15", "IC 15% ↑", True),
    ("road_morf", "ROAD MoRF ↓", False),
    ("road_lerf", "ROAD LeRF ↑", True),
    ("deletion_auc", "Del. AUC ↓", False),
    ("insertion_auc", "Ins. AUC ↑", True),
    ("pointing_game", "PG ↑", True),
    ("pointing_game_tol", "PG ±4px ↑", True),
    ("energy_pointing_game", "Energy PG ↑", True),
)

#: Metrics on which the benchmark's goal asks T-TAME to be first.
GOAL_KEYS: tuple[str, ...] = (
    "ad_100", "ad_50", "ad_15", "ic_100", "ic_50", "ic_15", "road_morf", "pointing_game",
)


def _fmt(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if key.startswith(("ad_", "ic_")):
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(key: str, res: dict[str, Any]) -> str:
    """``mean ± std`` (just the mean for one seed)."""
    std = res.get("std", {}).get(key)
    text = _fmt(key, res[key])
    return text if std is None else f"{text} ± {_fmt(key, std)}"


def ranks(methods: dict[str, dict[str, Any]], key: str, higher: bool) -> dict[str, int]:
    """Rank of each method on ``key`` (1 = best; ties share the better rank)."""
    values = {name: res[key] for name, res in methods.items()}
    out = {}
    for name, v in values.items():
        better = sum(1 for w in values.values() if (w > v if higher else w < v))
        out[name] = 1 + better
    return out


def goal_status(methods: dict[str, dict[str, Any]], method: str = "T-TAME") -> dict[str, int]:
    """``{metric: rank of method}`` over :data:`GOAL_KEYS`."""
    higher = {k: h for k, _, h in COLUMNS}
    return {k: ranks(methods, k, higher[k])[method] for k in GOAL_KEYS if method in methods}


def metrics_table(result: dict[str, Any]) -> str:
    """The metrics table of one backbone: ``mean ± std`` over seeds per method and column;
    **bold**: claimed first (lead beyond the spread), *italic*: best mean within the spread;
    ``s / image`` marked ``*`` where the maps came from the map cache."""
    methods: dict[str, dict[str, Any]] = result["methods"]
    claims = result.get("first", {})
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " | s / image |"
    lines = [header, "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for name, res in methods.items():
        cells = []
        for key, _, _ in COLUMNS:
            text, claim = _cell(key, res), claims.get(key, {})
            if name in claim.get("tied_best", [claim.get("best")]):
                text = f"**{text}**" if claim.get("claimed") else f"*{text}*"
            cells.append(text)
        mark = "" if res.get("timing", "interleaved") == "interleaved" else "*"
        cells.append(f"{res['seconds_per_image']:.4f}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def road_table(result: dict[str, Any]) -> str:
    """The ROAD MoRF curve of each method (mean over seeds) per removed fraction."""
    methods = result["methods"]
    fractions = next(iter(methods.values())).get("road_fractions", [])
    text = ("| method | " + " | ".join(f"{round(100 * f)}%" for f in fractions) + " |\n"
            "|---|" + "---:|" * len(fractions) + "\n")
    for name, res in methods.items():
        text += f"| {name} | " + " | ".join(f"{v:.3f}" for v in res["road_morf_curve"]) + " |\n"
    return text


METRIC_NOTES = (
    "AD/IC: Average Drop / Increase in Confidence (%) keeping the pixels at or above the "
    "0/50/85% quantiles of the min-max normalised map (soft values), removed pixels black (the "
    "paper's protocol; T-TAME's pre-sigmoid map min-max scaled at its own size). ROAD: mean share of images "
    "whose prediction survives removing 10-90% of pixels (noisy linear imputation), most / "
    "least relevant first. Deletion/insertion AUC of the class probability. PG: pointing "
    "game (map maximum inside the object mask); PG ±4px: the same with the usual tolerance "
    "(Zhang et al.: 15 px at 224 px, scaled to 64 px); Energy PG: share of the map inside "
    "the mask."
)


def _claims_note(result: dict[str, Any]) -> str:
    seeds = result.get("seeds", [0])
    spread = (
        f"Cells: mean ± sample standard deviation (n - 1) over the {len(seeds)} seeds. "
        if len(seeds) > 1 else "One seed: no spread, so no method is claimed first. "
    )
    return (
        spread + "**Bold**: first, its lead over the second best mean larger than the sum of "
        "the two standard deviations; *italic*: best mean (ties: all of them), the lead within "
        "that spread (no claim). s / image: mean over seeds of the seconds per image, every method timed in "
        "one interleaved pass over the images (chunk by chunk, rotating order); * maps loaded "
        "from the map cache: the time was measured in the run that computed them, not "
        "interleaved with the other rows."
    )


def _goal_note(result: dict[str, Any]) -> str:
    claims = result.get("first", {})
    status = goal_status(result["methods"])
    if not status:
        return ""
    first = [k for k in status if claims.get(k, {}).get("first") == "T-TAME"]
    within = [k for k in status if k not in first and status[k] == 1]
    lost = [f"{k} (rank {r})" for k, r in status.items() if r != 1]
    parts = [f"first on {', '.join(first) or 'none'}"]
    if within:
        parts.append(f"best mean within the spread on {', '.join(within)}")
    if lost:
        parts.append(f"not best on {', '.join(lost)}")
    return "T-TAME on the goal metrics: " + "; ".join(parts) + "."


def title(backbone: str, result: dict[str, Any]) -> str:
    seeds = result.get("seeds", [0])
    text = f"### {backbone}: {result['n_images']} held-out images x {len(seeds)} seed" + (
        "s" if len(seeds) > 1 else "") + f" ({', '.join(map(str, seeds))})"
    acc = result.get("eval_accuracy", {}).get("mean")
    if acc is not None:
        text += f", classifier accuracy {100 * float(acc):.1f}% on them"
    return text + "\n\n" + provenance(result)


def provenance(result: dict[str, Any]) -> str:
    """One line on how each seed's piece was computed: clean (no cache read) or not, and when."""
    parts = []
    for seed, piece in result.get("pieces", {}).items():
        done = piece.get("computed") or {}
        how = {False: "clean (no cache read)", True: "caches read"}.get(done.get("read_cache"),
                                                                          "not recorded")
        commit = ((done.get("git") or {}).get("commit") or "")[:12]
        parts.append(f"seed {seed}: {how}" + (f", {done['date']}, commit {commit}"
                                               if done.get("date") else ""))
    verdict = "Every piece computed without reading a cache" if result.get("clean") else (
        "Not a clean run: some pieces read a cache or do not say")
    return f"{verdict} ({'; '.join(parts)})."


def _marked(name: str, table: str, marked: bool) -> str:
    return f"<!-- table: {name} -->\n{table}<!-- /table -->\n" if marked else table


def markdown_table(backbone: str, result: dict[str, Any], marked: bool = False) -> str:
    """One backbone's section: title, metrics table, notes, ROAD MoRF curve, goal status.

    ``marked``: the two tables between ``<!-- table: <backbone> -->`` (and
    ``<backbone>-road``) and ``<!-- /table -->``, the names ``readme_figures.py`` finds them by.
    """
    return "\n".join([
        title(backbone, result), "", _marked(backbone, metrics_table(result), marked),
        METRIC_NOTES, "", _claims_note(result), "",
        "ROAD MoRF curve (share of predictions unchanged; chance is 1 / classes):", "",
        _marked(f"{backbone}-road", road_table(result), marked), _goal_note(result), "",
    ])


def _overlay(image: Tensor, heat: Tensor) -> Any:
    import numpy as np
    from matplotlib import colormaps

    h = heat.float()
    h = (h - h.min()) / (h.max() - h.min()).clamp_min(1e-12)
    rgb = colormaps["jet"](h.numpy())[..., :3]
    img = image.permute(1, 2, 0).numpy()
    return np.clip(0.5 * img + 0.5 * rgb, 0, 1)


def figure(
    path: Path,
    backbone: str,
    images: Tensor,
    gt_masks: Tensor,
    maps: dict[str, Tensor],
    labels: list[str],
) -> None:
    """Grid of overlays: one row per image, columns image, ground truth, then each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    cols = 2 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for r in range(n):
        img = images[r]
        axes[r, 0].imshow(img.permute(1, 2, 0).numpy())
        axes[r, 0].set_ylabel(labels[r], fontsize=7)
        axes[r, 1].imshow(img.permute(1, 2, 0).numpy())
        axes[r, 1].contour(gt_masks[r, 0].numpy(), levels=[0.5], colors="w", linewidths=0.8)
        for c, (name, m) in enumerate(maps.items()):
            axes[r, 2 + c].imshow(_overlay(img, m[r, 0]))
            if r == 0:
                axes[r, 2 + c].set_title(name, fontsize=8)
        if r == 0:
            axes[r, 0].set_title("image", fontsize=8)
            axes[r, 1].set_title("object", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{backbone}: explanations of the predicted class", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
