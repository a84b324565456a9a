"""``--weights FILE``: a fine-tuned state dict loaded into the model a spec builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_usage_error, run
from torch import nn

from ttame_attr.cli._models import load_model

RESNET = ["torchvision:resnet18", "--input-size", "64"]


def randomized(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``model`` with every tensor replaced by seeded random values (unlike any
    freshly built model's), as a fine-tuned checkpoint would differ."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            state[key] = torch.randn(value.shape, generator=g).abs() + 0.01  # positive: valid BN variances
        else:
            state[key] = torch.randint(0, 100, value.shape, generator=g).to(value.dtype)
    return state


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """A random 5-class resnet18 state dict, saved plain, nested in a DDP-style training
    checkpoint, Lightning-style and as safetensors."""
    import torchvision
    from safetensors.torch import save_file

    state = randomized(torchvision.models.resnet18(num_classes=5), seed=1)
    folder = tmp_path_factory.mktemp("weights")
    paths = {name: folder / file for name, file in [
        ("plain", "plain.pth"), ("ddp", "ddp.pt"), ("lightning", "lightning.ckpt"),
        ("safetensors", "w.safetensors")]}
    torch.save(state, paths["plain"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3, "best": 0.5},
               paths["ddp"])
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 10},
               paths["lightning"])
    save_file(state, str(paths["safetensors"]))
    return state, paths


@pytest.mark.parametrize("kind", ["plain", "ddp", "lightning", "safetensors"])
def test_loaded_tensors_equal_the_saved_ones(finetuned, kind):
    state, paths = finetuned
    model, processor = load_model("torchvision:resnet18", num_classes=5, weights=paths[kind])
    assert processor is None and not model.training
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_the_cli_runs_a_finetuned_model(finetuned, capsys):
    _, paths = finetuned
    rc, out, err = run(capsys, "layers", *RESNET, "--num-classes", "5", "--weights", str(paths["ddp"]))
    assert rc == 0, err
    assert "5 classes" in out and "layer4" in out


@pytest.mark.parametrize(
    ("spec", "build"),
    [
        ("timm:test_resnet", lambda: __import__("timm").create_model("test_resnet", num_classes=3)),
        ("cli_tiny_models:tiny_cnn", lambda: __import__("cli_tiny_models").tiny_cnn(num_classes=3)),
    ],
)
def test_weights_for_timm_and_module_callable_specs(spec, build, tmp_path):
    if spec.startswith("timm:"):
        pytest.importorskip("timm")
    state = randomized(build(), seed=2)
    path = tmp_path / "w.pth"
    torch.save({"model_state_dict": state}, path)
    model, _ = load_model(spec, num_classes=3, weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("num_classes", [["--num-classes", "3"], []])
def test_a_head_of_another_size_names_num_classes(finetuned, capsys, num_classes):
    _, paths = finetuned
    rc, _, err = run(capsys, "layers", *RESNET, *num_classes, "--weights", str(paths["plain"]))
    assert_usage_error(rc, err, "--weights", "fc.weight", "--num-classes 5", "shape")


def test_keys_of_another_architecture_are_listed(finetuned, capsys):
    _, paths = finetuned
    rc, _, err = run(capsys, "layers", "cli_tiny_models:tiny_cnn", "--input-size", "32",
                     "--weights", str(paths["plain"]))
    assert_usage_error(rc, err, "--weights", "missing keys: 0.weight", "unexpected keys: conv1.weight",
                       "architecture")


def test_unreadable_weights_files_exit_2(tmp_path, capsys):
    import torchvision

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(os.urandom(2048))
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(corrupt))
    assert_usage_error(rc, err, "--weights", "corrupt.pth", "not a readable torch file")

    cut = tmp_path / "cut.pth"
    torch.save(torchvision.models.resnet18().state_dict(), cut)
    cut.write_bytes(cut.read_bytes()[:100_000])
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(cut))
    assert_usage_error(rc, err, "--weights", "cut.pth", "not a readable torch file")

    truncated = tmp_path / "truncated.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(64)}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:60])
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(truncated))
    assert_usage_error(rc, err, "--weights", "not a readable .safetensors file")

    pickled = tmp_path / "whole_model.pt"
    torch.save(torchvision.models.resnet18(), pickled)  # a pickled module: code, not weights
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(pickled))
    assert_usage_error(rc, err, "--weights", "more than tensors", "state_dict()")

    no_state = tmp_path / "no_state.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, no_state)
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(no_state))
    assert_usage_error(rc, err, "--weights", "not a state dict", "'epoch'")


def test_missing_weights_file_folder_and_pretrained(tmp_path, capsys):
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(tmp_path / "nope.pth"))
    assert_usage_error(rc, err, "--weights", "no such file", "nope.pth")
    rc, _, err = run(capsys, "layers", *RESNET, "--weights", str(tmp_path))
    assert_usage_error(rc, err, "--weights", "is a folder")
    rc, _, err = run(capsys, "layers", *RESNET, "--pretrained", "--weights", str(tmp_path / "w.pth"))
    assert_usage_error(rc, err, "--pretrained and --weights", "drop --pretrained")


def test_safetensors_missing_names_the_install(finetuned, capsys, monkeypatch):
    import sys

    _, paths = finetuned
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    rc, _, err = run(capsys, "layers", *RESNET, "--num-classes", "5", "--weights", str(paths["safetensors"]))
    assert_usage_error(rc, err, "--weights", "safetensors", "pip install")
