"""``benchmarks/multilabel.py``: its pieces on tiny models (the full run is the committed benchmark)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import multilabel  # noqa: E402
from _quality.methods import Explainer  # noqa: E402


class _Corner(torch.nn.Module):
    """Label 0 reads the top-left pixel, label 1 the bottom-right one (channel 0, in [0, 1])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([10 * x[:, 0, 0, 0] - 5, 10 * x[:, 0, -1, -1] - 5], dim=1)


class _Oracle(Explainer):
    """Puts all the mass on the pixel the label reads."""

    name = "oracle"
    batch_size = 2

    def explain(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        maps = torch.zeros(images.shape[0], 1, *images.shape[-2:])
        for i, t in enumerate(target.tolist()):
            maps[i, 0, -t, -t] = 1.0  # label 0: (0, 0); label 1: (-1, -1)
        return maps


def test_evaluate_method_scores_each_label_against_its_own_object() -> None:
    images = torch.zeros(2, 3, 4, 4)
    images[0, :, 0, 0] = images[0, :, -1, -1] = 1.0  # image 0 has both labels
    images[1, :, -1, -1] = 1.0  # image 1 has label 1
    masks = torch.zeros(2, 2, 4, 4)
    masks[0, 0, 0, 0] = masks[0, 1, -1, -1] = masks[1, 1, -1, -1] = 1.0
    gt = (torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    data = {"images": images, "masks": masks, "gt_pairs": gt, "pred_pairs": gt}
    row = multilabel.evaluate_method(_Oracle(), _Corner(), data)
    assert row["pointing_game"] == 100.0 and row["energy_pointing_game"] == pytest.approx(100.0)
    # 15% of 16 pixels keeps the one relevant pixel at full value: the label keeps its probability
    assert row["AD15"] == pytest.approx(0.0, abs=1e-4) and row["IC15"] == 0.0


def test_sigmoid_rise_scores_masks_with_the_sigmoid() -> None:
    rise = multilabel.SigmoidRISE(_Corner(), image_size=4, n_masks=8, cells=2, seed=0, chunk=3)
    image = torch.ones(1, 3, 4, 4)
    out = rise.explain(image, torch.tensor([1]))
    m = rise.masks
    probs = torch.sigmoid(10 * m[:, 0, -1, -1] - 5)
    expected = torch.einsum("n,nchw->chw", probs, m) / (8 * 0.5)
    assert torch.allclose(out[0], expected, atol=1e-6)


def test_aggregate_mean_and_std_over_seeds() -> None:
    cells = [{"backbone": "cnn", "methods": {"RISE": {"pointing_game": v}}} for v in (10.0, 20.0, 30.0)]
    summary = multilabel.aggregate(cells)
    assert summary["cnn"]["RISE"]["pointing_game"] == pytest.approx([20.0, 10.0])
    one = multilabel.aggregate(cells[:1])
    assert one["cnn"]["RISE"]["pointing_game"] == [10.0, 0.0]


def test_fit_ttame_trains_a_multi_label_explainer() -> None:
    from ttame_attr.classifiers import build_classifier
    from ttame_attr.data import MultiShapes

    model = build_classifier("cnn", num_classes=MultiShapes.num_classes, image_size=32).eval()
    args = argparse.Namespace(image_size=32, n_ttame=32, ttame_epochs=1, mask_space="auto", ttame_layers=None)
    method = multilabel.fit_ttame(model, "cnn", 0, args)
    assert method.explainer.multi_label is True
    assert len(method.explainer.history.epochs) == 1
    maps = method.explain(torch.rand(2, 3, 32, 32), torch.tensor([0, 3]))
    assert maps.shape[:2] == (2, 1)


def test_ttame_layers_are_the_fitted_head_s_layers_and_name_its_row() -> None:
    from ttame_attr.classifiers import build_classifier
    from ttame_attr.data import MultiShapes

    model = build_classifier("cnn", num_classes=MultiShapes.num_classes, image_size=32).eval()
    default = multilabel.fit_ttame(model, "cnn", 0, argparse.Namespace(
        image_size=32, n_ttame=32, ttame_epochs=1, mask_space="auto", ttame_layers=None))
    chosen = default.explainer.layers[-2:]
    args = argparse.Namespace(image_size=32, n_ttame=32, ttame_epochs=1, mask_space="auto",
                              ttame_layers=chosen)
    assert multilabel.fit_ttame(model, "cnn", 0, args).explainer.layers == chosen != default.explainer.layers
    assert multilabel.parse_args(["--quick"]).ttame_name == "T-TAME"
    custom = multilabel.parse_args(["--quick", "--ttame-layers", "a", "b"])
    assert custom.ttame_name == "T-TAME (custom layers)"
    named = multilabel.parse_args(["--quick", "--ttame-layers", "a", "--ttame-name", "T-TAME (a)"])
    assert named.ttame_name == "T-TAME (a)" and named.ttame_layers == ["a"]


def test_quick_settings() -> None:
    args = multilabel.parse_args(["--quick", "--seeds", "0"])
    assert args.image_size == 32 and args.n_images <= 6 and args.rise_masks == 100
    assert args.methods == list(multilabel.METHODS)


def test_merge_writes_one_table_of_earlier_runs(tmp_path: Path) -> None:
    import json

    row = {k: 1.0 for k in ("pointing_game", "energy_pointing_game", "AD15", "IC15", "AD50", "IC50",
                            "AD100", "IC100")}
    facts = {"label_accuracy": 0.9, "exact_match": 0.5, "micro_f1": 0.8}
    for seed, value in ((0, 10.0), (1, 30.0)):
        cell = {"backbone": "cnn", "seed": seed, "classifier": facts,
                "methods": {"RISE": {**row, "pointing_game": value}}}
        run = {"command": f"python benchmarks/multilabel.py --seeds {seed}", "date": "today"}
        (tmp_path / f"{seed}.json").write_text(json.dumps({"run": run, "settings": {}, "cells": [cell]}))
    multilabel.main(["--merge", str(tmp_path / "0.json"), str(tmp_path / "1.json"), "--out", str(tmp_path)])
    result = json.loads((tmp_path / "multilabel.json").read_text())
    assert result["summary"]["cnn"]["RISE"]["pointing_game"] == pytest.approx([20.0, 14.1421], rel=1e-4)
    text = (tmp_path / "multilabel.md").read_text()
    assert "Part: `python benchmarks/multilabel.py --seeds 0`" in text and "--seeds 1" in text
    assert "| RISE | 20.0 ± 14.1 |" in text


def _payload(seed: int, methods: dict, facts: dict, command: str) -> dict:
    full = dict.fromkeys(("pointing_game", "energy_pointing_game", "AD15", "IC15", "AD50", "IC50",
                          "AD100", "IC100"), 1.0)
    methods = {name: {**full, **row} for name, row in methods.items()}
    cell = {"backbone": "vit", "seed": seed, "classifier": facts, "methods": methods}
    return {"run": {"command": command, "date": "today"}, "settings": {"seeds": [seed]}, "cells": [cell]}


def test_merge_joins_the_methods_of_one_classifier_and_keeps_every_part(tmp_path: Path) -> None:
    import json

    facts = {"train_seconds": 1.0, "label_accuracy": 0.9, "exact_match": 0.5, "micro_f1": 0.8}
    first = _payload(0, {"RISE": {"AD15": 8.0}}, facts, "python benchmarks/multilabel.py --methods rise")
    (tmp_path / "a.json").write_text(json.dumps(first))
    multilabel.main(["--merge", str(tmp_path / "a.json"), "--out", str(tmp_path / "m")])  # a merge of one run
    later = _payload(0, {"Object masks": {"AD15": 20.0}}, {**facts, "train_seconds": 2.0},
                     "python benchmarks/multilabel.py --methods objects")
    (tmp_path / "b.json").write_text(json.dumps(later))
    multilabel.main(["--merge", str(tmp_path / "m" / "multilabel.json"), str(tmp_path / "b.json"),
                     "--out", str(tmp_path)])
    result = json.loads((tmp_path / "multilabel.json").read_text())
    assert len(result["cells"]) == 1  # one classifier, both methods (its training time differs)
    assert result["summary"]["vit"]["RISE"]["AD15"] == [8.0, 0.0]
    assert result["summary"]["vit"]["Object masks"]["AD15"] == [20.0, 0.0]
    commands = [part["command"] for part in result["run"]["parts"]]
    assert commands == ["python benchmarks/multilabel.py --methods rise",
                        "python benchmarks/multilabel.py --methods objects"]
    assert result["run"]["replaced"] == []
    # a rerun of one method replaces that method's row, and the table says so
    again = _payload(0, {"RISE": {"AD15": 6.0}}, facts, "python benchmarks/multilabel.py --rerun")
    (tmp_path / "c.json").write_text(json.dumps(again))
    multilabel.main(["--merge", str(tmp_path / "multilabel.json"), str(tmp_path / "c.json"),
                     "--out", str(tmp_path / "r")])
    result = json.loads((tmp_path / "r" / "multilabel.json").read_text())
    assert result["summary"]["vit"]["RISE"]["AD15"] == [6.0, 0.0]
    assert result["summary"]["vit"]["Object masks"]["AD15"] == [20.0, 0.0]
    assert len(result["run"]["replaced"]) == 1 and "vit seed 0 RISE" in result["run"]["replaced"][0]
    assert "Replaced: vit seed 0 RISE" in (tmp_path / "r" / "multilabel.md").read_text()


def test_merge_refuses_two_classifiers_for_one_seed(tmp_path: Path) -> None:
    import json

    for name, accuracy in (("a", 0.9), ("b", 0.8)):
        payload = _payload(0, {"RISE": {"AD15": 1.0}}, {"label_accuracy": accuracy}, "run " + name)
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
    with pytest.raises(SystemExit, match="another classifier for vit seed 0"):
        multilabel.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                         "--out", str(tmp_path)])


