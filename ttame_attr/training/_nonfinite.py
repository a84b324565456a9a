"""The non-finite guard: steps with a NaN or inf loss or gradient are skipped, counted, bounded."""

from __future__ import annotations

import logging
from typing import Any

from ttame_attr.training._loop import LoopPiece

__all__ = ["NonFiniteGuard", "TrainingDivergedError"]

logger = logging.getLogger(__name__)


class TrainingDivergedError(FloatingPointError):
    """Training produced non-finite values it cannot recover from.

    Raised by :func:`~ttame_attr.fit` after more than ``max_skipped_steps`` steps with a non-finite
    loss or gradient, or when the head's weights became non-finite (the checkpoint is then not
    written, so the file on disk keeps the last good weights).
    """


class NonFiniteGuard(LoopPiece):
    """Counts the skipped steps and stops a diverged run (``fit``'s ``max_skipped_steps``).

    State: ``skipped`` (in the epoch in progress) and ``skipped_total`` (in the run).

    Args:
        max_skipped: ``max_skipped_steps``.
        checkpoint: the checkpoint file, named in the error.
    """

    def __init__(self, max_skipped: int | None, checkpoint: Any = None) -> None:
        self.max_skipped, self.checkpoint = max_skipped, checkpoint
        self.skipped = self.skipped_total = 0

    def on_batch_end(self, loop: Any, result: Any) -> None:
        if result.stepped:
            return
        if result.skip_reason == "overflow":
            logger.debug("T-TAME: float16 overflow, the gradient scaler skipped a step")
            return
        self.skipped += 1
        self.skipped_total += 1
        epoch, batch = loop.position.epoch + 1, loop.position.batch
        logger.warning("T-TAME: non-finite %s in epoch %d, batch %d; step skipped (%d so far)",
                       result.skip_reason, epoch, batch, self.skipped_total)
        if self.max_skipped is not None and self.skipped_total > self.max_skipped:
            where = (f"The checkpoint {str(self.checkpoint)!r} holds the last good state."
                     if self.checkpoint is not None else "")
            raise TrainingDivergedError(
                f"T-TAME training stopped: {self.skipped_total} steps had a non-finite loss or "
                f"gradient (max_skipped_steps={self.max_skipped}), the last in epoch {epoch}, "
                f"batch {batch}. Check the images for NaN/inf, lower lr or turn off amp. {where}")

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        record["skipped_steps"] = self.skipped
        self.skipped = 0

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "skipped_total": self.skipped_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
