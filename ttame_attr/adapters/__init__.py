"""Backbone adapters: which layers of a classifier T-TAME reads, and how they become NCHW maps.

Built-in adapters, registered explicitly here (no import side effects elsewhere):

* ``vit``: torchvision and timm vision transformers (tokens ``(N, L, C)``);
* ``swin``: torchvision and timm Swin transformers, v1 and v2 (channels-last ``(N, h, w, C)``);
* ``hf``: Hugging Face transformers image classifiers, per family (ViTs, hierarchical
  transformers, CNNs);
* ``cnn``: every other model, stages found by a dry run (NCHW, or channels-last detected).

A backbone inside a wrapper (a normalising ``forward``, ``nn.Sequential``, a Lightning-style
holder) is found and read as if bare (:func:`find_backbone`).
"""

from ttame_attr.adapters._base import BackboneAdapter, LayerInfo, Layout, guess_layout, to_nchw
from ttame_attr.adapters._cnn import CNNAdapter, find_resolution_stages
from ttame_attr.adapters._hf import HFAdapter
from ttame_attr.adapters._hooks import ModuleCall, capture_features, named_modules_or_error, probe_modules
from ttame_attr.adapters._nested import NestedAdapter, find_backbone
from ttame_attr.adapters._registry import (
    get_adapter,
    list_adapters,
    register_adapter,
    resolve_adapter,
    unregister_adapter,
)
from ttame_attr.adapters._swin import SwinAdapter
from ttame_attr.adapters._vit import ViTAdapter

__all__ = [
    "BackboneAdapter", "CNNAdapter", "HFAdapter", "LayerInfo", "Layout", "ModuleCall", "NestedAdapter",
    "SwinAdapter", "ViTAdapter", "capture_features", "find_backbone", "find_resolution_stages",
    "get_adapter", "guess_layout", "list_adapters", "named_modules_or_error", "probe_modules",
    "register_adapter", "resolve_adapter", "to_nchw", "unregister_adapter",
]
