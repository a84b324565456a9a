"""What training, export, the metrics and the head file read of an explainer: its public parts.

:class:`ExplainerParts` is a structural type (a ``Protocol``): :class:`~ttame_attr.TTAME` has
every one of these attributes, and the modules below the facade name this type, never ``TTAME``
itself, so that the dependencies point one way (the facade imports them, not the reverse).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ttame_attr._core.features import FeatureExtractor
from ttame_attr._core.head import AttentionHead
from ttame_attr._core.setup import Normalization
from ttame_attr.adapters._base import BackboneAdapter, LayerInfo

__all__ = ["ExplainerParts"]


@runtime_checkable
class ExplainerParts(Protocol):
    """The public parts of a T-TAME explainer (see :class:`~ttame_attr.TTAME` for each one).

    Attributes:
        model: the frozen classifier.
        head: the attention head.
        extractor: reads the feature layers (and the logits) in one forward pass.
        loss_fn: the training loss.
        mask_space: ``"input"`` or ``"pixel"``.
        normalization: ``(mean, std)`` of the model's inputs, or ``None``.
        history: the last ``fit``'s :class:`~ttame_attr.TrainingHistory`, or ``None``.
        multi_label: whether the model is multi-label (or single-logit): sigmoid labels.
        threshold: with ``multi_label``, the probability above which a label is positive.
        max_masked: with ``multi_label``, the most pairs masked per step (``None``: ``2 * B``).
    """

    model: nn.Module
    head: AttentionHead
    extractor: FeatureExtractor
    loss_fn: nn.Module
    mask_space: str
    normalization: Normalization | None
    history: Any
    multi_label: bool
    threshold: float
    max_masked: int | None

    @property
    def adapter(self) -> BackboneAdapter: ...

    @property
    def layers(self) -> list[str]: ...

    @property
    def layer_info(self) -> list[LayerInfo]: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def input_size(self) -> tuple[int, int, int]: ...

    @property
    def map_size(self) -> tuple[int, int]: ...

    @property
    def device(self) -> torch.device: ...

    def attribute(self, inputs: Any, target: Any = None, additional_forward_args: Any = None,
                  **kwargs: Any) -> Any: ...

    def config(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True) -> Any: ...
