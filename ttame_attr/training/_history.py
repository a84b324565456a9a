"""What a training run records: one :class:`EpochStats` per epoch, and the running statistics
behind them (:class:`RunningMeans`, :class:`ClassPeaks`).

What to do about a run's problems (the advice text) is in ``_recipe.py``, beside the schedule it
refers to.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ttame_attr._core.loss import LossTerms
from ttame_attr.training import _recipe
from ttame_attr.training import distributed as dist_

__all__ = ["DEAD_MAP_PEAK", "FULL_MAP_FLOOR", "ClassPeaks", "Convergence", "EpochStats", "RunningMeans",
           "TrainingHistory"]

logger = logging.getLogger(__name__)

#: A class counts as dead in an epoch when its own-label mask stayed below this value on every
#: pixel of every one of its training images (the mask is a sigmoid in ``[0, 1]``).
DEAD_MAP_PEAK = 0.1
#: A class's map counts as full in an epoch when its own-label mask stayed above this value on
#: every pixel of every one of its training images: the map keeps the whole image and explains
#: nothing, the mirror of a dead map (the sigmoid is saturated, so training cannot pull it down).
FULL_MAP_FLOOR = 0.9


@dataclass
class EpochStats:
    """Mean loss terms of one epoch (and of the validation pass when a loader was given).

    ``fidelity`` is the fraction of masked images still classified as the clean image.
    ``dead_classes`` lists the classes trained on in the epoch whose masks stayed below
    :data:`DEAD_MAP_PEAK` everywhere on all their images, ``full_classes`` those whose masks
    stayed above :data:`FULL_MAP_FLOOR` everywhere on all their images (:class:`ClassPeaks`).
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
    dead_classes: list[int] = field(default_factory=list)
    full_classes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Convergence:
    """Whether the head was still improving when training ended (:meth:`TrainingHistory.convergence`).

    ``done`` is ``None`` when the run is too short to tell (one epoch), ``False`` when the last
    epoch still lowered the loss or raised the fidelity by more than the tolerances; ``advice``
    then says what to do (empty otherwise).
    """

    done: bool | None
    source: str
    loss_drop: float | None
    fidelity_gain: float | None
    advice: str


@dataclass
class TrainingHistory:
    """Per-epoch statistics returned by :meth:`TTAME.fit <ttame_attr.TTAME.fit>`.

    ``schedule``: the epochs and maximum learning rate the run used and where they came from
    (``recipe``, ``epochs``, ``lr``, ``steps_per_epoch``, ``total_steps``, ``source``), set by
    ``fit``.

    ``blank_class``: the class the classifier predicts for a fully masked image (every mask
    value zero: black pixels in ``mask_space="pixel"``, a zero input tensor in ``"input"``).
    ``fit`` sets it when some class maps died (``None`` otherwise), because an empty mask already
    keeps that class: see :meth:`dead_class_advice`.
    """

    epochs: list[EpochStats] = field(default_factory=list)
    schedule: dict[str, Any] | None = None
    blank_class: int | None = None

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

    def convergence(self, loss_tol: float = 0.02, fidelity_tol: float = 0.02) -> Convergence:
        """Was the head still improving over the last epoch?

        Compares the last two epochs' mean loss and fidelity (the validation pass's when every
        epoch has one, else the training means). The head counts as not done when the loss fell
        by more than ``loss_tol`` (relative) or the fidelity rose by more than ``fidelity_tol``
        (absolute): training longer would still change it. :func:`~ttame_attr.fit` logs the
        advice as a warning and the ``ttame fit`` command prints it.

        Args:
            loss_tol: relative loss drop over the last epoch above which training goes on.
            fidelity_tol: fidelity gain (a fraction of images) above which training goes on.
        """
        if len(self.epochs) < 2:
            return Convergence(None, "training", None, None, "")
        last, before = self.epochs[-1], self.epochs[-2]
        val = last.val_loss is not None and before.val_loss is not None
        prefix, source = ("val_", "validation") if val else ("", "training")
        loss = [float(getattr(e, prefix + "loss")) for e in (before, last)]
        fid = [float(getattr(e, prefix + "fidelity")) for e in (before, last)]
        drop = (loss[0] - loss[1]) / max(abs(loss[0]), 1e-12)
        gain = fid[1] - fid[0]
        if drop <= loss_tol and gain <= fidelity_tol:
            return Convergence(True, source, drop, gain, "")
        advice = _recipe.under_training_advice(source, loss, fid, len(self.epochs),
                                               (self.schedule or {}).get("family"))
        return Convergence(False, source, drop, gain, advice)

    def dead_classes(self) -> list[int]:
        """The classes whose maps were dead in the last epoch (see :class:`ClassPeaks`)."""
        return list(self.epochs[-1].dead_classes) if self.epochs else []

    def full_classes(self) -> list[int]:
        """The classes whose maps were full in the last epoch (see :class:`ClassPeaks`)."""
        return list(self.epochs[-1].full_classes) if self.epochs else []

    def full_class_advice(self) -> str:
        """What to do about :meth:`full_classes` (empty when there are none)."""
        return _recipe.full_class_advice(self.full_classes(), FULL_MAP_FLOOR)

    def dead_class_advice(self) -> str:
        """What to do about :meth:`dead_classes` (empty when there are none).

        Two causes are told apart. A map that died during training (the area term holds a map at
        zero once it is there) can be saved by a new head with another seed or a lower learning
        rate. The map of :attr:`blank_class`, the class the classifier gives a fully masked
        image, has no reason to live: an empty mask already keeps that class, so the loss is
        lowest with no map at all. That comes from the classifier, not from training.
        """
        return _recipe.dead_class_advice(self.dead_classes(), self.blank_class, DEAD_MAP_PEAK)

    def warnings(self) -> list[str]:
        """What is wrong with the trained head, one piece of advice per problem (empty when
        nothing is): under-training (:meth:`convergence`), dead class maps
        (:meth:`dead_class_advice`) and full ones (:meth:`full_class_advice`).
        :func:`~ttame_attr.fit` logs them as warnings."""
        report = self.convergence()
        found = [report.advice] if report.done is False else []
        return found + [a for a in (self.dead_class_advice(), self.full_class_advice()) if a]


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


