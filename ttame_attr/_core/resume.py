"""Training checkpoints that survive a killed process, and exact resumption from them.

What a checkpoint holds (one file, rewritten atomically, see :func:`atomic_torch_save`): the
head's weights, the optimiser, scheduler and gradient-scaler states, the step counter, the epoch
and the number of batches already consumed in it, the statistics of the finished epochs and the
running sums of the current one, and two sets of random-number-generator states.

How the data order is replayed. The order of a shuffled ``DataLoader`` is drawn when its
iterator is created (from the loader's or sampler's ``generator``, or from the global torch RNG
when there is none), and augmentations draw from the global RNGs (main process) or from worker
seeds that are also drawn at that moment. So :func:`~ttame_attr.fit` records every RNG state
(torch CPU and CUDA, Python ``random``, NumPy, the loader's and the sampler's generators) at the
start of each epoch, before the iterator is created, and stores it in each checkpoint of that
epoch. Resuming in the middle of an epoch restores those states, creates the iterator (the
permutation, worker seeds and generators come out identical), fetches and discards the batches
already trained on, then restores the RNG states saved with the checkpoint before the first new
batch. The skipped batches are loaded again (the cost of one data-loading pass over them, no
model forward). Nothing of the user's loader is modified.

The replay is exact for loaders whose randomness comes from those generators (every torch
``DataLoader`` and the usual torchvision transforms). A custom iterable that keeps other hidden
state (a streaming dataset that remembers its position) is replayed only if it yields the same
batches every time it is iterated from the same RNG states.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ttame_attr._core.storage import (
    all_finite,
    atomic_torch_save,
    check_payload,
    nonfinite_entries,
    safe_torch_load,
)

if TYPE_CHECKING:
    from ttame_attr._core.training import Trainer

__all__ = [
    "CHECKPOINT_NAME",
    "ResumeState",
    "TrainingCheckpointer",
    "TrainingDivergedError",
    "capture_rng",
    "resolve_checkpoint_path",
    "restore_rng",
]

logger = logging.getLogger(__name__)

FORMAT = "ttame_attr.training"
FORMAT_VERSION = 1
#: File name used when ``checkpoint_path`` is a directory.
CHECKPOINT_NAME = "ttame_training.pt"


class TrainingDivergedError(FloatingPointError):
    """Training produced non-finite values it cannot recover from.

    Raised when more steps than ``max_skipped_steps`` had a non-finite loss or gradient, or
    when the head's weights became non-finite (the checkpoint is then not written, so the file
    on disk keeps the last good weights).
    """


# ---------------------------------------------------------------------------- RNG states
def _loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The explicit generators a loader draws its order and worker seeds from."""
    found: dict[str, torch.Generator] = {}
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        found["loader"] = generator
    sampler = getattr(loader, "sampler", None)
    generator = getattr(sampler, "generator", None)
    if isinstance(generator, torch.Generator) and all(generator is not g for g in found.values()):
        found["sampler"] = generator
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    generator = getattr(inner, "generator", None)
    if isinstance(generator, torch.Generator) and all(generator is not g for g in found.values()):
        found["batch_sampler"] = generator
    return found


