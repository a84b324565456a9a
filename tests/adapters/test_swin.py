"""The ``swin`` adapter: channels-last stages of timm and torchvision Swin transformers."""

from __future__ import annotations

import torchvision
from adapter_helpers import geometry, model_state, round_trip, seed  # noqa: F401 (seed: autouse)

from ttame_attr._core.ttame import TTAME


def test_timm_swin_stages_are_channels_last() -> None:
    import timm  # noqa: F401  (a dev dependency: fail loudly if missing)
    from timm.models.swin_transformer import SwinTransformer

    model = SwinTransformer(
        img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1, 1),
        num_heads=(1, 1, 1), num_classes=10,
    )
    before = model_state(model)
    explainer = TTAME(model)  # the input size comes from patch_embed.img_size
    assert explainer.adapter.name == "swin"
    assert explainer.input_size == (3, 64, 64)
    assert explainer.layers == ["layers.0", "layers.1", "layers.2"]
    assert geometry(explainer) == [
        ("nhwc", 16, 16, 16, 0), ("nhwc", 32, 8, 8, 0), ("nhwc", 64, 4, 4, 0)
    ]
    round_trip(explainer, model, before)


def test_torchvision_swin_reads_its_stages_not_the_patch_merging() -> None:
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1], num_heads=[1, 1, 1],
        window_size=[4, 4], num_classes=10,
    )
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 64, 64))
    assert explainer.adapter.name == "swin"
    assert explainer.layers == ["features.1", "features.3", "features.5"]
    assert geometry(explainer) == [
        ("nhwc", 16, 16, 16, 0), ("nhwc", 32, 8, 8, 0), ("nhwc", 64, 4, 4, 0)
    ]
    round_trip(explainer, model, before)


def test_torchvision_swin_takes_a_non_square_input() -> None:
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1], num_heads=[1, 1, 1],
        window_size=[4, 4], num_classes=10,
    )
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 64, 96))
    assert [(i.height, i.width) for i in explainer.layer_info] == [(16, 24), (8, 12), (4, 6)]
    round_trip(explainer, model, before)
