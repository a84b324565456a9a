"""The head file: :meth:`TTAME.save` and :meth:`TTAME.load`, never executing code from the file.

A ``.pt`` file (``torch.save`` of a dict of tensors and plain values) or a ``.safetensors`` file
(the weights as tensors, the configuration as JSON metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ttame_attr._core.storage import (
    atomic_torch_save,
    atomic_write,
    check_payload,
    nonfinite_entries,
    safe_torch_load,
)
from ttame_attr._version import __version__

if TYPE_CHECKING:  # the explainer's public parts; the facade module itself sits above this one
    from ttame_attr._core.parts import ExplainerParts as TTAME

__all__ = ["head_config", "load_head", "save_head"]

FORMAT = "ttame_attr.head"
FORMAT_VERSION = 1


def head_config(explainer: TTAME) -> dict[str, Any]:
    """What :meth:`TTAME.save` stores besides the weights: plain Python values only."""
    norm = explainer.normalization
    return {
        "package_version": __version__,
        "model_class": type(explainer.model).__name__,
        "adapter": explainer.adapter.name,
        "layers": explainer.layers,
        "layer_info": [[i.name, i.layout, i.channels, i.height, i.width, i.prefix_tokens]
                       for i in explainer.layer_info],
        "num_classes": explainer.num_classes,
        "input_size": list(explainer.input_size),
        "map_size": list(explainer.map_size),
        "normalization": [list(norm[0]), list(norm[1])] if norm is not None else None,
        "mask_space": explainer.mask_space,
    }


def _is_safetensors(path: Path) -> bool:
    """A ``.safetensors`` name, or the safetensors layout (8-byte header length, then ``{``)."""
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError as err:
        raise ImportError(
            "path: reading or writing .safetensors files needs the safetensors package: "
            "pip install safetensors (or save to a .pt file)."
        ) from err
    return safetensors


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        with _safetensors().safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for bad files
        raise ValueError(f"path: {str(path)!r} is not a readable safetensors file (truncated or "
                         f"corrupted?): {err}") from err
    try:
        config = json.loads(metadata["config"])
        version = int(metadata.get("format_version", "0"))
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"path: {str(path)!r} is a safetensors file without T-TAME metadata; it was not "
            "written by TTAME.save. For a bare state_dict use TTAME.load_state_dict."
        ) from err
    return {"format": metadata.get("format"), "format_version": version, "config": config,
            "state_dict": state_dict}


def save_head(explainer: TTAME, path: str | Path) -> Path:
    """Write ``explainer``'s head weights and config; see :meth:`TTAME.save`.

    A path ending in ``.safetensors`` is written in the safetensors format (weights as
    tensors, configuration as JSON metadata; needs the ``safetensors`` package), any other
    path with ``torch.save``. Both are written atomically and read without running code.

    Raises:
        ValueError: if the head holds NaN or inf weights (nothing is written).
    """
    path = Path(path)
    bad = nonfinite_entries(explainer.state_dict())
    if bad:
        raise ValueError(
            f"explainer: the head holds non-finite weights ({', '.join(bad[:5])}); refusing to "
            f"save them to {str(path)!r}. Retrain (lower lr) or load a good checkpoint."
        )
    state = {k: v.detach().cpu().contiguous() for k, v in explainer.state_dict().items()}
    if path.suffix == ".safetensors":
        metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                    "config": json.dumps(explainer.config())}
        return atomic_write(path, lambda tmp: _safetensors().torch.save_file(state, tmp,
                                                                             metadata=metadata))
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": explainer.config(),
               "state_dict": state}
    return atomic_torch_save(payload, path)


def _read_payload(path: str | Path, map_location: Any) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {str(path)!r}.")
    payload = _read_safetensors(path) if _is_safetensors(path) else safe_torch_load(
        path, map_location=map_location
    )
    check_payload(
        payload, path, fmt=FORMAT, version=FORMAT_VERSION, what="a T-TAME head",
        foreign_hint="(TTAME.save writes heads.) For a bare state_dict use TTAME.load_state_dict.",
        required=("config", "state_dict"),
    )
    if not isinstance(payload["config"], dict) or not isinstance(payload["state_dict"], dict):
        raise ValueError(
            f"path: {str(path)!r} claims to be a T-TAME head but has no config or weights; the "
            "file is damaged or was not written by ttame_attr."
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
    try:
        explainer = cls(model, config["layers"], **options)
    except ValueError as err:  # e.g. a layer of the saved head that this model does not have
        raise ValueError(
            f"model: the checkpoint {str(path)!r} (trained on a {config['model_class']}, layers "
            f"{config['layers']}) does not fit this {type(model).__name__}: {err} Load it with the "
            "model it was trained for."
        ) from err
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
