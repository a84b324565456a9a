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
    assert explainer.adapter.suggestions == {}  # a patchifying conv, no stem
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


def test_a_conv_stem_stage_beside_the_token_layers_gives_the_stem_s_map_size() -> None:
    from torchvision.models.vision_transformer import ConvStemConfig

    stem = [ConvStemConfig(out_channels=8, kernel_size=3, stride=2),
            ConvStemConfig(out_channels=12, kernel_size=3, stride=2)]
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=5, conv_stem_configs=stem,
    )
    before = model_state(model)
    default = TTAME(model)  # the stem's 16x16 stage suggested (its 8x8 one is not finer than the grid)
    assert list(default.adapter.suggestions) == ["conv_proj.conv_bn_relu_0"]
    assert default.adapter.stem_stage((3, 32, 32)) == ("conv_proj.conv_bn_relu_0", (16, 16), (8, 8))
    blocks = default.layers
    after = model_state(model)  # the stem's dry run left its BatchNorm statistics and modes alone
    assert all(torch.equal(v, before["tensors"][k]) for k, v in after["tensors"].items())
    assert after["training"] == before["training"]
    explainer = TTAME(model, ["conv_proj.conv_bn_relu_0", *blocks])
    assert explainer.map_size == (16, 16)
    assert geometry(explainer) == [("nchw", 8, 16, 16, 0)] + [("tokens", 16, 8, 8, 1)] * 3
    # Known answer: the stem stage as it is (NCHW), the blocks' ln_1 patch tokens on the 8x8 grid.
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = [model.conv_proj.conv_bn_relu_0(x)]
        tokens = model._process_input(x)
        tokens = torch.cat([model.class_token.expand(2, -1, -1), tokens], dim=1)
        tokens = tokens + model.encoder.pos_embedding
        for layer in model.encoder.layers:
            normed = layer.ln_1(tokens)
            features.append(normed[:, 1:, :].reshape(2, 8, 8, 16).permute(0, 3, 1, 2))
            tokens = layer(tokens)
        expected = explainer.head(features, None)
    assert torch.allclose(explainer.class_maps(x), expected, atol=1e-5)
    model.train()
    round_trip(explainer, model, before)


def test_timm_hybrid_vit_reads_its_resnet_stem_beside_the_blocks() -> None:
    import timm

    model = timm.create_model("vit_tiny_r_s16_p8_224", pretrained=False, img_size=64, num_classes=4)
    before = model_state(model)
    default = TTAME(model)
    blocks = default.layers
    assert blocks == ["blocks.9.norm1", "blocks.10.norm1", "blocks.11.norm1"]
    assert list(default.adapter.suggestions) == ["patch_embed.backbone"]  # its 16x16 output
    explainer = TTAME(model, ["patch_embed.backbone", *blocks])
    assert explainer.map_size == (16, 16)
    assert geometry(explainer) == [("nchw", 64, 16, 16, 0)] + [("tokens", 192, 2, 2, 1)] * 3
    round_trip(explainer, model, before)
