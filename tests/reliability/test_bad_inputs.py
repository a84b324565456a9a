"""Bad inputs of every public entry point, as one table each: the API (TTAME, its methods, the
metrics, export, save/load) and the ``ttame`` command line.

Adding a case is one line: an ``Api(...)`` row (what to call on the shared fixtures, the exception
type, a regex its message must match from the start) or a ``Cli(...)`` row (the arguments, with
``{head}``, ``{img}``, ``{images}``, ``{file}``, ``{tmp}`` and ``{evil}`` filled in, and fragments
of the one line on stderr; the exit status must be 2). The number in a comment is the issue the
case comes from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr import metrics as M
from ttame_attr.cli import main

CLI_MODELS = str(Path(__file__).parent.parent / "cli")
CNN = "cli_tiny_models:tiny_cnn"  # 4 classes, 32x32 inputs
SIZE = ("--input-size", "32")


class Ctx:
    """What the API rows call: a tiny CNN (5 classes), its explainer, images, maps and masks."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.model = make_tiny_cnn()
        self.explainer = TTAME(self.model, input_size=(3, 32, 32))
        self.x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        self.maps = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
        self.masks = torch.zeros(2, 32, 32, dtype=torch.bool)
        self.masks[:, 8:16, 8:16] = True

    def nan_maps(self, value: float = float("nan")) -> torch.Tensor:
        maps = self.maps.clone()
        maps[1, 0, 4, 4] = value
        return maps

    def moved(self) -> TTAME:
        model = make_tiny_cnn()
        explainer = TTAME(model, input_size=(3, 32, 32))
        model.to("meta")
        return explainer


@dataclass(frozen=True)
class Api:
    """An API call on a :class:`Ctx` that must raise ``error`` with a message matching ``match``."""

    id: str
    call: Callable[[Ctx], Any]
    error: type[BaseException]
    match: str


API = [
    # ---------------------------------------------------------------- TTAME(...)
    Api("ttame-model-not-module", lambda c: TTAME(42), TypeError, r"model: "),
    Api("ttame-layers-string", lambda c: TTAME(c.model, "layer3"), TypeError,
        r"layers: expected a non-empty list"),
    Api("ttame-layers-unknown", lambda c: TTAME(c.model, ["nope"], input_size=(3, 32, 32)), ValueError,
        r"layers: .*nope"),
    Api("ttame-layers-twice", lambda c: TTAME(c.model, ["layer2", "layer2"], input_size=(3, 32, 32)),
        ValueError, r"layers: each layer may be given once"),
    Api("ttame-input-size-zero", lambda c: TTAME(c.model, input_size=(3, 0, 32)), ValueError,
        r"input_size: "),
    # ---------------------------------------------------------------- attribute / explain
    Api("attribute-list", lambda c: c.explainer.attribute([[0.0]]), TypeError, r"inputs: "),
    Api("attribute-channels", lambda c: c.explainer.attribute(torch.rand(1, 1, 32, 32)), ValueError,
        r"inputs: "),
    Api("attribute-target-range", lambda c: c.explainer.attribute(c.x, target=9), ValueError, r"target: "),
    Api("attribute-target-float", lambda c: c.explainer.attribute(c.x, target=1.5), TypeError, r"target: "),
    Api("attribute-scale", lambda c: c.explainer.attribute(c.x, scale="log"), ValueError, r"scale: "),
    Api("explain-top-k-zero", lambda c: c.explainer.explain(c.x, top_k=0), ValueError, r"top_k: "),
    Api("explain-top-k-above-classes", lambda c: c.explainer.explain(c.x, top_k=9), ValueError, r"top_k: "),
    Api("attribute-model-moved", lambda c: c.moved().attribute(c.x), ValueError,  # 5
        r"model: the model is on meta but the explainer's head and the images are on cpu"),
    # ---------------------------------------------------------------- save / load
    Api("load-missing-file", lambda c: TTAME.load(c.tmp / "none.pt", c.model), FileNotFoundError, r"path: "),
    Api("load-not-a-head", lambda c: TTAME.load(_torch_file(c.tmp, {"a": torch.zeros(1)}), c.model),
        ValueError, r"path: .* is not a T-TAME head"),
    # ---------------------------------------------------------------- export
    Api("export-onnx-opset-type", lambda c: c.explainer.export_onnx(c.tmp / "m.onnx", opset="18"),
        ValueError, r"opset: expected a positive integer"),
    Api("export-example-shape", lambda c: c.explainer.export_program(torch.rand(1, 3, 8, 8)), ValueError,
        r"example: "),
    # ---------------------------------------------------------------- metrics
    Api("adic-model-not-module", lambda c: M.average_drop_increase(42, c.x, c.maps), TypeError, r"model: "),
    Api("adic-fractions-percent", lambda c: M.average_drop_increase(c.model, c.x, c.maps, fractions=(50,)),
        ValueError, r"fractions: .*not percentages"),
    Api("adic-maps-batch", lambda c: M.average_drop_increase(c.model, c.x, c.maps[:1]), ValueError,
        r"maps: batch size 1 does not match the 2 images"),
    Api("adic-maps-nan", lambda c: M.average_drop_increase(c.model, c.x, c.nan_maps()), ValueError,  # 2
        r"maps: the maps of 1 of 2 images \(positions in the batch\) 1 hold NaN or inf"),
    Api("road-maps-inf", lambda c: M.road(c.model, c.x, c.nan_maps(float("inf"))), ValueError,  # 2
        r"maps: the maps of 1 of 2 images"),
    Api("road-noise-negative", lambda c: M.road(c.model, c.x, c.maps, noise_std=-1), ValueError,
        r"noise_std: "),
    Api("deletion-steps-zero", lambda c: M.deletion(c.model, c.x, c.maps, steps=0), ValueError, r"steps: "),
    Api("deletion-maps-nan", lambda c: M.deletion(c.model, c.x, c.nan_maps()), ValueError, r"maps: the maps"),
    Api("pointing-maps-nan", lambda c: M.pointing_game(c.nan_maps(), c.masks), ValueError,  # 2
        r"maps: the maps of 1 of 2"),
    Api("pointing-soft-mask", lambda c: M.pointing_game(c.maps, c.masks * 0.5), ValueError,  # 20
        r"masks: expected bool or 0/1 masks, got 128 values between 0 and 1"),
    Api("pointing-empty-masks", lambda c: M.pointing_game(c.maps, torch.zeros(2, 8, 8)), ValueError,  # 20
        r"masks: all 2 masks are empty"),
    Api("pointing-mask-batch", lambda c: M.pointing_game(c.maps, c.masks[:1]), ValueError,  # 20
        r"masks: batch size 1 does not match the 2 maps"),
    Api("pointing-tolerance", lambda c: M.pointing_game(c.maps, c.masks, tolerance=-1), ValueError,
        r"tolerance: "),
    Api("energy-soft-mask", lambda c: M.energy_pointing_game(c.maps, c.masks * 0.25), ValueError,  # 20
        r"masks: expected bool or 0/1"),
    Api("evaluate-unknown-metric", lambda c: M.evaluate(c.model, [c.x], c.maps, metrics=["auc"]), ValueError,
        r"metrics: unknown metric name 'auc'"),
    Api("evaluate-empty-loader", lambda c: M.evaluate(c.model, [], c.maps, metrics=["ad_ic"]), ValueError,
        r"loader: yielded no batches"),
    Api("evaluate-nonfinite-mode", lambda c: M.evaluate(c.model, [c.x], c.maps, nonfinite="drop"),
        ValueError, r"nonfinite: expected 'raise' or 'skip'"),
    Api("evaluate-maps-nan", lambda c: M.evaluate(c.model, [c.x], lambda x, t: c.nan_maps(),  # 2
                                                  metrics=["ad_ic"]), ValueError, r"maps: the maps of 1"),
]


def _torch_file(folder: Path, obj: Any) -> Path:
    path = folder / "other.pt"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("case", API, ids=[c.id for c in API])
def test_api_refuses_bad_input(case: Api, tmp_path: Path) -> None:
    with pytest.raises(case.error) as info:
        case.call(Ctx(tmp_path))
    assert type(info.value) is case.error, repr(info.value)
    assert re.match(case.match, str(info.value)), str(info.value)


# -------------------------------------------------------------------------------- the CLI
@dataclass(frozen=True)
class Cli:
    """``ttame *argv`` must exit with status 2 and one line on stderr holding every fragment."""

    id: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...]


CLI = [
    Cli("layers-unknown-spec", ("layers", "nope:x"), ("model: cannot import module 'nope'",)),
    Cli("layers-input-size-zero", ("layers", CNN, "--input-size", "0"),  # 15
        ("--input-size: expected a positive integer, got 0",)),
    Cli("layers-state-dict-as-model", ("layers", "{file}"),  # 17
        ("is not a TorchScript file", "a state dict goes to --weights FILE")),
    Cli("layers-weights-with-code", ("layers", CNN, "--weights", "{evil}"),  # 16
        ("holds more than tensors and plain values: code that would run when loaded", "getcwd)",
         "nothing from it was executed")),
    Cli("fit-input-size-zero", ("fit", CNN, "{images}", "--input-size", "0", "--out", "{tmp}/h.pt"),  # 15
        ("--input-size: expected a positive integer",)),
    Cli("fit-out-is-folder", ("fit", CNN, "{images}", *SIZE, "--out", "{tmp}"),  # 9
        ("--out:", "is a folder")),
    Cli("fit-out-below-a-file", ("fit", CNN, "{images}", *SIZE, "--out", "{file}/h.pt"),  # 9
        ("--out: cannot write", "is a file, not a folder")),
    Cli("fit-checkpoint-is-out", ("fit", CNN, "{images}", *SIZE, "--out", "{tmp}/y.pt",  # 18
                                  "--checkpoint", "{tmp}/y.pt", "--resume"),
        ("--checkpoint and --out: both name", "would overwrite the training checkpoint")),
    Cli("fit-default-checkpoint-is-out", ("fit", CNN, "{images}", *SIZE, "--out", "{tmp}/h.ckpt",  # 18
                                          "--resume"), ("--checkpoint and --out: both name",)),
    Cli("fit-lr-negative", ("fit", CNN, "{images}", *SIZE, "--lr", "-1"), ("--lr: expected a positive",)),
    Cli("explain-out-is-file", ("explain", CNN, "{img}", *SIZE, "--head", "{head}", "--out", "{file}"),  # 13
        ("--out:", "exists and is a file; expected a folder")),
    Cli("explain-out-below-file", ("explain", CNN, "{img}", *SIZE, "--head", "{head}",  # 13
                                   "--out", "{file}/maps"), ("--out: cannot write",)),
    Cli("explain-top-k-above-classes", ("explain", CNN, "{img}", *SIZE, "--head", "{head}",  # 14
                                        "--top-k", "9", "--out", "{tmp}/o"),
        ("--top-k: expected at most the model's 4 classes, got 9",)),
    Cli("explain-target-range", ("explain", CNN, "{img}", *SIZE, "--head", "{head}", "--target", "9",
                                 "--out", "{tmp}/o"), ("--target: expected a class in [0, 3]",)),
    Cli("explain-input-size-not-the-heads", ("explain", CNN, "{img}", "--input-size", "64",  # 15
                                             "--head", "{head}", "--out", "{tmp}/o"),
        ("--input-size: the head", "was trained for 32x32 inputs, not 64")),
    Cli("explain-missing-head", ("explain", CNN, "{img}", *SIZE, "--head", "{tmp}/none.pt"),
        ("--head: no such file",)),
    Cli("evaluate-json-below-file", ("evaluate", CNN, "{images}", *SIZE, "--head", "{head}",  # 13
                                     "--json", "{file}/x.json"), ("--json: cannot write",)),
    Cli("evaluate-json-is-folder", ("evaluate", CNN, "{images}", *SIZE, "--head", "{head}",  # 13
                                    "--json", "{tmp}"), ("--json:", "is a folder")),
    Cli("export-top-k-above-classes", ("export", CNN, *SIZE, "--head", "{head}", "--top-k", "9",  # 14
                                       "--out", "{tmp}/m.pt2"), ("--top-k: expected at most",)),
    Cli("export-out-below-file", ("export", CNN, *SIZE, "--head", "{head}", "--out", "{file}/m.pt2"),
        ("--out: cannot write",)),
    Cli("export-out-suffix", ("export", CNN, *SIZE, "--head", "{head}", "--out", "{tmp}/m.bin"),
        ("--out: cannot tell the format",)),
    Cli("demo-out-is-file", ("demo", "--out", "{file}"), ("--out:", "exists and is a file")),  # 13
]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The paths the CLI rows name: images, an (untrained) head for the tiny CNN, a plain file,
    a --weights file that would run code."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(images / f"i{i}.png")
    import sys

    sys.path.insert(0, CLI_MODELS)
    from cli_tiny_models import tiny_cnn

    head = TTAME(tiny_cnn().eval(), input_size=(3, 32, 32)).save(root / "head.pt")
    plain = root / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    evil = root / "evil.pt"
    torch.save({"x": _Calls()}, evil)
    return {"head": str(head), "img": str(images / "i0.png"), "images": str(images), "file": str(plain),
            "evil": str(evil)}


class _Calls:
    """Pickles as a call of ``os.getcwd`` (harmless, but code: refused)."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
def test_cli_refuses_bad_input(case: Cli, cli_files: dict[str, str], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(CLI_MODELS)
    argv = [a.format(tmp=tmp_path, **cli_files) for a in case.argv]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "weights_only" not in err  # torch's advice to load with weights_only=False is never passed on
    for fragment in case.fragments:
        assert fragment.format(tmp=tmp_path, **cli_files) in lines[0], lines[0]
