"""Turn T-TAME maps and model inputs into the numpy arrays other libraries draw."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ttame_attr._core.maps import minmax_scale

__all__ = ["to_captum_vis", "to_grad_cam", "to_numpy_image", "to_numpy_maps"]

logger = logging.getLogger(__name__)


def _as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to("cpu", torch.float32)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.asarray(value, dtype=np.float32))
    raise TypeError(f"{name}: expected a torch.Tensor or a numpy array, got {type(value).__name__}.")


def to_numpy_maps(maps: Tensor | np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """Saliency maps as a float32 numpy array ``(N, H, W)``, each min-max scaled to [0, 1].

    Args:
        maps: ``(N, 1, H, W)``, ``(N, H, W)``, ``(1, H, W)`` or ``(H, W)``; a tensor (any device,
            any float dtype) or a numpy array. ``(N, K, H, W)`` with ``K > 1`` is refused: pick
            the class first (``maps[:, k:k+1]``).
        normalize: min-max scale each map to [0, 1]. A constant map (e.g. all zeros) becomes
            all zeros.

    Returns:
        ``(N, H, W)`` float32; ``N = 1`` for a single map.

    Raises:
        TypeError: if ``maps`` is neither a tensor nor an array.
        ValueError: for other shapes.

    Example:
        >>> import torch
        >>> to_numpy_maps(torch.tensor([[0.0, 2.0], [1.0, 4.0]])).tolist()
        [[[0.0, 0.5], [0.25, 1.0]]]
    """
    m = _as_tensor(maps, "maps")
    if m.dim() == 4:
        if m.shape[1] != 1:
            raise ValueError(f"maps: expected one map per image (N, 1, H, W), got {tuple(m.shape)}. Select a "
                             "class first, e.g. maps[:, k:k+1].")
        m = m[:, 0]
    elif m.dim() == 2:
        m = m[None]
    elif m.dim() != 3:
        raise ValueError(f"maps: expected (N, 1, H, W), (N, H, W) or (H, W), got shape {tuple(m.shape)}.")
    if normalize:
        m = minmax_scale(m)
    return np.ascontiguousarray(m.numpy(), dtype=np.float32)


def to_numpy_image(images: Tensor | np.ndarray, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> np.ndarray:
    """Model inputs as float32 ``(N, H, W, C)`` numpy images in [0, 1] (channels last).

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``.
        mean, std: per-channel mean and std the images were normalised with; undone when given.

    Returns:
        The images, clipped to [0, 1].

    Raises:
        ValueError: for other shapes, or ``mean``/``std`` of the wrong length.
    """
    x = _as_tensor(images, "images")
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"images: expected (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}.")
    if (mean is None) != (std is None):
        raise ValueError("mean, std: give both (to undo the normalisation) or neither.")
    if mean is not None and std is not None:
        if len(mean) != x.shape[1] or len(std) != x.shape[1]:
            raise ValueError(f"mean, std: expected {x.shape[1]} values each (one per channel), got "
                             f"{len(mean)} and {len(std)}.")
        m = torch.tensor(list(mean), dtype=x.dtype)[:, None, None]
        s = torch.tensor(list(std), dtype=x.dtype)[:, None, None]
        x = x * s + m
    return np.ascontiguousarray(x.clamp(0, 1).permute(0, 2, 3, 1).numpy(), dtype=np.float32)


def to_grad_cam(maps: Tensor | np.ndarray) -> np.ndarray:
    """Maps in the form pytorch-grad-cam's ``show_cam_on_image(img, mask)`` takes as ``mask``.

    Args:
        maps: as in :func:`to_numpy_maps` (min-max scaled; a constant map becomes all zeros).

    Returns:
        float32 numpy ``(H, W)`` for a single map, ``(N, H, W)`` for a batch, in [0, 1].

    Example:
        >>> import torch
        >>> cam = to_grad_cam(torch.zeros(1, 1, 4, 4))
        >>> cam.shape, cam.dtype, float(cam.max())
        ((4, 4), dtype('float32'), 0.0)
    """
    out = to_numpy_maps(maps)
    return out[0] if out.shape[0] == 1 else out


def to_captum_vis(
    maps: Tensor | np.ndarray, images: Tensor | np.ndarray | None = None, *,
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Maps (and images) in the layout ``captum.attr.visualization.visualize_image_attr`` reads.

    Captum wants numpy channels-last arrays: ``attr`` ``(H, W, 1)`` and ``original_image``
    ``(H, W, C)`` in [0, 1]. A torch tensor makes it fail, a channels-first ``(1, H, W)`` array is
    silently mis-read, and an all-zero map makes it raise; this helper avoids all three. Maps are
    min-max scaled to [0, 1]. A constant map carries no attribution: it comes back as zeros with
    a single ``1e-8`` in the top-left pixel (logged) so that Captum's normalisation does not
    divide by zero; Captum then warns that the values are all close to 0, which is the truth.

    Args:
        maps: as in :func:`to_numpy_maps`.
        images: the matching model inputs ``(N, C, H, W)`` or ``(C, H, W)``, or ``None``.
        mean, std: as in :func:`to_numpy_image`.

    Returns:
        ``(attr, image)``: ``attr`` float32 ``(H, W, 1)`` for one map or ``(N, H, W, 1)`` for a
        batch (index it per image); ``image`` float32 ``(H, W, C)`` / ``(N, H, W, C)`` in [0, 1],
        or ``None`` when ``images`` is ``None``.

    Raises:
        ValueError: if maps and images disagree on the batch size or spatial size.

    Example:
        >>> import torch
        >>> attr, img = to_captum_vis(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
        >>> attr.shape, img.shape
        ((8, 8, 1), (8, 8, 3))
    """
    m = to_numpy_maps(maps)
    batched = m.shape[0] > 1
    for i in range(m.shape[0]):
        if not m[i].any():
            logger.warning(
                "to_captum_vis: map %d is constant (no attribution); its top-left pixel is set to "
                "1e-8 so Captum can normalise it.", i,
            )
            m[i, 0, 0] = 1e-8
    attr = m[..., None]
    image = None if images is None else to_numpy_image(images, mean, std)
    if image is not None and image.shape[:3] != attr.shape[:3]:
        raise ValueError(f"images: shape {tuple(image.shape)} (N, H, W, C) does not match the maps' "
                         f"{tuple(attr.shape[:3])} (N, H, W). Upsample the maps to the image size "
                         "(attribute(..., upsample=True)) and pass one image per map.")
    if not batched:
        attr = attr[0]
        image = image[0] if image is not None else None
    return attr, image
