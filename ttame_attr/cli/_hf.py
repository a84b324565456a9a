"""The ``hf:NAME_OR_PATH`` model spec: a Hugging Face ``transformers`` image classifier and its
image processor (the preprocessing: input size, mean, std).

``transformers`` is imported only when an ``hf:`` spec is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ttame_attr.cli._errors import CLIError

__all__ = ["load_hf", "processor_preprocessing"]

logger = logging.getLogger(__name__)

_INSTALL = 'pip install "ttame-attr[transformers]"'


def _check_local(name: str) -> None:
    """Clear errors for a name that is meant as a local folder but is not a model folder."""
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":")
    if not path.exists():
        if looks_local:
            raise CLIError(f"model: hf:{name}: no such folder. Expected a Hugging Face Hub name "
                           "(e.g. hf:google/vit-base-patch16-224) or a folder written by save_pretrained().")
        return
    if not path.is_dir():
        raise CLIError(f"model: hf:{name} is a file; expected a folder written by save_pretrained() "
                       "(config.json and the weights) or a Hub name. For a state dict file use --weights.")
    if not (path / "config.json").is_file():
        raise CLIError(f"model: hf:{name} has no config.json; expected a folder written by "
                       "model.save_pretrained() (or a Hub name).")


def load_hf(name: str, num_classes: int | None) -> tuple[nn.Module, Any]:
    """``(model, image processor or None)`` of a Hub name or a ``save_pretrained`` folder.

    ``num_classes`` gives a fresh classifier (``num_labels=N, ignore_mismatched_sizes=True``;
    the labels are named ``LABEL_0``, ...).

    Raises:
        CLIError: without transformers, for a missing folder, or when loading fails.
    """
    if not name:
        raise CLIError("model: hf: needs a model, e.g. hf:google/vit-base-patch16-224 or hf:./my_model.")
    try:
        import transformers
    except ImportError:
        raise CLIError(f"model: hf: models need transformers; install it with `{_INSTALL}`.") from None
    _check_local(name)
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        # num_labels=N, given as N fresh labels: with num_labels alone transformers warns that the
        # checkpoint's id2label has another length.
        labels = {i: f"LABEL_{i}" for i in range(num_classes)}
        kwargs = {"id2label": labels, "label2id": {name: i for i, name in labels.items()},
                  "ignore_mismatched_sizes": True}
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(name, **kwargs)
    except Exception as err:  # noqa: BLE001 - OSError (no network, no files), ValueError (no classifier), ...
        raise CLIError(f"model: loading hf:{name} with AutoModelForImageClassification failed: "
                       f"{type(err).__name__}: {err}") from None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - no preprocessor_config.json, a backend missing, ...
        logger.info("hf:%s: no image processor loads (%s: %s)", name, type(err).__name__,
                    str(err).split("\n")[0])
        processor = None
    return model, processor


def _field(size: Any, key: str) -> Any:
    """``size[key]`` of a processor size (a dict, a ``SizeDict``), or ``None``."""
    get = getattr(size, "get", None)
    return get(key) if callable(get) else getattr(size, key, None)


def _size_hw(size: Any) -> tuple[int, int] | None:
    """``(H, W)`` of a processor's ``size`` / ``crop_size``: ``{"height", "width"}``,
    ``{"shortest_edge"}`` (a square crop of that side), ``{"longest_edge"}`` or an int."""
    if isinstance(size, int) and not isinstance(size, bool):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    if size is None:
        return None
    height, width = _field(size, "height"), _field(size, "width")
    if height and width:
        return (int(height), int(width))
    edge = _field(size, "shortest_edge") or _field(size, "longest_edge")
    return (int(edge), int(edge)) if edge else None


def _per_channel(value: Any, channels: int) -> tuple[float, ...] | None:
    if isinstance(value, (int, float)):
        return (float(value),) * channels
    if isinstance(value, Sequence) and value:
        return tuple(float(v) for v in value)
    return None


def processor_preprocessing(processor: Any, channels: int = 3) -> tuple[
        tuple[int, int, int], tuple[float, ...], tuple[float, ...]] | None:
    """``(input_size, mean, std)`` an image processor prepares images with, or ``None`` when it
    does not tell its size or its mean and std.

    The size is ``crop_size`` when the processor centre-crops, else ``size``; a processor that
    does not normalise (``do_normalize=False``) gives mean 0 and std 1 (pixels in [0, 1]).
    """
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    hw = _size_hw(crop) or _size_hw(getattr(processor, "size", None))
    mean = _per_channel(getattr(processor, "image_mean", None), channels)
    std = _per_channel(getattr(processor, "image_std", None), channels)
    if getattr(processor, "do_normalize", True) is False and mean is not None:
        mean, std = (0.0,) * len(mean), (1.0,) * len(mean)
    if hw is None or mean is None or std is None or len(mean) != len(std):
        return None
    return (len(mean), *hw), mean, std