def capture_rng(loader: Any = None) -> dict[str, Any]:
    """Every RNG state that decides the data order and augmentations, as plain values/tensors.

    Args:
        loader: the training loader; its ``generator`` and its sampler's ``generator`` are
            captured when they are ``torch.Generator`` objects.

    Returns:
        A dict that :func:`torch.load` with ``weights_only=True`` can read back.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(gauss)],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {
            name: g.get_state() for name, g in _loader_generators(loader).items()
            if g.device.type == "cpu"
        },
    }
    return state


def restore_rng(state: Mapping[str, Any], loader: Any = None) -> None:
    """Put back RNG states recorded by :func:`capture_rng` (the loader's generators included)."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    elif cuda:
        logger.warning(
            "T-TAME resume: the checkpoint holds %d CUDA RNG states but %d GPUs are visible; "
            "CUDA random numbers will not replay exactly.", len(cuda),
            torch.cuda.device_count() if torch.cuda.is_available() else 0,
        )
    generators = _loader_generators(loader)
    for name, saved in state.get("generators", {}).items():
        if name in generators:
            generators[name].set_state(saved.cpu())


# ---------------------------------------------------------------------------- files
def resolve_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file for ``checkpoint_path``: the path itself, or a file in a directory.

    A path that is an existing directory, or that ends with a path separator, names a directory
    and the file ``ttame_training.pt`` inside it is used.

    Raises:
        TypeError: if ``path`` is not a string or path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"checkpoint_path: expected a file or directory path, got {type(path).__name__}."
        )
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir() or text.endswith((os.sep, "/")):
        return p / CHECKPOINT_NAME
    return p


# ---------------------------------------------------------------------------- the state
@dataclass
class ResumeState:
    """Where a run stopped, as read from a checkpoint.

    Attributes:
        epoch: the epoch (0-based) to continue.
        batch: batches of that epoch already consumed (trained on or skipped as non-finite).
        epoch_rng: RNG states at the start of ``epoch``, before its iterator was created
            (``None`` when ``batch == 0``).
        rng: RNG states when the checkpoint was written.
        history: the :class:`EpochStats` of the finished epochs, as dicts.
        meter_sums: running sums of the current epoch's statistics.
        meter_count: images behind ``meter_sums``.
        skipped: non-finite steps skipped in the current epoch.
        skipped_total: non-finite steps skipped in the whole run.
        step: optimiser steps taken.
    """

    epoch: int
    batch: int
    epoch_rng: dict[str, Any] | None
    rng: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    meter_sums: dict[str, float] = field(default_factory=dict)
    meter_count: int = 0
    skipped: int = 0
    skipped_total: int = 0
    step: int = 0


