from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _tiny_models_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder-style tree of 8 random 40x48 RGB PNGs (two class folders)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(8):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return root


@pytest.fixture(scope="session")
def trained_head(tmp_path_factory: pytest.TempPathFactory, image_dir: Path) -> Path:
    """A head fitted for one epoch with ``ttame fit`` on the tiny CNN (32x32 inputs).

    ``--head-init pytorch``: one epoch from the default zero start leaves maps so flat that
    their min-max normalisation (AD/IC) ranks float noise; random fusion rows give real contrast.
    """
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from ttame_attr.cli import main

    out = tmp_path_factory.mktemp("head") / "head.pt"
    rc = main(["fit", "cli_tiny_models:tiny_cnn", str(image_dir), "--input-size", "32",
               "--epochs", "1", "--batch-size", "4", "--out", str(out), "-q", "--head-init", "pytorch"])
    assert rc == 0
    return out
