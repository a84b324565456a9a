"""The training checkpoint file and the RNG states that make a resumed run exact.

One file, rewritten atomically (:func:`write_checkpoint`), read back without running code
(:func:`read_checkpoint`), holding the run's configuration and settings and every field of
:meth:`Trainer.state_dict <ttame_attr.training._trainer.Trainer.state_dict>`.

A shuffled ``DataLoader`` draws its order when its iterator is created (from the loader's or
sampler's ``generator``, else from the global torch RNG), and augmentations draw from the global
RNGs (main process) or from worker seeds drawn at that moment. So :class:`DataOrder` records every
RNG state (torch CPU and CUDA, Python ``random``, NumPy, the loader's and the sampler's
generators) at the start of each epoch, before the iterator is created, and a checkpoint keeps
it. Resuming in the middle of an epoch restores those states, creates the iterator (the
permutation, worker seeds and generators come out identical), fetches and discards the batches
already trained on (one data-loading pass over them, no model forward), then restores the RNG
states saved with the checkpoint before the first new batch. Nothing of the user's loader is
modified.

The replay is exact for loaders whose randomness comes from those generators (every torch
``DataLoader`` and the usual torchvision transforms). A custom iterable that keeps other hidden
state (a streaming dataset that remembers its position) is replayed only if it yields the same
batches every time it is iterated from the same RNG states.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ttame_attr._core.storage import (
    all_finite,
    atomic_torch_save,
    check_payload,
    nonfinite_entries,
    safe_torch_load,
)
from ttame_attr.training import distributed as dist_
from ttame_attr.training._step import TrainingDivergedError

__all__ = ["CHECKPOINT_NAME", "DataOrder", "capture_rng", "check_resumable", "read_checkpoint",
           "resolve_checkpoint_path", "restore_rng", "write_checkpoint"]

logger = logging.getLogger(__name__)

FORMAT = "ttame_attr.training"
FORMAT_VERSION = 1
#: File name used when ``checkpoint_path`` is a directory.
CHECKPOINT_NAME = "ttame_training.pt"
_REQUIRED = ("head", "optimizer", "scheduler", "scaler", "step", "epoch", "batch", "rng", "settings",
             "config")
#: What must match between the interrupted run and the resumed one, besides the settings.
_SAME_HEAD = ("layers", "num_classes", "map_size", "layer_info")


def resolve_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """``path``, or ``ttame_training.pt`` in it when it is a directory or ends with a separator."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint_path: expected a file or directory path, got {type(path).__name__}.")
    text = os.fspath(path)
    p = Path(text)
    return p / CHECKPOINT_NAME if p.is_dir() or text.endswith((os.sep, "/")) else p


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, format-checked (``ValueError``); ``None`` (logged) when there is none."""
    if not path.exists():
        logger.info("T-TAME: no checkpoint at %s yet; starting from scratch.", path)
        return None
    return check_payload(
        safe_torch_load(path, map_location="cpu"), path, fmt=FORMAT, version=FORMAT_VERSION,
        what="a T-TAME training checkpoint", required=_REQUIRED,
        foreign_hint="(Training checkpoints are written by fit(checkpoint_path=...); a head "
        "saved with TTAME.save is loaded with TTAME.load.) Pass another checkpoint_path to start "
        "a new run.")


def write_checkpoint(path: Path, state: Mapping[str, Any], config: Mapping[str, Any],
                     settings: Mapping[str, Any], ctx: dist_.DistributedContext | None = None) -> None:
    """Write a training checkpoint atomically (the previous file stays intact if this fails).

    Under DDP every rank calls it (with the same ``state``) and rank 0 writes.

    Args:
        path: the checkpoint file.
        state: the trainer's state (``Trainer.state_dict()``).
        config: the explainer's configuration (a resumed run must have the same head).
        settings: the run's settings (a resumed run must use the same ones).

    Raises:
        TrainingDivergedError: if the head's weights or the optimiser's state hold NaN or inf;
            nothing is written then.
    """
    payload: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                               "config": dict(config), "settings": dict(settings), **state}
    bad = nonfinite_entries(payload.get("head", {}))
    if bad or not all_finite(payload.get("optimizer", {}).get("state", {})):
        where = ", ".join(bad[:5]) if bad else "the optimiser's momentum buffers"
        raise TrainingDivergedError(
            f"T-TAME training diverged: non-finite values in {where} at step "
            f"{payload.get('step')}. The checkpoint {str(path)!r} was not "
            "overwritten and keeps the last good state; lower lr or turn off amp and resume "
            "from it.")
    if dist_.is_main_process(ctx):
        atomic_torch_save(payload, path)
        logger.debug("T-TAME: checkpoint at step %s (epoch %d, batch %d) -> %s", payload.get("step"),
                     payload.get("epoch", 0) + 1, payload.get("batch", 0), path)


def check_resumable(payload: Mapping[str, Any], config: Mapping[str, Any], settings: Mapping[str, Any],
                    path: Path) -> None:
    """Raise unless the run that wrote ``payload`` had this run's settings and head.

    Raises:
        ValueError: naming every difference.
    """
    saved, saved_config = payload["settings"], payload["config"]
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {settings.get(k)!r}"
             for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
    diffs += [f"{key}: checkpoint {saved_config.get(key)!r}, now {config.get(key)!r}"
              for key in _SAME_HEAD if saved_config.get(key) != config.get(key)]
    if diffs:
        raise ValueError(
            f"resume: the checkpoint {str(path)!r} was written by a run with other "
            "settings, so it cannot be continued exactly: " + "; ".join(diffs) + ". Pass the "
            "same settings as the interrupted run, or a new checkpoint_path to start over.")


def _loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The explicit generators a loader draws its order and worker seeds from."""
    found: dict[str, torch.Generator] = {}
    candidates = (("loader", loader), ("sampler", getattr(loader, "sampler", None)),
                  ("batch_sampler", getattr(getattr(loader, "batch_sampler", None), "sampler", None)))
    for name, owner in candidates:
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found.values()):
            found[name] = generator
    return found


