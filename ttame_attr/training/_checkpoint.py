"""The training checkpoint: one file, rewritten atomically, that a killed run resumes from.

It holds the run's configuration and settings besides the state of every stateful loop piece.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ttame_attr._core.storage import (
    all_finite,
    atomic_torch_save,
    check_payload,
    nonfinite_entries,
    safe_torch_load,
)
from ttame_attr.training import distributed as dist_
from ttame_attr.training._loop import LoopPiece
from ttame_attr.training._nonfinite import TrainingDivergedError

__all__ = ["CHECKPOINT_NAME", "Checkpointing", "read_checkpoint", "resolve_checkpoint_path"]

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


class Checkpointing(LoopPiece):
    """Writes the checkpoint at every epoch end and every ``every`` optimiser steps.

    Under DDP every rank takes part (gathering the pieces' states is a collective) and rank 0
    writes. A step checkpoint is not written after an epoch's last batch: the epoch-end one
    follows.

    Args:
        path: the checkpoint file.
        every: also write one every ``every`` steps (``None``: at epoch ends only).
        pieces: the stateful pieces whose states make the checkpoint (the train step first).
        config: the explainer's configuration (a resumed run must have the same head).
        settings: the run's settings (a resumed run must use the same ones, or the schedule
            and data order would differ).
    """

    def __init__(self, path: Path, every: int | None, pieces: Sequence[Any], config: dict[str, Any],
                 settings: Mapping[str, Any], ctx: dist_.DistributedContext | None = None) -> None:
        self.path, self.every, self.pieces = path, every, list(pieces)
        self.config, self.settings, self.ctx = config, dict(settings), ctx

    def on_batch_end(self, loop: Any, result: Any) -> None:
        if (result.stepped and self.every is not None and loop.step.step_count % self.every == 0
                and loop.position.batch != loop.batches_per_epoch):
            self.save()

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        self.save()

    def save(self) -> None:
        """Write the checkpoint atomically (the previous one stays intact if this one fails).

        Raises:
            TrainingDivergedError: if the head's weights or the optimiser's state hold NaN or
                inf; nothing is written then.
        """
        payload: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                                   "config": self.config, "settings": self.settings}
        for piece in self.pieces:
            state = piece.state_dict()
            clash = set(state) & set(payload)
            assert not clash, f"checkpoint keys written twice: {sorted(clash)}"
            payload.update(state)
        bad = nonfinite_entries(payload.get("head", {}))
        if bad or not all_finite(payload.get("optimizer", {}).get("state", {})):
            where = ", ".join(bad[:5]) if bad else "the optimiser's momentum buffers"
            raise TrainingDivergedError(
                f"T-TAME training diverged: non-finite values in {where} at step "
                f"{payload.get('step')}. The checkpoint {str(self.path)!r} was not "
                "overwritten and keeps the last good state; lower lr or turn off amp and resume "
                "from it.")
        if dist_.is_main_process(self.ctx):
            atomic_torch_save(payload, self.path)
            logger.debug("T-TAME: checkpoint at step %s (epoch %d, batch %d) -> %s", payload.get("step"),
                         payload.get("epoch", 0) + 1, payload.get("batch", 0), self.path)

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Load a checked checkpoint into every piece.

        Raises:
            ValueError: naming every difference, if it was written by a run with other settings
                or for another head; if its states do not fit this run's head or optimiser.
        """
        saved, now, config = payload["settings"], self.settings, payload["config"]
        diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}"
                 for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        diffs += [f"{key}: checkpoint {config.get(key)!r}, now {self.config.get(key)!r}"
                  for key in _SAME_HEAD if config.get(key) != self.config.get(key)]
        if diffs:
            raise ValueError(
                f"resume: the checkpoint {str(self.path)!r} was written by a run with other "
                "settings, so it cannot be continued exactly: " + "; ".join(diffs) + ". Pass the "
                "same settings as the interrupted run, or a new checkpoint_path to start over.")
        state = dict(payload)
        for piece in self.pieces:
            try:
                piece.load_state_dict(state)
            except ValueError as err:
                raise ValueError(f"checkpoint_path: {str(self.path)!r}: {err}") from err
        logger.info("T-TAME: resuming from %s at epoch %d, batch %d (step %d)", self.path,
                    int(payload["epoch"]) + 1, int(payload["batch"]), int(payload["step"]))
