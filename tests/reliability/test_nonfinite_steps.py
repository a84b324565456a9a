"""Non-finite losses and gradients: skipped, counted, bounded; never saved."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
import reliability_setup as setup  # noqa: E402

from ttame_attr import TrainingDivergedError, TrainStep  # noqa: E402
from ttame_attr._core.storage import safe_torch_load  # noqa: E402


def _snapshot(trainer: TrainStep) -> tuple[dict, dict]:
    head = {k: v.clone() for k, v in trainer.head.state_dict().items()}
    opt = {i: {k: v.clone() for k, v in s.items()} for i, s in
           enumerate(trainer.optimizer.state.values())}
    return head, opt


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else _same(a[k], b[k])
        for k in a
    )


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, setup.SIZE, setup.SIZE, generator=torch.Generator().manual_seed(seed))


def test_nan_batch_is_skipped_and_leaves_head_and_batchnorm_untouched():
    _, explainer, _ = setup.build()
    trainer = TrainStep(explainer, 10, lr=0.05)
    assert trainer(_images(4)).stepped  # one good step, so momentum buffers exist
    before = _snapshot(trainer)
    bad = _images(4)
    bad[1, 0, 3, 3] = float("nan")
    result = trainer(bad)
    terms, stepped = result.terms, result.stepped
    assert not stepped and result.skip_reason == "loss"
    assert not torch.isfinite(terms.total)
    after = _snapshot(trainer)
    assert _same(before[0], after[0])  # weights and BatchNorm running stats
    assert _same(before[1], after[1])  # momentum buffers
    assert trainer.step_count == 1


def test_nonfinite_gradient_with_finite_loss_is_skipped():
    _, explainer, _ = setup.build()
    trainer = TrainStep(explainer, 10, lr=0.05)
    before = _snapshot(trainer)
    handle = explainer.head.fusion.weight.register_hook(lambda g: g * float("inf"))
    try:
        result = trainer(_images(4))
    finally:
        handle.remove()
    terms, stepped = result.terms, result.stepped
    assert torch.isfinite(terms.total)
    assert not stepped and result.skip_reason == "gradient"
    assert _same(before[0], _snapshot(trainer)[0])
    assert all(p.grad is None for p in explainer.head.parameters())


def test_fit_counts_skipped_steps_and_stops_after_max():
    _, explainer, _ = setup.build()
    images = _images(12)
    images[4:8] = float("nan")  # batch 2 of 3 is poisoned in every epoch
    loader = DataLoader(TensorDataset(images), batch_size=4)
    history = explainer.fit(loader, epochs=2, progress=False, max_skipped_steps=2)
    assert history.column("skipped_steps") == [1, 1]
    assert history.column("steps") == [2, 4]
    assert all(torch.isfinite(v).all() for v in explainer.state_dict().values()
               if v.is_floating_point())

    _, explainer, _ = setup.build()
    with pytest.raises(TrainingDivergedError, match=r"3 steps.*max_skipped_steps=2"):
        explainer.fit(loader, epochs=3, progress=False, max_skipped_steps=2)

    _, explainer, _ = setup.build()
    nan_loader = DataLoader(TensorDataset(torch.full((8, 3, setup.SIZE, setup.SIZE),
                                                     float("nan"))), batch_size=4)
    with pytest.raises(TrainingDivergedError, match="max_skipped_steps=0"):
        explainer.fit(nan_loader, epochs=1, progress=False, max_skipped_steps=0)
    # None never stops: every batch is tried; a run that took no step at all is an error at its end.
    with pytest.raises(TrainingDivergedError, match="took no step: every batch of the 1 epoch was "
                                                    "skipped, 2 because"):
        explainer.fit(nan_loader, epochs=1, progress=False, max_skipped_steps=None)


def test_checkpoint_with_nan_weights_is_not_written(tmp_path):
    _, explainer, loader = setup.build()
    path = tmp_path / "run.pt"
    explainer.fit(loader, epochs=1, progress=False, checkpoint_path=path)
    good = safe_torch_load(path)
    with torch.no_grad():
        explainer.head.branches[0].conv.weight[0, 0] = float("inf")
    # A new run on the same file: every step is skipped (non-finite), so the epoch-end
    # checkpoint would hold the inf weight.
    with pytest.raises(TrainingDivergedError, match="branches.0.conv.weight"):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=path,
                      max_skipped_steps=None)
    kept = safe_torch_load(path)
    assert kept["step"] == good["step"]
    assert all(torch.isfinite(v).all() for v in kept["head"].values() if v.is_floating_point())


def test_float16_overflow_is_left_to_the_grad_scaler():
    _, explainer, _ = setup.build()
    trainer = TrainStep(explainer, 10)
    trainer.precision.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=True)
    before = _snapshot(trainer)
    handle = explainer.head.fusion.weight.register_hook(lambda g: g * float("inf"))
    try:
        result = trainer(_images(4))
    finally:
        handle.remove()
    stepped = result.stepped
    assert not stepped and result.skip_reason == "overflow"
    assert trainer.precision.scaler.get_scale() == 512.0  # the scaler backed off
    assert _same(before[0], _snapshot(trainer)[0])
    assert trainer(_images(4)).stepped  # and the next step goes through
