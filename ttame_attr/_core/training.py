"""Training the T-TAME head: the paper's recipe (SGD Nesterov, OneCycleLR, masked forward)."""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ttame_attr._core import distributed as _dist
from ttame_attr._core.modes import eval_mode
from ttame_attr._core.outputs import extract_logits
from ttame_attr._core.resume import (
    TrainingCheckpointer,
    TrainingDivergedError,
    capture_rng,
    restore_rng,
)
from ttame_attr._core.storage import all_finite

if TYPE_CHECKING:
    from ttame_attr._core.ttame import TTAME

__all__ = [
    "EpochStats",
    "Trainer",
    "TrainingDivergedError",
    "TrainingHistory",
    "batch_images",
    "fit",
    "param_groups",
]

logger = logging.getLogger(__name__)

_IMAGE_KEYS = ("image", "images", "img", "pixel_values", "input", "inputs", "x")


def batch_images(batch: Any, image_key: str | None = None) -> Tensor:
    """The image tensor of a batch: a tensor, the first item of a tuple/list, or a dict entry.

    Dataset labels are ignored: T-TAME learns from the model's own predictions.
    """
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        keys = (image_key,) if image_key else _IMAGE_KEYS
        for key in keys:
            if key in batch and isinstance(batch[key], Tensor):
                return batch[key]
        raise ValueError(
            f"loader: a dict batch has no image tensor under {list(keys)} (keys: "
            f"{list(batch)}). Pass image_key='...' naming the image entry."
        )
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        "loader: expected batches that are image tensors, (images, labels) tuples or dicts with "
        f"an image entry, got {type(batch).__name__}."
    )


def param_groups(head: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights, none on biases (as the paper's recipe)."""
    decay, no_decay = [], []
    for name, param in head.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


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
    """Per-epoch statistics returned by :meth:`TTAME.fit`."""

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


class _Meter:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, n: int, **values: Tensor | float) -> None:
        for key, value in values.items():
            v = float(value.detach()) if isinstance(value, Tensor) else float(value)
            self.sums[key] = self.sums.get(key, 0.0) + v * n
        self.count += n

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.count, 1)


