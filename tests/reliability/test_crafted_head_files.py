"""A head file is checked before anything runs: a crafted or damaged configuration (a huge input
size, wrong types) is refused with a message naming the field, before the model's dry forward.
One check serves TTAME.load, from_pretrained and the authors' checkpoint conversion."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME

sys.path.insert(0, str(Path(__file__).parent.parent))
from authors_checkpoints import cnn_checkpoint, resnet18  # noqa: E402


class ForwardSpy:
    """Counts the model's real forward passes (tensors in, not the proxies of a symbolic trace)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module: Any, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self.calls += 1


def _crafted(tmp_path: Path, **changes: Any) -> Path:
    """A real head file of the tiny CNN (32x32) with its configuration edited (``None``: removed)."""
    good = TTAME(make_tiny_cnn(), input_size=(3, 32, 32)).save(tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    path = tmp_path / "crafted.safetensors"
    save_file(state, str(path), metadata={**metadata, "config": json.dumps(config)})
    return path


def _refused(load, model: torch.nn.Module, match: str) -> str:
    spy = ForwardSpy(model)
    with pytest.raises(ValueError, match=match) as info:
        load()
    spy.handle.remove()
    assert spy.calls == 0, "the model ran before the configuration was checked"
    return str(info.value)


def test_a_huge_input_size_is_refused_before_any_forward(tmp_path):
    path = _crafted(tmp_path, input_size=[3, 3000, 3000])
    model = make_tiny_cnn()
    message = _refused(lambda: TTAME.load(path, model), model, r"path: ")
    assert "input_size" in message and "[3, 3000, 3000]" in message
    assert "1024 x 1024" in message and "input_size=(C, H, W)" in message  # the bound and the way out
    assert not model._forward_pre_hooks


BAD_FIELDS = [
    ("input_size", [3, 3000, 3000]),
    ("input_size", [64, 32, 32]),  # more channels than any image
    ("input_size", [3, 32]),
    ("input_size", [3, 32.5, 32]),
    ("input_size", [3, -32, 32]),
    ("input_size", "32"),
    ("input_size", None),
    ("map_size", [0, 4]),
    ("map_size", [64, 64]),  # larger than the 32x32 input
    ("map_size", "big"),
    ("layers", "layer1"),
    ("layers", [1, 2]),
    ("layers", []),
    ("num_classes", -1),
    ("num_classes", "5"),
    ("num_classes", True),
    ("normalization", [[0.5], [0.5]]),  # one channel of three
    ("normalization", [[0.5, 0.5, 0.5], [1.0, 0.0, 1.0]]),  # a zero std
    ("normalization", "imagenet"),
    ("layer_info", "x"),
    ("layer_info", [5]),
    ("mask_space", 5),
    ("adapter", 5),
]


@pytest.mark.parametrize(("key", "value"), BAD_FIELDS, ids=[f"{k}={v!r}" for k, v in BAD_FIELDS])
def test_a_bad_config_field_is_named_before_any_forward(tmp_path, key, value):
    path = _crafted(tmp_path, **{key: value})
    model = make_tiny_cnn()
    message = _refused(lambda: TTAME.load(path, model), model, r"path: ")
    assert f"{key}" in message and "damaged or crafted" in message, message


def test_the_callers_own_input_size_lifts_the_bound(tmp_path):
    path = _crafted(tmp_path, input_size=[3, 1100, 1000])
    explainer = TTAME.load(path, make_tiny_cnn(), input_size=(3, 32, 32))
    assert explainer.input_size == (3, 32, 32)


def test_from_pretrained_checks_the_config_json_the_same_way(tmp_path):
    folder = TTAME(make_tiny_cnn(), input_size=(3, 32, 32)).save_pretrained(tmp_path / "hub")
    config = json.loads((folder / "config.json").read_text())
    config["input_size"] = [3, 3000, 3000]
    (folder / "config.json").write_text(json.dumps(config))
    model = make_tiny_cnn()
    message = _refused(lambda: TTAME.from_pretrained(folder, model), model, r"path: ")
    assert "input_size" in message and "[3, 3000, 3000]" in message


def test_an_authors_checkpoint_with_a_huge_image_size_is_refused_before_any_forward(tmp_path):
    model = resnet18()
    _, path = cnn_checkpoint(tmp_path / "authors.ckpt", model, img_size=5000)
    message = _refused(lambda: TTAME.load(path, model), model, r"path: ")
    assert "input_size" in message and "5000" in message
