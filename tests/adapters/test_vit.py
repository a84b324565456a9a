"""The ``vit`` adapter: prefix tokens and patch grids read from torchvision and timm ViTs."""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from adapter_helpers import geometry, model_state, round_trip, seed  # noqa: F401 (seed: autouse)
from torch import nn

from ttame_attr._core.ttame import TTAME


def test_torchvision_vit_reads_ln1_of_the_last_three_blocks() -> None:
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=4, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=10,
    )
    before = model_state(model)
    explainer = TTAME(model)  # the input size comes from model.image_size
    assert explainer.adapter.name == "vit"
    assert explainer.input_size == (3, 32, 32)
    assert explainer.layers == [f"encoder.layers.encoder_layer_{i}.ln_1" for i in (1, 2, 3)]
    assert geometry(explainer) == [("tokens", 16, 4, 4, 1)] * 3
    round_trip(explainer, model, before)


def test_timm_test_vit_has_one_prefix_token() -> None:
    import timm
    model = timm.create_model("test_vit", pretrained=False, num_classes=10)
    explainer = TTAME(model)
    _, h, w = explainer.input_size
    p = model.patch_embed.patch_size
    depth = len(model.blocks)
    assert explainer.layers == [f"blocks.{i}.norm1" for i in range(depth - 3, depth)]
    assert [(i.layout, i.prefix_tokens, i.height, i.width) for i in explainer.layer_info] == [
        ("tokens", 1, h // p[0], w // p[1])
    ] * 3


def _tiny_timm_vit(**kwargs: Any) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    defaults = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 3, "num_heads": 2,
                "num_classes": 10}
    return VisionTransformer(**{**defaults, **kwargs})


def test_timm_vit_with_register_tokens_drops_class_and_registers() -> None:
    import timm  # noqa: F401  (a dev dependency: fail loudly if missing)
    model = _tiny_timm_vit(reg_tokens=4)
    before = model_state(model)
    explainer = TTAME(model)  # built directly: the input size comes from patch_embed.img_size
    assert explainer.input_size == (3, 32, 32)
    assert explainer.layers == ["blocks.0.norm1", "blocks.1.norm1", "blocks.2.norm1"]
    assert geometry(explainer) == [("tokens", 16, 4, 4, 5)] * 3
    round_trip(explainer, model, before)


def test_distilled_deit_drops_class_and_distillation_tokens() -> None:
    import timm  # noqa: F401  (a dev dependency: fail loudly if missing)
    from timm.models.deit import VisionTransformerDistilled

    model = VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=10
    )
    before = model_state(model)
    explainer = TTAME(model)
    assert geometry(explainer) == [("tokens", 16, 4, 4, 2)] * 3
    round_trip(explainer, model, before)


def test_vit_tokens_are_laid_out_row_major_on_a_non_square_grid() -> None:
    import timm  # noqa: F401  (a dev dependency: fail loudly if missing)
    model = _tiny_timm_vit(img_size=(32, 48), reg_tokens=1)
    before = model_state(model)
    explainer = TTAME(model)
    assert explainer.input_size == (3, 32, 48)
    assert geometry(explainer) == [("tokens", 16, 4, 6, 2)] * 3
    # Known answer: the head reads the patch tokens of each block's norm1, laid out row-major
    # on the 4x6 grid after the class and register tokens.
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        features = []
        for block in model.blocks:
            normed = block.norm1(tokens)
            features.append(normed[:, 2:, :].reshape(2, 4, 6, 16).permute(0, 3, 1, 2))
            tokens = block(tokens)
        expected = explainer.head(features, None)
    assert torch.allclose(explainer.class_maps(x), expected, atol=1e-5)
    round_trip(explainer, model, before)
