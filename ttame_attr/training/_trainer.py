"""The training loop of :func:`~ttame_attr.fit`, in one class that reads top to bottom.

:meth:`Trainer.fit` runs the epochs; :meth:`Trainer.train_epoch` draws the batches and calls the
:class:`~ttame_attr.TrainStep` on each one; :meth:`Trainer.after_step` does what follows a step
(running means, class peaks, the non-finite guard, a step checkpoint); :meth:`Trainer.end_epoch`
closes the epoch (means, validation, the :class:`~ttame_attr.EpochStats`, the epoch checkpoint).
:meth:`Trainer.state_dict` lists every field a checkpoint keeps.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ttame_attr._core.images import check_images
from ttame_attr._core.modes import eval_mode
from ttame_attr._core.parts import ExplainerParts
from ttame_attr._core.progress import progress_bar
from ttame_attr._core.setup import model_device_dtype
from ttame_attr.training import distributed as dist_
from ttame_attr.training._checkpoint import DataOrder, check_resumable, write_checkpoint
from ttame_attr.training._history import ClassPeaks, EpochStats, RunningMeans, TrainingHistory
from ttame_attr.training._step import StepResult, TrainingDivergedError, TrainStep

__all__ = ["Trainer", "batch_images"]

logger = logging.getLogger(__name__)

_IMAGE_KEYS = ("image", "images", "img", "pixel_values", "input", "inputs", "x")


def batch_images(batch: Any, image_key: str | None = None) -> Tensor:
    """The image tensor of a batch: a tensor, the first item of a tuple/list, or a dict entry."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        keys = (image_key,) if image_key else _IMAGE_KEYS
        for key in keys:
            if key in batch and isinstance(batch[key], Tensor):
                return batch[key]
        raise ValueError(f"loader: a dict batch has no image tensor under {list(keys)} (keys: "
                         f"{list(batch)}). Pass image_key='...' naming the image entry.")
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError("loader: expected batches that are image tensors, (images, labels) tuples or dicts with "
                    f"an image entry, got {type(batch).__name__}.")


