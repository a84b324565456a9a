"""Hugging Face transformers image classifiers, zero-config, on tiny random configs (no download)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from adapter_helpers import model_state, round_trip, seed  # noqa: F401 (seed: autouse)

from ttame_attr import TTAME

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _hf_models as hf  # noqa: E402

PIXEL_CLASSIFIERS = [(t, c) for t, c in hf.classifier_classes() if t not in hf.NOT_PIXEL_CLASSIFIERS]

#: The paper's layers per family: each layer's name ends with these (the last three blocks or
#: stages), with the layout and the prefix tokens (class, distillation, register) dropped.
VIT_NORMS = {
    "vit": ("layernorm_before", 1), "vit_msn": ("layernorm_before", 1), "deit": ("layernorm_before", 2),
    "ijepa": ("layernorm_before", 0), "beit": ("layernorm_before", 1),
    "data2vec-vision": ("layernorm_before", 1), "dinov2": ("norm1", 1),
    "dinov2_with_registers": ("norm1", 1 + 4), "clip": ("layer_norm1", 1),
    "metaclip_2": ("layer_norm1", 1), "siglip": ("layer_norm1", 0),
}
STAGE_ENDS = {
    "swin": ["encoder.layers.1.blocks.0", "encoder.layers.2.blocks.1", "encoder.layers.3.blocks.0"],
    "swinv2": ["encoder.layers.1.blocks.0", "encoder.layers.2.blocks.1", "encoder.layers.3.blocks.0"],
    "donut-swin": ["encoder.layers.1.blocks.0", "encoder.layers.2.blocks.1", "encoder.layers.3.blocks.0"],
    "focalnet": ["encoder.stages.1.layers.0", "encoder.stages.2.layers.1", "encoder.stages.3.layers.0"],
    "levit": ["encoder.stages.0.layers.1", "encoder.stages.1.layers.1", "encoder.stages.2.layers.1"],
    "hiera": ["encoder.stages.1", "encoder.stages.2", "encoder.stages.3"],
    "pvt_v2": ["encoder.layers.1.layer_norm", "encoder.layers.2.layer_norm", "encoder.layers.3.layer_norm"],
    "resnet": ["encoder.stages.1", "encoder.stages.2", "encoder.stages.3"],
    "regnet": ["encoder.stages.1", "encoder.stages.2", "encoder.stages.3"],
    "convnext": ["encoder.stages.1", "encoder.stages.2", "encoder.stages.3"],
    "convnextv2": ["encoder.stages.1", "encoder.stages.2", "encoder.stages.3"],
    "cvt": ["encoder.stages.0", "encoder.stages.1", "encoder.stages.2"],
    "segformer": ["stages.1", "stages.2", "stages.3"],
    "mobilevitv2": ["encoder.layer.2", "encoder.layer.3", "encoder.layer.4"],
    "efficientnet": ["encoder.blocks.2", "encoder.blocks.4", "encoder.top_activation"],
}


@pytest.fixture(scope="module")
def explainers() -> dict[tuple[str, str], tuple[torch.nn.Module, TTAME]]:
    built = {}
    for model_type, name in PIXEL_CLASSIFIERS:
        model = hf.build(model_type, name)
        built[(model_type, name)] = (model, TTAME(model))
    return built


@pytest.mark.parametrize(("model_type", "name"), PIXEL_CLASSIFIERS)
def test_zero_config_reads_spatial_maps(explainers, model_type: str, name: str) -> None:
    model, explainer = explainers[(model_type, name)]
    assert explainer.adapter.name == "hf"
    declared = getattr(getattr(model.config, "vision_config", None) or model.config, "image_size", None)
    if declared is not None:
        hw = (declared, declared) if isinstance(declared, int) else tuple(declared)
        assert explainer.input_size[1:] == hw  # the model's own size, read from its config
    for info in explainer.layer_info:
        assert info.height * info.width > 1 and info.channels > 1, info  # a spatial feature map
        assert "pad" not in info.name and "pooler" not in info.name and "drop" not in info.name
    assert set(explainer.adapter.reasons) == set(explainer.layers)
    x = torch.rand(2, *explainer.input_size)
    maps = explainer.attribute(x)
    assert maps.shape == (2, 1, *explainer.input_size[1:]) and torch.isfinite(maps).all()


@pytest.mark.parametrize("model_type", sorted(VIT_NORMS))
def test_vit_family_reads_the_pre_attention_norm_of_the_last_three_blocks(explainers, model_type) -> None:
    norm, prefix = VIT_NORMS[model_type]
    for (kind, _), (model, explainer) in explainers.items():
        if kind != model_type:
            continue
        depth = (getattr(model.config, "vision_config", None) or model.config).num_hidden_layers
        assert [n.rsplit(".", 2)[1:] for n in explainer.layers] == [
            [str(i), norm] for i in range(depth - 3, depth)]
        assert [(i.layout, i.prefix_tokens) for i in explainer.layer_info] == [("tokens", prefix)] * 3
        assert explainer.adapter.family == "vit" and explainer.mask_space == "input"


def test_vit_features_are_the_norm_of_the_blocks_inputs_on_the_patch_grid(explainers) -> None:
    # Oracle: transformers' own hidden states, normalised by the block's pre-attention norm,
    # without the class and distillation tokens, row-major on the 4x4 patch grid.
    for model_type in ("vit", "deit", "dinov2_with_registers"):
        model, explainer = next(v for (t, _), v in explainers.items() if t == model_type)
        x = torch.rand(2, *explainer.input_size)
        with torch.no_grad():
            features, _ = explainer.extractor(x)
            hidden = model(x, output_hidden_states=True).hidden_states
        norm, prefix = VIT_NORMS[model_type]
        for feature, name in zip(features, explainer.layers):
            block = model.get_submodule(name.rsplit(".", 1)[0])
            index = int(name.rsplit(".", 2)[1])
            tokens = getattr(block, norm)(hidden[index])[:, prefix:]
            expected = tokens.reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
            torch.testing.assert_close(feature, expected)


@pytest.mark.parametrize("model_type", sorted(STAGE_ENDS))
def test_stage_families_read_the_last_block_of_the_last_three_stages(explainers, model_type) -> None:
    for (kind, _), (_, explainer) in explainers.items():
        if kind == model_type:
            assert [n.split(".", 1)[1] for n in explainer.layers] == STAGE_ENDS[model_type]
            sizes = [(i.height, i.width) for i in explainer.layer_info]
            assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3  # three resolutions


def test_hiera_tokens_are_rolled_back_into_raster_order(explainers) -> None:
    model, explainer = next(v for (t, _), v in explainers.items() if t == "hiera")
    x = torch.rand(2, *explainer.input_size)
    with torch.no_grad():
        features, _ = explainer.extractor(x)
        reshaped = model(x, output_hidden_states=True).reshaped_hidden_states  # (N, h, w, C)
    for feature, stage in zip(features, (1, 2, 3)):
        torch.testing.assert_close(feature, reshaped[stage + 1].permute(0, 3, 1, 2))


def test_swin_reads_tokens_not_the_pooler(explainers) -> None:
    _, explainer = next(v for (t, _), v in explainers.items() if t == "swin")
    assert not any(name.endswith("pooler") for name in explainer.layers)
    assert [(i.layout, i.channels, i.height) for i in explainer.layer_info] == [
        ("tokens", 32, 8), ("tokens", 64, 4), ("tokens", 128, 2)]


def test_fit_on_dict_batches_and_the_model_is_left_as_found() -> None:
    model = hf.build("vit")
    before = model_state(model)
    explainer = TTAME(model)
    batches = [{"pixel_values": torch.rand(2, 3, 32, 32), "labels": torch.tensor([0, 1])}]
    history = explainer.fit(batches, epochs=1, progress=False)
    assert history[0].steps == 1
    round_trip(explainer, model, before)


def test_normalization_from_an_image_processor() -> None:
    from transformers import ConvNextImageProcessor, ViTImageProcessor

    vit = TTAME(hf.build("vit"), normalization=ViTImageProcessor())
    assert vit.normalization == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert vit.mask_space == "input"  # the paper masks ViT inputs as the model takes them
    processor = ConvNextImageProcessor(image_mean=[0.4, 0.45, 0.5], image_std=[0.2, 0.25, 0.3])
    cnn = TTAME(hf.build("convnext"), normalization=processor)
    assert cnn.normalization == ((0.4, 0.45, 0.5), (0.2, 0.25, 0.3)) and cnn.mask_space == "pixel"
    assert TTAME(hf.build("convnext")).normalization is None  # the model alone does not tell


def test_transformers_is_imported_only_for_a_transformers_model() -> None:
    code = ("import sys, torch, torchvision\nfrom ttame_attr import TTAME\n"
            "TTAME(torchvision.models.resnet18(num_classes=3), input_size=(3, 32, 32))\n"
            "assert 'transformers' not in sys.modules, 'transformers was imported'\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
