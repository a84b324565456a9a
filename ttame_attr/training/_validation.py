"""The validation pass at the end of each epoch: the loss terms on held-out images."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ttame_attr._core.modes import eval_mode
from ttame_attr.training import distributed as dist_
from ttame_attr.training._history import RunningMeans
from ttame_attr.training._loop import LoopPiece

__all__ = ["Validation"]


class Validation(LoopPiece):
    """Adds the mean loss terms of ``loader`` (head in eval mode) to each epoch's record as
    ``val_loss``, ``val_ce``, ...; under DDP, the means over all ranks' shards.

    Args:
        step: the :class:`~ttame_attr.TrainStep` whose loss is evaluated.
        loader: the validation batches.
        prepare: turns a batch into the images on the head's device.
        ctx, batches: under DDP, the ranks and the number of batches each runs.
    """

    def __init__(self, step: Any, loader: Iterable[Any], prepare: Callable[[Any], Tensor],
                 ctx: dist_.DistributedContext | None = None, batches: int | None = None) -> None:
        self.step, self.loader, self.prepare = step, loader, prepare
        self.ctx, self.batches = ctx, batches

    @torch.no_grad()
    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        meter = RunningMeans()
        batches = self.loader if self.ctx is None else itertools.islice(self.loader, self.batches)
        with eval_mode(self.step.head):
            for batch in batches:
                x = self.prepare(batch)
                meter.add_terms(x.shape[0], *self.step.loss(x))
        record.update({f"val_{key}": value for key, value in meter.means(self.ctx).items()})
