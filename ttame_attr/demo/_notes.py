"""The library's warnings during the demo, shown once: as the demo's notes and in its report."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["captured_warnings", "convergence_row"]


class _Notes(logging.Handler):
    """Keeps each distinct warning's message; passes records below WARNING on to the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            message = record.getMessage()
            if message not in self.messages:
                self.messages.append(message)
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextmanager
def captured_warnings(name: str = "ttame_attr") -> Iterator[list[str]]:
    """Within the block, warnings of the ``name`` logger and its children are collected into the
    yielded list instead of being printed, so that the demo shows each one once (its notes and
    the report); information and debug records still reach the root logger's handlers.
    """
    logger = logging.getLogger(name)
    notes, propagate = _Notes(), logger.propagate
    logger.addHandler(notes)
    logger.propagate = False
    try:
        yield notes.messages
    finally:
        logger.removeHandler(notes)
        logger.propagate = propagate


def convergence_row(history: Any) -> str:
    """The report's line on :meth:`~ttame_attr.training.TrainingHistory.convergence` of the fit."""
    check = history.convergence()
    if check.done is None:
        return "one epoch: too short to tell whether the head settled"
    moved = (f"over the last epoch the {check.source} loss changed {-check.loss_drop:+.1%} and the "
             f"fidelity {check.fidelity_gain:+.3f}")
    if check.done:
        return (f"settled: {moved} (fit warns when the loss falls more than 2% or the fidelity rises "
                "more than 0.02)")
    return f"still improving: {moved}; see the notes below"
