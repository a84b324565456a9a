"""The checkpoints of the paper's authors' code, converted to this package's head.

The authors published heads trained with their code (Lightning checkpoints) for torchvision's
VGG-16, ResNet-50 and ViT-B-16. Such a checkpoint holds, in its ``state_dict``, the attention
mechanism under ``generic.attn_mech.`` (``generic.attn_mech.1.`` for a ViT, after the token
reshape): ``convs.{i}`` (1x1 convolution), ``bns.{i}`` (BatchNorm2d) and ``fuser`` (the fusion
convolution), and the backbone under ``generic.body.`` (the model's own keys); its
``hyper_parameters`` name the model, the layers (torchvision FX node names), the attention
version and the training method. With the same weights and features the two heads compute the
same maps, so the conversion only renames the weights and maps the settings.

This module does not contain or download the authors' files; they carry their own licence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ttame_attr._core.fingerprint import first_difference, report_mismatch
from ttame_attr.adapters._base import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["check_authors_map_size", "convert_authors_checkpoint", "is_authors_checkpoint"]

logger = logging.getLogger(__name__)

ATTENTION_PREFIX = "generic.attn_mech."
BODY_PREFIX = "generic.body."
#: The attention version of the authors' released training scripts (the only one converted).
RELEASED_VERSION = "TAME"
#: The authors' training methods and the mask space each one is.
TRAIN_METHODS = {"raw_normalize": "pixel", "new": "input"}
#: The authors' map size: the first feature map's height, capped at this (square maps).
AUTHORS_MAX_MAP = 56
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def is_authors_checkpoint(payload: Any) -> bool:
    """Whether a loaded file is a checkpoint of the authors' code (a ``state_dict`` holding
    ``generic.attn_mech.*`` and ``hyper_parameters``)."""
    return (isinstance(payload, dict) and isinstance(payload.get("state_dict"), Mapping)
            and "hyper_parameters" in payload
            and any(str(k).startswith(ATTENTION_PREFIX) for k in payload["state_dict"]))


def _head_weights(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The attention mechanism's weights under this package's names (``branches.{i}.conv``,
    ``branches.{i}.bn``, ``fusion``)."""
    nested = any(k.startswith(ATTENTION_PREFIX + "1.") for k in state)  # the ViT's nn.Sequential
    prefix = ATTENTION_PREFIX + ("1." if nested else "")
    renamed: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if not key.startswith(ATTENTION_PREFIX):
            continue
        parts = key[len(prefix):].split(".") if key.startswith(prefix) else []
        if len(parts) == 3 and parts[0] == "convs" and parts[2] in ("weight", "bias"):
            renamed[f"branches.{parts[1]}.conv.{parts[2]}"] = value
        elif len(parts) == 3 and parts[0] == "bns" and parts[2] in _BN_KEYS:
            renamed[f"branches.{parts[1]}.bn.{parts[2]}"] = value
        elif len(parts) == 2 and parts[0] == "fuser" and parts[1] in ("weight", "bias"):
            renamed[f"fusion.{parts[1]}"] = value
        else:
            unknown.append(key)
    if unknown or "fusion.weight" not in renamed:
        raise ValueError(
            f"path: the authors' checkpoint {source} has an attention mechanism this package cannot "
            f"convert (unexpected entries {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
            f"{'' if 'fusion.weight' in renamed else ', no fuser'}). Only the released "
            f"{RELEASED_VERSION!r} mechanism (convs, bns, fuser) is converted."
        )
    return renamed


def _module_names(layers: Any, model: nn.Module, source: str) -> list[str]:
    """The authors' FX node names as module names (``encoder_layer_9.ln`` is the module ``ln_1``)."""
    if not isinstance(layers, (list, tuple)) or not all(isinstance(x, str) for x in layers) or not layers:
        raise ValueError(f"path: the authors' checkpoint {source} names no layers in hyper_parameters "
                         f"(got {layers!r}); it is damaged or of another kind.")
    modules = dict(model.named_modules())
    names = []
    for layer in layers:
        name = layer if layer in modules else layer + "_1" if layer + "_1" in modules else None
        if name is None:
            raise ValueError(
                f"model: the authors' checkpoint {source} reads the layer {layer!r}, which this "
                f"{type(model).__name__} does not have. Load it with the model it was trained for."
            )
        names.append(name)
    return names


