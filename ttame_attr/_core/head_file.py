"""The head file: :meth:`TTAME.save` and :meth:`TTAME.load`, never executing code from the file.

:meth:`TTAME.save` writes a safetensors file (the weights as tensors, the configuration as JSON
metadata, whatever the file's suffix). :meth:`TTAME.load` also reads the ``torch.save`` files of
ttame_attr 0.x (a dict of tensors and plain values, read with ``weights_only=True``) and the
checkpoints of the paper's authors' code (:mod:`ttame_attr._core.authors`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ttame_attr._core.authors import (
    check_authors_map_size,
    convert_authors_checkpoint,
    is_authors_checkpoint,
)
from ttame_attr._core.config_check import check_head_config
from ttame_attr._core.fingerprint import check_model_identity, model_identity
from ttame_attr._core.storage import (
    check_payload,
    nonfinite_entries,
    safe_torch_load,
    write_bytes_atomically,
)
from ttame_attr._version import __version__

if TYPE_CHECKING:  # the explainer's public parts; the facade module itself sits above this one
    from ttame_attr._core.parts import ExplainerParts as TTAME

__all__ = ["explainer_from_config", "head_config", "load_head", "read_safetensors", "save_head",
           "saved_config", "saved_tensors", "write_head_file"]

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
        "multi_label": bool(getattr(explainer, "multi_label", False)),
        "threshold": float(getattr(explainer, "threshold", 0.5)),
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
    except ImportError as err:  # a core dependency; only a broken installation lacks it
        raise ImportError(
            "path: reading or writing head files needs the safetensors package: pip install safetensors."
        ) from err
    return safetensors


def read_safetensors(path: Path) -> dict[str, Any]:
    try:
        with _safetensors().safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for bad files
        raise ValueError(f"path: {str(path)!r} is not a readable checkpoint (a truncated or corrupted "
                         f"safetensors file?): {err}") from err
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


def saved_tensors(explainer: Any, path: str | Path) -> dict[str, Any]:
    """The head's weights on the CPU, refusing NaN and inf (nothing is written then)."""
    bad = nonfinite_entries(explainer.state_dict())
    if bad:
        raise ValueError(
            f"explainer: the head holds non-finite weights ({', '.join(bad[:5])}); refusing to "
            f"save them to {str(path)!r}. Retrain (lower lr) or load a good checkpoint."
        )
    return {k: v.detach().cpu().contiguous() for k, v in explainer.state_dict().items()}


def saved_config(explainer: Any, backbone: str | None = None) -> dict[str, Any]:
    """:func:`head_config` and the model's identity (class, weights' fingerprint, backbone)."""
    identity = model_identity(explainer.model)
    if backbone is not None:
        identity["backbone"] = backbone
    return {**explainer.config(), **identity}


def write_head_file(path: str | Path, state: dict[str, Any], config: dict[str, Any]) -> Path:
    """Write weights and configuration as one safetensors file, atomically."""
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": json.dumps(config)}
    data = _safetensors().torch.save(state, metadata=metadata)  # bytes: the disk is written by Python
    return write_bytes_atomically(path, lambda buffer: buffer.write(data))


def save_head(explainer: TTAME, path: str | Path) -> Path:
    """Write ``explainer``'s head weights and config as a safetensors file; see :meth:`TTAME.save`.

    Written atomically and read without running code, whatever the suffix (``.safetensors``
    is the usual one). The configuration records the model's class and a fingerprint of its
    weights, which :meth:`TTAME.load` compares with the model it is given.

    Raises:
        ValueError: if the head holds NaN or inf weights (nothing is written).
    """
    state = saved_tensors(explainer, path)
    return write_head_file(path, state, saved_config(explainer))


