"""The authors' checkpoints (built here in their exact layout): converted by TTAME.load to the head
they were built from; other backbone weights warned about; what cannot be converted refused."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch
from authors_checkpoints import (
    CNN_LAYERS,
    authors_state_dict,
    cnn_checkpoint,
    resnet18,
    tiny_vit,
    vit_checkpoint,
    write_checkpoint,
)

from ttame_attr import IMAGENET_MEAN, IMAGENET_STD, TTAME


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    model = resnet18()
    explainer, path = cnn_checkpoint(tmp_path_factory.mktemp("authors") / "resnet.ckpt", model)
    return model, explainer, path


def test_cnn_layout_converts_to_the_head_it_holds(cnn, caplog) -> None:
    model, source, path = cnn
    with caplog.at_level(logging.WARNING):
        loaded = TTAME.load(path, model)
    assert not caplog.records  # the checkpoint's backbone is this model's: nothing to warn about
    assert loaded.layers == CNN_LAYERS and loaded.map_size == (8, 8) and loaded.input_size == (3, 64, 64)
    assert loaded.mask_space == "pixel"  # train_method "raw_normalize"
    assert loaded.normalization is not None
    assert [list(v) for v in loaded.normalization] == [list(IMAGENET_MEAN), list(IMAGENET_STD)]
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.attribute(x, target=[1, 2, 3]), source.attribute(x, target=[1, 2, 3]))


def test_vit_layout_converts_to_the_head_it_holds(tmp_path) -> None:
    model = tiny_vit()
    source, path = vit_checkpoint(tmp_path / "vit.ckpt", model)
    loaded = TTAME.load(path, model)
    assert loaded.layers == [f"encoder.layers.encoder_layer_{i}.ln_1" for i in range(3)]
    assert loaded.adapter.name == "vit" and loaded.mask_space == "input" and loaded.map_size == (4, 4)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.class_maps(x), source.class_maps(x))


def test_other_backbone_weights_warn_and_strict_refuses(cnn, caplog) -> None:
    _, source, path = cnn
    other = resnet18(seed=1)  # torchvision's V1 and V2 weights differ the same way
    with caplog.at_level(logging.WARNING):
        loaded = TTAME.load(path, other)
    assert "'conv1.weight' has other values" in caplog.text and "IMAGENET1K_V1" in caplog.text
    assert torch.equal(loaded.state_dict()["fusion.weight"], source.state_dict()["fusion.weight"])
    with pytest.raises(ValueError, match="backbone weights differ: 'conv1.weight' has other values"):
        TTAME.load(path, other, strict=True)


@pytest.mark.parametrize("overrides, message", [
    ({"attention_version": "TAME_v2"}, "attention version 'TAME_v2'; only the released 'TAME'"),
    ({"train_method": "legacy"}, r"train_method 'legacy'; known: \['new', 'raw_normalize'\]"),
    ({"layers": ["layer2", "layer3", "layer9"]}, "reads the layer 'layer9', which this ResNet does not have"),
    ({"layers": ["layer2", "layer3"]}, r"branches \['0', '1', '2'\] for 2 layers"),
])
def test_refusals(cnn, tmp_path, overrides, message) -> None:
    model, source, _ = cnn
    hp = {"model_name": "resnet18", "layers": CNN_LAYERS, "attention_version": "TAME",
          "train_method": "raw_normalize", "num_classes": 10, "img_size": 64, **overrides}
    path = write_checkpoint(tmp_path / "x.ckpt", authors_state_dict(source, model, nested=False), **hp)
    with pytest.raises(ValueError, match=message):
        TTAME.load(path, model)


def test_refuses_another_map_size(cnn) -> None:
    model, _, path = cnn
    with pytest.raises(ValueError, match=r"makes 8x8 maps from the first layer, this package would make "
                                         r"\(8, 12\)"):
        TTAME.load(path, model, input_size=(3, 64, 96))


def test_refuses_unknown_parts_and_wrong_shapes(cnn, tmp_path) -> None:
    model, source, _ = cnn
    hp = {"model_name": "resnet18", "layers": CNN_LAYERS, "attention_version": "TAME",
          "train_method": "raw_normalize", "num_classes": 10, "img_size": 64}
    state = authors_state_dict(source, model, nested=False)
    extra = write_checkpoint(tmp_path / "extra.ckpt",
                             {**state, "generic.attn_mech.gate.weight": torch.ones(1)}, **hp)
    with pytest.raises(ValueError, match=r"cannot convert \(unexpected entries \['generic.attn_mech.gate"):
        TTAME.load(extra, model)
    narrow = dict(state)
    narrow["generic.attn_mech.convs.0.weight"] = torch.zeros(64, 64, 1, 1)
    wrong = write_checkpoint(tmp_path / "wrong.ckpt", narrow, **hp)
    with pytest.raises(ValueError, match=r"does not fit .*branches.0.conv.weight: "
                                         r"expected \(128, 128, 1, 1\)"):
        TTAME.load(wrong, model)


def test_objects_in_hyper_parameters_are_refused_without_running_code(cnn, tmp_path) -> None:
    model, source, _ = cnn
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": authors_state_dict(source, model, nested=False),
                "hyper_parameters": argparse.Namespace(layers=CNN_LAYERS)}, path)
    with pytest.raises(ValueError, match=r"refused.*Unsupported global: GLOBAL argparse.Namespace"):
        TTAME.load(path, model)


def test_converted_head_saves_to_the_hub_format(cnn, tmp_path) -> None:
    model, source, path = cnn
    folder = TTAME.load(path, model).save_pretrained(tmp_path / "hub", backbone="torchvision:resnet18")
    again = TTAME.from_pretrained(folder, model, strict=True)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(again.attribute(x), source.attribute(x)) and again.mask_space == "pixel"
