"""Pictures of T-TAME maps: overlays, grids, and conversions for Captum and pytorch-grad-cam.

The conversion helpers need numpy only; the drawing helpers need matplotlib, installed with the
``ttame-attr[plot]`` extra and imported when first used.

Example:
    >>> import torch
    >>> from ttame_attr.viz import to_grad_cam
    >>> to_grad_cam(torch.rand(1, 1, 16, 16)).shape
    (16, 16)
"""

from ttame_attr.viz._convert import to_captum_vis, to_grad_cam, to_numpy_image, to_numpy_maps
from ttame_attr.viz._plot import figure_to_png, overlay, plot_grid, save_figure, save_overlays

__all__ = ["figure_to_png", "overlay", "plot_grid", "save_figure", "save_overlays", "to_captum_vis",
           "to_grad_cam", "to_numpy_image", "to_numpy_maps"]