class ClassPeaks:
    """Per class, the largest and the smallest value its own-label mask reached during the epoch.

    A class whose masks stay below :data:`DEAD_MAP_PEAK` on every pixel of all its images for a
    whole epoch has a dead map: the area term's gradient near zero outweighs the cross-entropy's,
    so training cannot bring it back. One whose masks stay above :data:`FULL_MAP_FLOOR` on every
    pixel has a full map, the mirror case: the sigmoid is saturated and the map keeps the whole
    image (seen on Swin heads trained at large learning rates). The epoch's record gets
    ``dead_classes`` and ``full_classes``. Classes not trained on in the epoch are not judged.
    Under DDP the peaks are the maxima over all ranks, the floors the minima.

    State: the peaks and floors of the epoch in progress (``class_peaks``, -1 for classes not
    seen yet; ``class_floors``, 2 for classes not seen yet).
    """

    def __init__(self, num_classes: int, ctx: dist_.DistributedContext | None = None) -> None:
        self.num_classes, self.ctx = int(num_classes), ctx
        self.peaks, self.floors = self._fresh(-1.0), self._fresh(2.0)

    def _fresh(self, value: float) -> Tensor:
        return torch.full((self.num_classes,), value)

    def _reduced(self) -> tuple[Tensor, Tensor]:
        return dist_.reduce_max(self.peaks, self.ctx), -dist_.reduce_max(-self.floors, self.ctx)

    def on_batch_end(self, loop: Any, result: Any) -> None:
        labels, peaks = getattr(result, "labels", None), getattr(result, "peaks", None)
        if not result.stepped or labels is None or peaks is None:
            return
        labels = labels.detach().cpu().long()
        self.peaks.scatter_reduce_(0, labels, peaks.detach().cpu().float(), reduce="amax")
        floors = getattr(result, "floors", None)
        if floors is not None:
            self.floors.scatter_reduce_(0, labels, floors.detach().cpu().float(), reduce="amin")

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        peaks, floors = self._reduced()
        dead = (peaks >= 0) & (peaks < DEAD_MAP_PEAK)  # -1: not trained on in this epoch
        full = (floors <= 1) & (floors > FULL_MAP_FLOOR)  # 2: not trained on in this epoch
        record["dead_classes"] = [int(k) for k in torch.nonzero(dead).flatten()]
        record["full_classes"] = [int(k) for k in torch.nonzero(full).flatten()]
        self.peaks, self.floors = self._fresh(-1.0), self._fresh(2.0)

    def state_dict(self) -> dict[str, Any]:
        peaks, floors = self._reduced()
        return {"class_peaks": peaks.tolist(), "class_floors": floors.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def restored(key: str, fresh: float) -> Tensor:
            saved = state.get(key)
            fits = isinstance(saved, list) and len(saved) == self.num_classes
            return torch.tensor(saved, dtype=torch.float32) if fits else self._fresh(fresh)

        self.peaks, self.floors = restored("class_peaks", -1.0), restored("class_floors", 2.0)
