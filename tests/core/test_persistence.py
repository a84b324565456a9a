"""save / load / state_dict: identical maps, safe loading, clear mismatch errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from tiny_models import make_tiny_cnn, make_tiny_vit

from ttame_attr import TTAME


@pytest.fixture
def trained() -> TTAME:
    torch.manual_seed(0)
    # head_init="pytorch": after two steps a zero start would still give nearly flat maps
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32), head_init="pytorch")
    e.fit([torch.rand(4, 3, 32, 32) for _ in range(2)], epochs=1, progress=False)
    return e


def test_save_load_gives_identical_maps(trained, tmp_path, images) -> None:
    path = trained.save(tmp_path / "head.pt")
    loaded = TTAME.load(path, make_tiny_cnn())
    assert loaded.layers == trained.layers and loaded.map_size == trained.map_size
    assert torch.equal(loaded.attribute(images), trained.attribute(images))
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_saved_file_is_safetensors_with_json_config(trained, tmp_path) -> None:
    from safetensors import safe_open

    path = trained.save(tmp_path / "head.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        assert set(f.keys()) == set(trained.state_dict())
    assert metadata["format"] == "ttame_attr.head"
    config = json.loads(metadata["config"])
    assert config["layers"] == ["layer1", "layer2", "layer3"]
    assert config["num_classes"] == 5
    assert "package_version" in config
    assert config["model_class_path"] == "tiny_models.TinyCNN"
    assert set(config["model_weights"]["tensors"]) == set(trained.model.state_dict())
    header = path.read_bytes()[:9]  # safetensors: the JSON header's length, then the header
    assert header[8:9] == b"{" and int.from_bytes(header[:8], "little") > 0


def _save_the_old_way(explainer: TTAME, path) -> None:
    """What TTAME.save wrote before heads were safetensors (ttame_attr <= 0.x): torch.save of a
    dict of tensors and plain values, without the model's fingerprint."""
    payload = {"format": "ttame_attr.head", "format_version": 1, "config": explainer.config(),
               "state_dict": {k: v.detach().cpu() for k, v in explainer.state_dict().items()}}
    torch.save(payload, path)


def test_head_files_of_older_versions_still_load(trained, tmp_path, images, caplog) -> None:
    old = tmp_path / "old_head.pt"
    _save_the_old_way(trained, old)
    with caplog.at_level("WARNING"):
        loaded = TTAME.load(old, make_tiny_cnn())
    assert torch.equal(loaded.attribute(images), trained.attribute(images))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_state_dict_round_trip(trained, images) -> None:
    other = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    other.load_state_dict(trained.state_dict())
    assert torch.equal(other.attribute(images), trained.attribute(images))


def test_load_into_wrong_model_says_what_differs(trained, tmp_path) -> None:
    path = trained.save(tmp_path / "head.pt")
    with pytest.raises(ValueError, match="outputs 7 classes, the head was trained for 5"):
        TTAME.load(path, make_tiny_cnn(num_classes=7))
    with pytest.raises(ValueError, match="no module named 'layer1'"):
        TTAME.load(path, make_tiny_vit())


def test_state_dict_of_wrong_shape(trained) -> None:
    other = TTAME(make_tiny_cnn(num_classes=7), input_size=(3, 32, 32))
    with pytest.raises(ValueError, match=r"fusion.weight: expected \(7, 40, 1, 1\)"):
        other.load_state_dict(trained.state_dict())


def test_load_refuses_code_and_garbage(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "ttame_attr.head", "x": Payload()}, f)
    with pytest.raises(ValueError, match="refused"):
        TTAME.load(evil, make_tiny_cnn())
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="path"):
        TTAME.load(junk, make_tiny_cnn())
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a T-TAME head"):
        TTAME.load(foreign, make_tiny_cnn())
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        TTAME.load(tmp_path / "missing.pt", make_tiny_cnn())
