"""Small real explanation stores (``explain_dataset`` on a tiny classifier) for the audit's tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ttame_attr import TTAME, explain_dataset
from ttame_attr.classifiers import build_classifier
from ttame_attr.data import SyntheticShapes


def tiny_explainer(num_classes: int = 8, size: int = 32) -> TTAME:
    """An untrained small CNN with a T-TAME head whose random fusion rows are scaled up, so that
    its maps have contrast (an untrained head's maps are nearly flat)."""
    torch.manual_seed(0)
    net = build_classifier("cnn", num_classes=num_classes, image_size=size).eval()
    explainer = TTAME(net, input_size=(3, size, size), head_init="pytorch")
    with torch.no_grad():
        explainer.head.fusion.weight.mul_(40.0)
    return explainer


def shapes_store(path: Path, n: int = 48, size: int = 32) -> tuple[Path, SyntheticShapes]:
    """A store of ``n`` SyntheticShapes images (with object masks) explained by the tiny CNN."""
    data = SyntheticShapes(n, image_size=size, seed=0, split="test")
    explain_dataset(tiny_explainer(size=size), data, path, batch_size=16, shard_size=16, progress=False)
    return path, data


def empty_store(path: Path, like: Path) -> Path:
    """A store whose manifest lists no shards (0 rows), copied from the store ``like``."""
    path.mkdir(parents=True)
    manifest = json.loads((like / "manifest.json").read_text())
    manifest["shards"] = []
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def old_store(path: Path, like: Path) -> Path:
    """A store whose manifest says ``format_version`` 0 (before the audit's format)."""
    path.mkdir(parents=True)
    manifest = json.loads((like / "manifest.json").read_text())
    manifest["format_version"] = 0
    manifest["shards"] = []
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path
