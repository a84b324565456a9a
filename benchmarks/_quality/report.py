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


def _fmt(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if key.startswith(("ad_", "ic_")):
        return f"{value:.2f}"
    return f"{value:.3f}"


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


def markdown_table(backbone: str, result: dict[str, Any]) -> str:
    """A Markdown table of every method's metrics (best of each column in bold)."""
    methods: dict[str, dict[str, Any]] = result["methods"]
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " | s / image |"
    rule = "|---|" + "---:|" * (len(COLUMNS) + 1)
    lines = [header, rule]
    best = {key: ranks(methods, key, hi) for key, _, hi in COLUMNS}
    for name, res in methods.items():
        cells = []
        for key, _, _ in COLUMNS:
            text = _fmt(key, res[key])
            cells.append(f"**{text}**" if best[key][name] == 1 else text)
        sec = res["seconds_per_image"]
        cells.append(f"{sec:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    info = result.get("classifier", {})
    acc = info.get("test_accuracy", info.get("accuracy"))
    title = f"### {backbone}: {result['n_images']} held-out images"
    if acc is not None:
        title += f", classifier accuracy {100 * float(acc):.1f}%"
    notes = (
        "\nAD/IC: Average Drop / Increase in Confidence (%) keeping the top 100/50/15% of the "
        "min-max normalised map (soft values), removed pixels black. ROAD: mean share of images "
        "whose prediction survives removing 10-90% of pixels (noisy linear imputation), most / "
        "least relevant first. Deletion/insertion AUC of the class probability. PG: pointing "
        "game (map maximum inside the object mask); PG ±4px: the same with the usual tolerance "
        "(Zhang et al.: 15 px at 224 px, scaled to 64 px); Energy PG: share of the map inside "
        "the mask. Bold: best in column.\n"
    )
    curves = [m for m in methods.values() if "road_morf_curve" in m]
    if curves:
        fractions = next(iter(methods.values())).get("road_fractions", [])
        notes += (
            "\nROAD MoRF curve (share of predictions unchanged; chance is 1 / classes):\n\n"
            "| method | " + " | ".join(f"{round(100 * f)}%" for f in fractions) + " |\n"
            "|---|" + "---:|" * len(fractions) + "\n"
        )
        for name, res in methods.items():
            notes += f"| {name} | " + " | ".join(f"{v:.3f}" for v in res["road_morf_curve"]) + " |\n"
    status = goal_status(methods)
    if status:
        lost = [f"{k} (rank {r})" for k, r in status.items() if r != 1]
        notes += (
            "\nT-TAME first on every goal metric.\n" if not lost else
            "\nT-TAME not first on: " + ", ".join(lost) + ".\n"
        )
    return "\n".join([title, "", *lines]) + "\n" + notes


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
