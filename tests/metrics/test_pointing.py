"""Pointing game and energy-based pointing game."""

from __future__ import annotations

import math

import pytest
import torch

from ttame_attr.metrics import (
    EnergyPointingGame,
    PointingGame,
    PointingGameResult,
    energy_pointing_game,
    pointing_game,
)


def square_masks() -> torch.Tensor:
    masks = torch.zeros(3, 12, 12, dtype=torch.bool)
    masks[0, 0:4, 0:4] = True
    masks[1, 6:9, 1:4] = True
    masks[2, 9:12, 9:12] = True
    return masks


def test_map_equal_to_mask_wins() -> None:
    masks = square_masks()
    res = pointing_game(masks.float(), masks)
    assert isinstance(res, PointingGameResult)
    assert res.accuracy == 1.0
    assert res.hits.tolist() == [True, True, True]
    assert res.points[0].tolist() == [0, 0]  # first maximal pixel, row-major


def test_low_resolution_maps_are_upsampled_and_misses_count() -> None:
    masks = square_masks()
    maps = torch.zeros(3, 1, 3, 3)
    maps[0, 0, 0, 0] = 1.0  # upsampled maximum at (0, 0): inside mask 0
    maps[1, 0, 0, 2] = 1.0  # top-right: far from mask 1
    maps[2, 0, 2, 2] = 1.0  # bottom-right: inside mask 2
    res = pointing_game(maps, masks)
    assert res.hits.tolist() == [True, False, True]
    assert res.accuracy == pytest.approx(2 / 3)


def test_tolerance_in_pixels() -> None:
    mask = torch.zeros(1, 1, 10, 10)
    mask[0, 0, 0, 0] = 1
    sal = torch.zeros(1, 10, 10)
    sal[0, 2, 2] = 1  # distance sqrt(8) ~ 2.83 from the mask pixel
    assert pointing_game(sal, mask).hits.tolist() == [False]
    assert pointing_game(sal, mask, tolerance=2.8).hits.tolist() == [False]
    assert pointing_game(sal, mask, tolerance=math.sqrt(8) + 0.01).hits.tolist() == [True]


def test_empty_masks_are_not_counted() -> None:
    masks = square_masks()
    masks[1] = False
    res = pointing_game(masks.float(), masks)
    assert res.valid.tolist() == [True, False, True]
    assert res.accuracy == 1.0
    with pytest.raises(ValueError, match="masks: all 1 masks are empty"):  # was a silent nan (issue 33)
        pointing_game(torch.rand(1, 4, 4), torch.zeros(1, 4, 4))


def test_energy_values() -> None:
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 2, 2)
    sal = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 2, 2)
    assert energy_pointing_game(sal, mask).energy == pytest.approx(0.5)
    assert energy_pointing_game(mask, mask).energy == pytest.approx(1.0)
    # min-max normalisation first: an offset does not change the share
    assert energy_pointing_game(sal + 5.0, mask).energy == pytest.approx(0.5)
    # constant map -> normalised to zero -> energy 0
    assert energy_pointing_game(torch.ones(1, 2, 2), mask).energy == 0.0


def test_explain_fn_needs_inputs_and_target() -> None:
    masks = square_masks()
    with pytest.raises(ValueError, match="inputs"):
        pointing_game(lambda x, t: x, masks)
    images = masks.float()[:, None].expand(3, 3, 12, 12)
    res = pointing_game(lambda x, t: x, masks, inputs=images, target=[0, 1, 2])
    assert res.accuracy == 1.0


def test_stateful_equals_functional() -> None:
    torch.manual_seed(0)
    maps = torch.rand(5, 6, 6)
    masks = torch.rand(5, 6, 6) > 0.6
    pg, eg = PointingGame(tolerance=1), EnergyPointingGame()
    for part in (slice(0, 2), slice(2, 5)):
        pg.update(maps[part], masks[part])
        eg.update(maps[part], masks[part])
    full = pointing_game(maps, masks, tolerance=1)
    assert torch.equal(pg.compute().hits, full.hits)
    assert pg.compute().accuracy == pytest.approx(full.accuracy)
    assert eg.compute().energy == pytest.approx(energy_pointing_game(maps, masks).energy)


def test_mask_errors() -> None:
    with pytest.raises(TypeError, match="masks"):
        pointing_game(torch.rand(1, 4, 4), [[1, 0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="masks"):
        pointing_game(torch.rand(1, 4, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match="maps"):
        pointing_game(torch.rand(2, 4, 4), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="masks"):
        energy_pointing_game(torch.rand(0, 4, 4), torch.ones(0, 4, 4))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(torch.rand(1, 4, 4), torch.ones(1, 4, 4), tolerance=-1)
