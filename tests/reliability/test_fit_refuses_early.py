"""fit refuses what would waste or lose a run, with the cause and the fix: a run where no step
was taken (every batch non-finite), a one-shot generator for several epochs, and a
``checkpoint_path`` that cannot be written (found before training, not after an epoch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
import reliability_setup as setup  # noqa: E402

from ttame_attr import TrainingDivergedError  # noqa: E402
from ttame_attr._core import storage  # noqa: E402


def _head(explainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in explainer.head.state_dict().items()}


class CountingLoader:
    """A re-iterable loader of two batches that counts the batches drawn from it."""

    def __init__(self) -> None:
        self.images = torch.randn(8, 3, setup.SIZE, setup.SIZE, generator=torch.Generator().manual_seed(0))
        self.drawn = 0

    def __len__(self) -> int:
        return 2

    def __iter__(self):
        for batch in self.images.split(4):
            self.drawn += 1
            yield batch


# ---------------------------------------------------------------- case 7: no step taken at all
@pytest.mark.parametrize("max_skipped", [100, None])
def test_a_run_where_every_batch_was_nonfinite_raises_naming_the_cause(max_skipped):
    _, explainer, _ = setup.build()
    before = _head(explainer)
    nan_loader = DataLoader(TensorDataset(torch.full((8, 3, setup.SIZE, setup.SIZE), float("nan"))),
                            batch_size=4)
    with pytest.raises(TrainingDivergedError) as info:
        explainer.fit(nan_loader, epochs=2, progress=False, max_skipped_steps=max_skipped)
    message = str(info.value)
    assert message.startswith("T-TAME training took no step: every batch of the 2 epochs was skipped, 4 "
                              "because its loss or gradients were NaN or inf"), message
    for hint in ("normalis", "float16", "lr"):
        assert hint in message, hint
    assert all(torch.equal(before[k], v) for k, v in explainer.head.state_dict().items())
    assert not hasattr(explainer, "history") or explainer.history is None or len(explainer.history) == 0


def test_a_run_with_some_steps_still_returns_normally():
    _, explainer, _ = setup.build()
    images = torch.randn(8, 3, setup.SIZE, setup.SIZE, generator=torch.Generator().manual_seed(1))
    images[:4] = float("nan")  # the first batch of each epoch is skipped, the second steps
    history = explainer.fit(DataLoader(TensorDataset(images), batch_size=4), epochs=2, progress=False)
    assert history.column("steps") == [1, 2] and history.column("skipped_steps") == [1, 1]


# ---------------------------------------------------------------- case 8: a one-shot generator
def test_a_generator_for_several_epochs_names_the_epoch_and_the_cause():
    _, explainer, _ = setup.build()
    batches = (torch.randn(4, 3, setup.SIZE, setup.SIZE) for _ in range(2))
    with pytest.raises(ValueError) as info:
        explainer.fit(batches, epochs=3, steps_per_epoch=2, progress=False)
    message = str(info.value)
    assert message.startswith("loader: it yielded no batches in epoch 2 of 3."), message
    assert "generator" in message and "used up after one pass" in message
    assert "DataLoader" in message and "epochs=1" in message


def test_an_empty_generator_names_the_first_epoch_not_a_used_up_one():
    _, explainer, _ = setup.build()
    with pytest.raises(ValueError) as info:
        explainer.fit((x for x in []), epochs=2, steps_per_epoch=1, progress=False)
    message = str(info.value)
    assert message.startswith("loader: it yielded no batches in epoch 1 of 2."), message
    assert "used up" not in message


# ---------------------------------------------------------------- case 9: checkpoint_path checked first
def test_a_checkpoint_path_below_a_file_is_refused_before_any_batch(tmp_path):
    _, explainer, _ = setup.build()
    blocker = tmp_path / "plain"
    blocker.write_text("not a folder")
    loader = CountingLoader()
    with pytest.raises(ValueError) as info:
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=blocker / "run" / "ckpt.pt")
    message = str(info.value)
    assert message.startswith("checkpoint_path: cannot write"), message
    assert f"{str(blocker)!r} is a file, not a folder" in message
    assert loader.drawn == 0
    assert blocker.read_text() == "not a folder"


def test_an_unwritable_checkpoint_folder_is_refused_before_any_batch(tmp_path, monkeypatch):
    _, explainer, _ = setup.build()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")  # what a read-only folder gives (not as root)

    monkeypatch.setattr(storage.tempfile, "TemporaryFile", read_only)
    loader = CountingLoader()
    with pytest.raises(ValueError) as info:
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=tmp_path / "ro" / "ckpt.pt")
    message = str(info.value)
    assert message.startswith(f"checkpoint_path: cannot write in {str(tmp_path)!r} (Permission denied)")
    assert "writable" in message
    assert loader.drawn == 0


def test_a_checkpoint_folder_that_does_not_exist_yet_is_created(tmp_path):
    _, explainer, _ = setup.build()
    folder = tmp_path / "new" / "runs"
    explainer.fit(CountingLoader(), epochs=1, progress=False, checkpoint_path=f"{folder}/")
    assert (folder / "ttame_training.pt").is_file()