def capture_rng(loader: Any = None) -> dict[str, Any]:
    """Every RNG state that decides the data order and augmentations (``loader``'s generators
    included), as values that :func:`torch.load` with ``weights_only=True`` reads back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(gauss)],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {name: g.get_state() for name, g in _loader_generators(loader).items()
                       if g.device.type == "cpu"},
    }


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
        logger.warning("T-TAME resume: the checkpoint holds %d CUDA RNG states but %d GPUs are visible; "
                       "CUDA random numbers will not replay exactly.", len(cuda),
                       torch.cuda.device_count() if torch.cuda.is_available() else 0)
    generators = _loader_generators(loader)
    for name, saved in state.get("generators", {}).items():
        if name in generators:
            generators[name].set_state(saved.cpu())


class DataOrder:
    """Draws each epoch's batches from ``loader``, in the order a resumed run must replay.

    State: ``epoch_rng`` (the RNG states at the start of the epoch in progress, ``None``
    between epochs) and ``rng`` (the RNG states when the state was taken).

    Args:
        loader: the (sharded) training loader.
        batches_per_epoch: under DDP every rank stops after this many batches.
        ctx: the distributed context: the sampler is re-seeded every epoch.
        record: keep the epoch's RNG states (only needed when checkpointing).
    """

    def __init__(self, loader: Any, batches_per_epoch: int, ctx: dist_.DistributedContext | None,
                 record: bool) -> None:
        self.loader, self.batches_per_epoch, self.ctx, self.record = loader, batches_per_epoch, ctx, record
        self.epoch_rng: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None

    def batches(self, epoch: int, skip: int) -> Iterator[Any]:
        """The batches of ``epoch`` after the first ``skip`` (already trained on)."""
        loader, resume = self.loader, self._resume
        self._resume = None
        if self.ctx is not None:  # re-seed the sampler, before the order is drawn
            dist_.set_loader_epoch(loader, epoch)
        if resume is not None:  # the RNG states the interrupted epoch's order was drawn from
            epoch_rng = resume.get("epoch_rng")
            restore_rng(epoch_rng if skip > 0 and epoch_rng is not None else resume["rng"], loader)
        self.epoch_rng = capture_rng(loader) if self.record else None
        iterator = iter(loader)
        if resume is not None and skip > 0:
            for _ in range(skip):  # trained on before the interruption
                next(iterator, None)
            restore_rng(resume["rng"], loader)  # as they were when the checkpoint was written
        if self.ctx is not None:  # every rank runs exactly batches_per_epoch steps
            iterator = itertools.islice(iterator, max(self.batches_per_epoch - skip, 0))
        return iterator

    def end_epoch(self) -> None:
        """The epoch is over: no order to replay until the next one starts."""
        self.epoch_rng = None

    def state_dict(self) -> dict[str, Any]:
        """The epoch's RNG states and the current ones."""
        return {"epoch_rng": self.epoch_rng, "rng": capture_rng(self.loader)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replay the saved order at the next :meth:`batches`."""
        self._resume = {"epoch_rng": state.get("epoch_rng"), "rng": state["rng"]}
