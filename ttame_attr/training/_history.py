"""What a training run reports: per-epoch statistics and the running means behind them."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from torch import Tensor

from ttame_attr._core.loss import LossTerms
from ttame_attr.training import distributed as dist_
from ttame_attr.training._loop import LoopPiece

__all__ = ["EpochMeans", "EpochStats", "History", "TrainingHistory"]

logger = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """Mean loss terms of one epoch (and of the validation pass when a loader was given).

    ``fidelity`` is the fraction of masked images still classified as the clean image.
    """

    epoch: int
    loss: float
    ce: float
    area: float
    variation: float
    fidelity: float
    lr: float
    steps: int
    skipped_steps: int = 0
    val_loss: float | None = None
    val_ce: float | None = None
    val_area: float | None = None
    val_variation: float | None = None
    val_fidelity: float | None = None


@dataclass
class TrainingHistory:
    """Per-epoch statistics returned by :meth:`TTAME.fit <ttame_attr.TTAME.fit>`."""

    epochs: list[EpochStats] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, i: int) -> EpochStats:
        return self.epochs[i]

    def column(self, name: str) -> list[Any]:
        """One statistic across epochs, e.g. ``history.column("loss")``."""
        return [getattr(e, name) for e in self.epochs]

    def as_dicts(self) -> list[dict[str, Any]]:
        """The history as a list of plain dicts (JSON-ready)."""
        return [asdict(e) for e in self.epochs]


#: The loss terms every step and validation pass report, in :class:`EpochStats` order.
TERMS = ("loss", "ce", "area", "variation", "fidelity")


class RunningMeans:
    """Sample-weighted running sums of scalar statistics, e.g. the loss terms of an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, n: int, **values: Tensor | float) -> None:
        """Add the means ``values`` of ``n`` samples."""
        for key, value in values.items():
            v = float(value.detach()) if isinstance(value, Tensor) else float(value)
            self.sums[key] = self.sums.get(key, 0.0) + v * n
        self.count += n

    def add_terms(self, n: int, terms: LossTerms, fidelity: Tensor) -> None:
        """Add the :data:`TERMS` of a batch of ``n`` images."""
        self.add(n, loss=terms.total, ce=terms.ce, area=terms.area, variation=terms.variation,
                 fidelity=fidelity)

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.count, 1)

    def means(self, ctx: dist_.DistributedContext | None = None) -> dict[str, float]:
        """The means of the :data:`TERMS`; under DDP (a collective) over all ranks."""
        sums, count = dist_.reduce_sums(self.sums, self.count, ctx)
        return {key: sums.get(key, 0.0) / max(count, 1) for key in TERMS}


class EpochMeans(LoopPiece):
    """The mean loss terms of the epoch in progress; under DDP, of the global batches.

    State: the running sums (``meter_sums``, ``meter_count``). Under DDP the saved sums are
    those of all ranks (:meth:`state_dict` is a collective) and only rank 0 loads them back, so
    that the epoch-end reduction counts them once.
    """

    def __init__(self, ctx: dist_.DistributedContext | None = None) -> None:
        self.ctx = ctx
        self.meter = RunningMeans()

    def on_batch_end(self, loop: Any, result: Any) -> None:
        if result.stepped:
            self.meter.add_terms(result.batch_size, result.terms, result.fidelity)

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        record.update(self.meter.means(self.ctx))
        self.meter = RunningMeans()

    def state_dict(self) -> dict[str, Any]:
        sums, count = dist_.reduce_sums(self.meter.sums, self.meter.count, self.ctx)
        return {"meter_sums": sums, "meter_count": count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.meter = RunningMeans()
        if dist_.is_main_process(self.ctx):
            self.meter.sums = dict(state.get("meter_sums", {}))
            self.meter.count = int(state.get("meter_count", 0))


class History(LoopPiece):
    """Turns each epoch's record into an :class:`EpochStats`, keeps them and logs them (rank 0).

    State: the finished epochs (``history``).
    """

    def __init__(self, epochs: int, ctx: dist_.DistributedContext | None = None) -> None:
        self.epochs, self.ctx = epochs, ctx
        self.history = TrainingHistory()

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        known = {f.name for f in fields(EpochStats)}
        stats = EpochStats(**{k: v for k, v in record.items() if k in known})
        self.history.epochs.append(stats)
        if dist_.is_main_process(self.ctx):
            logger.info("T-TAME epoch %d/%d: loss %.4f (ce %.4f, area %.4f, var %.4f), fidelity %.3f",
                        stats.epoch, self.epochs, stats.loss, stats.ce, stats.area, stats.variation,
                        stats.fidelity)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.as_dicts()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = TrainingHistory([EpochStats(**e) for e in state.get("history", [])])
