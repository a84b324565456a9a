"""A training process killed with SIGKILL mid-epoch resumes to the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import reliability_setup as setup  # noqa: E402

from ttame_attr import TrainStep  # noqa: E402
from ttame_attr._core.storage import safe_torch_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EVERY = 3
HANG_AFTER = 7  # steps done when killed: epoch 2 (4 batches per epoch), batch 3


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess uses one thread too: identical arithmetic
    yield
    torch.set_num_threads(threads)


def _kill_mid_epoch(checkpoint: Path, marker: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(Path(setup.__file__)), str(checkpoint), "--every", str(EVERY),
         "--hang-after", str(HANG_AFTER), "--marker", str(marker)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the training process ended early: {proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                raise AssertionError("the training process never reached the marker step")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, one_thread, monkeypatch):
    checkpoint = tmp_path / "ckpt" / "run.pt"
    _kill_mid_epoch(checkpoint, tmp_path / "marker")

    saved = safe_torch_load(checkpoint)
    steps_per_epoch = setup.IMAGES // setup.BATCH
    assert HANG_AFTER - EVERY < saved["step"] <= HANG_AFTER  # at most EVERY steps lost
    assert saved["epoch"] == 1 and 0 < saved["batch"] < steps_per_epoch  # mid-epoch
    assert not list(checkpoint.parent.glob("*.tmp"))  # no temporary file left behind

    calls = []
    original = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, x: calls.append(1) or original(self, x))
    # A restarted job: new process state, same command with resume=True.
    _, explainer, loader = setup.build()
    history = setup.train(explainer, loader, checkpoint_path=checkpoint,
                          checkpoint_every=EVERY, resume=True)
    resumed = {k: v.clone() for k, v in explainer.state_dict().items()}
    total = setup.EPOCHS * steps_per_epoch
    assert len(calls) == total - saved["step"]  # only the lost steps are redone
    assert len(history) == setup.EPOCHS and history[-1].steps == total
    monkeypatch.setattr(TrainStep, "__call__", original)

    _, explainer, loader = setup.build()
    reference = setup.train(explainer, loader)
    for name, value in explainer.state_dict().items():
        assert torch.equal(resumed[name], value), name
    for got, want in zip(history.as_dicts(), reference.as_dicts()):
        assert got.pop("dead_classes") == want.pop("dead_classes")  # ClassPeaks resumed too
        assert got.pop("full_classes") == want.pop("full_classes")
        assert got == pytest.approx(want)


def test_resume_from_epoch_end_checkpoint_and_from_finished_run(tmp_path, one_thread):
    checkpoint = tmp_path / "ckpt.pt"
    _, explainer, loader = setup.build()
    setup.train(explainer, loader, checkpoint_path=checkpoint)  # epoch ends only
    final = {k: v.clone() for k, v in explainer.state_dict().items()}
    saved = safe_torch_load(checkpoint)
    assert (saved["epoch"], saved["batch"]) == (setup.EPOCHS, 0)

    # Resuming a finished run trains nothing and returns its history.
    _, explainer, loader = setup.build()
    history = setup.train(explainer, loader, checkpoint_path=checkpoint, resume=True)
    assert len(history) == setup.EPOCHS
    for name, value in explainer.state_dict().items():
        assert torch.equal(final[name], value), name


def test_resume_without_checkpoint_starts_fresh_and_directory_paths(tmp_path, one_thread):
    _, explainer, loader = setup.build()
    history = setup.train(explainer, loader, checkpoint_path=tmp_path, resume=True,
                          checkpoint_every=4)
    assert len(history) == setup.EPOCHS
    assert (tmp_path / "ttame_training.pt").is_file()


def test_resume_with_other_settings_is_refused(tmp_path, one_thread):
    checkpoint = tmp_path / "ckpt.pt"
    _, explainer, loader = setup.build()
    setup.train(explainer, loader, checkpoint_path=checkpoint)
    _, explainer, loader = setup.build()
    with pytest.raises(ValueError, match="other settings.*epochs"):
        explainer.fit(loader, epochs=setup.EPOCHS + 1, lr=0.05, progress=False,
                      checkpoint_path=checkpoint, resume=True)


def test_bad_checkpoint_arguments(tmp_path):
    _, explainer, loader = setup.build()
    with pytest.raises(ValueError, match="checkpoint_path"):
        explainer.fit(loader, epochs=1, progress=False, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=tmp_path,
                      checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint_path"):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=3)
    with pytest.raises(ValueError, match="max_skipped_steps"):
        explainer.fit(loader, epochs=1, progress=False, max_skipped_steps=-1)


def test_interrupted_in_process_with_a_loader_generator(tmp_path, one_thread, monkeypatch):
    """A loader with its own ``generator=``: its state is checkpointed and replayed too."""
    from torch.utils.data import DataLoader

    def make():
        _, explainer, _ = setup.build()
        g = torch.Generator().manual_seed(11)
        return explainer, DataLoader(setup.NoisyImages(), batch_size=setup.BATCH, shuffle=True,
                                     generator=g)

    explainer, loader = make()
    reference = setup.train(explainer, loader)
    want = {k: v.clone() for k, v in explainer.state_dict().items()}

    original = TrainStep.__call__
    calls = []

    def failing(self, x):
        if len(calls) == 6:
            raise KeyboardInterrupt  # Ctrl-C in epoch 2
        calls.append(1)
        return original(self, x)

    checkpoint = tmp_path / "c.pt"
    explainer, loader = make()
    monkeypatch.setattr(TrainStep, "__call__", failing)
    with pytest.raises(KeyboardInterrupt):
        setup.train(explainer, loader, checkpoint_path=checkpoint, checkpoint_every=1)
    monkeypatch.setattr(TrainStep, "__call__", original)
    assert safe_torch_load(checkpoint)["step"] == 6

    explainer, loader = make()
    loader.generator.manual_seed(999)  # a fresh process would not know the generator's state
    history = setup.train(explainer, loader, checkpoint_path=checkpoint, checkpoint_every=1,
                          resume=True)
    for name, value in explainer.state_dict().items():
        assert torch.equal(want[name], value), name
    assert len(history) == len(reference)
    for got, want_stats in zip(history.as_dicts(), reference.as_dicts()):
        assert got.pop("dead_classes") == want_stats.pop("dead_classes")
        assert got.pop("full_classes") == want_stats.pop("full_classes")
        assert got == pytest.approx(want_stats)
