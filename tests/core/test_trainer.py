"""The Trainer behind fit(): its checkpoint is exactly the fields its state_dict lists, and a
state taken mid-run and loaded into a fresh Trainer continues to the same weights."""

from __future__ import annotations

import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME, TrainStep, fit
from ttame_attr.training._trainer import Trainer, batch_images

#: What Trainer.state_dict() documents, field by field.
FIELDS = {"head", "optimizer", "scheduler", "scaler", "step", "epoch", "batch", "meter_sums", "meter_count",
          "class_peaks", "class_floors", "skipped", "skipped_total", "history", "epoch_rng", "rng"}


def _images(n: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(4, 3, 32, 32, generator=g) for _ in range(n)]


def _trainer(explainer: TTAME, loader, epochs: int = 2, **kwargs) -> Trainer:
    step = TrainStep(explainer, epochs * len(loader), lr=0.05)
    return Trainer(explainer, step, loader, epochs=epochs, batches=len(loader), progress=False, **kwargs)


def test_the_checkpoint_file_holds_the_state_dict_fields_and_the_run_settings(tmp_path) -> None:
    explainer = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    path = tmp_path / "run.pt"
    fit(explainer, _images(), epochs=1, lr=0.05, progress=False, checkpoint_path=path)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == FIELDS | {"format", "format_version", "config", "settings"}
    assert (saved["epoch"], saved["batch"], saved["step"]) == (1, 0, 3)
    assert saved["settings"]["steps_per_epoch"] == 3 and saved["history"][0]["epoch"] == 1


def test_a_state_loaded_into_a_fresh_trainer_continues_the_same_run() -> None:
    loader = _images()
    torch.manual_seed(0)
    whole = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    first = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    history = _trainer(whole, loader).fit()

    class Stop(Exception):
        pass

    interrupted = _trainer(first, loader)
    original = interrupted.after_step

    def stop_after_four(result) -> None:
        original(result)
        if interrupted.step.step_count == 4:
            raise Stop

    interrupted.after_step = stop_after_four
    try:
        interrupted.fit()
    except Stop:
        pass
    state = interrupted.state_dict()
    assert set(state) == FIELDS and (state["epoch"], state["batch"]) == (1, 1)
    second = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    resumed = _trainer(second, loader)
    resumed.load_state_dict(state)
    got = resumed.fit()
    for key, value in whole.head.state_dict().items():
        assert torch.equal(second.head.state_dict()[key], value), key
    assert got.as_dicts() == history.as_dicts()


def test_batch_images_takes_tensors_tuples_and_dicts() -> None:
    x = torch.rand(2, 3, 4, 4)
    assert batch_images(x) is x and batch_images((x, 0)) is x and batch_images({"pixel_values": x}) is x
    assert batch_images({"img": 1, "mine": x}, image_key="mine") is x
