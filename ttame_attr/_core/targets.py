"""Captum-style ``target`` arguments turned into class indices: one parser for the package.

:meth:`TTAME.attribute <ttame_attr.TTAME.attribute>` and every metric accept the same forms
(:data:`ttame_attr._typing.TargetType`); the metrics then need exactly one class per image
(:func:`classes_per_image`).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ttame_attr._typing import TargetType

__all__ = ["classes_per_image", "parse_target"]


def _range_error(bad: list[int], num_classes: int) -> ValueError:
    return ValueError(
        f"target: class indices must lie in [0, {num_classes}) for this model, that is in "
        f"[0, {num_classes - 1}]; got {bad}. Check the class index (negative indices are not "
        "allowed)."
    )


def _check_range(classes: Tensor, num_classes: int | None) -> None:
    if num_classes is None or not classes.numel():
        return
    lo, hi = torch.stack(torch.aminmax(classes)).tolist()  # one device sync for both bounds
    if lo < 0 or hi >= num_classes:
        bad = classes[(classes < 0) | (classes >= num_classes)].flatten()[:5].tolist()
        raise _range_error(bad, num_classes)


def _from_list(target: list, batch_size: int) -> Tensor:
    if len(target) != batch_size:
        raise ValueError(
            f"target: a list gives one target per image, so it needs {batch_size} entries "
            f"(the batch size), got {len(target)}. Pass an int to use one class for all."
        )
    items = [t[0] if isinstance(t, tuple) and len(t) == 1 else t for t in target]
    if any(isinstance(t, bool) for t in items):
        raise TypeError(f"target: expected class indices, got bools in {target!r}.")
    try:
        tensor = torch.as_tensor(items)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"target: expected a list of ints (or of equal-length lists of ints), got {target!r}."
        ) from err
    return tensor.long() if tensor.numel() == 0 and tensor.dim() == 1 else tensor


def _check_shape(classes: Tensor, batch_size: int) -> Tensor:
    if classes.dim() == 0 or (classes.dim() == 1 and classes.numel() == 1 and batch_size != 1):
        return classes.reshape(1)
    if classes.dim() == 1:
        if classes.numel() != batch_size:
            raise ValueError(
                f"target: expected shape ({batch_size},), one class per image: expected "
                f"{batch_size} targets, got {classes.numel()}."
            )
        return classes
    if classes.dim() == 2:
        if classes.shape[0] != batch_size or classes.shape[1] == 0:
            raise ValueError(
                f"target: a 2-D target must be (N, K) with N = {batch_size} images and K >= 1 "
                f"classes each, got shape {tuple(classes.shape)}."
            )
        return classes
    raise ValueError(f"target: expected a 0-, 1- or 2-D tensor, got shape {tuple(classes.shape)}.")


def parse_target(
    target: TargetType, batch_size: int, num_classes: int | None, device: torch.device
) -> Tensor | None:
    """Turn ``target`` into class indices.

    Args:
        target: ``None``; an int, a 1-tuple, a 0-d or one-element tensor (one class for all
            images); a list or ``(N,)`` tensor (one class per image); a ``(N, K)`` tensor or a
            list of lists (``K`` classes per image).
        batch_size: ``N``.
        num_classes: the model's number of classes (indices are range-checked), or ``None``.
        device: where the result goes.

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
        index = int(target)
        if num_classes is not None and not 0 <= index < num_classes:  # no device round trip
            raise _range_error([index], num_classes)
        return torch.tensor([index], dtype=torch.long, device=device)
    if isinstance(target, list):
        target = _from_list(target, batch_size)
    if not isinstance(target, Tensor):
        raise TypeError(
            "target: expected None, an int, a tuple, a list or a tensor of class indices, got "
            f"{type(target).__name__}."
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target: expected an integer tensor of class indices, got dtype {target.dtype}. "
            "Use target.long()."
        )
    if target.device.type == "meta":
        raise ValueError("target: the tensor is on the meta device and holds no class indices.")
    classes = _check_shape(target.to(device=device, dtype=torch.long), batch_size)
    _check_range(classes, num_classes)
    return classes


def classes_per_image(
    target: TargetType, predicted: Tensor, num_classes: int | None = None
) -> Tensor:
    """Exactly one class per image, ``(N,)`` long on ``predicted``'s device.

    ``target`` takes the forms of :func:`parse_target` except ``K`` classes per image;
    ``None`` gives ``predicted`` (the model's top-1 classes, ``(N,)``).

    Raises:
        TypeError, ValueError: as :func:`parse_target`, and for a 2-D target.
    """
    n = predicted.shape[0]
    classes = parse_target(target, n, num_classes, predicted.device)
    if classes is None:
        return predicted.clone()
    if classes.dim() == 2:
        raise ValueError(
            f"target: the metrics evaluate one class per image, got a 2-D target of shape "
            f"{tuple(classes.shape)}. Pass an int, a list or an (N,) tensor, and evaluate each "
            "class in its own call."
        )
    return classes.expand(n).clone() if classes.numel() == 1 and n != 1 else classes
