"""The examples that need no dataset run end to end (tiny models, small inputs)."""

from __future__ import annotations

import runpy
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
