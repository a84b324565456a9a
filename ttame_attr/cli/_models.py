"""Model specs of the command line: ``torchvision:NAME``, ``timm:NAME``, ``hf:NAME_OR_PATH``,
``module:callable``, files; ``--weights FILE`` for any of them."""

from __future__ import annotations

import difflib
import importlib
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ttame_attr.cli._errors import CLIError

__all__ = ["SPEC_HELP", "LoadedModel", "load_model", "model_preprocessing"]

logger = logging.getLogger(__name__)

SPEC_HELP = (
    "torchvision:NAME (e.g. torchvision:resnet50), timm:NAME (e.g. timm:vit_base_patch16_224), "
    "hf:NAME_OR_FOLDER (a transformers image classifier, e.g. hf:google/vit-base-patch16-224), "
    "or a Python import path module:callable returning an nn.Module"
)


class LoadedModel(NamedTuple):
    """What a model spec loads: the model (in eval mode) and, for ``hf:``, its image processor."""

    model: nn.Module
    processor: Any = None


def _suggest(name: str, names: list[str]) -> str:
    """`` Did you mean ...?`` with the names closest to ``name``, or nothing."""
    close = difflib.get_close_matches(name, names, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _given(**kwargs: Any) -> dict[str, Any]:
    """``kwargs`` without the ``None`` values."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _torchvision(name: str, pretrained: bool, num_classes: int | None) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        raise CLIError(f"model: torchvision has no model {name!r}.{_suggest(name, available)} "
                       "List them with torchvision.models.list_models().")
    if num_classes is not None and pretrained:
        raise CLIError("--num-classes: torchvision's pretrained weights come with their own classifier; "
                       "drop --num-classes or --pretrained (for a fine-tuned model: --num-classes N "
                       "--weights FILE).")
    try:
        return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None,
                                            **_given(num_classes=num_classes))
    except Exception as err:  # network errors, bad kwargs for this model
        raise CLIError(f"model: building torchvision:{name} failed: {type(err).__name__}: {err}") from err


def _timm(name: str, pretrained: bool, num_classes: int | None) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise CLIError(
            "model: timm models need timm; install it with `pip install ttame-attr[timm]`.") from None
    if not timm.is_model(name):
        raise CLIError(f"model: timm has no model {name!r}.{_suggest(name, timm.list_models())}")
    try:
        return timm.create_model(name, pretrained=pretrained, **_given(num_classes=num_classes))
    except Exception as err:
        raise CLIError(f"model: building timm:{name} failed: {type(err).__name__}: {err}") from err


def _callable(spec: str, pretrained: bool, num_classes: int | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise CLIError(
            f"model: cannot import module {module_name!r} of {spec!r} ({err}). Is it on PYTHONPATH?"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"model: module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CLIError(f"model: {spec!r} is a {type(obj).__name__}, not an nn.Module or a callable.")
    kwargs = _given(num_classes=num_classes, pretrained=True if pretrained else None)
    try:
        model = obj(**kwargs)
    except TypeError as err:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise CLIError(f"model: calling {spec}({args}) failed: {err}") from None
    if not isinstance(model, nn.Module):
        raise CLIError(f"model: {spec} returned a {type(model).__name__}, expected an nn.Module.")
    return model


def _torchscript(path: Path, pretrained: bool) -> nn.Module:
    if pretrained:
        raise CLIError("--pretrained: only torchvision: and timm: models download weights.")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise CLIError(f"model: {str(path)!r} is not a TorchScript file ({type(err).__name__}); a model is "
                       f"named by a spec ({SPEC_HELP}), and a state dict goes to --weights FILE.") from None


def _build(spec: str, pretrained: bool, num_classes: int | None) -> LoadedModel:
    """The model (and processor) a spec names, before ``--weights`` and the checks."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix == "torchvision":
        return LoadedModel(_torchvision(rest, pretrained, num_classes))
    if sep and prefix == "timm":
        return LoadedModel(_timm(rest, pretrained, num_classes))
    if sep and prefix == "hf":  # from_pretrained always loads the weights: --pretrained changes nothing
        from ttame_attr.cli._hf import load_hf

        return LoadedModel(*load_hf(rest, num_classes))
    if spec.endswith((".pt", ".pth", ".ts", ".jit")) or Path(spec).is_file():
        if not Path(spec).is_file():
            raise CLIError(f"model: no such file {spec!r}.")
        return LoadedModel(_torchscript(Path(spec), pretrained))
    if sep and rest and all(p.isidentifier() for p in prefix.split(".")):
        return LoadedModel(_callable(spec, pretrained, num_classes))
    raise CLIError(f"model: cannot read the model spec {spec!r}; expected {SPEC_HELP}.")


def load_model(spec: str, *, pretrained: bool = False, num_classes: int | None = None,
               weights: str | Path | None = None) -> LoadedModel:
    """Build or load the classifier a model spec names, in eval mode.

    Args:
        spec: see :data:`SPEC_HELP`.
        pretrained: download pretrained weights (torchvision / timm / module:callable; ``hf:``
            models always load their checkpoint's weights, so it changes nothing there).
        num_classes: the classifier's number of classes (a fresh head; ``num_labels`` for ``hf:``).
        weights: a local state dict file loaded strictly into the model (see
            :func:`ttame_attr.cli._weights.load_weights`).

    Returns:
        ``(model, processor)``: the processor is the ``hf:`` model's image processor, else ``None``.

    Raises:
        CLIError: for unknown or malformed specs, missing files, failed builds, weights that do
            not fit.
    """
    if not isinstance(spec, str) or not spec:
        raise CLIError(f"model: expected a model spec ({SPEC_HELP}), got {spec!r}.")
    if num_classes is not None and num_classes < 1:
        raise CLIError(f"--num-classes: expected a positive number of classes, got {num_classes}.")
    if weights is not None and pretrained and not spec.startswith("hf:"):
        raise CLIError("--pretrained and --weights: --weights replaces every weight of the model, so "
                       "downloading pretrained ones first is wasted; drop --pretrained.")
    model, processor = _build(spec, pretrained, num_classes)
    if isinstance(model, torch.jit.ScriptModule):
        raise CLIError(
            f"model: {spec!r} is a TorchScript module, and TorchScript does not run the forward "
            "hooks T-TAME reads feature maps with; pass the model as module:callable instead."
        )
    if weights is not None:
        from ttame_attr.cli._weights import load_weights

        load_weights(model, weights)
    return LoadedModel(model.eval(), processor)


Size = tuple[int, int, int]


def model_preprocessing(model: nn.Module, processor: Any = None) -> tuple[Size, tuple[float, ...],
                                                                         tuple[float, ...]]:
    """``(input_size, mean, std)`` of the model.

    In order: the ``hf:`` image processor's size (``crop_size`` when it crops) and
    ``image_mean`` / ``image_std``; timm's data config; the size the model declares (a
    transformers config's ``image_size`` and ``num_channels``, a ViT's patch embedding) with
    ImageNet mean and std; else 224 px and ImageNet's.
    """
    from ttame_attr import IMAGENET_MEAN, IMAGENET_STD
    from ttame_attr.adapters._base import _declared_input_size
    from ttame_attr.adapters._nested import is_transformers_model

    if processor is not None:
        from ttame_attr.cli._hf import processor_preprocessing

        found = processor_preprocessing(processor)
        if found is not None:
            return found
        logger.warning("the image processor %s gives no size or mean/std; using the model config's "
                       "size and ImageNet mean/std.", type(processor).__name__)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "mean" in cfg and "std" in cfg:
        try:
            from timm.data import resolve_model_data_config

            data = resolve_model_data_config(model)
            size = tuple(int(v) for v in data["input_size"])
            return size, tuple(data["mean"]), tuple(data["std"])  # type: ignore[return-value]
        except ImportError:  # pragma: no cover - timm models imply timm
            pass
    if is_transformers_model(model):
        from ttame_attr.adapters._hf import HFAdapter

        size = HFAdapter(model).input_size() or (3, 224, 224)
        logger.warning("%s: no image processor; using the config's input size %s and ImageNet mean/std "
                       "(save the processor beside the model for its own).", type(model).__name__, size)
        return size, IMAGENET_MEAN, IMAGENET_STD
    return _declared_input_size(model) or (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD
