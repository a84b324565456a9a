"""``--multi-label`` and ``--threshold`` of ``ttame fit / explain / evaluate / export`` (issue 31)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import CNN, SIZE, assert_usage_error, run

from ttame_attr import TTAME


@pytest.fixture(scope="module")
def multi_head(tmp_path_factory: pytest.TempPathFactory, image_dir: Path) -> Path:
    """A multi-label head fitted for one epoch with ``ttame fit --multi-label``."""
    from ttame_attr.cli import main

    out = tmp_path_factory.mktemp("mhead") / "head.safetensors"
    rc = main(["fit", CNN, str(image_dir), *SIZE, "--epochs", "1", "--batch-size", "4", "--out", str(out),
               "-q", "--head-init", "pytorch", "--multi-label", "--threshold", "0.45"])
    assert rc == 0
    return out


def images(image_dir: Path) -> torch.Tensor:
    """The CLI's preprocessing of the first four images (Resize 37, CenterCrop 32, ImageNet)."""
    from PIL import Image
    from torchvision import transforms as T

    prep = T.Compose([T.Resize(37), T.CenterCrop(32), T.ToTensor(),
                      T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    return torch.stack([prep(Image.open(f).convert("RGB")) for f in sorted(image_dir.rglob("*.png"))[:4]])


def test_fit_saves_a_multi_label_head(multi_head) -> None:
    import cli_tiny_models

    explainer = TTAME.load(multi_head, cli_tiny_models.tiny_cnn())
    assert explainer.multi_label is True and explainer.threshold == 0.45


def test_explain_writes_each_images_positive_labels(multi_head, image_dir, tmp_path, capsys) -> None:
    import cli_tiny_models

    first = sorted(image_dir.rglob("*.png"))[0]
    rc, out, _ = run(capsys, "explain", CNN, str(first), "--head", str(multi_head), "--out", str(tmp_path),
                     "--format", "pt", "--no-overlay")
    assert rc == 0
    saved = torch.load(next(tmp_path.glob("*.pt")), weights_only=True)
    model = cli_tiny_models.tiny_cnn().eval()
    with torch.no_grad():
        probs = model(images(image_dir)[:1])[0].sigmoid()
    expected = (probs > 0.45).nonzero().flatten().tolist() or [int(probs.argmax())]
    assert sorted(saved["classes"].tolist()) == sorted(expected)
    assert torch.allclose(saved["probabilities"], probs[saved["classes"]])
    assert saved["maps"].shape == (len(expected), 32, 32)


def test_evaluate_uses_sigmoid_probabilities_over_the_positive_labels(multi_head, image_dir, tmp_path,
                                                                       capsys) -> None:
    import cli_tiny_models

    from ttame_attr import positive_labels
    from ttame_attr.metrics import average_drop_increase

    report = tmp_path / "m.json"
    rc, out, _ = run(capsys, "evaluate", CNN, str(image_dir), "--head", str(multi_head), "--limit", "4",
                     "--no-road", "--json", str(report), "-q")
    assert rc == 0 and "multi-label" in out
    model = cli_tiny_models.tiny_cnn().eval()
    explainer = TTAME.load(multi_head, model)
    x = images(image_dir)
    with torch.no_grad():
        pairs = positive_labels(model(x), 0.45).pairs()
    maps = explainer.attribute(x[pairs.image], target=pairs.label)
    expected = average_drop_increase(model, x[pairs.image], maps, target=pairs.label,
                                     fractions=(1.0, 0.5, 0.15), multi_label=True)
    table = json.loads(report.read_text())["metrics"]
    for f in (1.0, 0.5, 0.15):
        assert table[f"AD {int(f * 100)}%"] == pytest.approx(expected.average_drop[f], rel=1e-4, abs=1e-4)
        assert table[f"IC {int(f * 100)}%"] == pytest.approx(expected.increase_in_confidence[f], abs=1e-4)


def test_export_returns_probabilities_and_label_maps(multi_head, tmp_path, capsys) -> None:
    out = tmp_path / "m.pt2"
    rc, stdout, _ = run(capsys, "export", CNN, "--head", str(multi_head), "--out", str(out), "--top-k", "2")
    assert rc == 0 and "probabilities (any, 2) sigmoid" in stdout and "(-1: no label)" in stdout
    program = torch.export.load(str(out)).module()
    x = torch.rand(3, 3, 32, 32)
    logits, classes, probs, maps = program(x)
    assert classes.shape == probs.shape == (3, 2) and maps.shape == (3, 2, 32, 32)
    assert torch.allclose(probs[:, 0], logits.sigmoid().amax(dim=1))


def test_multi_label_flag_reads_a_softmax_head_as_multi_label(trained_head, image_dir, tmp_path, capsys):
    first = sorted(image_dir.rglob("*.png"))[0]
    rc, out, _ = run(capsys, "explain", CNN, str(first), "--head", str(trained_head), "--out",
                     str(tmp_path), "--format", "pt", "--no-overlay", "--multi-label", "--threshold", "0.999")
    assert rc == 0
    saved = torch.load(next(tmp_path.glob("*.pt")), weights_only=True)
    assert saved["classes"].shape == (1,)  # nothing above 0.999: the top-1 label
    assert 0.0 < float(saved["probabilities"][0]) < 0.999


@pytest.mark.parametrize(("argv", "fragments"), [
    (["fit", CNN, "{images}", *SIZE, "--threshold", "0.3"], ["--threshold", "--multi-label"]),
    (["fit", CNN, "{images}", *SIZE, "--multi-label", "--threshold", "1.5"], ["--threshold", "(0, 1)"]),
    (["explain", CNN, "{images}", "--head", "{head}", "--threshold", "0.3"], ["--threshold", "softmax head"]),
])
def test_bad_label_options_exit_2(argv, fragments, image_dir, trained_head, capsys) -> None:
    argv = [a.replace("{images}", str(image_dir)).replace("{head}", str(trained_head)) for a in argv]
    rc, _, err = run(capsys, *argv)
    assert_usage_error(rc, err, *fragments)
