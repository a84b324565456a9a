"""Tiny Hugging Face ``transformers`` image classifiers, built from small configs (no download).

Used by ``benchmarks/zoo.py`` (coverage of every image-classification architecture of the
installed transformers) and by the tests. ``SMALL`` holds per-family config overrides that keep a
model tiny and runnable; :func:`small_config` applies them (or a generic shrinker for a family
the table does not know), :func:`classifier_classes` lists every registered class.
"""

from __future__ import annotations

import copy
from typing import Any

_VIT = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
        "intermediate_size": 64, "image_size": 32, "patch_size": 8}
# Swin v1 / DonutSwin fail when a window is larger than the last stage's grid (64 / 4 / 8 = 2).
_SWIN = {"image_size": 64, "patch_size": 4, "embed_dim": 16, "depths": [1, 1, 2, 1],
         "num_heads": [1, 2, 2, 4], "window_size": 2, "drop_path_rate": 0.0}
_TEXT = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "max_position_embeddings": 16}
_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
           "image_size": 32, "patch_size": 8}
_STAGES = {"hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 2, 1]}

#: Per-family overrides; nested dicts update the sub-configs of composite configs.
SMALL: dict[str, dict[str, Any]] = {
    "vit": dict(_VIT), "vit_msn": dict(_VIT), "ijepa": dict(_VIT, pooler_output_size=32),
    "deit": dict(_VIT, encoder_stride=8, pooler_output_size=32),
    "beit": dict(_VIT, use_relative_position_bias=True, use_mean_pooling=True, out_indices=[1, 2, 3, 4]),
    "data2vec-vision": dict(_VIT, use_relative_position_bias=True, out_indices=[1, 2, 3, 4]),
    "dinov2": dict(_VIT, mlp_ratio=2),
    "dinov2_with_registers": dict(_VIT, mlp_ratio=2, num_register_tokens=4),
    "clip": {"vision_config": dict(_VISION, projection_dim=16), "text_config": dict(_TEXT),
             "projection_dim": 16},
    "metaclip_2": {"vision_config": dict(_VISION, projection_dim=16), "text_config": dict(_TEXT),
                   "projection_dim": 16},
    "siglip": {"vision_config": dict(_VISION), "text_config": dict(_TEXT)},
    "swin": dict(_SWIN), "swinv2": dict(_SWIN), "donut-swin": dict(_SWIN),
    "focalnet": {"image_size": 64, "patch_size": 4, "embed_dim": 16, "hidden_sizes": [32, 64, 128, 128],
                 "depths": [1, 1, 2, 1], "drop_path_rate": 0.0},
    "hiera": {"image_size": [64, 64], "embed_dim": 16, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 2, 2],
              "masked_unit_size": [8, 8], "num_query_pool": 3},
    "convnext": dict(_STAGES, image_size=64), "convnextv2": dict(_STAGES, image_size=64),
    "resnet": dict(_STAGES, embedding_size=16, layer_type="basic"),
    "bit": dict(_STAGES, embedding_size=16, num_groups=4, layer_type="preactivation"),
    "regnet": dict(_STAGES, embedding_size=16, groups_width=8),
    # EfficientNet's hidden_dim must equal round_filters(1280) for its width.
    "efficientnet": {"image_size": 64, "width_coefficient": 0.25, "depth_coefficient": 0.25,
                     "hidden_dim": 320, "dropout_rate": 0.0, "drop_connect_rate": 0.0},
    "mobilenet_v1": {"image_size": 64, "depth_multiplier": 0.25},
    "mobilenet_v2": {"image_size": 64, "depth_multiplier": 0.25},
    "mobilevit": {"image_size": 64, "hidden_sizes": [16, 24, 32],
                  "neck_hidden_sizes": [8, 8, 16, 16, 24, 24, 64], "num_attention_heads": 2},
    "mobilevitv2": {"image_size": 64, "width_multiplier": 0.25, "n_attn_blocks": [1, 1, 1]},
    # CvT indexes its drop-path rates by stage: depth[i] must be > i.
    "cvt": {"embed_dim": [16, 32, 48], "num_heads": [1, 2, 2], "depth": [1, 2, 3]},
    "poolformer": dict(_STAGES),
    "pvt": dict(_STAGES, image_size=64, num_attention_heads=[1, 2, 2, 4]),
    "pvt_v2": dict(_STAGES, image_size=[64, 64], num_attention_heads=[1, 2, 2, 4]),
    "segformer": dict(_STAGES, num_attention_heads=[1, 2, 2, 4], decoder_hidden_size=16),
    "swiftformer": {"image_size": 64, "embed_dims": [16, 24, 32, 48], "depths": [1, 1, 2, 1]},
    "levit": {"image_size": 128, "patch_size": 16, "hidden_sizes": [16, 32, 48],
              "num_attention_heads": [2, 4, 6], "depths": [1, 1, 1], "key_dim": [8, 8, 8],
              "down_ops": [["Subsample", 8, 2, 4, 2, 2], ["Subsample", 8, 4, 4, 2, 2]]},
    "hgnet_v2": {"embedding_size": 16, "depths": [1, 1, 2, 1], "hidden_sizes": [16, 32, 48, 64],
                 "stem_channels": [3, 8, 16], "stage_in_channels": [16, 16, 32, 48],
                 "stage_mid_channels": [8, 16, 16, 32], "stage_out_channels": [16, 32, 48, 64],
                 "stage_num_blocks": [1, 1, 2, 1], "stage_numb_of_layers": [2, 2, 2, 2]},
    "pp_lcnet": {"scale": 0.25, "class_expand": 64},
    "textnet": {"image_size": [64, 64], "stem_out_channels": 16, "hidden_sizes": [16, 16, 32, 48, 64]},
    "timm_wrapper": {"architecture": "test_resnet", "do_pooling": True},
    "perceiver": {"num_latents": 8, "d_latents": 32, "d_model": 32, "num_blocks": 1,
                  "num_self_attends_per_block": 1, "num_self_attention_heads": 2,
                  "num_cross_attention_heads": 1, "image_size": 32},
    "imagegpt": {"n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2, "vocab_size": 513},
}

#: Classifiers of the mapping that do not classify pixel images: they take other inputs
#: (``input_ids``, pre-patchified pixels with masks) or keep no spatial layout (latents).
NOT_PIXEL_CLASSIFIERS = {
    "imagegpt": "takes input_ids (colour-cluster tokens), not pixel_values",
    "perceiver": "its features are latents with no spatial layout",
    "siglip2": "takes pre-patchified pixel_values with an attention mask and spatial shapes",
    "shieldgemma2": "a vision-language model that needs a text prompt (input_ids)",
    "dinat": "needs the natten package (not installed)",
}
NUM_LABELS = 10


def classifier_classes() -> list[tuple[str, str]]:
    """``(model_type, class_name)`` of every image classifier registered in transformers."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    found = []
    for model_type, names in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.items():
        for name in (names if isinstance(names, (tuple, list)) else (names,)):
            found.append((model_type, name))
    return found


def _generic(default: dict[str, Any]) -> dict[str, Any]:
    """Small values for the usual size fields of a config the table does not know."""
    rules = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "embed_dim": 16,
             "image_size": 64, "drop_path_rate": 0.0}
    out = {k: v for k, v in rules.items() if default.get(k) is not None and not isinstance(default[k], list)}
    for key in ("depths", "depth"):
        if isinstance(default.get(key), list):
            out[key] = [1] * len(default[key])
    if isinstance(default.get("num_attention_heads"), int):
        out["num_attention_heads"] = 2
    return out


def small_config(model_type: str) -> Any:
    """A small config of ``model_type`` with ``NUM_LABELS`` classes."""
    from transformers import AutoConfig

    default = AutoConfig.for_model(model_type)
    overrides = copy.deepcopy(SMALL.get(model_type) or _generic(default.to_dict()))
    kwargs = {}
    for key, value in overrides.items():
        if isinstance(value, dict):  # a sub-config of a composite config
            kwargs[key] = {**getattr(default, key).to_dict(), **value}
        else:
            kwargs[key] = value
    config = AutoConfig.for_model(model_type, **kwargs)
    config.num_labels = NUM_LABELS
    return config


def build(model_type: str, class_name: str | None = None, seed: int = 0) -> Any:
    """A tiny randomly initialised classifier of ``model_type`` (eval mode)."""
    import torch
    import transformers

    if class_name is None:
        class_name = next(name for t, name in classifier_classes() if t == model_type)
    torch.manual_seed(seed)
    return getattr(transformers, class_name)(small_config(model_type)).eval()