def test_object_masks_keep_the_object_and_rank_the_rest_by_distance() -> None:
    masks = torch.zeros(1, 2, 5, 5)
    masks[0, 0, 2, 2] = 1.0  # class 0: the centre pixel; class 1: no object (a false positive)
    maps = multilabel.ObjectMasks(masks).pair_maps(torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert maps.shape == (2, 1, 5, 5)
    own = maps[0, 0]
    assert own[2, 2] == 1.0
    outside = own.clone()
    outside[2, 2] = 0.0
    assert 0.0 < float(own[0, 0]) < float(own[2, 1]) < 1e-3  # nearer pixels rank higher, all near 0
    assert float(outside.max()) == float(own[2, 1]) == float(own[1, 2])
    assert torch.equal(maps[1], torch.zeros(1, 5, 5))  # nothing to show for a false positive
    # AD/IC with the corner model: the object is what the label reads, so it keeps its probability
    images = torch.zeros(1, 3, 4, 4)
    images[0, :, 0, 0] = 1.0
    corner = torch.zeros(1, 2, 4, 4)
    corner[0, 0, 0, 0] = 1.0
    pairs = (torch.tensor([0]), torch.tensor([0]))
    data = {"images": images, "masks": corner, "gt_pairs": pairs, "pred_pairs": pairs}
    row = multilabel.evaluate_method(multilabel.ObjectMasks(corner), _Corner(), data)
    assert row["pointing_game"] == 100.0 and row["AD15"] == pytest.approx(0.0, abs=1e-4)


def test_rise_and_adic_with_a_fill_colour() -> None:
    # the fill is the image itself: every masked image is the image, so each mask scores the
    # same probability and AD/IC see no change whatever the map
    fill = torch.full((3, 1, 1), 0.7)
    image = torch.full((1, 3, 4, 4), 0.7)
    rise = multilabel.SigmoidRISE(_Corner(), image_size=4, fill=fill, n_masks=8, cells=2, seed=0, chunk=3)
    out = rise.explain(image, torch.tensor([1]))
    expected = torch.sigmoid(torch.tensor(10 * 0.7 - 5)) * rise.masks.sum(0) / (8 * 0.5)
    assert torch.allclose(out[0], expected, atol=1e-6)
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 1, -1, -1] = 1.0
    pairs = (torch.tensor([0]), torch.tensor([1]))
    data = {"images": image, "masks": masks, "gt_pairs": pairs, "pred_pairs": pairs}
    row = multilabel.evaluate_method(multilabel.ObjectMasks(masks), _Corner(), data, fill)
    assert row["AD15"] == pytest.approx(0.0, abs=1e-5)
    black = multilabel.evaluate_method(multilabel.ObjectMasks(torch.zeros(1, 2, 4, 4)), _Corner(), data)
    assert black["AD15"] > 90  # a blank map on black removes the pixel the label reads
    assert multilabel.fill_colour("black") is None
    assert multilabel.fill_colour("mean").shape == (3, 1, 1)
