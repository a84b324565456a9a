"""Images multiplied by masks, in the space the model takes them or in pixel space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ttame_attr._core.setup import Normalization

__all__ = ["Masker"]


class Masker:
    """Multiplies ``(N, C, H, W)`` images by ``(N, 1, h, w)`` masks (resized bilinearly).

    ``"input"``: the tensor the model receives is multiplied (masked pixels become 0 there);
    ``"pixel"``: the images are un-normalised to ``[0, 1]`` pixels, multiplied and normalised
    again (masked pixels become black), as the paper does for CNNs.

    Args:
        space: ``"input"`` or ``"pixel"``.
        normalization: ``(mean, std)`` of the model's inputs (needed for ``"pixel"``).
    """

    def __init__(self, space: str, normalization: Normalization | None) -> None:
        if space == "pixel" and normalization is None:
            raise ValueError("mask_space='pixel' needs the input normalisation (mean, std).")
        self.space, self.normalization = space, normalization
        self._cache: tuple[tuple[torch.device, torch.dtype], Tensor, Tensor] | None = None

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        # Cached per device and dtype: building them from Python lists on every training step
        # is a host-to-device copy that waits for the GPU (a synchronisation point per step).
        assert self.normalization is not None
        if self._cache is None or self._cache[0] != (device, dtype):
            mean, std = (torch.tensor(v, device=device, dtype=dtype)[:, None, None]
                         for v in self.normalization)
            self._cache = ((device, dtype), mean, std)
        return self._cache[1], self._cache[2]

    def __call__(self, x: Tensor, masks: Tensor) -> Tensor:
        """``x`` times ``masks`` in this masker's space."""
        masks = F.interpolate(masks, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.space == "input":
            return x * masks.to(x.dtype)
        mean, std = self._tensors(x.device, x.dtype)
        return ((x * std + mean) * masks.to(x.dtype) - mean) / std
