"""Which model a head was trained on: the model's class, its identity and a fingerprint of its weights.

A head explains the weights it was trained with: a head saved from a resnet18 fits a resnet34
(same layer names and channels) but explains it badly. :func:`model_identity` records the model
with the head; :func:`check_model_identity` compares a model against it when the head is loaded,
and warns (or refuses, with ``strict=True``) naming what differs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["backbone_id", "check_model_identity", "first_difference", "model_identity", "report_mismatch",
           "weights_fingerprint"]

logger = logging.getLogger(__name__)


def _tensor_digest(t: Tensor) -> str:
    """The first 16 hex digits of the SHA-256 of a tensor's dtype, shape and bytes (any device)."""
    t = t.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()[:16]


def weights_fingerprint(model: nn.Module) -> dict[str, Any]:
    """A digest of every entry of ``model.state_dict()`` and one of them all.

    Returns:
        ``{"sha256": overall, "tensors": {name: digest}}``; equal for models with equal weights
        (same names, dtypes, shapes and values), on any device.
    """
    tensors = {name: _tensor_digest(value) for name, value in model.state_dict().items()
               if isinstance(value, Tensor)}
    overall = hashlib.sha256("".join(f"{k}={v};" for k, v in tensors.items()).encode()).hexdigest()
    return {"sha256": overall, "tensors": tensors}


def backbone_id(model: nn.Module) -> str | None:
    """Where the model comes from, when it says so: ``timm:NAME`` or ``hf:REPO``; else ``None``."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, Mapping) and cfg.get("architecture"):
        tag = cfg.get("tag")
        return f"timm:{cfg['architecture']}" + (f".{tag}" if tag else "")
    name = getattr(getattr(model, "config", None), "_name_or_path", None)
    if isinstance(name, str) and name:
        return f"hf:{name}"
    return None


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What a head file records about its model: class, identity (when known), weights' fingerprint."""
    cls = type(model)
    return {"model_class": cls.__name__, "model_class_path": f"{cls.__module__}.{cls.__qualname__}",
            "backbone": backbone_id(model), "model_weights": weights_fingerprint(model)}


def first_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, int] | None:
    """The first entry (in ``current``'s order) that differs between two ``{name: value}`` maps,
    described, and how many differ in all; ``None`` when they are equal. Values are compared
    with ``==`` (digests) or :func:`torch.equal` (tensors)."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.cpu(), b.detach().cpu())
        return bool(a == b)

    diffs = [f"{name!r} is not in the model the head was trained on" if name not in saved
             else f"{name!r} has other values" for name in current
             if name not in saved or not same(saved[name], current[name])]
    diffs += [f"{name!r} of the model the head was trained on is missing" for name in saved
              if name not in current]
    return (diffs[0], len(diffs)) if diffs else None


def report_mismatch(problems: list[str], source: str, strict: bool) -> None:
    """Warn about (or, with ``strict``, refuse) a head loaded into another model than its own."""
    if not problems:
        return
    text = (f"model: the head {source} was trained on another model than this one: "
            + "; ".join(problems) + ". A head only explains the weights it was trained with: its maps "
            "for this model may be wrong. Load it with the model it was trained on, or train a head "
            "for this one.")
    if strict:
        raise ValueError(text + " (strict=True refuses it; strict=False only warns.)")
    logger.warning(text)


def check_model_identity(config: Mapping[str, Any], model: nn.Module, source: str, strict: bool) -> None:
    """Compare ``model`` with the class and weights recorded in a head's ``config``.

    Files written before the fingerprint was recorded are not checked.

    Raises:
        ValueError: with ``strict=True``, naming the class or the first differing tensor.
    """
    problems = []
    cls = type(model)
    saved_path = config.get("model_class_path")
    if saved_path is not None and saved_path != f"{cls.__module__}.{cls.__qualname__}":
        problems.append(f"it was a {saved_path}, this is a {cls.__module__}.{cls.__qualname__}")
    elif saved_path is None and config.get("model_class") not in (None, cls.__name__):
        problems.append(f"it was a {config['model_class']}, this is a {cls.__name__}")
    saved = config.get("model_weights")
    if isinstance(saved, Mapping) and isinstance(saved.get("tensors"), Mapping):
        current = weights_fingerprint(model)
        if current["sha256"] != saved.get("sha256"):
            diff = first_difference(saved["tensors"], current["tensors"])
            if diff is not None:
                more = f" (and {diff[1] - 1} more differences)" if diff[1] > 1 else ""
                problems.append(f"its weights differ: {diff[0]}{more}")
    elif saved is None:
        logger.debug("%s records no fingerprint of its model's weights; not checked", source)
    report_mismatch(problems, source, strict)
