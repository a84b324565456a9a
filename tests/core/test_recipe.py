"""fit's schedule: recipe="auto" scales the paper's epochs and lr to the run, "paper" keeps them."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from tiny_models import make_tiny_cnn, make_tiny_swin

from ttame_attr import TTAME
from ttame_attr.training._recipe import (
    AUTO_MAX_EPOCHS,
    AUTO_MAX_LR,
    AUTO_MAX_LR_BY_FAMILY,
    AUTO_MIN_STEPS,
    AUTO_MIN_STEPS_BY_FAMILY,
    PAPER_EPOCHS,
    PAPER_LR,
    PAPER_STEPS,
    resolve_schedule,
)


def test_the_constants_are_the_papers() -> None:
    # 1.28 M ImageNet images in batches of 32: 40,000 steps per epoch, 8 epochs, max lr 1e-3.
    assert (PAPER_EPOCHS, PAPER_LR, PAPER_STEPS) == (8, 1e-3, 40_000 * 8)


def test_a_run_as_long_as_the_papers_gets_the_papers_values() -> None:
    s = resolve_schedule("auto", None, None, 40_000)
    assert (s.epochs, s.lr) == (8, 1e-3) and s.source == {"epochs": "paper", "lr": "paper"}
    assert not s.departs_from_paper and "recipe='auto'" not in s.describe()


def test_a_short_run_gets_more_epochs_and_a_larger_lr() -> None:
    # 8,000 images in batches of 32 (250 steps per epoch): 8 epochs would be 2,000 steps, under
    # AUTO_MIN_STEPS = 4,000, so 16 epochs; lr = 1e-3 * sqrt(320,000 / 4,000) = 1e-3 * sqrt(80).
    s = resolve_schedule("auto", None, None, 250)
    assert AUTO_MIN_STEPS == 4000
    assert s.epochs == 16 and s.total_steps == 4000
    assert s.lr == pytest.approx(1e-3 * math.sqrt(80))
    assert s.source == {"epochs": "scaled", "lr": "scaled"} and s.departs_from_paper
    assert "16 epochs of 250 steps (4000 steps)" in s.describe() and "recipe='paper'" in s.describe()


def test_the_scaling_is_capped() -> None:
    tiny = resolve_schedule("auto", None, None, 1)  # one batch per epoch
    assert tiny.epochs == AUTO_MAX_EPOCHS == 64 and tiny.lr == AUTO_MAX_LR == 1e-2
    # Long enough for 8 epochs but shorter than the paper: only the lr is scaled, by sqrt.
    mid = resolve_schedule("auto", None, None, 10_000)
    assert mid.epochs == 8 and mid.lr == pytest.approx(1e-3 * math.sqrt(4))
    assert mid.source["epochs"] == "paper"
    # Longer than the paper: never below the paper's lr.
    assert resolve_schedule("auto", None, None, 400_000).lr == 1e-3


def test_the_swin_gets_a_lower_cap_and_the_others_the_general_one() -> None:
    # 4,000 steps: 1e-3 * sqrt(80) = 8.9e-3, under the general cap, over the Swin's 5e-3.
    assert AUTO_MAX_LR_BY_FAMILY == {"swin": 5e-3}
    for family in ("cnn", None):
        s = resolve_schedule("auto", None, None, 125, family)
        assert s.epochs == 32 and s.lr == pytest.approx(1e-3 * math.sqrt(80)) and s.family == family
        assert "the cap for" not in s.describe()
    swin = resolve_schedule("auto", None, None, 125, "swin")
    assert swin.epochs == 32 and swin.lr == 5e-3 and swin.source["lr"] == "scaled"
    assert "at a maximum learning rate of 0.005, the cap for swin backbones" in swin.describe()
    # Runs long enough for the sqrt rule to fall under the cap (16,000 steps: 4.5e-3) and the
    # paper's run are the same for every family; a given lr and recipe="paper" ignore the cap.
    assert resolve_schedule("auto", None, None, 2000, "swin").lr == pytest.approx(1e-3 * math.sqrt(20))
    assert resolve_schedule("auto", None, None, 40_000, "swin").lr == 1e-3
    assert resolve_schedule("auto", None, 1e-2, 125, "swin").lr == 1e-2
    assert resolve_schedule("paper", None, None, 125, "swin").lr == 1e-3


def test_the_vit_gets_more_steps_and_the_others_the_general_floor() -> None:
    assert AUTO_MIN_STEPS_BY_FAMILY == {"vit": 8000}
    # 125 steps per epoch (4,000 images): 64 epochs, 8,000 steps, lr 1e-3 * sqrt(40) = 6.3e-3.
    vit = resolve_schedule("auto", None, None, 125, "vit")
    assert (vit.epochs, vit.total_steps) == (64, 8000) and vit.lr == pytest.approx(1e-3 * math.sqrt(40))
    assert vit.source == {"epochs": "scaled", "lr": "scaled"}
    assert "(8000 steps) at a maximum learning rate of 0.00632, at least 8000 steps for vit backbones" in (
        vit.describe())
    assert resolve_schedule("auto", None, None, 500, "vit").epochs == 16  # 16,000 images
    # The CNN and the Swin keep 4,000 steps; the epoch cap binds for a tiny loader on any family.
    assert resolve_schedule("auto", None, None, 125, "cnn").total_steps == 4000
    assert resolve_schedule("auto", None, None, 125, "swin").total_steps == 4000
    assert resolve_schedule("auto", None, None, 31, "vit").epochs == AUTO_MAX_EPOCHS
    # A run with 8 epochs of 1,000 steps or more, given epochs and recipe="paper" are the same for
    # every family.
    assert resolve_schedule("auto", None, None, 1000, "vit").epochs == 8
    assert resolve_schedule("auto", 4, None, 125, "vit").epochs == 4
    paper = resolve_schedule("paper", None, None, 125, "vit")
    assert (paper.epochs, paper.lr) == (8, 1e-3) and "at least" not in paper.describe()
    assert "at least" not in resolve_schedule("auto", None, None, 125, "cnn").describe()


def test_fit_on_a_swin_uses_the_swins_cap(caplog, monkeypatch) -> None:
    monkeypatch.setattr("ttame_attr.training._recipe.AUTO_MIN_STEPS", 4)
    torch.manual_seed(0)
    explainer = TTAME(make_tiny_swin())
    assert explainer.adapter.family == "swin"
    loader = [torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with caplog.at_level(logging.INFO, logger="ttame_attr.training"):
        history = explainer.fit(loader, progress=False)
    assert history.schedule["lr"] == 5e-3 and history.schedule["family"] == "swin"
    assert "the cap for swin backbones" in caplog.text


def test_recipe_paper_gives_the_papers_values_whatever_the_run() -> None:
    for steps in (1, 250, 40_000):
        s = resolve_schedule("paper", None, None, steps)
        assert (s.epochs, s.lr, s.recipe) == (8, 1e-3, "paper") and not s.departs_from_paper


def test_given_values_win_and_the_rule_fills_in_the_rest() -> None:
    s = resolve_schedule("auto", 4, None, 250)  # 1,000 steps: lr 1e-3 * sqrt(320) capped at 1e-2
    assert s.epochs == 4 and s.lr == 1e-2 and s.source == {"epochs": "given", "lr": "scaled"}
    s = resolve_schedule("auto", None, 3e-3, 250)
    assert s.epochs == 16 and s.lr == 3e-3 and s.source == {"epochs": "scaled", "lr": "given"}


def test_an_unknown_recipe_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"recipe: expected one of \('auto', 'paper'\), got 'fast'"):
        resolve_schedule("fast", None, None, 10)


def _fit(caplog, **kwargs):
    torch.manual_seed(0)
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    loader = [torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with caplog.at_level(logging.INFO, logger="ttame_attr.training"):
        return explainer.fit(loader, progress=False, **kwargs)


def test_fit_on_a_short_run_uses_the_scaled_schedule(caplog, monkeypatch) -> None:
    # A floor of 40 steps keeps the test short: 2 batches per epoch x 8 epochs = 16 steps < 40,
    # so 20 epochs (40 steps), and lr 1e-3 * sqrt(320,000 / 40) = 0.089, capped at 1e-2.
    monkeypatch.setattr("ttame_attr.training._recipe.AUTO_MIN_STEPS", 40)
    history = _fit(caplog)
    assert len(history) == 20 and history.schedule["epochs"] == 20
    assert history.schedule["lr"] == pytest.approx(1e-2) and history.schedule["recipe"] == "auto"
    assert history[-1].steps == 40
    assert "20 epochs of 2 steps (40 steps)" in caplog.text
    assert "recipe='auto' scaled the epochs and lr" in caplog.text


def test_fit_with_recipe_paper_uses_the_papers_values(caplog) -> None:
    history = _fit(caplog, recipe="paper")
    assert len(history) == 8 and history.schedule["lr"] == 1e-3 and history[-1].steps == 16
    assert history.schedule["source"] == {"epochs": "paper", "lr": "paper"}
    assert "8 epochs of 2 steps (16 steps) at a maximum learning rate of 0.001" in caplog.text
    assert "scaled" not in caplog.text


def test_fit_refuses_a_bad_recipe_before_training() -> None:
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    with pytest.raises(ValueError, match="recipe: expected one of"):
        explainer.fit([torch.rand(2, 3, 32, 32)], recipe="imagenet", progress=False)
    with pytest.raises(ValueError, match="epochs: expected a positive int, or None"):
        explainer.fit([torch.rand(2, 3, 32, 32)], epochs=True, progress=False)


def _schedule_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("T-TAME training:")]


def test_a_schedule_the_recipe_changed_is_a_warning_once_before_the_first_epoch(caplog, monkeypatch) -> None:
    monkeypatch.setattr("ttame_attr.training._recipe.AUTO_MIN_STEPS", 40)
    _fit(caplog)
    records = _schedule_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING]
    text = records[0].getMessage()
    # epochs, steps, maximum learning rate, and why
    assert "20 epochs of 2 steps (40 steps) at a maximum learning rate of 0.01" in text
    assert "recipe='auto' scaled the epochs and lr to this run's length" in text
    messages = [r.getMessage() for r in caplog.records]
    first_epoch = next(i for i, m in enumerate(messages) if m.startswith("T-TAME epoch 1/"))
    assert caplog.records.index(records[0]) < first_epoch
    # Given epochs with the recipe's lr: the lr the recipe chose is still a warning.
    caplog.clear()
    _fit(caplog, epochs=3)
    records = _schedule_records(caplog)
    assert [r.levelno for r in records] == [logging.WARNING] and "scaled the lr" in records[0].getMessage()


@pytest.mark.parametrize("kwargs", [{"epochs": 2, "lr": 0.05}, {"recipe": "paper"}])
def test_a_schedule_given_or_the_papers_is_logged_at_info(caplog, kwargs) -> None:
    _fit(caplog, **kwargs)
    assert [r.levelno for r in _schedule_records(caplog)] == [logging.INFO]
