"""Issue 33 cases of the command line that need more than one bad argument: high bit-depth
images (1), a head kept when --out fails (9), --skip-unreadable and drop_last (12), --json into a
new folder (13), the model specs the help offers (17), symlinks in --out (19), a full disk on
export (3)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ttame_attr import TTAME
from ttame_attr._core import storage
from ttame_attr.cli import build_parser, main
from ttame_attr.cli._data import ImageFiles, image_loader, to_rgb
from ttame_attr.cli._errors import CLIError
from ttame_attr.cli._outputs import rescue_write

CLI_MODELS = str(Path(__file__).parent.parent / "cli")
CNN = "cli_tiny_models:tiny_cnn"
SIZE = ["--input-size", "32"]


@pytest.fixture(autouse=True)
def _cli_models_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(CLI_MODELS)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(folder / f"i{i}.png")
    return folder


@pytest.fixture
def head(tmp_path: Path) -> Path:
    from cli_tiny_models import tiny_cnn

    return TTAME(tiny_cnn().eval(), input_size=(3, 32, 32)).save(tmp_path / "head.pt")


def _to_tensor(path: Path) -> torch.Tensor:
    from torchvision.transforms import ToTensor

    return ImageFiles([path], ToTensor())[0][0]


# ------------------------------------------------------------------ case 1: 16-bit and float images
def test_a_16_bit_png_is_scaled_not_saturated(tmp_path):
    gradient = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    x = _to_tensor(tmp_path / "g16.png")
    expected = torch.from_numpy(gradient.astype(np.float64) / 65535).float()
    assert x.shape == (3, 32, 32)
    # was: 99.6% of the pixels 1.0 (convert("RGB") clips at 255); now the gradient, to 8 bits
    assert torch.allclose(x[0], expected, atol=0.5 / 255 + 1e-6) and torch.equal(x[0], x[2])
    assert float((x == 1.0).float().mean()) < 0.01


def test_a_float_tiff_in_0_1_is_read_and_others_are_refused(tmp_path):
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert torch.allclose(_to_tensor(tmp_path / "f.tif")[1], torch.from_numpy(values), atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError, match=r"a 32-bit float image with values in \[0, 3\]"):
        to_rgb(Image.fromarray(values * 3))
    with pytest.raises(ValueError, match="a 32-bit integer image with values in .* beyond 16 bits"):
        to_rgb(Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)))


def test_an_8_bit_image_reads_as_before(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert torch.equal(_to_tensor(tmp_path / "c.png"), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


# ---------------------------------------------------------- case 9: the trained head is not lost
def test_rescue_write_keeps_the_result_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "full" / "head.pt"

    def write(path: Path) -> Path:
        if path == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        path.write_text("head")
        return path

    with pytest.raises(CLIError, match=r"--out: writing .* failed \(OSError: \[Errno 28\] No space left on "
                                       r"device\); the result was kept in .*rescued_\d+_head\.pt") as info:
        rescue_write("--out", target, write)
    kept = Path(str(info.value).split("kept in '")[1].split("'")[0])
    assert kept.parent == tmp_path and kept.read_text() == "head"


def test_fit_keeps_the_head_when_out_cannot_be_written(tmp_path, images, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "head.pt"
    real_save = TTAME.save

    def save(self, path):
        if Path(path) == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_save(self, path)

    monkeypatch.setattr(TTAME, "save", save)
    rc = main(["fit", CNN, str(images), *SIZE, "--epochs", "1", "--batch-size", "4", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "Read-only file system" in err and "the result was kept in" in err, err
    rescued = list(tmp_path.glob("rescued_*_head.pt"))
    assert len(rescued) == 1 and not out.exists()
    TTAME.load(rescued[0], __import__("cli_tiny_models").tiny_cnn().eval())  # a whole head


# ------------------------------------------------- case 12: drop_last files are checked too
def test_skip_unreadable_checks_the_files_drop_last_never_loaded(tmp_path, images):
    bad = images / "i9_broken.png"  # sorted last; with drop_last it is never loaded
    bad.write_bytes(b"not a png")
    files = sorted(images.glob("*.png"))
    from torchvision.transforms import ToTensor

    loader = image_loader(files, ToTensor(), skip=True, batch_size=4, drop_last=True)
    assert sum(1 for _ in loader) == 1 and loader.skipped == {}  # the broken one was not read
    assert loader.check_unread() == 2
    assert list(loader.skipped) == [bad]
    assert loader.check_unread() == 0


def test_fit_reports_the_unreadable_files_it_never_loaded(tmp_path, images, capsys):
    (images / "zz_broken.png").write_bytes(b"not a png")
    rc = main(["fit", CNN, str(images), *SIZE, "--epochs", "1", "--batch-size", "4", "--out",
               str(tmp_path / "h.pt"), "-q", "--skip-unreadable"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "checked the 2 images training never loaded" in out
    assert "skipped 1 unreadable image" in out and "zz_broken.png" in out
    assert "zz_broken.png" in (tmp_path / "h.skipped.txt").read_text()


# ------------------------------------------------------------ case 13: --json into a new folder
def test_evaluate_json_creates_its_folder(tmp_path, images, head, capsys):
    target = tmp_path / "new" / "dir" / "x.json"
    rc = main(["evaluate", CNN, str(images), *SIZE, "--head", str(head), "--no-road", "-q",
               "--json", str(target)])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(target.read_text())["images"] == 5


def test_export_on_a_full_disk_is_one_line_and_keeps_the_file(tmp_path, head, monkeypatch, capsys):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"previous")

    def full(tmp, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "_write_all", full)
    rc = main(["export", CNN, *SIZE, "--head", str(head), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "no space left on" in err and "the previous file is kept" in err
    assert out.read_bytes() == b"previous"


# ----------------------------------------------------- case 17: only specs that can load are offered
def test_help_does_not_offer_torchscript_files(capsys):
    for command in ("fit", "explain", "evaluate", "export", "layers"):
        parser = build_parser()
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "TorchScript" not in text and "module:callable" in text


# ----------------------------------------------------------- case 19: symlinks in --out not followed
def test_explain_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path, images, head, capsys):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "i0.npy").symlink_to(victim)
    (out / "i0_class0.png").symlink_to(victim)
    (out / "skipped.txt").symlink_to(victim)
    rc = main(["explain", CNN, str(images / "i0.png"), *SIZE, "--head", str(head), "--out", str(out),
               "--target", "0", "--skip-unreadable"])
    assert rc == 0, capsys.readouterr().err
    assert victim.read_text() == "precious"
    for name in ("i0.npy", "i0_class0.png", "skipped.txt"):
        assert not (out / name).is_symlink() and (out / name).is_file(), name
    assert np.load(out / "i0.npy").shape == (1, 32, 32)
    assert sorted(p.name for p in out.iterdir()) == ["i0.npy", "i0_class0.png", "skipped.txt"]



# ------------------------------------------------ case 13: a read-only --out, found before the work
def test_a_read_only_out_is_refused_before_loading_anything(tmp_path, images, head, monkeypatch, capsys):
    from ttame_attr.cli import _outputs

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")  # what a read-only folder gives (not as root)

    monkeypatch.setattr(_outputs.tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(TTAME, "load", lambda *a, **k: pytest.fail("the head was loaded first"))
    rc = main(["explain", CNN, str(images), *SIZE, "--head", str(head), "--out", str(tmp_path / "ro")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--out: cannot write in {str(tmp_path)!r} (Permission denied)" in err