def _compare_backbone(state: Mapping[str, Any], model: nn.Module, source: str, strict: bool) -> None:
    """Compare the checkpoint's backbone weights with ``model``'s: warn, or refuse under ``strict``."""
    body = {k[len(BODY_PREFIX):]: v for k, v in state.items() if k.startswith(BODY_PREFIX)}
    if not body:
        logger.warning("the authors' checkpoint %s holds no backbone weights: whether this model has "
                       "the weights the head was trained on was not checked", source)
        return
    own = {k: v for k, v in model.state_dict().items() if k in body}
    diff = first_difference(body, own)
    if diff is not None:
        more = f" (and {diff[1] - 1} more differences)" if diff[1] > 1 else ""
        report_mismatch([f"its backbone weights differ: {diff[0]}{more} (torchvision's ImageNet "
                         "weights changed between IMAGENET1K_V1 and V2: load the other version)"],
                        source, strict)


def convert_authors_checkpoint(
    payload: dict[str, Any], model: nn.Module, source: str, *, strict: bool = False
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The configuration and head weights of an authors' checkpoint, for ``model``.

    Args:
        payload: the loaded checkpoint (``state_dict`` and ``hyper_parameters``).
        model: the classifier the head will explain.
        source: the file, for messages.
        strict: refuse (instead of warning) when the checkpoint's backbone weights differ from
            ``model``'s.

    Returns:
        ``(config, state_dict)`` as :meth:`TTAME.save <ttame_attr.TTAME.save>` stores them.

    Raises:
        ValueError: for another attention version or training method, layers the model lacks,
            an unconvertible mechanism, or (``strict``) other backbone weights.
    """
    hp = payload["hyper_parameters"]
    if not isinstance(hp, Mapping):
        raise ValueError(f"path: the authors' checkpoint {source} has hyper_parameters of type "
                         f"{type(hp).__name__}, expected a dict; it is damaged or of another kind.")
    version = hp.get("attention_version", RELEASED_VERSION)
    if version != RELEASED_VERSION:
        raise ValueError(
            f"path: the authors' checkpoint {source} uses the attention version {version!r}; only "
            f"the released {RELEASED_VERSION!r} mechanism is converted (other versions compute other maps)."
        )
    method = hp.get("train_method", "raw_normalize")
    if method not in TRAIN_METHODS:
        raise ValueError(f"path: the authors' checkpoint {source} was trained with train_method "
                         f"{method!r}; known: {sorted(TRAIN_METHODS)}.")
    state = payload["state_dict"]
    weights = _head_weights(state, source)
    layers = _module_names(hp.get("layers"), model, source)
    branches = {k.split(".")[1] for k in weights if k.startswith("branches.")}
    if branches != {str(i) for i in range(len(layers))}:
        raise ValueError(f"path: the authors' checkpoint {source} has branches {sorted(branches)} for "
                         f"{len(layers)} layers {layers}; it is damaged.")
    _compare_backbone(state, model, source, strict)
    size = int(hp.get("img_size", 224))
    name = hp.get("model_name")
    config = {
        "layers": layers, "adapter": None, "input_size": [3, size, size],
        "normalization": [list(IMAGENET_MEAN), list(IMAGENET_STD)], "mask_space": TRAIN_METHODS[method],
        "num_classes": int(hp.get("num_classes", weights["fusion.weight"].shape[0])), "layer_info": [],
        "map_size": None, "model_class": type(model).__name__,
        "backbone": f"torchvision:{name}" if isinstance(name, str) else None,
    }
    logger.info("converted the authors' checkpoint %s (%s, layers %s, %s-space masking)", source, name,
                layers, config["mask_space"])
    return config, weights


def check_authors_map_size(explainer: Any, source: str) -> None:
    """Refuse a model for which this package's map size differs from the authors' (the first
    feature map's height capped at 56, square): the head would be evaluated at another size."""
    first = explainer.layer_info[0]
    side = min(first.height, AUTHORS_MAX_MAP)
    if tuple(explainer.map_size) != (side, side):
        raise ValueError(
            f"model: the authors' checkpoint {source} makes {side}x{side} maps from the first layer, "
            f"this package would make {explainer.map_size} for this model; the input size differs from "
            "the one the head was trained at (hyper_parameters img_size)."
        )
