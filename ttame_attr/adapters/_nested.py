"""Backbones inside wrappers: the adapter of the library model wherever it sits in the tree.

Users wrap their classifiers (a normalising ``forward``, ``nn.Sequential(Normalize, model)``, a
LightningModule holding the network). :func:`find_backbone` finds the torchvision, timm or
transformers classifier (or a model a specific adapter recognises) inside, and
:class:`NestedAdapter` reads it as if it were bare, with the wrapper's name prefix on every layer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ttame_attr.adapters._base import (
    BackboneAdapter,
    Layout,
    Normalization,
    is_timm_model,
    is_torchvision_classifier,
)
from ttame_attr.adapters._hooks import capture_inputs

__all__ = ["NestedAdapter", "find_backbone", "is_library_classifier"]

logger = logging.getLogger(__name__)


def is_transformers_model(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face ``PreTrainedModel`` (read off its classes' names, so
    ``transformers`` is never imported here)."""
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
               for c in type(model).__mro__)


def is_library_classifier(model: nn.Module) -> bool:
    """A torchvision classifier class, a timm model or a transformers model (not their blocks)."""
    return is_torchvision_classifier(model) or is_timm_model(model) or is_transformers_model(model)


def find_backbone(model: nn.Module, recognised: Callable[[nn.Module], bool]) -> tuple[nn.Module, str]:
    """``(module, name)`` of the classifier to read: ``model`` itself (name ``""``) when it is a
    library classifier or ``recognised``, else the shallowest submodule that is, else ``model``."""
    if is_library_classifier(model) or recognised(model):
        return model, ""
    queue = deque(model.named_children())
    while queue:
        name, module = queue.popleft()
        if is_library_classifier(module) or recognised(module):
            return module, name
        queue.extend((f"{name}.{child}", sub) for child, sub in module.named_children())
    return model, ""


class NestedAdapter(BackboneAdapter):
    """The adapter of a backbone at ``prefix`` inside ``model``; layer names carry the prefix.

    Args:
        model: the wrapper the user passes to :class:`~ttame_attr.TTAME`.
        inner: the adapter bound to the backbone.
        prefix: the backbone's name in ``model.named_modules()``.
    """

    def __init__(self, model: nn.Module, inner: BackboneAdapter, prefix: str) -> None:
        super().__init__(model)
        self.inner, self.prefix = inner, prefix
        self.name = inner.name  # type: ignore[misc] - the backbone's adapter, for users and files
        self.family = inner.family

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return False

    def _inner_name(self, name: str) -> str:
        head = self.prefix + "."
        return name[len(head):] if name.startswith(head) else name

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        layers = [f"{self.prefix}.{name}" for name in self.inner.default_layers(input_size)]
        self.reasons = {f"{self.prefix}.{name}": f"{reason} (inside {type(self.model).__name__})"
                        for name, reason in self.inner.reasons.items()}
        self.suggestions = {f"{self.prefix}.{name}": why for name, why in self.inner.suggestions.items()}
        return layers

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        return self.inner.layout(self._inner_name(name), output, input_hw)

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int] | None:
        return self.inner.grid(input_hw)

    def token_grid(self, name: str, length: int, input_hw: tuple[int, int]) -> tuple[int, int]:
        return self.inner.token_grid(self._inner_name(name), length, input_hw)

    def convert(self, name: str, output: Tensor, layout: Layout, input_hw: tuple[int, int]) -> Tensor:
        return self.inner.convert(self._inner_name(name), output, layout, input_hw)

    def input_size(self) -> tuple[int, int, int] | None:
        return self.inner.input_size()

    def normalization(self, input_size: tuple[int, int, int] | None = None) -> Normalization | None:
        """The backbone's normalisation, if the wrapper hands it the input unchanged.

        A wrapper that transforms the input first (a normalising ``forward``) takes images in
        another space, presumably pixels: then ``None``, and masking the input masks pixels.
        """
        declared = self.inner.normalization(input_size)
        size = input_size or self.inner.input_size()
        if declared is None or size is None:
            return declared
        backbone = self.model.get_submodule(self.prefix)
        param = next(self.model.parameters(), None)
        x = torch.rand(1, *size, generator=torch.Generator().manual_seed(0))
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)
        with torch.no_grad(), capture_inputs(backbone) as seen:
            try:
                self.model(x)
            except Exception:  # noqa: BLE001 - a wrapper that cannot run this probe: assume nothing
                return None
        if seen and isinstance(seen[0], Tensor) and seen[0].shape == x.shape and torch.equal(seen[0], x):
            return declared
        logger.info("TTAME: %s transforms its input before %r; taking its input as images that need "
                    "no un-normalising (pass normalization= if it expects normalised images)",
                    type(self.model).__name__, self.prefix)
        return None
