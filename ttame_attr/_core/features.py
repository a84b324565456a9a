"""The layers T-TAME reads from a model, and the forward pass that returns them as NCHW maps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ttame_attr._core.modes import eval_mode
from ttame_attr._core.outputs import extract_logits
from ttame_attr.adapters._base import BackboneAdapter, LayerInfo
from ttame_attr.adapters._hooks import (
    StopForward,
    capture_features,
    named_modules_or_error,
    record_output_versions,
)

__all__ = ["FeatureExtractor", "input_size_error"]

logger = logging.getLogger(__name__)


def input_size_error(input_size: tuple[int, int, int], err: Exception) -> ValueError:
    """The error for a model that fails on a dry run of ``input_size``."""
    return ValueError(
        f"input_size: the model failed on a dry run with an input of size {input_size} "
        f"({type(err).__name__}: {err}). Pass the input_size=(C, H, W) the model expects."
    )


def _moved_model_error(model: nn.Module, device: torch.device) -> ValueError | None:
    """The error for a model that is no longer on the explainer's ``device`` (it was moved after
    ``TTAME(model)``), or ``None`` if its first parameter or buffer is still there."""
    found = next(iter(model.parameters()), None)
    found = found if found is not None else next(iter(model.buffers()), None)
    if found is None or found.device == device:
        return None
    return ValueError(
        f"model: the model is on {found.device} but the explainer's head and the images are on "
        f"{device}: the model was moved after TTAME(model) was built. Move the head with it, "
        f"explainer.head.to({str(found.device)!r}), or move the model back (model.to({str(device)!r})), "
        "or build TTAME(model) again."
    )


class FeatureExtractor:
    """Runs the model once and returns the chosen layers' outputs as ``(N, C, h, w)`` maps.

    Built by :meth:`build` from a dry run that learns each layer's layout, channels and size.

    Args:
        model: the classifier (never modified; put in eval mode for each call).
        adapter: turns each layer's output into NCHW.
        infos: what the dry run found, one entry per layer, earliest first.
        input_size: ``(C, H, W)`` the extractor was built for.
    """

    def __init__(self, model: nn.Module, adapter: BackboneAdapter, infos: Sequence[LayerInfo],
                 input_size: tuple[int, int, int]) -> None:
        self.model, self.adapter = model, adapter
        self.infos = list(infos)
        self.input_size = input_size
        self.names = [info.name for info in self.infos]
        self._clone = [info.name for info in self.infos if info.inplace_modified]

    @classmethod
    def build(
        cls, model: nn.Module, adapter: BackboneAdapter, layers: Sequence[str] | None,
        input_size: tuple[int, int, int], device: torch.device, dtype: torch.dtype,
    ) -> tuple[FeatureExtractor, Tensor]:
        """Choose the layers (the adapter's when ``layers`` is ``None``) and dry-run the model.

        Returns:
            The extractor and the dry run's logits ``(2, num_classes)``.

        Raises:
            TypeError, ValueError: for bad layer names, layers that do not run or are no
                feature maps, and a model that fails on ``input_size``.
        """
        with eval_mode(model):
            names = cls._choose(model, adapter, layers, input_size)
            x = torch.zeros(2, *input_size, device=device, dtype=dtype)
            with torch.no_grad(), capture_features(model, names) as store, \
                    record_output_versions(model, names) as versions:
                try:
                    output = model(x)
                except (RuntimeError, AssertionError) as err:
                    raise input_size_error(input_size, err) from err
        logits = extract_logits(output)
        missing = [n for n in names if n not in store]
        if missing:
            raise ValueError(
                f"layers: {missing} did not run during the forward pass of "
                f"{type(model).__name__}; choose modules that are called in forward()."
            )
        infos = [cls._describe(adapter, name, store[name], versions[name], input_size[1:])
                 for name in names]
        return cls(model, adapter, infos, input_size), logits

    @staticmethod
    def _choose(model: nn.Module, adapter: BackboneAdapter, layers: Sequence[str] | None,
                input_size: tuple[int, int, int]) -> list[str]:
        if layers is None:
            try:
                chosen = adapter.default_layers(input_size)
            except (RuntimeError, AssertionError) as err:
                raise input_size_error(input_size, err) from err
            logger.info("TTAME: the %r adapter chose layers %s of %s", adapter.name, chosen,
                        type(model).__name__)
            for name, why in adapter.suggestions.items():
                logger.info("TTAME: the %r adapter suggests adding layer %r: %s", adapter.name, name, why)
        else:
            if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
                raise TypeError(
                    "layers: expected a non-empty list of module names, e.g. "
                    f"['layer3', 'layer4'], got {layers!r}."
                )
            chosen = list(layers)
            if len(set(chosen)) != len(chosen):
                raise ValueError(f"layers: each layer may be given once, got {chosen}.")
        named_modules_or_error(model, chosen)
        return chosen

    @staticmethod
    def _describe(adapter: BackboneAdapter, name: str, feature: Tensor, version: int,
                  hw: tuple[int, int]) -> LayerInfo:
        layout = adapter.layout(name, feature, hw)
        nchw = adapter.convert(name, feature, layout, hw)
        info = LayerInfo(
            name=name, layout=layout, channels=int(nchw.shape[1]), height=int(nchw.shape[2]),
            width=int(nchw.shape[3]),
            prefix_tokens=int(feature.shape[1] - nchw.shape[2] * nchw.shape[3]) if layout == "tokens" else 0,
            inplace_modified=feature._version != version,
        )
        if info.inplace_modified:
            logger.info("TTAME: %r is modified in place by the model; it will be cloned", name)
        return info

    def __call__(
        self, x: Tensor, need_logits: bool = True, additional_forward_args: Any = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """The NCHW features of ``x`` (and the logits when ``need_logits``; else the forward
        pass stops after the last layer and the logits are ``None``)."""
        args = () if additional_forward_args is None else (
            additional_forward_args if isinstance(additional_forward_args, tuple)
            else (additional_forward_args,)
        )
        stop = None if need_logits else self.names[-1]
        hw = (x.shape[-2], x.shape[-1])
        logits = None
        with eval_mode(self.model), capture_features(
            self.model, self.names, clone=self._clone, stop_after=stop
        ) as store:
            try:
                logits = extract_logits(self.model(x, *args))
            except StopForward:
                pass
            except (RuntimeError, AssertionError) as err:
                moved = _moved_model_error(self.model, x.device)
                if moved is not None:
                    raise moved from err
                if hw != self.input_size[1:]:
                    raise ValueError(
                        f"inputs: the model rejected images of size {hw} ({type(err).__name__}: "
                        f"{err}). It was set up for {self.input_size[1:]}; resize the images."
                    ) from err
                raise
        features = [self.adapter.convert(info.name, store[info.name], info.layout, hw) for info in self.infos]
        return features, logits