class Trainer:
    """One training run of a T-TAME head (what :func:`fit` drives).

    Holds the optimiser, scheduler and gradient scaler; :meth:`step` does one training step
    on a batch of images, :meth:`evaluate` computes the loss terms without training.
    """

    def __init__(
        self,
        explainer: TTAME,
        total_steps: int,
        *,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = True,
        amp: bool | None = None,
    ) -> None:
        self.explainer = explainer
        self.head = explainer.head
        self.device = explainer.device
        self.optimizer = torch.optim.SGD(
            param_groups(self.head, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=lr, total_steps=max(total_steps, 1)
        )
        self.total_steps = max(total_steps, 1)
        use_amp = self.device.type == "cuda" if amp is None else bool(amp)
        self.amp_dtype: torch.dtype | None = None
        if use_amp:
            if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                self.amp_dtype = torch.float16
            else:
                self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.step_count = 0
        #: Why the last :meth:`step` was skipped: ``"loss"``, ``"gradient"``, ``"overflow"``
        #: (float16 scaler) or ``None``.
        self.skip_reason: str | None = None
        # Set by distributed.distributed_head while fit trains data-parallel (then self.head is
        # the DDP-wrapped head): the process group, and this rank's loss weight.
        self.dist: _dist.DistributedContext | None = None
        self._rank_weight = 1.0

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loss(self, x: Tensor) -> tuple[Any, Tensor]:
        explainer = self.explainer
        with torch.no_grad(), self._autocast():
            features, logits = explainer._features(x, need_logits=True)
            assert logits is not None
            labels = logits.argmax(dim=1)
        features = [f.detach() for f in features]
        # Under DDP: the labels of the global batch, so the maps (B, G, h, w) are this rank's
        # rows of the global batch's (G, G, h, w); image i is column offset + i.
        all_labels, offset, self._rank_weight = _dist.gather_labels(labels, self.dist)
        with self._autocast():
            masks = torch.sigmoid(self.head(features, all_labels))  # (B, G, h, w)
            rows = torch.arange(x.shape[0], device=x.device)
            own = masks[rows, rows + offset][:, None]  # (B, 1, h, w): image i's own label's map
            masked = explainer.mask_images(x, own)
            logits_masked = extract_logits(explainer.model(masked))
        terms = explainer.loss_fn(logits_masked, labels, masks)
        fidelity = (logits_masked.argmax(dim=1) == labels).float().mean()
        return terms, fidelity

    def step(self, x: Tensor) -> tuple[Any, Tensor, bool]:
        """One optimiser step on images ``x``. Returns (loss terms, fidelity, stepped).

        A step whose loss or gradients are not finite is skipped (``stepped`` is ``False``,
        :attr:`skip_reason` says why): the head's weights, its BatchNorm statistics and the
        optimiser are left as they were before the step.
        """
        self.head.train()
        self.skip_reason = None
        buffers = [b.detach().clone() for b in self.head.buffers()]
        terms, fidelity = self._loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for p in self.head.parameters() if p.requires_grad]
        if not _dist.all_ranks_finite(terms.total, self.dist):  # all ranks skip together
            self.skip_reason = "loss"
            _restore_buffers(self.head, buffers)
            return terms, fidelity, False
        # Gradients flow to the head only: the backbone's parameters get no .grad.
        self.scaler.scale(terms.total * self._rank_weight).backward(inputs=params)
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        # identical on all ranks after DDP's all-reduce
        finite = all_finite([p.grad for p in params if p.grad is not None])
        if not finite:
            # float16 overflow is the scaler's business (it skips the step and lowers the
            # scale); without a scaler the step is skipped here.
            self.skip_reason = "overflow" if self.scaler.is_enabled() else "gradient"
            _restore_buffers(self.head, buffers)
            if self.scaler.is_enabled():
                self.scaler.step(self.optimizer)  # sees the inf recorded by unscale_, skips
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return terms, fidelity, False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.step_count < self.total_steps:
            self.scheduler.step()
        self.step_count += 1
        return terms, fidelity, True

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Any], image_key: str | None = None) -> _Meter:
        """Mean loss terms and fidelity over ``loader`` (head in eval mode)."""
        meter = _Meter()
        with eval_mode(self.head):
            for batch in loader:
                x = _to_device(batch_images(batch, image_key), self.explainer)
                terms, fidelity = self._loss(x)
                meter.add(
                    x.shape[0], loss=terms.total, ce=terms.ce, area=terms.area,
                    variation=terms.variation, fidelity=fidelity,
                )
        return meter




def _restore_buffers(module: nn.Module, saved: list[Tensor]) -> None:
    """Undo what a skipped step's forward pass did to BatchNorm running statistics."""
    with torch.no_grad():
        for buffer, value in zip(module.buffers(), saved):
            buffer.copy_(value)


def _to_device(x: Tensor, explainer: TTAME) -> Tensor:
    x, _ = explainer._check_inputs(x)
    dtype = explainer.head.fusion.weight.dtype
    return x.to(device=explainer.device, dtype=dtype, non_blocking=True)


