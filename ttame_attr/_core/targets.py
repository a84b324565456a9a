"""Parse Captum-style ``target`` arguments into class-index tensors."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ttame_attr._typing import TargetType

__all__ = ["parse_target"]


def _check_range(classes: Tensor, num_classes: int) -> None:
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
        bad = classes[(classes < 0) | (classes >= num_classes)].flatten()[:5].tolist()
        raise ValueError(
            f"target: class indices must be in [0, {num_classes - 1}] for this model, got "
            f"{bad}. Check the class index (negative indices are not allowed)."
        )


def parse_target(
    target: TargetType, batch_size: int, num_classes: int, device: torch.device
) -> Tensor | None:
    """Turn ``target`` into class indices.

    Returns:
        ``None`` for ``target=None`` (use the predicted class); a ``(1,)`` tensor when one class
        is shared by all images; ``(N,)`` for one class per image; ``(N, K)`` for ``K`` classes
        per image. Always ``torch.long`` on ``device``.

    Raises:
        TypeError: for an unsupported type.
        ValueError: for a wrong length or an index out of range.
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target: expected a class index, got a bool.")
    if isinstance(target, tuple):
        if len(target) != 1:
            raise ValueError(
                f"target: a tuple target indexes the output after the batch dimension; logits are "
                f"(N, num_classes), so it must have one element, got {target!r}. Pass an int."
            )
        target = target[0]
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        classes = torch.tensor([int(target)], dtype=torch.long, device=device)
        _check_range(classes, num_classes)
        return classes
    if isinstance(target, list):
        if len(target) != batch_size:
            raise ValueError(
                f"target: a list gives one target per image, so it needs {batch_size} entries "
                f"(the batch size), got {len(target)}. Pass an int to use one class for all."
            )
        items = [t[0] if isinstance(t, tuple) and len(t) == 1 else t for t in target]
        try:
            target = torch.as_tensor(items)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"target: expected a list of ints (or of equal-length lists of ints), got {target!r}."
            ) from err
        if target.numel() == 0 and target.dim() == 1:
            target = target.long()  # [] has no ints to check; its length is checked below
    if not isinstance(target, Tensor):
        raise TypeError(
            "target: expected None, an int, a tuple, a list or a tensor of class indices, got "
            f"{type(target).__name__}."
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target: expected an integer tensor, got dtype {target.dtype}.")
    if target.device.type == "meta":
        raise ValueError("target: the tensor is on the meta device and holds no class indices.")
    classes = target.to(device=device, dtype=torch.long)
    if classes.dim() == 0 or (classes.dim() == 1 and classes.numel() == 1 and batch_size != 1):
        classes = classes.reshape(1)
    elif classes.dim() == 1:
        if classes.numel() != batch_size:
            raise ValueError(
                f"target: expected {batch_size} targets (one per image), got {classes.numel()}."
            )
    elif classes.dim() == 2:
        if classes.shape[0] != batch_size or classes.shape[1] == 0:
            raise ValueError(
                f"target: a 2-D target must be (N, K) with N = {batch_size} images and K >= 1 "
                f"classes each, got shape {tuple(classes.shape)}."
            )
    else:
        raise ValueError(
            f"target: expected a 0-, 1- or 2-D tensor, got shape {tuple(classes.shape)}."
        )
    _check_range(classes, num_classes)
    return classes
