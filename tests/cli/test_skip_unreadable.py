"""``--skip-unreadable``: corrupt image files are skipped, counted and listed (also from worker
processes); without it the first one stops the run with exit status 2, naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import CNN, SIZE, run

from ttame_attr.cli._data import ImageFiles, Unreadable, eval_transform, image_loader, load_batch
from ttame_attr.cli._errors import CLIError


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """6 random 40x48 PNGs and 2 unreadable ones: random bytes, and a PNG cut in half."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / f"good{i}.png")
    noise = root / "noise.png"
    noise.write_bytes(os.urandom(512))
    truncated = root / "truncated.png"
    data = (root / "good0.png").read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    return root, sorted([noise, truncated])


def listed(path: Path) -> list[Path]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# 2 unreadable images")
    return sorted(Path(line) for line in lines[1:])


@pytest.mark.parametrize("workers", ["0", "1"])
def test_fit_skips_counts_and_lists_them(mixed_dir, tmp_path, capsys, workers):
    root, bad = mixed_dir
    out = tmp_path / "head.pt"
    rc, stdout, err = run(capsys, "fit", CNN, str(root), *SIZE, "--epochs", "2", "--batch-size", "3",
                          "--workers", workers, "--out", str(out), "--skip-unreadable", "-q")
    assert rc == 0, err
    assert out.is_file()
    assert "skipped 2 unreadable images:" in stdout
    printed = [line.strip().split(" (")[0] for line in stdout.splitlines() if line.startswith("  ")]
    assert sorted(map(Path, printed)) == bad
    assert "UnidentifiedImageError" in stdout and "truncated" in stdout
    skipped = out.with_suffix(".skipped.txt")
    assert listed(skipped) == [p.resolve() for p in bad]
    assert f"wrote the list of skipped images to {skipped}" in stdout


@pytest.mark.parametrize("workers", ["0", "1"])
def test_without_the_flag_the_first_bad_file_stops_the_run(mixed_dir, tmp_path, capsys, workers):
    root, bad = mixed_dir
    rc, _, err = run(capsys, "fit", CNN, str(root), *SIZE, "--epochs", "1", "--batch-size", "8",
                     "--workers", workers, "--out", str(tmp_path / "h.pt"), "-q")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "cannot read the image" in lines[0] and "--skip-unreadable" in lines[0]
    assert any(str(p) in lines[0] for p in bad)
    assert not (tmp_path / "h.pt").exists()


def test_val_images_are_skipped_too(mixed_dir, image_dir, tmp_path, capsys):
    root, bad = mixed_dir
    out = tmp_path / "head.pt"
    rc, stdout, err = run(capsys, "fit", CNN, str(image_dir), "--val", str(root), *SIZE, "--epochs", "1",
                          "--batch-size", "4", "--out", str(out), "--skip-unreadable", "-q")
    assert rc == 0, err
    assert "skipped 2 unreadable images:" in stdout
    assert listed(out.with_suffix(".skipped.txt")) == [p.resolve() for p in bad]
    rc, _, err = run(capsys, "fit", CNN, str(image_dir), "--val", str(root), *SIZE, "--epochs", "1",
                     "--batch-size", "4", "--out", str(tmp_path / "h2.pt"), "-q")
    assert rc == 2 and "--val: cannot read the image" in err


@pytest.mark.parametrize("workers", [0, 1])
def test_a_batch_of_unreadable_images_is_dropped(mixed_dir, workers):
    root, bad = mixed_dir
    good = sorted(root.glob("good*.png"))[:3]
    files = [*bad, *good]  # batch 2: [bad, bad], [good, good], [good]
    loader = image_loader(files, eval_transform((3, 32, 32), (0.5,) * 3, (0.5,) * 3), skip=True,
                          batch_size=2, num_workers=workers)
    assert len(loader) == 3
    batches = list(loader)
    assert [indices.tolist() for _, indices in batches] == [[2, 3], [4]]
    assert [tuple(images.shape) for images, _ in batches] == [(2, 3, 32, 32), (1, 3, 32, 32)]
    assert list(loader.skipped) == bad
    assert list(loader) and len(loader.skipped) == 2  # a second epoch: the same two, not four


def test_all_unreadable_stops_with_a_clear_error(mixed_dir):
    _, bad = mixed_dir
    loader = image_loader(bad, eval_transform((3, 32, 32), (0.5,) * 3, (0.5,) * 3), skip=True, batch_size=1)
    with pytest.raises(CLIError, match="none of the 2 images could be read"):
        list(loader)


def test_the_loader_shares_the_dataloaders_generator(mixed_dir):
    root, _ = mixed_dir
    generator = torch.Generator().manual_seed(0)
    loader = image_loader(sorted(root.glob("good*.png")), eval_transform((3, 32, 32), (0.5,) * 3, (0.5,) * 3),
                          skip=True, batch_size=2, shuffle=True, generator=generator)
    # The training loop records and restores these to replay a resumed epoch.
    assert loader.generator is generator
    assert loader.sampler is loader.loader.sampler and loader.batch_sampler is loader.loader.batch_sampler


def test_the_dataset_reports_or_raises(mixed_dir):
    _, bad = mixed_dir
    transform = eval_transform((3, 32, 32), (0.5,) * 3, (0.5,) * 3)
    item = ImageFiles(bad, transform, report_unreadable=True)[1]
    assert isinstance(item, Unreadable) and item.index == 1 and "truncated" in item.reason
    with pytest.raises(CLIError, match="truncated.png"):
        ImageFiles(bad, transform)[1]
    images, kept, skipped = load_batch([bad[0], *bad], transform, skip=True)
    assert images is None and kept == [] and list(skipped) == bad


def test_evaluate_skips_with_the_flag(mixed_dir, trained_head, tmp_path, capsys):
    root, bad = mixed_dir
    report = tmp_path / "m.json"
    rc, out, err = run(capsys, "evaluate", CNN, str(root), "--head", str(trained_head), "--batch-size", "4",
                       "--workers", "1", "--no-road", "--skip-unreadable", "--json", str(report), "-q")
    assert rc == 0, err
    assert "6 images, head" in out and "skipped 2 unreadable images:" in out
    table = json.loads(report.read_text())
    assert table["images"] == 6 and sorted(map(Path, table["skipped"])) == bad
    rc, _, err = run(capsys, "evaluate", CNN, str(root), "--head", str(trained_head), "--no-road", "-q")
    assert rc == 2 and "cannot read the image" in err and "Traceback" not in err


def test_explain_skips_with_the_flag(mixed_dir, trained_head, tmp_path, capsys):
    root, bad = mixed_dir
    out = tmp_path / "maps"
    rc, stdout, err = run(capsys, "explain", CNN, str(root), "--head", str(trained_head), "--out", str(out),
                          "--batch-size", "3", "--skip-unreadable")
    assert rc == 0, err
    assert sorted(p.stem for p in out.glob("*.npy")) == [f"good{i}" for i in range(6)]
    assert "wrote the maps of 6 images" in stdout and "skipped 2 unreadable images:" in stdout
    assert listed(out / "skipped.txt") == [p.resolve() for p in bad]
    rc, _, err = run(capsys, "explain", CNN, str(root), "--head", str(trained_head), "--out", str(out))
    assert rc == 2 and "cannot read the image" in err and "--skip-unreadable" in err