def _loader_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def fit(
    explainer: TTAME,
    loader: Iterable[Any],
    epochs: int = 8,
    *,
    val_loader: Iterable[Any] | None = None,
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = True,
    steps_per_epoch: int | None = None,
    amp: bool | None = None,
    progress: bool = True,
    image_key: str | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    max_skipped_steps: int | None = 100,
    distributed: bool | None = None,
    seed: int = 0,
) -> TrainingHistory:
    """Train ``explainer``'s attention head on unlabelled images (the paper's recipe).

    For each batch: the frozen model predicts labels ``y`` on the clean images; the head makes
    the ``(B, B, h, w)`` maps of the batch's labels for every image; each image is multiplied by
    its own label's map (in ``explainer.mask_space``) and classified again; the loss
    (:class:`~ttame_attr.TTAMELoss`) is back-propagated to the head only. SGD with Nesterov
    momentum 0.9, weight decay 5e-4 on weights (none on biases), OneCycleLR to ``lr``.

    Args:
        explainer: the :class:`~ttame_attr.TTAME` whose head is trained.
        loader: yields image tensors, ``(images, labels)`` tuples or dicts with an image entry
            (labels are ignored). Images as the model takes them (normalised).
        epochs: passes over ``loader`` (8 in the paper).
        val_loader: optional; its loss terms are reported after each epoch.
        lr: OneCycleLR's maximum learning rate (1e-3 in the paper).
        momentum: SGD momentum.
        weight_decay: on weights only.
        nesterov: Nesterov momentum.
        steps_per_epoch: needed when ``loader`` has no ``len``.
        amp: mixed precision: ``None`` = on CUDA only (bfloat16, else float16 with a gradient
            scaler), ``True``/``False`` to force.
        progress: show a tqdm progress bar.
        image_key: the image entry of dict batches (default: ``image``, ``pixel_values``, ...).
        checkpoint_path: file (or directory, then ``ttame_training.pt`` inside it) for the
            training checkpoint, rewritten atomically at every epoch end and every
            ``checkpoint_every`` steps. It holds the head, optimiser, scheduler, gradient scaler,
            step, epoch, position in the epoch and RNG states; it is never written with
            non-finite weights.
        checkpoint_every: also checkpoint every this many optimiser steps (``None``: epoch ends
            only). A killed run loses at most this many steps.
        resume: continue from ``checkpoint_path`` if it exists (start from scratch if not), with
            the same settings as the interrupted run. The result equals an uninterrupted run's:
            the data order of the interrupted epoch is replayed (see
            :mod:`ttame_attr._core.resume`) and the batches already trained on are skipped.
            The global RNG states (torch, CUDA, ``random``, NumPy) are set to the checkpoint's.
        max_skipped_steps: a step whose loss or gradients are NaN or inf is skipped and counted
            (:attr:`EpochStats.skipped_steps`); once more than this many were skipped in the
            whole run, training stops with :class:`TrainingDivergedError`. ``None``: never stop.
            float16 overflows handled by the gradient scaler are not counted.
        distributed: data-parallel training over ``torch.distributed`` (see the distributed
            docs page). ``None`` (default): when a process group of several processes is
            initialised, or torchrun's environment is present (then the group is initialised),
            train data-parallel: the head alone is wrapped in DistributedDataParallel, the
            loaders are sharded with a ``DistributedSampler`` unless they already shard, logged
            terms are averaged over ranks, and only rank 0 logs and shows progress. Each step
            equals one single-process step on the global batch (all ranks' images).
            ``True``: the same, but an error when there is no group. ``False``: never.
        seed: the seed of the ``DistributedSampler`` fit builds when it shards a shuffling
            loader (the same on every rank).

    Returns:
        A :class:`TrainingHistory` with one :class:`EpochStats` per epoch.

    Raises:
        ValueError: for an empty loader, bad settings, or a checkpoint that cannot be resumed
            (corrupted, foreign, or from a run with other settings).
        TypeError: for batches that hold no image tensor.
        TrainingDivergedError: after more than ``max_skipped_steps`` non-finite steps, or when
            the head's weights became non-finite.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}.")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: expected a positive learning rate, got {lr!r}.")
    ctx = _dist.resolve_distributed(distributed, explainer.device)
    n_val = None
    if ctx is not None:
        loader, val_loader, n_val = _dist.prepare_loaders(loader, val_loader, ctx, seed)
    n_batches = _loader_len(loader) if steps_per_epoch is None else steps_per_epoch
    if ctx is not None:  # per-rank batches, the same on every rank (also for OneCycleLR)
        n_batches = _dist.agree_num_steps(n_batches, ctx, "loader", loader)
    if n_batches is None:
        raise ValueError(
            "steps_per_epoch: the loader has no len(); pass steps_per_epoch=... so the OneCycleLR "
            "schedule can be laid out."
        )
    if n_batches == 0:
        raise ValueError(
            "loader: it yields no batches (len 0). Check the dataset path and the batch size "
            "(with drop_last=True a dataset smaller than one batch is empty)."
        )
    if max_skipped_steps is not None and (
        isinstance(max_skipped_steps, bool) or not isinstance(max_skipped_steps, int)
        or max_skipped_steps < 0
    ):
        raise ValueError(
            f"max_skipped_steps: expected a non-negative int or None, got {max_skipped_steps!r}."
        )
    if (resume or checkpoint_every is not None) and checkpoint_path is None:
        raise ValueError(
            "checkpoint_path: resume=True and checkpoint_every=... need a checkpoint_path (a file "
            "or a directory) to write the checkpoints to and resume from."
        )
    trainer = Trainer(
        explainer, epochs * n_batches, lr=lr, momentum=momentum, weight_decay=weight_decay,
        nesterov=nesterov, amp=amp,
    )
    checkpointer = None
    if checkpoint_path is not None:
        settings = {
            "epochs": epochs, "steps_per_epoch": n_batches, "lr": float(lr),
            "momentum": float(momentum), "weight_decay": float(weight_decay),
            "nesterov": bool(nesterov), "amp_dtype": str(trainer.amp_dtype),
        }
        checkpointer = TrainingCheckpointer(checkpoint_path, checkpoint_every, trainer, settings)
    state = checkpointer.restore() if resume and checkpointer is not None else None
    _dist.check_same_on_all_ranks(
        -1 if state is None else state.step, ctx, "checkpoint_path",
        "Every rank must resume from the same checkpoint: put checkpoint_path on a file system "
        "that all machines see.",
    )
    history = TrainingHistory()
    start_epoch = 0
    skipped_total = 0
    if state is not None:
        history.epochs = [EpochStats(**e) for e in state.history]
        start_epoch = state.epoch
        skipped_total = state.skipped_total
    model = explainer.model
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        tqdm = None

    with eval_mode(model), _dist.distributed_head(trainer, ctx):
        for epoch in range(start_epoch, epochs):
            meter = _Meter()
            skipped = 0
            done = 0  # batches of this epoch consumed (trained on or skipped)
            resuming = state is not None and epoch == state.epoch
            if resuming and state.batch > 0 and state.epoch_rng is not None:
                restore_rng(state.epoch_rng, loader)  # replays the iterator's order
            elif resuming:
                restore_rng(state.rng, loader)
            if ctx is not None:  # re-seed the sampler (before capturing/replaying the order)
                _dist.set_loader_epoch(loader, epoch)
            epoch_rng = capture_rng(loader) if checkpointer is not None else None
            iterator = iter(loader)
            if resuming and state.batch > 0:
                for _ in range(state.batch):  # trained on before the interruption
                    next(iterator, None)
                restore_rng(state.rng, loader)
                if _dist.is_main_process(ctx):  # the saved sums are global (see below)
                    meter.sums, meter.count = dict(state.meter_sums), state.meter_count
                skipped, done = state.skipped, state.batch
            if ctx is not None:  # every rank runs exactly n_batches steps
                iterator = itertools.islice(iterator, max(n_batches - done, 0))
            bar = None
            if progress and tqdm is not None and _dist.is_main_process(ctx):
                bar = tqdm(iterator, total=n_batches, initial=done,
                           desc=f"T-TAME epoch {epoch + 1}/{epochs}", leave=False)
                iterator = bar
            try:
                for batch in iterator:
                    x = _to_device(batch_images(batch, image_key), explainer)
                    terms, fidelity, stepped = trainer.step(x)
                    done += 1
                    if stepped:
                        meter.add(
                            x.shape[0], loss=terms.total, ce=terms.ce, area=terms.area,
                            variation=terms.variation, fidelity=fidelity,
                        )
                        if bar is not None:
                            bar.set_postfix(loss=f"{float(terms.total.detach()):.3f}",
                                            fid=f"{float(fidelity):.2f}")
                    elif trainer.skip_reason == "overflow":
                        logger.debug("T-TAME: float16 overflow, the gradient scaler skipped a step")
                    else:
                        skipped += 1
                        skipped_total += 1
                        logger.warning(
                            "T-TAME: non-finite %s in epoch %d, batch %d; step skipped (%d so far)",
                            trainer.skip_reason, epoch + 1, done, skipped_total,
                        )
                        if max_skipped_steps is not None and skipped_total > max_skipped_steps:
                            raise TrainingDivergedError(
                                f"T-TAME training stopped: {skipped_total} steps had a non-finite "
                                f"loss or gradient (max_skipped_steps={max_skipped_steps}), the "
                                f"last in epoch {epoch + 1}, batch {done}. Check the images for "
                                "NaN/inf, lower lr or turn off amp. "
                                + (f"The checkpoint {str(checkpointer.path)!r} holds the last "
                                   "good state." if checkpointer is not None else "")
                            )
                    if (checkpointer is not None and stepped and checkpointer.due()
                            and done != n_batches):  # the epoch-end checkpoint follows
                        # Under DDP the file holds the sums of all ranks (restored on rank 0
                        # only) and only rank 0 writes it.
                        sums, count = _dist.reduce_sums(meter.sums, meter.count, ctx)
                        if _dist.is_main_process(ctx):
                            checkpointer.save(
                                epoch=epoch, batch=done, epoch_rng=epoch_rng, loader=loader,
                                history=history.as_dicts(), meter_sums=sums, meter_count=count,
                                skipped=skipped, skipped_total=skipped_total,
                            )
            finally:
                if bar is not None:
                    bar.close()
            if ctx is not None:  # global means of the logged terms
                meter.sums, meter.count = _dist.reduce_sums(meter.sums, meter.count, ctx)
            if meter.count == 0 and skipped == 0 and done == 0:
                raise ValueError("loader: it yielded no batches in this epoch.")
            stats = EpochStats(
                epoch=epoch + 1, loss=meter.mean("loss"), ce=meter.mean("ce"),
                area=meter.mean("area"), variation=meter.mean("variation"),
                fidelity=meter.mean("fidelity"), lr=trainer.optimizer.param_groups[0]["lr"],
                steps=trainer.step_count, skipped_steps=skipped,
            )
            if val_loader is not None:
                val = trainer.evaluate(
                    val_loader if ctx is None else itertools.islice(val_loader, n_val), image_key
                )
                if ctx is not None:
                    val.sums, val.count = _dist.reduce_sums(val.sums, val.count, ctx)
                stats.val_loss, stats.val_ce = val.mean("loss"), val.mean("ce")
                stats.val_area, stats.val_variation = val.mean("area"), val.mean("variation")
                stats.val_fidelity = val.mean("fidelity")
            history.epochs.append(stats)
            if _dist.is_main_process(ctx):
                logger.info(
                    "T-TAME epoch %d/%d: loss %.4f (ce %.4f, area %.4f, var %.4f), fidelity %.3f",
                    epoch + 1, epochs, stats.loss, stats.ce, stats.area, stats.variation,
                    stats.fidelity,
                )
            if checkpointer is not None and _dist.is_main_process(ctx):  # rank 0 writes
                checkpointer.save(
                    epoch=epoch + 1, batch=0, epoch_rng=None, loader=loader,
                    history=history.as_dicts(), meter_sums={}, meter_count=0, skipped=0,
                    skipped_total=skipped_total,
                )
    explainer.head.eval()
    return history
