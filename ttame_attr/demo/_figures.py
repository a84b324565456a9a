"""The demo report's figures, as PNG bytes with their captions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ttame_attr.data import CLASS_NAMES
from ttame_attr.viz import figure_to_png, overlay, to_numpy_image, to_numpy_maps

__all__ = ["class_maps_figure", "curves_figure", "explanations_figure"]

Figure = tuple[bytes, str]


def explanations_figure(images: Tensor, truth: Tensor, predicted: Tensor, masks: Tensor,
                        maps: dict[str, Tensor], *, cell_size: float | None = None, dpi: int = 90) -> Figure:
    """The held-out images across the page, each method's map of the predicted class below
    them, and the colour scale of the maps.

    ``cell_size`` (inches per image) and ``dpi`` set the size; by default the figure is about
    1,100 pixels wide, the report's page width (images of at most 2 inches).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure as MplFigure

    imgs, outlines = to_numpy_image(images), to_numpy_maps(masks, normalize=False)
    rows = {name: to_numpy_maps(m) for name, m in maps.items()}
    n = imgs.shape[0]
    cell_size = cell_size if cell_size is not None else min(2.0, 10.8 / n)
    fig = MplFigure(figsize=(cell_size * n + 1.3, cell_size * (1 + len(rows)) + 0.35), layout="constrained")
    axes = fig.subplots(1 + len(rows), n, squeeze=False)
    for i in range(n):
        axes[0, i].imshow(imgs[i])
        axes[0, i].set_title(f"{CLASS_NAMES[int(truth[i])]}\n(pred. {CLASS_NAMES[int(predicted[i])]})",
                             fontsize=8)
        for r, m in enumerate(rows.values(), start=1):
            axes[r, i].imshow(overlay(imgs[i], m[i], alpha=0.5, cmap="jet"))
            axes[r, i].contour(outlines[i], levels=[0.5], colors="white", linewidths=0.8)
    for r, label in enumerate(["image", *rows], start=0):
        axes[r, 0].set_ylabel(label.replace(" (", "\n("), fontsize=8)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="jet"), ax=axes[1:, :].ravel().tolist(),
                       shrink=0.9, aspect=25, pad=0.01)
    bar.set_label("map value, min-max scaled\nper map (blended 50%)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return figure_to_png(fig, dpi=dpi), (
        "Top row: held-out test images (true class, predicted class). Below: each method's map "
        "of the predicted class over the image, min-max scaled per map and drawn on the colour "
        "scale at the right (red: most relevant). The white outline is the ground-truth "
        "class-defining shape; the other shapes are distractors that never define a class."
    )


def class_maps_figure(explainer: Any, image: Tensor, truth: int, pred: int) -> Figure:
    """The head's mask for every class of one image, from one forward pass."""
    from matplotlib.figure import Figure as MplFigure

    with torch.no_grad():
        maps = torch.sigmoid(explainer.class_maps(image[None]))
        maps = F.interpolate(maps, size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    k = maps.shape[0]
    fig = MplFigure(figsize=(1.6 * (k + 1), 2.0), layout="constrained")
    axes = fig.subplots(1, k + 1)
    axes[0].imshow(to_numpy_image(image)[0])
    axes[0].set_title(f"true {CLASS_NAMES[truth]}\npred. {CLASS_NAMES[pred]}", fontsize=8)
    for c in range(k):
        axes[c + 1].imshow(maps[c].numpy(), cmap="jet", vmin=0.0, vmax=1.0)
        axes[c + 1].set_title(CLASS_NAMES[c], fontsize=8, fontweight="bold" if c == pred else None)
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    return figure_to_png(fig, dpi=90), (
        "The head's mask (sigmoid, common scale 0-1) for each of the 8 classes, all from one "
        "forward pass. Only the predicted class (bold) should light up the object."
    )


def curves_figure(clf_history: dict[str, list[float]], ttame_history: Any) -> Figure:
    """The classifier's training curves, T-TAME's loss terms and its fidelity per epoch."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(11, 3.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    epochs = range(1, len(clf_history["train_loss"]) + 1)
    ax1.plot(epochs, clf_history["train_loss"], "o-", label="train loss")
    ax1b = ax1.twinx()
    ax1b.plot(epochs, clf_history["train_accuracy"], "s--", color="tab:green", label="train acc.")
    ax1b.plot(epochs, clf_history["val_accuracy"], "^-", color="tab:red", label="held-out acc.")
    ax1b.set_ylim(0, 1.02)
    lines = ax1.get_lines() + ax1b.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center right")
    t_epochs = range(1, len(ttame_history) + 1)
    for key, style in (("loss", "o-"), ("ce", "s-"), ("area", "^-"), ("variation", "v-")):
        ax2.plot(t_epochs, ttame_history.column(key), style, label=key)
    for ax, key, style, label in ((ax2, "val_loss", "o--", "val loss"),
                                  (ax3, "val_fidelity", "s--", "held-out")):
        values = ttame_history.column(key)
        if all(v is not None for v in values):
            ax.plot(t_epochs, values, style, label=label)
    ax3.plot(t_epochs, ttame_history.column("fidelity"), "o-", label="train")
    ax2.set_yscale("log")
    ax3.set_ylim(0, 1.02)
    for ax, title in ((ax1, "classifier"), (ax2, "T-TAME loss and its terms"), (ax3, "T-TAME fidelity")):
        ax.set(title=title, xlabel="epoch")
    ax2.legend(fontsize=7)
    ax3.legend(fontsize=7)
    return figure_to_png(fig, dpi=90), (
        "Left: the classifier (its own training run). Middle: T-TAME's loss and its terms per "
        "epoch (the cross-entropy of the masked image, the area term and the smoothness term). "
        "Right: the share of masked images that keep the clean image's class (fidelity)."
    )
