"""Issue 33, cases 2, 20 and 21: metrics refuse non-finite maps and soft or empty masks, and run a
model in training mode in eval mode without touching its batch-norm statistics."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_models import assert_same_snapshot, make_tiny_cnn, model_snapshot

from ttame_attr import metrics as M


@pytest.fixture(scope="module")
def model():
    return make_tiny_cnn()


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _object_maps(n: int = 4) -> torch.Tensor:
    maps = torch.zeros(n, 1, 32, 32)
    maps[:, :, 8:16, 8:16] = 1.0
    return maps


METRICS = {
    "ad_ic": lambda model, x, maps: M.average_drop_increase(model, x, maps),
    "road": lambda model, x, maps: M.road(model, x, maps, fractions=(0.5,)),
    "deletion": lambda model, x, maps: M.deletion(model, x, maps, steps=4),
    "insertion": lambda model, x, maps: M.insertion(model, x, maps, steps=4),
    "pointing": lambda model, x, maps: M.pointing_game(maps, _object_maps(x.shape[0]) > 0),
    "energy": lambda model, x, maps: M.energy_pointing_game(maps, _object_maps(x.shape[0]) > 0),
}


# ------------------------------------------------------------------ case 2: NaN / inf in maps
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_refuses_nonfinite_maps_naming_the_image(model, name, bad):
    maps = _object_maps()
    maps[2, 0, 0, 0] = bad  # a NaN once scored pointing game 0 and AD 88.99 instead of 1.0 / 15%
    with pytest.raises(ValueError, match=r"maps: the maps of 1 of 4 images \(positions in the batch\) 2 hold "
                                         r"NaN or inf"):
        METRICS[name](model, _images(), maps)


def test_evaluate_names_the_loader_position_of_a_nonfinite_map(model):
    maps = {0: _object_maps(2), 1: _object_maps(2)}
    maps[1][1, 0, 3, 3] = float("nan")
    loader = [_images(2), _images(2)]
    calls = iter(range(2))
    with pytest.raises(ValueError, match=r"maps: the maps of 1 of 2 images 3 hold NaN or inf"):
        M.evaluate(model, loader, lambda x, t: maps[next(calls)], metrics=["ad_ic"])


def test_evaluate_can_skip_and_count_nonfinite_maps(model, caplog):
    x = _images(4)
    maps = _object_maps(4) * torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    bad = maps.clone()
    bad[1, 0, 5, 5] = float("inf")
    caplog.set_level(logging.WARNING)
    out = M.evaluate(model, [x], lambda _x, _t: bad, metrics=["ad_ic"], nonfinite="skip")
    assert out["nonfinite"] == [1]
    assert "left out 1 of 4 images" in caplog.text
    keep = torch.tensor([0, 2, 3])
    expected = M.average_drop_increase(model, x[keep], maps[keep])
    assert out["ad_ic"].average_drop == pytest.approx(expected.average_drop)


def test_evaluate_refuses_an_unknown_nonfinite_mode(model):
    with pytest.raises(ValueError, match="nonfinite: expected 'raise' or 'skip'"):
        M.evaluate(model, [_images(2)], lambda x, t: _object_maps(2), nonfinite="ignore")


# -------------------------------------------------------- case 20: soft, empty, mismatched masks
def test_pointing_game_refuses_a_soft_mask():
    masks = _object_maps(2)[:, 0] * 0.5  # was: every mask empty after > 0.5, accuracy nan
    with pytest.raises(ValueError, match=r"masks: expected bool or 0/1 masks, got 128 values between 0 and 1 "
                                         r"\(e.g. 0.5\)"):
        M.pointing_game(_object_maps(2), masks)


def test_pointing_game_refuses_all_empty_masks():
    with pytest.raises(ValueError, match="masks: all 2 masks are empty"):
        M.pointing_game(_object_maps(2), torch.zeros(2, 32, 32, dtype=torch.bool))


def test_pointing_game_logs_the_empty_masks_it_does_not_count(caplog):
    masks = _object_maps(3)[:, 0] > 0
    masks[1] = False
    caplog.set_level(logging.WARNING)
    result = M.pointing_game(_object_maps(3), masks)
    assert result.accuracy == 1.0 and result.valid.tolist() == [True, False, True]
    assert "1 of 3 masks are empty (positions [1])" in caplog.text


def test_mask_batch_mismatch_blames_the_masks():
    with pytest.raises(ValueError, match=r"^masks: batch size 3 does not match the 2 maps"):
        M.pointing_game(_object_maps(2), _object_maps(3) > 0)
    with pytest.raises(ValueError, match=r"^masks: batch size 3 does not match the 2 images of `inputs`"):
        M.energy_pointing_game(lambda x, t: _object_maps(2), _object_maps(3) > 0, inputs=_images(2), target=0)


def test_integer_masks_with_255_still_count():
    masks = (_object_maps(2)[:, 0] * 255).to(torch.uint8)
    assert M.pointing_game(_object_maps(2), masks).accuracy == 1.0


# --------------------------------------------------- case 21: a model in training mode is left alone
@pytest.mark.parametrize("name", ["ad_ic", "road", "deletion", "insertion"])
def test_metrics_do_not_update_batch_norm_of_a_training_model(name):
    model = make_tiny_cnn().train()
    before = model_snapshot(model)
    train_result = METRICS[name](model, _images(), _object_maps())
    assert_same_snapshot(before, model_snapshot(model))  # running stats and .training unchanged
    eval_result = METRICS[name](model.eval(), _images(), _object_maps())
    assert repr(train_result) == repr(eval_result)  # dropout off, batch-norm in eval: same scores


def test_evaluate_leaves_a_training_model_as_it_was():
    model = make_tiny_cnn().train()
    model.layer1.eval()  # a mix of modes is restored module by module
    before = model_snapshot(model)
    M.evaluate(model, [_images(2)], lambda x, t: _object_maps(2), metrics=["ad_ic"])
    assert_same_snapshot(before, model_snapshot(model))
