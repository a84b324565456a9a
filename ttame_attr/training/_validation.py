"""The validation pass at the end of each epoch: the loss terms on held-out images."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ttame_attr._core.modes import eval_mode
from ttame_attr.training import distributed as dist_
from ttame_attr.training._history import TERMS, RunningMeans
from ttame_attr.training._loop import LoopPiece

__all__ = ["Validation"]


class Validation(LoopPiece):
    """Adds the mean loss terms and fidelity of ``loader`` (head in eval mode) to each epoch's
    record as ``val_loss``, ``val_ce``, ... Under DDP each rank evaluates its shard of
    ``batches`` batches and the means are global.

    Args:
        step: the :class:`~ttame_attr.TrainStep` whose loss is evaluated.
        loader: the validation batches.
        prepare: turns a batch into the images on the head's device.
        ctx: the distributed context.
        batches: under DDP, the number of batches every rank runs.
    """

    def __init__(
        self, step: Any, loader: Iterable[Any], prepare: Callable[[Any], Tensor],
        ctx: dist_.DistributedContext | None = None, batches: int | None = None,
    ) -> None:
        self.step, self.loader, self.prepare = step, loader, prepare
        self.ctx, self.batches = ctx, batches

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The mean loss terms and fidelity over the loader, as ``{"loss": ..., ...}``."""
        meter = RunningMeans()
        batches = self.loader if self.ctx is None else itertools.islice(self.loader, self.batches)
        with eval_mode(self.step.head):
            for batch in batches:
                x = self.prepare(batch)
                terms, fidelity = self.step.loss(x)
                meter.add(x.shape[0], loss=terms.total, ce=terms.ce, area=terms.area,
                          variation=terms.variation, fidelity=fidelity)
        meter.sums, meter.count = dist_.reduce_sums(meter.sums, meter.count, self.ctx)
        return meter.means(TERMS)

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        record.update({f"val_{key}": value for key, value in self.evaluate().items()})
