"""Turn whatever a classifier returns into a ``(N, num_classes)`` logits tensor."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["extract_logits", "forward_logits"]

_LOGIT_KEYS = ("logits", "logit", "output", "out", "pred", "preds", "scores")


def extract_logits(output: Any) -> Tensor:
    """Return the ``(N, K)`` logits held in a model's output.

    Accepts a tensor, an object with a ``.logits`` attribute (Hugging Face style), a mapping with
    one of the keys ``logits``, ``output``, ``out``, ``pred``, ``preds`` or ``scores`` (or with a
    single 2-D tensor under any key), or a tuple / list whose first element is the logits (e.g.
    Inception's auxiliary outputs). When such a tuple holds other ``(N, *)`` tensors too (e.g.
    ``(embedding, logits)``), a warning naming the element taken is logged once.

    Args:
        output: the value returned by ``model(x)``.

    Returns:
        Tensor of shape ``(N, K)``.

    Raises:
        TypeError: if no tensor of logits can be found.
        ValueError: if the logits are not 2-D ``(N, K)``.
    """
    found = _find_tensor(output)
    if found is None:
        raise TypeError(
            "model output: expected a (N, num_classes) logits tensor, or a tuple, dict or object "
            f"holding one (e.g. `.logits`), but got {type(output).__name__}. Wrap the model so "
            "that it returns the logits tensor."
        )
    if found.dim() != 2:
        raise ValueError(
            f"model output: expected logits of shape (N, num_classes), got shape "
            f"{tuple(found.shape)}. Wrap the model so that it returns one row of class scores "
            "per image (e.g. add a pooling + linear head, or flatten extra dimensions)."
        )
    return found


def _find_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping):
        for key in _LOGIT_KEYS:
            value = output.get(key)
            if isinstance(value, Tensor):
                return value
        # A mapping holding one 2-D tensor under another name (PPLCNet's `last_hidden_state`).
        tables = [v for v in output.values() if isinstance(v, Tensor) and v.dim() == 2]
        return tables[0] if len(tables) == 1 else None
    if isinstance(output, (tuple, list)) and output:
        found = _find_tensor(output[0])
        _warn_if_ambiguous(output, found)
        return found
    return None


_WARNED: set[tuple[Any, ...]] = set()


def _warn_if_ambiguous(output: tuple | list, taken: Tensor | None) -> None:
    """Log once per output layout when a tuple / list holds other tensors the logits could be
    (e.g. ``(embedding, logits)``): the first element is taken, which may be the wrong one."""
    if not isinstance(taken, Tensor) or taken.dim() != 2:
        return
    others = [i for i, v in enumerate(output) if i and isinstance(v, Tensor) and v.dim() == 2
              and v.shape[0] == taken.shape[0]]
    if not others:
        return
    shapes = tuple(tuple(v.shape[1:]) if isinstance(v, Tensor) else type(v).__name__ for v in output)
    if shapes in _WARNED:
        return
    _WARNED.add(shapes)
    described = ", ".join(f"[{i}] {tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}"
                          for i, v in enumerate(output))
    logger.warning(
        "model output: a %s of %d elements (%s); element 0 (%d classes) is taken as the logits, "
        "although element%s %s could be them too. If the logits are another element, wrap the model so "
        "that forward returns them alone, e.g. `lambda x: model(x)[%d]` in an nn.Module.",
        type(output).__name__, len(output), described, taken.shape[1], "s" if len(others) > 1 else "",
        ", ".join(map(str, others)), others[-1])


def forward_logits(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Run ``model(x)`` and extract the logits (shared by training, attribution and metrics)."""
    return extract_logits(model(x))
