"""The demo report's figures, as PNG bytes with their captions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ttame_attr.data import CLASS_NAMES
from ttame_attr.viz import figure_to_png, plot_grid, to_numpy_image

__all__ = ["class_maps_figure", "curves_figure", "explanations_figure"]

Figure = tuple[bytes, str]


def explanations_figure(images: Tensor, truth: Tensor, predicted: Tensor, masks: Tensor,
                        maps: dict[str, Tensor]) -> Figure:
    """Each held-out image beside every method's map of the predicted class."""
    titles = [f"{CLASS_NAMES[int(t)]} (pred. {CLASS_NAMES[int(p)]})" for t, p in zip(truth, predicted)]
    grid = plot_grid(images, maps, titles=titles, contours=masks, cell_size=2.0)
    return figure_to_png(grid, dpi=90), (
        "Each row: a held-out test image (true class, predicted class), then T-TAME's map "
        "and Grad-CAM's map of the predicted class. The white outline is the ground-truth "
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
