"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Union

from torch import Tensor

#: What ``target`` may be, as in Captum: one class for all images (``int``, a length-1 tuple, a
#: 0-d or one-element tensor), one class per image (a list of ints, a ``(N,)`` tensor), or several
#: classes per image (a ``(N, K)`` tensor or a list of lists), or ``None`` for the predicted class.
TargetType = Union[None, int, tuple, Tensor, list]

#: ``(C, H, W)``: channels and spatial size of the model's input.
InputSize = tuple[int, int, int]

__all__ = ["InputSize", "TargetType"]