class Trainer:
    """Trains ``explainer``'s head with ``step`` over ``loader`` for ``epochs`` epochs.

    Built by :func:`~ttame_attr.fit` once the ranks agreed on the set-up (sharded loaders,
    batches per epoch, the checkpoint to resume from).

    Args:
        explainer: the explainer whose head is trained.
        step: the :class:`~ttame_attr.TrainStep` (optimiser, schedule, mixed precision).
        loader: the (sharded) training loader.
        epochs: the epochs of the run.
        batches: the batches of a full epoch (under DDP every rank runs exactly this many).
        val_loader, val_batches: the validation pass after every epoch (``None``: none).
        image_key: the image entry of dict batches.
        progress: show a progress bar per epoch.
        max_skipped_steps: as :func:`~ttame_attr.fit`'s.
        checkpoint: the checkpoint file (``None``: no checkpoints).
        checkpoint_every: also checkpoint every this many optimiser steps.
        settings: the run's settings, stored in the checkpoint (a resumed run must match them).
        ctx: the distributed context (``None``: one process).
    """

    def __init__(self, explainer: ExplainerParts, step: TrainStep, loader: Iterable[Any], *, epochs: int,
                 batches: int, val_loader: Iterable[Any] | None = None, val_batches: int | None = None,
                 image_key: str | None = None, progress: bool = True, max_skipped_steps: int | None = None,
                 checkpoint: Path | None = None, checkpoint_every: int | None = None,
                 settings: Mapping[str, Any] | None = None,
                 ctx: dist_.DistributedContext | None = None) -> None:
        self.explainer, self.step, self.ctx = explainer, step, ctx
        self.epochs, self.batches = epochs, batches
        self.val_loader, self.val_batches = val_loader, val_batches
        self.image_key, self.max_skipped = image_key, max_skipped_steps
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.settings = dict(settings or {})
        self.show_progress = progress and dist_.is_main_process(ctx)
        self.channels = explainer.input_size[0]
        self.device, self.dtype = explainer.device, model_device_dtype(explainer.model)[1]
        self.data = DataOrder(loader, batches, ctx, record=checkpoint is not None)
        # The run's state: everything state_dict() saves besides the step's and the data order's.
        self.epoch = 0  # epochs finished
        self.batch = 0  # batches of the current epoch consumed (trained on or skipped)
        self.means = RunningMeans()  # the epoch's loss terms
        self.peaks = ClassPeaks(explainer.num_classes, ctx)  # the epoch's dead / full class maps
        self.skipped = self.skipped_total = 0  # non-finite steps, in the epoch and in the run
        self.history = TrainingHistory()
        self.bar: Any = None

    # ---------------------------------------------------------------- the loop
    def fit(self) -> TrainingHistory:
        """Train from the current position (a resumed run's) to the end of the last epoch."""
        try:
            for epoch in range(self.epoch, self.epochs):
                self.train_epoch(epoch)
                self.end_epoch(epoch)
        finally:
            self._close_bar()
        return self.history

    def train_epoch(self, epoch: int) -> None:
        """One pass over the loader: each batch to the device, one step, then :meth:`after_step`.

        Raises:
            ValueError: if the epoch yields no batch at all.
        """
        self.bar = progress_bar(enabled=self.show_progress, total=self.batches, initial=self.batch,
                                desc=f"T-TAME epoch {epoch + 1}/{self.epochs}")
        for batch in self.data.batches(epoch, skip=self.batch):
            result = self.step(self.to_device(batch))
            self.batch += 1
            self.after_step(result)
        if self.batch == 0:
            raise ValueError("loader: it yielded no batches in this epoch.")
        self._close_bar()

    def to_device(self, batch: Any) -> Tensor:
        """The batch's images, checked, on the model's device and in its dtype."""
        x = check_images(batch_images(batch, self.image_key), channels=self.channels)
        return x.to(device=self.device, dtype=self.dtype, non_blocking=True)

    def after_step(self, result: StepResult) -> None:
        """Progress, the epoch's means and class peaks; the guard for a skipped step; a step checkpoint."""
        self.bar.update(1)
        if not result.stepped:
            self.skip(result)
            return
        if self.show_progress:
            self.bar.set_postfix({"loss": f"{float(result.terms.total.detach()):.3f}",
                                  "fid": f"{float(result.fidelity):.2f}"})
        self.means.add_terms(result.batch_size, result.terms, result.fidelity)
        self.peaks.on_batch_end(self, result)
        every = self.checkpoint_every
        if every is not None and self.step.step_count % every == 0 and self.batch != self.batches:
            self.save()  # not after the epoch's last batch: the epoch-end checkpoint follows

    def skip(self, result: StepResult) -> None:
        """Count a skipped step; stop a run with more than ``max_skipped_steps`` of them.

        Raises:
            TrainingDivergedError: when more steps than ``max_skipped_steps`` were skipped.
        """
        if result.skip_reason == "overflow":
            logger.debug("T-TAME: float16 overflow, the gradient scaler skipped a step")
            return
        self.skipped += 1
        self.skipped_total += 1
        epoch, batch = self.epoch + 1, self.batch
        logger.warning("T-TAME: non-finite %s in epoch %d, batch %d; step skipped (%d so far)",
                       result.skip_reason, epoch, batch, self.skipped_total)
        if self.max_skipped is not None and self.skipped_total > self.max_skipped:
            where = (f"The checkpoint {str(self.checkpoint)!r} holds the last good state."
                     if self.checkpoint is not None else "")
            raise TrainingDivergedError(
                f"T-TAME training stopped: {self.skipped_total} steps had a non-finite loss or "
                f"gradient (max_skipped_steps={self.max_skipped}), the last in epoch {epoch}, "
                f"batch {batch}. Check the images for NaN/inf, lower lr or turn off amp. {where}")

    def end_epoch(self, epoch: int) -> None:
        """The epoch's statistics (and validation) into the history, logged; the epoch checkpoint."""
        self.epoch, self.batch = epoch + 1, 0
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": self.step.lr, "steps": self.step.step_count}
        record.update(self.means.means(self.ctx))
        self.means = RunningMeans()
        self.peaks.on_epoch_end(self, record)
        record["skipped_steps"], self.skipped = self.skipped, 0
        if self.val_loader is not None:
            record.update({f"val_{key}": value for key, value in self.validate().items()})
        stats = EpochStats(**record)
        self.history.epochs.append(stats)
        if dist_.is_main_process(self.ctx):
            logger.info("T-TAME epoch %d/%d: loss %.4f (ce %.4f, area %.4f, var %.4f), fidelity %.3f",
                        stats.epoch, self.epochs, stats.loss, stats.ce, stats.area, stats.variation,
                        stats.fidelity)
        self.data.end_epoch()
        if self.checkpoint is not None:
            self.save()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The mean loss terms on the validation loader, head in eval mode (under DDP, over all ranks)."""
        assert self.val_loader is not None
        meter = RunningMeans()
        loader = self.val_loader if self.ctx is None else itertools.islice(self.val_loader, self.val_batches)
        with eval_mode(self.step.head):
            for batch in loader:
                x = self.to_device(batch)
                meter.add_terms(x.shape[0], *self.step.loss(x))
        return meter.means(self.ctx)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Every field a checkpoint keeps. Under DDP a collective: the running sums and class
        peaks are those of all ranks.

        - ``head``, ``optimizer``, ``scheduler``, ``scaler``, ``step``: the train step's;
        - ``epoch``, ``batch``: epochs finished and batches of the current one consumed;
        - ``meter_sums``, ``meter_count``: the running sums of the epoch's loss terms;
        - ``class_peaks``, ``class_floors``: the epoch's per-class mask peaks and floors;
        - ``skipped``, ``skipped_total``: non-finite steps skipped in the epoch and the run;
        - ``history``: the finished epochs' :class:`~ttame_attr.EpochStats`;
        - ``epoch_rng``, ``rng``: the RNG states of the epoch's start and of now (data order replay).
        """
        sums, count = dist_.reduce_sums(self.means.sums, self.means.count, self.ctx)
        return {**self.step.state_dict(), "epoch": self.epoch, "batch": self.batch,
                "meter_sums": sums, "meter_count": count, **self.peaks.state_dict(),
                "skipped": self.skipped, "skipped_total": self.skipped_total,
                "history": self.history.as_dicts(), **self.data.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave (``ValueError`` if it does not fit this run).

        Under DDP only rank 0 loads the running sums, so that the epoch-end reduction counts
        them once.
        """
        state = dict(state)
        self.step.load_state_dict(state)
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.means = RunningMeans()
        if dist_.is_main_process(self.ctx):
            self.means.sums = dict(state.get("meter_sums", {}))
            self.means.count = int(state.get("meter_count", 0))
        self.peaks.load_state_dict(state)
        self.skipped = int(state.get("skipped", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        self.history = TrainingHistory([EpochStats(**e) for e in state.get("history", [])])
        self.data.load_state_dict(state)

    def save(self) -> None:
        """Write the checkpoint (every rank takes part; rank 0 writes)."""
        assert self.checkpoint is not None
        write_checkpoint(self.checkpoint, self.state_dict(), self.explainer.config(), self.settings, self.ctx)

    def resume(self, payload: Mapping[str, Any]) -> None:
        """Continue from a checked checkpoint written by a run with the same settings and head.

        Raises:
            ValueError: naming every difference, if it was written by a run with other settings
                or for another head; if its states do not fit this run's head or optimiser.
        """
        assert self.checkpoint is not None
        check_resumable(payload, self.explainer.config(), self.settings, self.checkpoint)
        try:
            self.load_state_dict(payload)
        except ValueError as err:
            raise ValueError(f"checkpoint_path: {str(self.checkpoint)!r}: {err}") from err
        logger.info("T-TAME: resuming from %s at epoch %d, batch %d (step %d)", self.checkpoint,
                    int(payload["epoch"]) + 1, int(payload["batch"]), int(payload["step"]))
