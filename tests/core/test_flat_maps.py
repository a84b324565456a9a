"""A head whose maps are (near) constant after training gets a warning, whatever the number of epochs."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr.training import FLAT_MAP_SPREAD, ClassPeaks, EpochStats, StepResult, TrainingHistory


def _result(labels, peaks, floors) -> StepResult:
    return StepResult(None, torch.tensor(1.0), len(labels), True, None, torch.tensor(labels),
                      torch.tensor(peaks), torch.tensor(floors))


def test_the_epochs_spread_is_the_largest_of_one_images_mask() -> None:
    piece = ClassPeaks(num_classes=3)
    piece.on_batch_end(None, _result([0, 1], [0.5, 0.9], [0.45, 0.2]))  # spreads 0.05, 0.7
    piece.on_batch_end(None, _result([1], [0.3], [0.1]))  # 0.2: class 1 spans 0.1..0.9, no image does
    record: dict = {}
    piece.on_epoch_end(None, record)
    assert record["map_spread"] == pytest.approx(0.7)
    restored = ClassPeaks(num_classes=3)  # a checkpoint keeps it (exact resumption)
    piece.on_batch_end(None, _result([2], [0.52], [0.5]))
    restored.load_state_dict(piece.state_dict())
    restored.on_epoch_end(None, record)
    assert record["map_spread"] == pytest.approx(0.02)
    piece.on_epoch_end(None, record)
    piece.on_epoch_end(None, record)  # an epoch without a step: unknown
    assert record["map_spread"] is None


def _history(spread: float | None) -> TrainingHistory:
    stats = EpochStats(epoch=1, loss=1.0, ce=1.0, area=0.1, variation=0.1, fidelity=1.0, lr=1e-2, steps=2,
                       map_spread=spread)
    history = TrainingHistory([stats])
    history.schedule = {"recipe": "auto", "epochs": 1, "lr": 1e-2, "total_steps": 2, "family": "cnn",
                        "source": {"epochs": "given", "lr": "scaled"}}
    return history


def test_the_threshold_decides() -> None:
    assert _history(FLAT_MAP_SPREAD).flat_map_advice() == "" and _history(None).flat_map_advice() == ""
    advice = _history(FLAT_MAP_SPREAD - 0.01).flat_map_advice()
    assert "maps are (near) constant" in advice and "varied by more than 0.090" in advice
    assert "epochs=1 gave 2 steps, fewer than the 4,000 recipe='auto' gives" in advice
    assert advice in _history(0.0).warnings()[0].replace("0.000", "0.090")
    long_run = _history(0.0)
    long_run.schedule["total_steps"] = 4000
    assert "another seed or a lower maximum learning rate" in long_run.flat_map_advice()


def test_a_one_epoch_fit_with_constant_maps_warns(caplog) -> None:
    torch.manual_seed(0)
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    loader = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        history = explainer.fit(loader, epochs=1, progress=False)
    assert history[-1].map_spread < FLAT_MAP_SPREAD
    warned = [r.getMessage() for r in caplog.records if "maps are (near) constant" in r.getMessage()]
    assert len(warned) == 1 and "epochs=1 gave 2 steps" in warned[0]
    # The maps the head gives are indeed near constant: what the warning is about.
    maps = explainer.attribute(loader[0])
    assert float((maps.amax(dim=(1, 2, 3)) - maps.amin(dim=(1, 2, 3))).max()) < FLAT_MAP_SPREAD


def _patches(seed: int) -> torch.Tensor:
    """Dark images, each with a bright 8x8 patch in one channel: something for a map to point at."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(8, 3, 32, 32, generator=g) * 0.2
    for k in range(8):
        r, c = torch.randint(0, 24, (2,), generator=g)
        x[k, k % 3, r:r + 8, c:c + 8] += 3.0
    return x


def test_a_head_with_varied_maps_does_not_warn(caplog) -> None:
    torch.manual_seed(0)
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        history = explainer.fit([_patches(0), _patches(1)], epochs=4, lr=0.1, progress=False)
    assert history[-1].map_spread >= FLAT_MAP_SPREAD
    assert "(near) constant" not in caplog.text