class TrainingCheckpointer:
    """Writes and reads the training checkpoint of one :func:`~ttame_attr.fit` run.

    Args:
        path: checkpoint file, or a directory (then ``ttame_training.pt`` inside it).
        every: also write one every ``every`` optimiser steps (``None``: at epoch ends only).
        trainer: the :class:`~ttame_attr._core.training.Trainer` whose state is saved.
        settings: the run's settings (epochs, batches per epoch, learning rate, ...); a resumed
            run must use the same ones, or the schedule and data order would differ.

    Raises:
        ValueError: if ``every`` is not a positive int.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int | None,
        trainer: Trainer,
        settings: Mapping[str, Any],
    ) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(
                f"checkpoint_every: expected a positive number of steps or None, got {every!r}."
            )
        self.path = resolve_checkpoint_path(path)
        self.every = every
        self.trainer = trainer
        self.settings = dict(settings)

    # ------------------------------------------------------------------ writing
    def due(self) -> bool:
        """Whether a step checkpoint is due after the step just taken."""
        step = self.trainer.step_count
        return self.every is not None and step > 0 and step % self.every == 0

    def save(
        self,
        *,
        epoch: int,
        batch: int,
        epoch_rng: dict[str, Any] | None,
        loader: Any,
        history: list[dict[str, Any]],
        meter_sums: Mapping[str, float],
        meter_count: int,
        skipped: int,
        skipped_total: int,
    ) -> Path:
        """Write the checkpoint atomically (the previous one stays intact if this one fails).

        Raises:
            TrainingDivergedError: if the head's weights or the optimiser's state hold NaN or
                inf; nothing is written then.
        """
        trainer = self.trainer
        head = trainer.explainer.head  # the bare head, also when the trainer wraps it
        bad = nonfinite_entries(head.state_dict())
        optimizer_state = trainer.optimizer.state_dict()
        if bad or not all_finite(optimizer_state["state"]):
            where = ", ".join(bad[:5]) if bad else "the optimiser's momentum buffers"
            raise TrainingDivergedError(
                f"T-TAME training diverged: non-finite values in {where} at step "
                f"{trainer.step_count}. The checkpoint {str(self.path)!r} was not overwritten and "
                "keeps the last good state; lower lr or turn off amp and resume from it."
            )
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": trainer.explainer.config(),
            "settings": self.settings,
            "head": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "optimizer": optimizer_state,
            "scheduler": trainer.scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "step": trainer.step_count,
            "epoch": epoch,
            "batch": batch,
            "epoch_rng": epoch_rng,
            "rng": capture_rng(loader),
            "history": list(history),
            "meter_sums": dict(meter_sums),
            "meter_count": int(meter_count),
            "skipped": int(skipped),
            "skipped_total": int(skipped_total),
        }
        atomic_torch_save(payload, self.path)
        logger.debug("T-TAME: checkpoint at step %d (epoch %d, batch %d) -> %s",
                     trainer.step_count, epoch + 1, batch, self.path)
        return self.path

    # ------------------------------------------------------------------ reading
    def read(self) -> dict[str, Any]:
        """The checkpoint's contents, validated (never runs code from the file).

        Raises:
            ValueError: for a corrupted, truncated or foreign file, or one written by a run
                with other settings or for another head.
        """
        payload = check_payload(
            safe_torch_load(self.path, map_location="cpu"), self.path, fmt=FORMAT,
            version=FORMAT_VERSION, what="a T-TAME training checkpoint",
            foreign_hint="(Training checkpoints are written by fit(checkpoint_path=...); a head "
            "saved with TTAME.save is loaded with TTAME.load.) Pass another checkpoint_path to "
            "start a new run.",
            required=("head", "optimizer", "scheduler", "scaler", "step", "epoch", "batch", "rng",
                      "settings", "config"),
        )
        saved, now = payload["settings"], self.settings
        diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}"
                 for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        config, own = payload["config"], self.trainer.explainer.config()
        for key in ("layers", "num_classes", "map_size", "layer_info"):
            if config.get(key) != own.get(key):
                diffs.append(f"{key}: checkpoint {config.get(key)!r}, now {own.get(key)!r}")
        if diffs:
            raise ValueError(
                f"resume: the checkpoint {str(self.path)!r} was written by a run with other "
                "settings, so it cannot be continued exactly: " + "; ".join(diffs) + ". Pass the "
                "same settings as the interrupted run, or a new checkpoint_path to start over."
            )
        return payload

    def restore(self) -> ResumeState | None:
        """Load the checkpoint into the trainer and return where to continue.

        Returns ``None`` (and logs it) when there is no checkpoint file yet, so the same
        command can be used for the first start and for every restart.
        """
        if not self.path.exists():
            logger.info("T-TAME: no checkpoint at %s yet; starting from scratch.", self.path)
            return None
        payload = self.read()
        trainer = self.trainer
        try:
            trainer.explainer.load_state_dict(payload["head"])
            trainer.optimizer.load_state_dict(payload["optimizer"])
            trainer.scheduler.load_state_dict(payload["scheduler"])
            trainer.scaler.load_state_dict(payload["scaler"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"checkpoint_path: {str(self.path)!r} does not fit this run's head or optimiser "
                f"({type(err).__name__}: {err})."
            ) from err
        trainer.step_count = int(payload["step"])
        logger.info("T-TAME: resuming from %s at epoch %d, batch %d (step %d)", self.path,
                    int(payload["epoch"]) + 1, int(payload["batch"]), trainer.step_count)
        return ResumeState(
            epoch=int(payload["epoch"]),
            batch=int(payload["batch"]),
            epoch_rng=payload.get("epoch_rng"),
            rng=payload["rng"],
            history=list(payload.get("history", [])),
            meter_sums=dict(payload.get("meter_sums", {})),
            meter_count=int(payload.get("meter_count", 0)),
            skipped=int(payload.get("skipped", 0)),
            skipped_total=int(payload.get("skipped_total", 0)),
            step=trainer.step_count,
        )
