"""benchmarks/train_classifiers.py trains the classifiers the quality benchmark then finds in the cache."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import train_classifiers  # noqa: E402
from _quality import models  # noqa: E402


def test_its_default_classifiers_are_the_ones_the_benchmarks_load(monkeypatch, tmp_path) -> None:
    # load_or_train keys its cache on num_eval (and the seed): the script's defaults and the
    # benchmarks' call must agree, or the benchmarks train every classifier again.
    seen = {}

    def fake_load_or_train(arch, cache_dir, **kwargs):
        seen.update(kwargs)
        return torch.nn.Linear(1, 1), {}

    monkeypatch.setattr("ttame_attr.classifiers.load_or_train", fake_load_or_train)
    models.get_classifier("vit", tmp_path, 64, quick=False)
    args = train_classifiers.parse_args([])
    assert (args.num_test, args.seed) == (seen["num_eval"], seen["seed"]) == (models.CLASSIFIER_NUM_EVAL, 0)
