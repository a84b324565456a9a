"""The examples that need no dataset run end to end (tiny models, small inputs)."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_quickstart(monkeypatch, capsys):
    run_example("quickstart.py", monkeypatch)
    out = capsys.readouterr().out
    assert "layers=['layer2', 'layer3', 'layer4']" in out
    assert "maps (4, 1, 64, 64)" in out
    assert "saved and reloaded: same maps" in out


def test_vit_and_swin(monkeypatch, capsys):
    run_example("vit_and_swin.py", monkeypatch)
    out = capsys.readouterr().out
    assert "torchvision ViT: adapter 'vit'" in out
    assert "timm Swin: adapter 'swin'" in out
    assert out.count("maps (8, 1, 32, 32)") == 2
    # A new head gives 0.5 everywhere; after its brief fit each model's maps vary over the image.
    number = r"([\d.]+)"
    ranges = re.findall(rf"before fit: range \[{number}, {number}\]; "
                        rf"after 40 steps: range \[{number}, {number}\]", out)
    assert len(ranges) == 2
    for before_lo, before_hi, lo, hi in ranges:
        assert before_lo == before_hi == "0.500"
        assert float(hi) - float(lo) > 0.05, out


def test_custom_adapter(monkeypatch, capsys):
    from ttame_attr import list_adapters

    run_example("custom_adapter.py", monkeypatch)
    out = capsys.readouterr().out
    assert "adapter='toy_tokens'" in out
    assert "('stages.2', 'tokens', (16, 8, 8))" in out
    assert "maps (2, 1, 32, 32)" in out
    assert "toy_tokens" not in list_adapters()  # the example unregisters it


def test_captum_interop(monkeypatch, capsys, tmp_path):
    png = tmp_path / "vis.png"
    run_example("captum_interop.py", monkeypatch, str(png))
    out = capsys.readouterr().out
    assert "NoiseTunnel maps (2, 1, 64, 64)" in out
    assert "sensitivity_max" in out and "infidelity" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def run_without_torch(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an example in a fresh interpreter where ``import torch`` and ``import ttame_attr`` fail."""
    code = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['ttame_attr'] = None; "
            f"sys.argv = {[name, *args]!r}; runpy.run_path({str(EXAMPLES / name)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_onnx_explain_folder(tmp_path):
    """ONNX Runtime alone explains a folder: overlays at the model's size, the top class and
    probability of ``explain`` on the same resized image, and ``--no-resize`` refusing other sizes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    from ttame_attr import TTAME

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    with torch.no_grad():
        model.fc.weight.mul_(20.0)  # logits that differ from image to image
    explainer = TTAME(model, input_size=(3, 64, 64))
    onnx_file = explainer.export_onnx(tmp_path / "model.onnx")

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"a.png": (64, 64), "b.png": (80, 60), "c.png": (64, 64)}  # (width, height)
    for i, (name, (w, h)) in enumerate(sizes.items()):
        pixels = rng.integers(0, 256, (h, w, 3)) // (i + 1) + np.array([0, 60, 120]) * i
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name)

    out = tmp_path / "overlays"
    proc = run_without_torch("onnx_explain_folder.py", str(onnx_file), str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split(":")[0]: line for line in proc.stdout.splitlines()}

    mean, std = (np.asarray(v, dtype=np.float32).reshape(3, 1, 1) for v in explainer.normalization)
    for name in sizes:
        with Image.open(out / f"{Path(name).stem}_overlay.png") as overlay:
            assert (overlay.format, overlay.size, overlay.mode) == ("PNG", (64, 64), "RGB")
        # The reference: the same PIL resize as the example, normalised with numpy, then explain().
        image = Image.open(folder / name).convert("RGB").resize((64, 64), Image.BILINEAR)
        x = (np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
        result = explainer.explain(torch.from_numpy(x[None].astype(np.float32)), top_k=1)
        cls, prob = int(result.classes[0, 0]), float(result.probabilities[0, 0])
        assert f"{name}: class {cls}, probability " in lines[name], (lines[name], cls)
        printed = float(lines[name].split("probability ")[1].split()[0])
        assert abs(printed - prob) < 1e-3, (lines[name], prob)
    assert "resized from 80x60 to 64x64" in lines["b.png"]
    assert "resized" not in lines["a.png"]

    refused = run_without_torch("onnx_explain_folder.py", str(onnx_file), str(folder),
                                "--out", str(tmp_path / "refused"), "--no-resize")
    assert refused.returncode != 0
    message = refused.stderr
    assert "b.png" in message and "80x60" in message and "64x64" in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "refused").exists()  # refused before anything was written
