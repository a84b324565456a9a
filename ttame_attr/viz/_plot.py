"""Overlays and image grids of saliency maps (matplotlib, the ``ttame-attr[plot]`` extra)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from ttame_attr._core.optional import require
from ttame_attr.viz._convert import to_numpy_image, to_numpy_maps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_to_png", "overlay", "plot_grid", "save_figure", "save_overlays"]


def _require_matplotlib() -> Any:
    return require("matplotlib", "plot", "ttame_attr.viz (colour maps and figures)",
                   note="(or `pip install matplotlib`)")


def _colormap(name: str) -> Any:
    matplotlib = _require_matplotlib()
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"cmap: unknown matplotlib colour map {name!r}; try 'jet', 'inferno' or "
                         "'viridis'.") from None


def overlay(
    image: Tensor | np.ndarray, saliency: Tensor | np.ndarray, *, alpha: float = 0.5, cmap: str = "jet",
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
) -> np.ndarray:
    """Blend one colour-mapped saliency map over one image.

    Args:
        image: ``(C, H, W)`` (or ``(1, C, H, W)``) model input, or a numpy ``(H, W, 3)`` array
            in [0, 1], taken as it is.
        saliency: ``(1, H, W)``, ``(H, W)`` or ``(1, 1, H, W)`` map at the image's size; min-max
            scaled before colour mapping.
        alpha: weight of the heat map (0: image only, 1: heat map only).
        cmap: a matplotlib colour map name.
        mean, std: the normalisation of ``image``, undone as in :func:`to_numpy_image`.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].

    Raises:
        ImportError: if matplotlib is missing.
        ValueError: if ``alpha`` is outside [0, 1] or the sizes differ.

    Example:
        >>> import torch
        >>> overlay(torch.rand(3, 8, 8), torch.rand(1, 8, 8)).shape
        (8, 8, 3)
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}.")
    colormap = _colormap(cmap)
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] in (1, 3):
        img = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    else:
        img = to_numpy_image(image, mean, std)[0]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    m = to_numpy_maps(saliency)
    if m.shape[0] != 1:
        raise ValueError(f"saliency: expected one map, got {m.shape[0]}.")
    if m.shape[1:] != img.shape[:2]:
        raise ValueError(f"saliency: map size {m.shape[1:]} differs from the image size {img.shape[:2]}; "
                         "upsample the map (attribute(..., upsample=True)).")
    heat = colormap(m[0])[..., :3].astype(np.float32)
    return np.clip((1.0 - alpha) * img + alpha * heat, 0.0, 1.0).astype(np.float32)


def plot_grid(
    images: Tensor | np.ndarray, maps: Mapping[str, Tensor | np.ndarray], *,
    titles: Sequence[str] | None = None, alpha: float = 0.5, cmap: str = "jet",
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None, cell_size: float = 1.8,
    contours: Tensor | np.ndarray | None = None,
) -> Figure:
    """A grid with one row per image: the image, then one overlay per method.

    Args:
        images: ``(N, C, H, W)`` model inputs.
        maps: ``{method name: (N, 1, H, W) maps}``, one column each, in the given order.
        titles: ``N`` row labels (e.g. the predicted class), shown above the image column.
        alpha, cmap, mean, std: as in :func:`overlay`.
        cell_size: inches per cell.
        contours: optional ``(N, 1, H, W)`` binary masks (e.g. ground-truth objects) drawn as a
            white outline on every overlay.

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot; save it with
        :func:`save_figure` or :func:`figure_to_png`).

    Raises:
        ImportError: if matplotlib is missing.
        ValueError: if the number of maps differs from the number of images.

    Example:
        >>> import torch
        >>> fig = plot_grid(torch.rand(2, 3, 8, 8), {"T-TAME": torch.rand(2, 1, 8, 8)})
        >>> len(fig.axes)
        4
    """
    _require_matplotlib()
    from matplotlib.figure import Figure

    imgs = to_numpy_image(images, mean, std)
    n = imgs.shape[0]
    columns = {name: to_numpy_maps(m) for name, m in maps.items()}
    for name, m in columns.items():
        if m.shape[0] != n:
            raise ValueError(f"maps[{name!r}]: expected {n} maps (one per image), got {m.shape[0]}.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles: expected {n} titles, got {len(titles)}.")
    outlines = to_numpy_maps(contours, normalize=False) if contours is not None else None
    ncols = 1 + len(columns)
    fig = Figure(figsize=(cell_size * ncols, cell_size * n + 0.3), layout="constrained")
    axes = fig.subplots(n, ncols, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(imgs[i])
        if titles is not None:
            axes[i, 0].set_title(titles[i], fontsize=8)
        for j, (name, m) in enumerate(columns.items(), start=1):
            axes[i, j].imshow(overlay(imgs[i], m[i], alpha=alpha, cmap=cmap))
            if outlines is not None:
                axes[i, j].contour(outlines[i], levels=[0.5], colors="white", linewidths=0.8)
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (e.g. to embed in HTML as base64)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _new_file(path: str | Path) -> Path:
    """``path`` as a Path, its folder created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, e.g. ``.png``); returns the path."""
    path = _new_file(path)
    fig.savefig(path, dpi=dpi)
    return path


def save_overlays(
    images: Tensor | np.ndarray, maps: Tensor | np.ndarray, paths: Sequence[str | Path], *,
    alpha: float = 0.5, cmap: str = "jet", mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> list[Path]:
    """Write one overlay PNG per image (the image size, no axes).

    Args:
        images: ``(N, C, H, W)``.
        maps: ``(N, 1, H, W)`` at the images' size.
        paths: ``N`` output files.
        alpha, cmap, mean, std: as in :func:`overlay`.

    Returns:
        The written paths.
    """
    matplotlib = _require_matplotlib()
    imgs = to_numpy_image(images, mean, std)
    m = to_numpy_maps(maps)
    if len(paths) != imgs.shape[0] or m.shape[0] != imgs.shape[0]:
        raise ValueError(f"paths: expected one path and one map per image ({imgs.shape[0]}), got "
                         f"{len(paths)} paths and {m.shape[0]} maps.")
    written = []
    for img, sal, path in zip(imgs, m, paths):
        written.append(_new_file(path))
        matplotlib.image.imsave(written[-1], overlay(img, sal, alpha=alpha, cmap=cmap))
    return written
