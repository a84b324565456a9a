"""``benchmarks/blank_class.py``: the classifiers' default class, measured without fitting a head."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import blank_class  # noqa: E402

from ttame_attr.data import CLASS_NAMES, MEAN, STD  # noqa: E402


class _Brightness(torch.nn.Module):
    """Class 0 (disc) when the mean pixel brightness exceeds 0.3, else class 2 (triangle)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(MEAN)[:, None, None]
        std = torch.tensor(STD)[:, None, None]
        b = (z * std + mean).mean(dim=(1, 2, 3))
        logits = torch.full((len(z), len(CLASS_NAMES)), -100.0)
        logits[:, 0] = 10 * (b - 0.3)
        logits[:, 2] = 0.0
        return logits


def test_measure_in_pixel_space_on_a_model_whose_default_is_known() -> None:
    images = torch.full((4, 3, 8, 8), 0.8)  # brightness 0.8: all discs
    result = blank_class.measure(_Brightness(), images, "pixel")
    assert result["mask_space"] == "pixel"
    assert result["blank_class"] == "triangle" and result["blank_index"] == 2
    # black: logits -3 (disc), 0 (triangle), -100 elsewhere
    assert result["blank_probabilities"]["triangle"] == pytest.approx(1 / (1 + math.exp(-3)), rel=1e-4)
    assert result["images_per_class"]["disc"] == 4 and result["images_per_class"]["triangle"] == 0
    by_level = {row["level"]: row for row in result["levels"]}
    # 0.8 * 0.5 = 0.4 > 0.3 keeps the disc; 0.8 * 0.3 = 0.24 < 0.3 turns it into the triangle
    assert by_level[0.5]["kept"] == {"disc": 1.0} and by_level[0.5]["to_blank"] == 0.0
    assert by_level[0.3]["kept"] == {"disc": 0.0} and by_level[0.3]["to_blank"] == 1.0
    assert "| 0.3 | 0.00 | – | – |" in blank_class.table(result)


def test_measure_in_input_space_fades_to_the_mean_colour() -> None:
    # A zero normalised input is the mean colour: brightness mean(MEAN) ~ 0.430 > 0.3, so the fully
    # masked image is a disc (logit 10 * 0.130 = 1.30 against the triangle's 0), and an image of
    # brightness 0.8 fades towards 0.430 without crossing 0.3: every mask value keeps the disc.
    images = torch.full((4, 3, 8, 8), 0.8)
    result = blank_class.measure(_Brightness(), images, "input")
    assert result["mask_space"] == "input" and result["blank_class"] == "disc"
    logit = 10 * (sum(MEAN) / 3 - 0.3)
    assert result["blank_probabilities"]["disc"] == pytest.approx(math.exp(logit) / (math.exp(logit) + 1),
                                                                  rel=1e-4)
    assert all(row["kept"] == {"disc": 1.0} and row["to_blank"] == 1.0 for row in result["levels"])


def test_quick_run_writes_its_results(tmp_path: Path) -> None:
    assert blank_class.main(["--quick", "--backbones", "cnn", "vit", "--threads", "1",
                             "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "blank_class.json").read_text())
    cnn, vit = report["backbones"]["cnn"], report["backbones"]["vit"]
    assert cnn["mask_space"] == "pixel" and vit["mask_space"] == "input"  # the heads' own spaces
    for result in (cnn, vit):
        assert result["fit_blank_class"] == result["blank_class"]  # fit's own lookup agrees
    assert sum(cnn["blank_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert [row["level"] for row in cnn["levels"]] == list(blank_class.LEVELS)
    assert "<!-- table: blank-class-cnn -->" in (tmp_path / "blank_class.md").read_text()
