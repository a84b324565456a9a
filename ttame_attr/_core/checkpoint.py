"""Save and load a trained T-TAME head without ever executing code from the file."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ttame_attr._core.ttame import TTAME

__all__ = ["atomic_torch_save", "load_head", "safe_torch_load", "save_head"]

FORMAT = "ttame_attr.head"
FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash while writing leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_torch_load(path: str | Path, map_location: Any = None) -> Any:
    """``torch.load(weights_only=True)`` with clear errors for missing, corrupt or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {str(path)!r}.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"path: {str(path)!r} holds objects other than tensors and plain values, so it is "
            "refused (loading it could run code). Only files written by ttame_attr are accepted."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise ValueError(
            f"path: {str(path)!r} is not a readable checkpoint (truncated or corrupted?): {err}"
        ) from err


def save_head(explainer: TTAME, path: str | Path) -> Path:
    """Write ``explainer``'s head weights and config; see :meth:`TTAME.save`."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": explainer.config(),
        "state_dict": {k: v.detach().cpu() for k, v in explainer.state_dict().items()},
    }
    return atomic_torch_save(payload, path)


def _read_payload(path: str | Path, map_location: Any) -> dict[str, Any]:
    payload = safe_torch_load(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"path: {str(path)!r} is not a T-TAME head saved by ttame_attr (TTAME.save). "
            "For a bare state_dict use TTAME.load_state_dict."
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"path: {str(path)!r} was written by a newer ttame_attr (format "
            f"{payload['format_version']}); upgrade ttame_attr to read it."
        )
    return payload


def load_head(
    cls: type[TTAME], path: str | Path, model: nn.Module, *, map_location: Any = None, **kwargs: Any
) -> TTAME:
    """Rebuild a saved explainer for ``model``; see :meth:`TTAME.load`."""
    payload = _read_payload(path, map_location="cpu")
    config = payload["config"]
    normalization = config.get("normalization")
    options: dict[str, Any] = {
        "adapter": config["adapter"],
        "input_size": tuple(config["input_size"]),
        "normalization": tuple(normalization) if normalization else None,
        "mask_space": config.get("mask_space", "auto"),
    }
    options.update(kwargs)
    explainer = cls(model, config["layers"], **options)
    problems = []
    if explainer.num_classes != config["num_classes"]:
        problems.append(
            f"the model outputs {explainer.num_classes} classes, the head was trained for "
            f"{config['num_classes']}"
        )
    for saved, info in zip(config["layer_info"], explainer.layer_info):
        name, _, channels, height, width = saved[:5]
        if (info.channels, info.height, info.width) != (channels, height, width):
            problems.append(
                f"layer {name!r} gives (C, h, w) = {(info.channels, info.height, info.width)}, "
                f"the head expects {(channels, height, width)}"
            )
    if tuple(explainer.map_size) != tuple(config["map_size"]):
        problems.append(f"map size {explainer.map_size} != saved {tuple(config['map_size'])}")
    if problems:
        raise ValueError(
            f"model: the checkpoint {str(path)!r} (trained on a {config['model_class']}) does not "
            f"fit this {type(model).__name__}: " + "; ".join(problems) + ". Load it with the "
            "model it was trained for."
        )
    device = map_location if map_location is not None else explainer.device
    explainer.load_state_dict(payload["state_dict"])
    explainer.head.to(device)
    return explainer