def _read_payload(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {str(path)!r}.")
    if _is_safetensors(path):
        return read_safetensors(path)
    return safe_torch_load(path, map_location="cpu")


def _check_ours(payload: Any, path: str | Path) -> None:
    check_payload(
        payload, path, fmt=FORMAT, version=FORMAT_VERSION, what="a T-TAME head",
        foreign_hint="(TTAME.save writes heads; TTAME.load also reads the checkpoints of the paper's "
                     "authors.) For a bare state_dict use TTAME.load_state_dict.",
        required=("config", "state_dict"),
    )
    if not isinstance(payload["config"], dict) or not isinstance(payload["state_dict"], dict):
        raise ValueError(
            f"path: {str(path)!r} claims to be a T-TAME head but has no config or weights; the "
            "file is damaged or was not written by ttame_attr."
        )


def _fit_problems(explainer: Any, config: dict[str, Any]) -> list[str]:
    problems = []
    if explainer.num_classes != config["num_classes"]:
        problems.append(
            f"the model outputs {explainer.num_classes} classes, the head was trained for "
            f"{config['num_classes']}"
        )
    for saved, info in zip(config.get("layer_info") or [], explainer.layer_info):
        name, _, channels, height, width = saved[:5]
        if (info.channels, info.height, info.width) != (channels, height, width):
            problems.append(
                f"layer {name!r} gives (C, h, w) = {(info.channels, info.height, info.width)}, "
                f"the head expects {(channels, height, width)}"
            )
    if config["map_size"] is not None and tuple(explainer.map_size) != tuple(config["map_size"]):
        problems.append(f"map size {explainer.map_size} != saved {tuple(config['map_size'])}")
    return problems


def explainer_from_config(
    cls: Any, config: dict[str, Any], state_dict: dict[str, Any], model: nn.Module, source: str,
    *, map_location: Any = None, options: dict[str, Any] | None = None,
) -> Any:
    """Build ``cls(model, ...)`` as ``config`` describes it and load ``state_dict`` into its head.

    ``config`` is checked first (:func:`~ttame_attr._core.config_check.check_head_config`): its
    types, and an ``input_size`` of at most 16 channels and 1024 x 1024 pixels unless ``options``
    give one, so that a crafted file cannot make the model run on a huge image.

    Raises:
        ValueError: for a damaged or crafted ``config`` (naming the field, before the model runs);
            naming what differs when the model does not give the saved layers, shapes, class
            count or map size.
    """
    check_head_config(config, source, bounded="input_size" not in (options or {}))
    normalization = config.get("normalization")
    kwargs: dict[str, Any] = {
        "adapter": config.get("adapter"),
        "input_size": tuple(config["input_size"]),
        "normalization": tuple(normalization) if normalization else None,
        "mask_space": config.get("mask_space", "auto"),
    }
    if config.get("multi_label"):  # files written before multi-label support are softmax heads
        kwargs.update(multi_label=True, threshold=float(config.get("threshold", 0.5)))
    kwargs.update(options or {})
    trained_on = config.get("model_class") or config.get("backbone") or "another model"
    try:
        explainer = cls(model, config["layers"], **kwargs)
    except ValueError as err:  # e.g. a layer of the saved head that this model does not have
        raise ValueError(
            f"model: the checkpoint {source} (trained on a {trained_on}, layers {config['layers']}) does not "
            f"fit this {type(model).__name__}: {err} Load it with the model it was trained for."
        ) from err
    problems = _fit_problems(explainer, config)
    if problems:
        raise ValueError(
            f"model: the checkpoint {source} (trained on a {trained_on}) does not fit this "
            f"{type(model).__name__}: " + "; ".join(problems) + ". Load it with the model it was trained for."
        )
    device = map_location if map_location is not None else explainer.device
    try:
        explainer.load_state_dict(state_dict)
    except (ValueError, RuntimeError) as err:  # shapes (ours) or missing / unexpected keys (torch's)
        raise ValueError(f"model: the checkpoint {source} does not fit this {type(model).__name__}: {err}"
                         ) from err
    explainer.head.to(device)
    return explainer


def load_head(
    cls: type[TTAME], path: str | Path, model: nn.Module, *, map_location: Any = None,
    strict: bool = False, **kwargs: Any
) -> TTAME:
    """Rebuild a saved explainer for ``model``; see :meth:`TTAME.load`."""
    payload = _read_payload(path)
    source = repr(str(path))
    authors = is_authors_checkpoint(payload)
    if authors:
        config, state_dict = convert_authors_checkpoint(payload, model, source, strict=strict)
    else:
        _check_ours(payload, path)
        config, state_dict = payload["config"], payload["state_dict"]
    explainer = explainer_from_config(cls, config, state_dict, model, source, map_location=map_location,
                                      options=kwargs)
    if authors:
        check_authors_map_size(explainer, source)
    else:  # after the checks that the head fits at all, which say more
        check_model_identity(config, model, source, strict)
    return explainer
