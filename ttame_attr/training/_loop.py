"""The epoch loop: it iterates and announces events; the pieces listening do everything else.

Each piece keeps its own state behind ``state_dict()`` / ``load_state_dict()``; a training
checkpoint is the union of those dicts (each piece owns distinct keys) and resuming is loading
it back into the same pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["BatchSource", "EpochLoop", "LoopPiece", "LoopPosition"]


class LoopPiece:
    """Base of the loop's listeners: every event does nothing and the state is empty.

    The pieces hear each event in the order the loop was given them.
    """

    def on_epoch_start(self, loop: EpochLoop, epoch: int) -> None:
        """The epoch ``epoch`` (0-based) is about to draw its batches."""

    def on_batch_end(self, loop: EpochLoop, result: Any) -> None:
        """A step was taken or skipped (``result.stepped``); ``loop.position`` counts the batch."""

    def on_epoch_end(self, loop: EpochLoop, record: dict[str, Any]) -> None:
        """The epoch is over; add to ``record`` what this piece reports.

        ``record`` starts with ``epoch`` (1-based), ``lr`` and ``steps``; ``loop.position``
        already points at the start of the next epoch.
        """

    def on_fit_end(self, loop: EpochLoop) -> None:
        """The loop is over, normally or by an exception."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this piece (keys no other piece uses)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave (``state`` holds every piece's keys)."""


@dataclass
class LoopPosition(LoopPiece):
    """Epochs finished, and batches of the current epoch consumed (trained on or skipped)."""

    epoch: int = 0
    batch: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


class BatchSource(Protocol):
    """Yields the batches of one epoch, skipping those already consumed (see ``_data.py``)."""

    def batches(self, epoch: int, skip: int) -> Iterator[Any]: ...


class Step(Protocol):
    """One training step on a batch, and the facts the epoch record starts with."""

    step_count: int

    def __call__(self, batch: Any) -> Any: ...

    @property
    def lr(self) -> float: ...


class EpochLoop:
    """Runs ``epochs`` epochs of ``step`` over ``source``, announcing events to ``pieces``.

    Args:
        step: called on every batch; returns a result with ``stepped``.
        source: gives each epoch's batches.
        epochs: the number of epochs of the run.
        batches_per_epoch: batches in a full epoch.
        pieces: the listeners, in the order they hear every event.
        position: where to start (a resumed run's position); the loop moves it along.
        prepare: applied to each batch before the step (e.g. images to the device).

    Raises:
        ValueError: if an epoch yields no batch at all.
    """

    def __init__(self, step: Step, source: BatchSource, epochs: int, batches_per_epoch: int,
                 pieces: Sequence[LoopPiece], position: LoopPosition | None = None,
                 prepare: Callable[[Any], Any] = lambda batch: batch) -> None:
        self.step, self.source, self.epochs, self.batches_per_epoch = step, source, epochs, batches_per_epoch
        self.pieces = list(pieces)
        self.position = position if position is not None else LoopPosition()
        self.prepare = prepare

    def _emit(self, event: str, *args: Any) -> None:
        for piece in self.pieces:
            getattr(piece, event)(self, *args)

    def run(self) -> None:
        """Train from :attr:`position` to the end of the last epoch."""
        position = self.position
        try:
            for epoch in range(position.epoch, self.epochs):
                self._emit("on_epoch_start", epoch)
                for batch in self.source.batches(epoch, skip=position.batch):
                    result = self.step(self.prepare(batch))
                    position.batch += 1
                    self._emit("on_batch_end", result)
                if position.batch == 0:
                    raise ValueError("loader: it yielded no batches in this epoch.")
                position.epoch, position.batch = epoch + 1, 0
                record = {"epoch": epoch + 1, "lr": self.step.lr, "steps": self.step.step_count}
                self._emit("on_epoch_end", record)
        finally:
            self._emit("on_fit_end")
