"""``ttame convert`` (an authors' checkpoint to the Hub format) and ``--head`` as a folder, an
authors' checkpoint or ``hub:ORG/NAME`` (the Hub cache, offline)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from authors_checkpoints import cnn_checkpoint, resnet18
from cli_helpers import assert_usage_error, run

MODEL = ["torchvision:resnet18", "--num-classes", "10"]


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    """The resnet18's weights file and an authors' checkpoint holding its head."""
    folder = tmp_path_factory.mktemp("authors")
    model = resnet18()
    torch.save(model.state_dict(), folder / "resnet18.pt")
    _, ckpt = cnn_checkpoint(folder / "resnet18.ckpt", model)
    return folder / "resnet18.pt", ckpt


def _explain(capsys, weights, head, images, out):
    return run(capsys, "explain", *MODEL, "--weights", str(weights), "--input-size", "64", str(images),
               "--head", head, "--out", str(out), "--no-overlay")


def test_convert_then_explain_with_the_folder(authors, image_dir, tmp_path, capsys, caplog) -> None:
    weights, ckpt = authors
    with caplog.at_level(logging.WARNING):
        rc, out, err = run(capsys, "convert", str(ckpt), "--model", *MODEL, "--weights", str(weights),
                           "--out", str(tmp_path / "hub"), "--strict")
    assert rc == 0, err
    assert not caplog.records
    assert "layers ['layer2', 'layer3', 'layer4'], 10 classes, map size (8, 8), pixel-space masking" in out
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["backbone"] == "torchvision:resnet18" and config["mask_space"] == "pixel"
    assert "torchvision:resnet18" in (tmp_path / "hub" / "README.md").read_text()
    for head in (str(tmp_path / "hub"), str(ckpt)):  # the folder, or the authors' file as it is
        rc, _, err = _explain(capsys, weights, head, image_dir, tmp_path / "maps")
        assert rc == 0, err
        assert len(list((tmp_path / "maps").glob("*.npy"))) == 8
        shutil.rmtree(tmp_path / "maps")


def test_convert_with_other_weights_warns_and_strict_refuses(authors, tmp_path, capsys, caplog) -> None:
    _, ckpt = authors
    argv = ["convert", str(ckpt), "--model", *MODEL, "--out", str(tmp_path / "hub")]  # random weights
    with caplog.at_level(logging.WARNING):
        rc, _, err = run(capsys, *argv)
    assert rc == 0, err
    assert "backbone weights differ: 'conv1.weight' has other values" in caplog.text
    rc, _, err = run(capsys, *argv[:-1], str(tmp_path / "strict"), "--strict")
    assert_usage_error(rc, err, "ttame convert: error:", "backbone weights differ", "strict=True")
    assert not (tmp_path / "strict").exists()


def test_head_from_the_hub_cache_offline(authors, image_dir, tmp_path, capsys, monkeypatch) -> None:
    import huggingface_hub.constants

    weights, ckpt = authors
    rc, _, err = run(capsys, "convert", str(ckpt), "--model", *MODEL, "--weights", str(weights),
                     "--out", str(tmp_path / "hub"))
    assert rc == 0, err
    repo = tmp_path / "cache" / "models--me--resnet18-head"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("b" * 40)
    shutil.copytree(tmp_path / "hub", repo / "snapshots" / ("b" * 40))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    rc, _, err = _explain(capsys, weights, "hub:me/resnet18-head", image_dir, tmp_path / "maps")
    assert rc == 0, err
    assert len(list((tmp_path / "maps").glob("*.npy"))) == 8
    rc, _, err = _explain(capsys, weights, "hub:me/missing", image_dir, tmp_path / "maps2")
    assert_usage_error(rc, err, "ttame explain: error:", "'me/missing'")


def test_convert_usage_errors(tmp_path, image_dir, capsys) -> None:
    rc, _, err = run(capsys, "convert", str(tmp_path / "none.ckpt"), "--model", *MODEL,
                     "--out", str(tmp_path))
    assert_usage_error(rc, err, "checkpoint: no such file")
    rc, _, err = run(capsys, "explain", *MODEL, str(image_dir), "--head", str(tmp_path / "nope"))
    assert_usage_error(rc, err, "--head: no such file or folder", "hub:ORG/NAME")
