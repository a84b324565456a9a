"""TrainingHistory.convergence: fit and ``ttame fit`` say when the head was still improving."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr.training import Convergence, EpochStats, TrainingHistory


def _epoch(i: int, loss: float, fidelity: float, val: tuple[float, float] | None = None) -> EpochStats:
    extra = {} if val is None else {"val_loss": val[0], "val_fidelity": val[1]}
    return EpochStats(epoch=i, loss=loss, ce=loss, area=0.1, variation=0.1, fidelity=fidelity, lr=1e-3,
                      steps=10 * i, **extra)


def _history(*epochs: tuple) -> TrainingHistory:
    return TrainingHistory([_epoch(i + 1, *e) for i, e in enumerate(epochs)])


def test_one_epoch_cannot_tell() -> None:
    report = _history((1.0, 0.5)).convergence()
    assert report == Convergence(None, "training", None, None, "")


def test_a_loss_still_falling_is_not_done_and_the_advice_says_what_to_do() -> None:
    report = _history((1.2, 0.70), (1.0, 0.80), (0.97, 0.80)).convergence()
    assert report.done is False and report.source == "training"
    assert report.loss_drop == pytest.approx(0.03) and report.fidelity_gain == pytest.approx(0.0)
    assert "loss fell 3.0% (1.0000 -> 0.9700)" in report.advice
    assert "epochs=6" in report.advice and "lr=1e-2" in report.advice


def test_the_advice_gives_the_swins_capped_rate_on_a_swin() -> None:
    history = _history((1.2, 0.70), (1.0, 0.80))
    history.schedule = {"recipe": "auto", "lr": 1e-3, "family": "swin"}
    advice = history.convergence().advice
    assert "lr=5e-3 suits runs of a few thousand steps" in advice and "lr=1e-2" not in advice
    history.schedule = {"recipe": "auto", "lr": 1e-3, "family": "vit"}
    assert "lr=1e-2 suits" in history.convergence().advice


@pytest.mark.parametrize(("family", "lr"), [("cnn", 1e-2), ("swin", 5e-3), ("cnn", 5e-2)])
def test_the_advice_never_names_the_rate_the_run_used(family, lr) -> None:
    # The demo's case: a run at the rule's largest rate (or above it) is not told to raise it.
    history = _history((1.2, 0.70), (1.0, 0.80))
    history.schedule = {"recipe": "auto", "lr": lr, "family": family, "epochs": 2, "total_steps": 128,
                        "source": {"epochs": "given", "lr": "scaled"}}
    advice = history.convergence().advice
    assert "higher maximum learning rate" not in advice and "lr=" not in advice
    assert "already the largest recipe='auto' uses for this backbone: do not raise it" in advice
    # Train longer instead, and why: the given epochs gave fewer steps than the recipe's floor.
    assert "epochs=2 gave 128 steps, fewer than the 4,000 recipe='auto' gives" in advice
    assert "e.g. epochs=4" in advice


def test_the_advice_names_the_recipes_epoch_limit() -> None:
    history = _history(*[(1.0 - 0.05 * i, 0.8) for i in range(64)])
    history.schedule = {"recipe": "auto", "lr": 1e-2, "family": "cnn", "epochs": 64, "total_steps": 1984,
                        "source": {"epochs": "scaled", "lr": "scaled"}}
    advice = history.convergence().advice
    assert "recipe='auto' stopped at its limit of 64 epochs; e.g. epochs=128" in advice


def test_a_fidelity_still_rising_is_not_done() -> None:
    report = _history((1.0, 0.80), (1.0, 0.85)).convergence()
    assert report.done is False and report.fidelity_gain == pytest.approx(0.05)
    assert "0.800 -> 0.850" in report.advice


def test_flat_loss_and_fidelity_are_done() -> None:
    report = _history((1.0, 0.80), (0.99, 0.81)).convergence()
    assert report.done is True and report.advice == ""
    assert report.loss_drop == pytest.approx(0.01) and report.fidelity_gain == pytest.approx(0.01)
    # A rising loss is not "still improving" either.
    assert _history((1.0, 0.80), (1.1, 0.80)).convergence().done is True


def test_validation_terms_decide_when_every_epoch_has_them() -> None:
    # Training loss still falling fast, validation flat: the validation pass is believed.
    h = _history((1.0, 0.8, (0.9, 0.8)), (0.8, 0.8, (0.9, 0.8)))
    report = h.convergence()
    assert report.done is True and report.source == "validation" and report.loss_drop == pytest.approx(0.0)
    assert _history((1.0, 0.8, (0.9, 0.8)), (1.0, 0.8, (0.8, 0.8))).convergence().done is False


def test_tolerances_are_arguments() -> None:
    h = _history((1.0, 0.80), (0.97, 0.80))
    assert h.convergence().done is False
    assert h.convergence(loss_tol=0.05).done is True


def _fit_tiny(epochs: int = 2) -> TrainingHistory:
    torch.manual_seed(0)
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    loader = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    return explainer.fit(loader, epochs=epochs, progress=False)


@pytest.mark.parametrize("done", [False, True])
def test_fit_logs_the_advice_only_when_the_head_is_not_done(done, monkeypatch, caplog) -> None:
    report = Convergence(done, "training", 0.1, 0.0, "" if done else "ADVICE: train longer")
    monkeypatch.setattr(TrainingHistory, "convergence", lambda self, *a, **k: report)
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        _fit_tiny()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "ADVICE" in r.getMessage()]
    assert len(warned) == (0 if done else 1)


def test_fit_judges_its_own_history(monkeypatch) -> None:
    seen = []
    original = TrainingHistory.convergence

    def spy(self, *args, **kwargs):
        seen.append([e.loss for e in self.epochs])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainingHistory, "convergence", spy)
    history = _fit_tiny(epochs=3)
    assert seen == [history.column("loss")]


def test_the_advice_is_given_once_by_fit_and_once_by_the_cli(monkeypatch, tmp_path, capsys, caplog) -> None:
    import numpy as np
    from PIL import Image

    from ttame_attr.cli import main

    report = Convergence(False, "training", 0.1, 0.0, "ADVICE: train longer")
    monkeypatch.setattr(TrainingHistory, "convergence", lambda self, *a, **k: report)
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        _fit_tiny()  # in Python: the log says it
    assert [r.getMessage() for r in caplog.records].count("ADVICE: train longer") == 1
    caplog.clear()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):  # the command: its note says it
        assert main(["fit", "torchvision:resnet18", str(tmp_path), "--num-classes", "3", "--input-size",
                     "32", "--epochs", "2", "--batch-size", "2", "--out", str(tmp_path / "h.pt"), "-q"]) == 0
    captured = capsys.readouterr()
    assert (captured.out + captured.err + caplog.text).count("ADVICE: train longer") == 1


def test_cli_fit_prints_the_advice(monkeypatch, tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    from ttame_attr.cli import main

    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    report = Convergence(False, "training", 0.1, 0.0, "ADVICE: train longer")
    monkeypatch.setattr(TrainingHistory, "convergence", lambda self, *a, **k: report)
    rc = main(["fit", "torchvision:resnet18", str(tmp_path), "--num-classes", "3", "--input-size", "32",
               "--epochs", "2", "--batch-size", "2", "--out", str(tmp_path / "h.pt"), "-q"])
    assert rc == 0
    assert "note: ADVICE: train longer (ttame fit: --epochs, --lr)" in capsys.readouterr().out
