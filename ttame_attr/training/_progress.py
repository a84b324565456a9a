"""The progress bar of a training run (rank 0 only): one bar per epoch, loss and fidelity."""

from __future__ import annotations

from typing import Any

from ttame_attr._core.progress import progress_bar
from ttame_attr.training._loop import LoopPiece

__all__ = ["ProgressBar"]


class ProgressBar(LoopPiece):
    """Shows each epoch's progress with the last step's loss and fidelity.

    Args:
        enabled: show the bar (``False`` keeps it silent).
        desc: the bar's label; ``{epoch}`` and ``{epochs}`` are filled in.
    """

    def __init__(self, enabled: bool, desc: str = "T-TAME epoch {epoch}/{epochs}") -> None:
        self.enabled = enabled
        self.desc = desc
        self.bar: Any = None

    def on_epoch_start(self, loop: Any, epoch: int) -> None:
        self.bar = progress_bar(
            enabled=self.enabled, total=loop.batches_per_epoch, initial=loop.position.batch,
            desc=self.desc.format(epoch=epoch + 1, epochs=loop.epochs),
        )

    def on_batch_end(self, loop: Any, result: Any) -> None:
        self.bar.update(1)
        if result.stepped and self.enabled:
            self.bar.set_postfix(loss=f"{float(result.terms.total.detach()):.3f}",
                                 fid=f"{float(result.fidelity):.2f}")

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        self.on_fit_end(loop)

    def on_fit_end(self, loop: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
