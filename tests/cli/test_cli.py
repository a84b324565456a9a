"""The ``ttame`` command line on tiny models: every subcommand and its error exits."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from cli_helpers import CNN, SIZE, assert_usage_error, run

from ttame_attr import TTAME
from ttame_attr._core.head_file import read_safetensors


# ---------------------------------------------------------------------------- layers
def test_layers_cnn_lists_adapter_layers_and_shapes(capsys):
    rc, out, _ = run(capsys, "layers", CNN, *SIZE)
    assert rc == 0
    assert "adapter    cnn" in out
    # The tiny CNN's three last resolution stages: 16x16, 8x8, 4x4 after its strided convs.
    assert "(8, 16, 16)" in out and "(16, 8, 8)" in out and "(16, 4, 4)" in out
    assert "4 classes" in out


def test_layers_vit_reads_tokens_on_the_patch_grid(capsys):
    rc, out, _ = run(capsys, "layers", "cli_tiny_models:tiny_vit")
    assert rc == 0
    assert "adapter    vit" in out
    assert "encoder.layers.encoder_layer_2.ln_1" in out
    assert "tokens" in out and "(16, 4, 4)" in out  # 32 px / patch 8 = 4x4 grid, 1 prefix token


def test_layers_suggest_a_vit_s_convolutional_stem_stage(capsys):
    rc, out, _ = run(capsys, "layers", "cli_tiny_models:tiny_conv_stem_vit")
    assert rc == 0
    blocks = " ".join(f"encoder.layers.encoder_layer_{i}.ln_1" for i in range(3))
    # 32 px, patch 4: an 8x8 grid; the stem's first stage is 16x16, its second 8x8 (not finer).
    assert ("suggested  conv_proj.conv_bn_relu_0: the convolutional stem's 16x16 stage, finer than "
            "the 8x8") in out
    assert f"e.g. --layers conv_proj.conv_bn_relu_0 {blocks}" in out
    rc, out, _ = run(capsys, "layers", "cli_tiny_models:tiny_conv_stem_vit", "--layers",
                     "conv_proj.conv_bn_relu_0", *blocks.split())
    assert rc == 0 and "suggested" not in out and "(8, 16, 16)" in out
    rc, out, _ = run(capsys, "layers", "cli_tiny_models:tiny_vit")
    assert rc == 0 and "suggested" not in out


def test_layers_torchvision_spec_with_num_classes(capsys):
    rc, out, _ = run(capsys, "layers", "torchvision:resnet18", "--num-classes", "3", "--input-size", "64")
    assert rc == 0
    assert "layer4" in out and "3 classes" in out


def layer_rows(out: str) -> dict[str, tuple[str, ...]]:
    """``{layer: (layout, (C, h, w), prefix tokens, why)}`` of the ``ttame layers`` table."""
    rows = [re.match(r"^(\S+)\s+(nchw|nhwc|tokens)\s+(\(\d+, \d+, \d+\))\s+(\d+)\s+(.+)$", line)
            for line in out.splitlines()]
    return {m.group(1): m.groups()[1:] for m in rows if m}


def test_layers_tell_why_each_layer_was_chosen(capsys):
    rc, out, _ = run(capsys, "layers", "torchvision:resnet18", "--num-classes", "3", "--input-size", "64")
    assert rc == 0
    assert out.splitlines()[3].split() == ["layer", "layout", "(C,", "h,", "w)", "prefix", "tokens", "why"]
    rows = layer_rows(out)
    assert list(rows) == ["layer2", "layer3", "layer4"]
    # 64 px: resnet18's stages end at 8x8, 4x4, 2x2 with 128, 256, 512 channels.
    for (_, shape, _, why), (side, channels) in zip(rows.values(), [(8, 128), (4, 256), (2, 512)]):
        assert shape == f"({channels}, {side}, {side})"
        assert why == f"ends the {side}x{side} stage (one of the last three resolutions; {channels} channels)"


def test_layers_given_by_the_user_say_so(capsys):
    rc, out, _ = run(capsys, "layers", CNN, *SIZE, "--layers", "2", "4")
    assert rc == 0
    assert [row[3] for row in layer_rows(out).values()] == ["given by --layers"] * 2


def test_layers_explicit_layers_and_bad_layer(capsys):
    rc, out, _ = run(capsys, "layers", CNN, *SIZE, "--layers", "2", "4")
    assert rc == 0 and "(8, 16, 16)" in out and "(16, 8, 8)" in out
    rc, _, err = run(capsys, "layers", CNN, *SIZE, "--layers", "nope")
    assert_usage_error(rc, err, "nope")


# ---------------------------------------------------------------------------- fit / explain / evaluate
def test_fit_writes_a_loadable_head(trained_head, capsys):
    explainer = TTAME.load(trained_head, __import__("cli_tiny_models").tiny_cnn())
    assert explainer.input_size == (3, 32, 32)
    assert explainer.num_classes == 4
    # Trained with ImageNet normalisation (no timm config on this model).
    assert explainer.normalization[0] == pytest.approx((0.485, 0.456, 0.406))


def test_fit_from_a_list_file(tmp_path, image_dir, capsys):
    files = sorted(image_dir.rglob("*.png"))[:4]
    listing = tmp_path / "list.txt"
    listing.write_text("# images\n" + "\n".join(str(f) for f in files) + "\n\n")
    out = tmp_path / "h.pt"
    rc, stdout, _ = run(capsys, "fit", CNN, str(listing), *SIZE, "--epochs", "1",
                        "--batch-size", "2", "--out", str(out), "-q")
    assert rc == 0 and out.is_file()
    assert "4 images" in stdout and "saved the head" in stdout


def test_fit_checkpoint_and_resume(tmp_path, image_dir, capsys, caplog):
    ckpt = tmp_path / "train.ckpt"
    head = tmp_path / "h.pt"
    argv = ["fit", CNN, str(image_dir), *SIZE, "--epochs", "1", "--batch-size", "4",
            "--out", str(head), "--checkpoint", str(ckpt), "--resume", "-q"]
    rc, out1, err = run(capsys, *argv)
    assert rc == 0, err
    # The first run (no checkpoint yet) trains and leaves a finished training checkpoint:
    # 8 images, batch 4, drop_last -> 2 steps in the one epoch.
    payload = torch.load(ckpt, weights_only=True)
    assert payload["format"] == "ttame_attr.training"
    assert (payload["epoch"], payload["batch"], payload["step"]) == (1, 0, 2)
    trained = read_safetensors(head)["state_dict"]  # head files are safetensors
    assert trained.keys() == payload["head"].keys()
    for k, v in trained.items():
        assert torch.equal(v, payload["head"][k]), k
    # Mark the checkpoint's weights, so a run that retrains instead of resuming is told apart.
    payload["head"] = {k: v + 0.5 if v.is_floating_point() else v
                       for k, v in payload["head"].items()}
    torch.save(payload, ckpt)
    caplog.set_level(logging.INFO, logger="ttame_attr")
    rc, out2, err = run(capsys, *argv)  # resumes from the finished run: no step left to take
    assert rc == 0, err
    assert any("resuming from" in r.getMessage() and "epoch 2, batch 0 (step 2)" in r.getMessage()
               for r in caplog.records), caplog.text
    resumed = read_safetensors(head)["state_dict"]
    for k, v in payload["head"].items():
        assert torch.equal(resumed[k], v), k  # the checkpoint's head, not a retrained one
    # The final line reports the restored history of the first run.
    last = [line for line in out1.splitlines() if line.startswith("epoch 1:")]
    assert len(last) == 1 and last[0] in out2.splitlines()


def test_explain_writes_npy_maps_and_overlays(trained_head, image_dir, tmp_path, capsys):
    out = tmp_path / "expl"
    rc, stdout, _ = run(capsys, "explain", CNN, str(image_dir), "--head", str(trained_head),
                        "--out", str(out))
    assert rc == 0
    maps = sorted(out.glob("*.npy"))
    assert len(maps) == 8
    m = np.load(maps[0])
    assert m.shape == (1, 32, 32) and m.min() >= 0 and m.max() <= 1  # sigmoid masks
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 8
    from PIL import Image

    assert Image.open(pngs[0]).size == (32, 32)
    assert "wrote the maps of 8 images" in stdout


def test_explain_top_k_pt_and_target(trained_head, image_dir, tmp_path, capsys):
    one = str(sorted(image_dir.rglob("*.png"))[0])
    rc, _, _ = run(capsys, "explain", CNN, one, "--head", str(trained_head), "--out",
                   str(tmp_path / "k"), "--top-k", "2", "--format", "pt", "--no-overlay")
    assert rc == 0
    saved = torch.load(next((tmp_path / "k").glob("*.pt")), weights_only=True)
    assert saved["maps"].shape == (2, 32, 32)
    assert saved["classes"].shape == (2,)
    assert float(saved["probabilities"][0]) >= float(saved["probabilities"][1])
    rc, _, _ = run(capsys, "explain", CNN, one, "--head", str(trained_head), "--out",
                   str(tmp_path / "t"), "--target", "3")
    assert rc == 0
    assert len(list((tmp_path / "t").glob("*_class3.png"))) == 1


def test_evaluate_prints_the_table(trained_head, image_dir, tmp_path, capsys):
    report = tmp_path / "m.json"
    rc, out, _ = run(capsys, "evaluate", CNN, str(image_dir), "--head", str(trained_head),
                     "--limit", "4", "--batch-size", "2", "--no-road", "--json", str(report), "-q")
    assert rc == 0
    for key in ("AD 100%", "AD 50%", "AD 15%", "IC 100%", "IC 50%", "IC 15%"):
        assert key in out
    assert "ROAD" not in out
    table = json.loads(report.read_text())
    assert table["images"] == 4
    expected = _ad_ic_by_hand(trained_head, sorted(image_dir.rglob("*.png"))[:4])
    assert table["metrics"].keys() == expected.keys()
    for key, value in expected.items():
        assert table["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
        assert f"{key.ljust(7)}  {value:8.2f}" in out.splitlines()


def _ad_ic_by_hand(head, files) -> dict[str, float]:
    """AD/IC recomputed from the paper's formulas with NumPy, on the CLI's preprocessing
    (Resize(round(32 * 256 / 224)), CenterCrop(32), ImageNet normalisation)."""
    import cli_tiny_models
    from PIL import Image
    from torchvision import transforms as T

    model = cli_tiny_models.tiny_cnn().eval()
    explainer = TTAME.load(head, model)
    prep = T.Compose([T.Resize(37), T.CenterCrop(32), T.ToTensor(),
                      T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    x = torch.stack([prep(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        clean = model(x).softmax(1)
    target = clean.argmax(1)
    maps = explainer.attribute(x, target=target).detach().reshape(len(files), -1, 32, 32)
    table: dict[str, float] = {}
    drops: dict[int, list[float]] = {100: [], 50: [], 15: []}
    ups: dict[int, list[bool]] = {100: [], 50: [], 15: []}
    for i in range(len(files)):
        m = maps[i].mean(0).numpy().astype(np.float64).ravel()
        normed = (m - m.min()) / (m.max() - m.min())
        order = np.argsort(-normed, kind="stable")
        y = float(clean[i, target[i]])
        for pct in drops:
            keep = np.zeros(32 * 32)
            top = order[:round(pct / 100 * 32 * 32)]
            keep[top] = normed[top]
            masked = x[i:i + 1] * torch.from_numpy(keep.reshape(1, 1, 32, 32)).float()
            with torch.no_grad():
                o = float(model(masked).softmax(1)[0, target[i]])
            drops[pct].append(100.0 * max(0.0, y - o) / y)
            ups[pct].append(o > y)
    for pct in drops:
        table[f"AD {pct}%"] = float(np.mean(drops[pct]))
    for pct in drops:
        table[f"IC {pct}%"] = 100.0 * float(np.mean(ups[pct]))
    return table


def test_evaluate_with_road(trained_head, image_dir, capsys):
    rc, out, _ = run(capsys, "evaluate", CNN, str(image_dir), "--head", str(trained_head),
                     "--limit", "1", "-q")
    assert rc == 0
    assert "ROAD MoRF" in out and "ROAD LeRF" in out and "AD 15%" in out


# ---------------------------------------------------------------------------- error exits
@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["layers", "torchvision:resnet1"], ["resnet1", "resnet18"]),
        (["layers", "timm:not_a_model_xyz"], ["not_a_model_xyz"]),
        (["layers", "no_such_module_xyz:f"], ["no_such_module_xyz"]),
        (["layers", "cli_tiny_models:missing"], ["missing"]),
        (["layers", "cli_tiny_models:NOT_A_MODEL"], ["int"]),
        (["layers", "cli_tiny_models:returns_tensor"], ["Tensor"]),
        (["layers", "what is this"], ["cannot read the model spec"]),
        (["layers", "missing_file.pt"], ["no such file"]),
        (["fit", CNN, "/no/such/folder"], ["no such file or folder"]),
        (["fit", CNN, "{images}", "--epochs", "0"], ["--epochs"]),
        (["fit", CNN, "{images}", "--lr", "-1"], ["--lr"]),
        (["fit", CNN, "{images}", "--epochs", "two"], ["invalid int value"]),
        (["fit", CNN, "{images}", "--bogus"], ["unrecognized arguments"]),
        (["explain", CNN, "{images}", "--head", "/no/head.pt"], ["--head"]),
        (["explain", CNN, "{images}", "--head", "{head}", "--target", "9"], ["--target"]),
        (["explain", CNN, "{images}", "--head", "{head}", "--top-k", "0"], ["--top-k"]),
        (["explain", CNN, "{images}", "--head", "{head}", "--format", "gif"], ["invalid choice"]),
        (["evaluate", CNN, "{images}", "--head", "{head}", "--limit", "0"], ["--limit"]),
        (["evaluate", "cli_tiny_models:tiny_vit", "{images}", "--head", "{head}"], ["VisionTransformer"]),
        (["demo", "--threads", "0"], ["--threads"]),
        (["frobnicate"], ["invalid choice"]),
        ([], ["COMMAND"]),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, fragments, image_dir, trained_head, capsys):
    argv = [a.replace("{images}", str(image_dir)).replace("{head}", str(trained_head)) for a in argv]
    rc, _, err = run(capsys, *argv)
    assert_usage_error(rc, err, *fragments)


def test_torchscript_files_are_refused_with_the_reason(tmp_path, capsys):
    import cli_tiny_models

    path = tmp_path / "m.pt"
    torch.jit.script(cli_tiny_models.tiny_cnn()).save(str(path))
    rc, _, err = run(capsys, "layers", str(path))
    assert_usage_error(rc, err, "TorchScript", "module:callable")


def test_help_and_version_exit_0(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and "ttame_attr" in out
    rc, out, _ = run(capsys, "fit", "--help")
    assert rc == 0 and "--epochs" in out and "--resume" in out
