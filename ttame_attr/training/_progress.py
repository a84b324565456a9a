"""The progress bar of a training loop: one bar per epoch (rank 0 only under DDP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ttame_attr._core.progress import progress_bar
from ttame_attr.training._loop import LoopPiece

__all__ = ["ProgressBar", "ttame_postfix"]


def ttame_postfix(result: Any) -> dict[str, str]:
    """The loss and fidelity of a T-TAME :class:`~ttame_attr.StepResult`, for the bar."""
    return {"loss": f"{float(result.terms.total.detach()):.3f}", "fid": f"{float(result.fidelity):.2f}"}


class ProgressBar(LoopPiece):
    """Shows each epoch's progress, with what ``postfix`` says of the last step that stepped.

    Args:
        enabled: show the bar (``False`` keeps it silent and costs nothing).
        desc: the bar's label; ``{epoch}`` and ``{epochs}`` are filled in.
        postfix: ``result -> {name: text}`` shown beside the bar (``None``: nothing).
    """

    def __init__(self, enabled: bool, desc: str = "T-TAME epoch {epoch}/{epochs}",
                 postfix: Callable[[Any], dict[str, str]] | None = ttame_postfix) -> None:
        self.enabled, self.desc, self.postfix = enabled, desc, postfix
        self.bar: Any = None

    def on_epoch_start(self, loop: Any, epoch: int) -> None:
        self.bar = progress_bar(enabled=self.enabled, total=loop.batches_per_epoch,
                                initial=loop.position.batch,
                                desc=self.desc.format(epoch=epoch + 1, epochs=loop.epochs))

    def on_batch_end(self, loop: Any, result: Any) -> None:
        self.bar.update(1)
        if result.stepped and self.enabled and self.postfix is not None:
            self.bar.set_postfix(self.postfix(result))

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        self.on_fit_end(loop)

    def on_fit_end(self, loop: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
