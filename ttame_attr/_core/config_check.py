"""The check a saved head's configuration passes before anything runs.

A head file (:meth:`TTAME.save <ttame_attr.TTAME.save>`), a Hub folder's ``config.json``
(:meth:`TTAME.from_pretrained <ttame_attr.TTAME.from_pretrained>`) and a converted authors'
checkpoint all describe the explainer to build as a dict; building it runs the model once on a
blank image of ``input_size``. A damaged or crafted file could ask for any size (a
``[3, 3000, 3000]`` input is a forward of gigabytes) or give values of the wrong type, so every
field used is checked first, with a bound on the size a file may ask for: at most
:data:`MAX_CHANNELS` channels and :data:`MAX_PIXELS` pixels (1024 x 1024). A caller who passes
``input_size=`` to the loader chooses the size themselves, and the bound does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_CHANNELS", "MAX_PIXELS", "check_head_config"]

#: The most input channels a head file may ask for.
MAX_CHANNELS = 16
#: The most input pixels (``H * W``) a head file may ask for: 1024 x 1024.
MAX_PIXELS = 1024 * 1024


def _is_int(value: Any, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _input_size_problem(size: Any, bounded: bool) -> str | None:
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(_is_int(v) for v in size)):
        return "3 positive ints (C, H, W)"
    if bounded and (size[0] > MAX_CHANNELS or size[1] * size[2] > MAX_PIXELS):
        return (f"at most {MAX_CHANNELS} channels and {MAX_PIXELS:,} pixels (1024 x 1024), the most a "
                "head file may ask for before the model runs on it; if you trust the file and this "
                "size is right, pass input_size=(C, H, W) to the loader yourself")
    return None


def _map_size_problem(size: Any, input_size: Any) -> str | None:
    if size is None:
        return None
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
        return "None or 2 positive ints (h, w)"
    if size[0] > input_size[1] or size[1] > input_size[2]:
        return f"a map no larger than the input's {input_size[1]}x{input_size[2]}"
    return None


def _normalization_problem(norm: Any, channels: int) -> str | None:
    if norm is None:
        return None
    ok = isinstance(norm, (list, tuple)) and len(norm) == 2 and all(
        isinstance(part, (list, tuple)) and len(part) == channels and all(_is_number(v) for v in part)
        for part in norm)
    if not ok or not all(v > 0 for v in norm[1]):
        return f"None or [mean, std], {channels} finite numbers each, every std positive"
    return None


def _layer_info_ok(info: Any) -> bool:
    if info is None:
        return True
    return isinstance(info, list) and all(
        isinstance(entry, (list, tuple)) and len(entry) >= 5 and isinstance(entry[0], str)
        and all(_is_int(v, 0) for v in entry[2:5]) for entry in info)


def _problem(config: Mapping[str, Any], bounded: bool) -> tuple[str, str] | None:
    """The first field of ``config`` that is wrong, and what it should be."""
    layers = config.get("layers")
    if not (isinstance(layers, list) and layers and len(layers) <= 64
            and all(isinstance(name, str) and name for name in layers)):
        return "layers", "a list of 1 to 64 module names (strings)"
    size = config.get("input_size")
    problem = _input_size_problem(size, bounded)
    if problem is not None:
        return "input_size", problem
    checks = [
        ("num_classes", None if _is_int(config.get("num_classes")) else "a positive int"),
        ("map_size", _map_size_problem(config.get("map_size"), size)),
        ("normalization", _normalization_problem(config.get("normalization"), size[0])),
        ("layer_info", None if _layer_info_ok(config.get("layer_info")) else
         "a list of [name, layout, channels, height, width, prefix_tokens] entries"),
        ("mask_space", None if isinstance(config.get("mask_space", "auto"), str) else "a string"),
        ("adapter", None if config.get("adapter") is None or isinstance(config["adapter"], str)
         else "None or a string"),
    ]
    return next(((key, why) for key, why in checks if why is not None), None)


def check_head_config(config: Any, source: str, *, bounded: bool = True) -> None:
    """Raise unless ``config`` describes a head that can be built safely, before anything runs.

    Args:
        config: the saved configuration (:func:`~ttame_attr._core.head_file.head_config`'s keys).
        source: the file or folder it came from, for the message.
        bounded: apply the size bound (:data:`MAX_CHANNELS`, :data:`MAX_PIXELS`) to
            ``input_size``; off when the caller gives ``input_size`` themselves.

    Raises:
        ValueError: naming the first wrong field, its value and what was expected.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"path: the head {source} is damaged or crafted: its configuration is a "
                         f"{type(config).__name__}, expected a dict. Nothing was run.")
    found = _problem(config, bounded)
    if found is not None:
        key, expected = found
        value = _short(config[key]) if key in config else "missing"
        raise ValueError(f"path: the head {source} is damaged or crafted: its config has {key}={value}, "
                         f"expected {expected}. Nothing was run; load head files written by TTAME.save "
                         "that you trust.")
