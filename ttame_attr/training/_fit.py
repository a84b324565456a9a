"""``fit``: check the settings, agree the set-up across ranks, build the :class:`Trainer`, run it.

A batch's path: :func:`fit` -> :meth:`Trainer.fit <ttame_attr.training._trainer.Trainer.fit>`
(``_trainer.py``) -> :class:`~ttame_attr.TrainStep` (``_step.py``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ttame_attr._core.masking import Masker
from ttame_attr._core.modes import eval_mode
from ttame_attr._core.outputs import extract_logits
from ttame_attr._core.parts import ExplainerParts
from ttame_attr._core.setup import model_device_dtype
from ttame_attr.training import distributed as dist_
from ttame_attr.training._checkpoint import read_checkpoint, resolve_checkpoint_path
from ttame_attr.training._history import TrainingHistory
from ttame_attr.training._recipe import check_recipe, resolve_schedule
from ttame_attr.training._step import TrainStep
from ttame_attr.training._trainer import Trainer

__all__ = ["blank_class", "fit"]

logger = logging.getLogger(__name__)


def _check_count(name: str, value: Any, minimum: int, expected: str, none_means: str = "") -> None:
    """Raise unless ``value`` is ``None`` or an int (not a bool) of at least ``minimum``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"{name}: expected {expected}, or None{none_means}, got {value!r}.")


def _check_settings(epochs: Any, lr: Any, recipe: Any, max_skipped_steps: Any, checkpoint_every: Any,
                    resume: bool, checkpoint_path: Any) -> None:
    _check_count("epochs", epochs, 1, "a positive int", " for the recipe's")
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0
                               and math.isfinite(lr)):
        raise ValueError(f"lr: expected a positive learning rate, or None for the recipe's, got {lr!r}.")
    check_recipe(recipe)
    _check_count("max_skipped_steps", max_skipped_steps, 0, "a non-negative int")
    if (resume or checkpoint_every is not None) and checkpoint_path is None:
        raise ValueError("checkpoint_path: resume=True and checkpoint_every=... need a checkpoint_path (a "
                         "file or a directory) to write the checkpoints to and resume from.")
    _check_count("checkpoint_every", checkpoint_every, 1, "a positive number of steps")


@dataclass
class _Setup:
    """What the ranks agreed on before training."""

    loader: Any
    val_loader: Any
    batches: int
    val_batches: int | None
    checkpoint: dict[str, Any] | None


def _agreed_setup(loader: Any, val_loader: Any, steps_per_epoch: int | None, checkpoint_file: Any,
                  resume: bool, ctx: dist_.DistributedContext | None, seed: int) -> _Setup:
    """Shard the loaders, count their batches and read the checkpoint; agree across ranks."""
    error, batches, val_batches, checkpoint = None, None, None, None
    try:
        if ctx is not None:
            loader = dist_.shard_loader(loader, ctx, seed=seed, name="loader")
            if val_loader is not None:
                val_loader = dist_.shard_loader(val_loader, ctx, seed=seed, name="val_loader", shuffle=False)
        length = loader_len(loader)
        batches = length if steps_per_epoch is None else steps_per_epoch
        if ctx is not None and batches is not None and length is not None and length < batches:
            logger.warning("loader: steps_per_epoch=%d but rank %d has only %d batches; it runs at most %d",
                           batches, ctx.rank, length, length)
            batches = length
        val_batches = loader_len(val_loader) if val_loader is not None else None
        checkpoint = read_checkpoint(checkpoint_file) if resume else None
    except (TypeError, ValueError) as err:
        error = err
    step = -1 if checkpoint is None else int(checkpoint["step"])
    agreed = dist_.agree(ctx, error, batches=batches, val_batches=val_batches, step=step)
    if agreed["batches"] is None:
        raise ValueError("steps_per_epoch: the loader has no len(); pass steps_per_epoch=... so the "
                         "OneCycleLR schedule can be laid out.")
    low, high = agreed["batches"]
    if low != high and dist_.is_main_process(ctx):
        logger.warning("loader: the ranks have between %d and %d batches per epoch; every rank runs %d so "
                       "that none waits for the others (the extra batches are skipped). Shard with a "
                       "DistributedSampler to give every rank the same number.", low, high, low)
    if low == 0:
        raise ValueError("loader: it yields no batches (len 0). Check the dataset path and the batch size "
                         "(with drop_last=True a dataset smaller than one batch is empty).")
    steps = agreed["step"]
    if steps is not None and steps[0] != steps[1]:
        raise ValueError(f"checkpoint_path: the ranks disagree (values from {steps[0]} to {steps[1]}, this "
                         f"rank {step}). Every rank must resume from the same checkpoint: put "
                         "checkpoint_path on a file system that all machines see.")
    if ctx is not None and val_loader is not None and agreed["val_batches"] is None and ctx.is_main:
        logger.warning("val_loader: it has no len(), so the ranks cannot agree on its number of batches; it "
                       "must yield the same number on every rank or the validation pass hangs.")
    val = agreed["val_batches"]
    return _Setup(loader, val_loader, low, None if val is None else val[0], checkpoint)


def loader_len(loader: Any) -> int | None:
    """``len(loader)``, or ``None`` for a loader without a length."""
    try:
        return len(loader)
    except TypeError:
        return None


def blank_class(explainer: ExplainerParts) -> int:
    """The class ``explainer``'s classifier predicts for a fully masked image of its input size
    (every mask value zero, in its ``mask_space``): the prediction an empty mask keeps."""
    c, h, w = explainer.input_size
    _, dtype = model_device_dtype(explainer.model)
    x = torch.zeros(1, c, h, w, device=explainer.device, dtype=dtype)
    with torch.no_grad(), eval_mode(explainer.model):
        masker = Masker(explainer.mask_space, explainer.normalization)
        masked = masker(x, torch.zeros(1, 1, 1, 1, device=x.device, dtype=dtype))
        return int(extract_logits(explainer.model(masked)).argmax(dim=1)[0])


def fit(
    explainer: ExplainerParts, loader: Iterable[Any], epochs: int | None = None, *,
    val_loader: Iterable[Any] | None = None, lr: float | None = None, recipe: str = "auto",
    momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True,
    steps_per_epoch: int | None = None, amp: bool | None = None, progress: bool = True,
    image_key: str | None = None, checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None, resume: bool = False, max_skipped_steps: int | None = 100,
    distributed: bool | None = None, seed: int = 0,
) -> TrainingHistory:
    """Train ``explainer``'s attention head on unlabelled images with the paper's recipe, scaled to the run.

    Called as ``explainer.fit(loader, ...)`` (the method is this function) or
    ``ttame_attr.fit(explainer, loader, ...)``. Every batch is one :class:`~ttame_attr.TrainStep`;
    ``fit`` adds the epochs, validation, checkpoints with exact resumption, a guard against
    non-finite steps and data-parallel training.

    Args:
        explainer: the :class:`~ttame_attr.TTAME` whose head is trained.
        loader: yields image tensors, ``(images, labels)`` tuples or dicts with an image entry
            (labels are ignored). Images as the model takes them (normalised).
        epochs: passes over ``loader``. ``None``: the recipe's (8, the paper's, unless
            ``recipe="auto"`` adds epochs for a small loader).
        val_loader: its loss terms are reported after each epoch.
        lr: OneCycleLR's maximum learning rate. ``None``: the recipe's (the paper's 1e-3, or
            larger for a run shorter than the paper's under ``recipe="auto"``).
        recipe: what fills in ``epochs`` and ``lr`` when they are ``None``. ``"auto"``: the
            paper's values for a run as long as the paper's (320,000 steps), scaled for shorter
            ones (epochs up to 4,000 steps, 8,000 on a ViT, at most 64; lr
            ``1e-3 * sqrt(320,000 / steps)`` up to 1e-2, or 5e-3 on a Swin), logged at INFO
            level; ``"paper"``: exactly the paper's 8 epochs at 1e-3. The schedule used is in
            ``history.schedule``.
        momentum, weight_decay, nesterov: SGD's settings (paper: 0.9, 5e-4 on weights only,
            Nesterov).
        steps_per_epoch: needed when ``loader`` has no ``len``.
        amp: mixed precision: ``None`` = on CUDA only, ``True``/``False`` to force. On CUDA in
            bfloat16 where supported, else float16 with a gradient scaler; on the CPU in bfloat16.
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
            the data order of the interrupted epoch is replayed and the batches already trained
            on are skipped. The global RNG states (torch, CUDA, ``random``, NumPy) are set to
            the checkpoint's.
        max_skipped_steps: a step whose loss or gradients are NaN or inf is skipped and counted
            (:attr:`EpochStats.skipped_steps`); once more than this many were skipped in the
            whole run, training stops with :class:`TrainingDivergedError`. ``None``: never stop.
            float16 overflows handled by the gradient scaler are not counted.
        distributed: data-parallel training (:doc:`/distributed`,
            :mod:`ttame_attr.training.distributed`). ``None``: when a process group of several
            processes is initialised, or torchrun's environment is present (the group is then
            initialised). ``True``: the same, but an error when there is no group. ``False``:
            never. Under DDP the logged terms are averaged over ranks and only rank 0 logs and
            shows progress.
        seed: the seed of the ``DistributedSampler`` fit builds when it shards a shuffling
            loader (the same on every rank).

    Returns:
        A :class:`TrainingHistory` with one :class:`EpochStats` per epoch, also stored as
        ``explainer.history``. ``fit`` logs a warning saying what to do when the last epoch
        still lowered the loss by more than 2% or raised the fidelity by more than 2 points
        (:meth:`TrainingHistory.convergence`), and when some classes' maps died: zero
        everywhere on all their images for the whole last epoch
        (:meth:`TrainingHistory.dead_classes`); it then also records
        :attr:`TrainingHistory.blank_class`, the class the classifier gives a fully masked image.
        It also warns when some classes' maps are full: above 0.9 everywhere on all their images
        for the whole last epoch (:meth:`TrainingHistory.full_classes`), a map that keeps the
        whole image and explains nothing.

    Raises:
        ValueError: for an empty loader, bad settings, or a checkpoint that cannot be resumed
            (corrupted, foreign, or from a run with other settings).
        TypeError: for batches that hold no image tensor.
        TrainingDivergedError: when training diverged beyond recovery.

    Example:
        >>> import torch, torchvision
        >>> from ttame_attr import TTAME, fit
        >>> explainer = TTAME(torchvision.models.resnet18(num_classes=4), input_size=(3, 32, 32))
        >>> loader = torch.utils.data.DataLoader(torch.rand(4, 3, 32, 32), batch_size=2)
        >>> history = fit(explainer, loader, epochs=2, progress=False)
        >>> [stats.steps for stats in history]
        [2, 4]
    """
    _check_settings(epochs, lr, recipe, max_skipped_steps, checkpoint_every, resume, checkpoint_path)
    path = resolve_checkpoint_path(checkpoint_path) if checkpoint_path is not None else None
    ctx = dist_.resolve_distributed(distributed, explainer.device)
    setup = _agreed_setup(loader, val_loader, steps_per_epoch, path, resume, ctx, seed)
    schedule = resolve_schedule(recipe, epochs, lr, setup.batches, getattr(explainer.adapter, "family", None))
    epochs, lr = schedule.epochs, schedule.lr
    if dist_.is_main_process(ctx):
        logger.info("T-TAME training: %s", schedule.describe())
    settings = {"epochs": epochs, "steps_per_epoch": setup.batches, "lr": float(lr),
                "momentum": float(momentum), "weight_decay": float(weight_decay), "nesterov": bool(nesterov)}
    with eval_mode(explainer.model), dist_.data_parallel_head(explainer.head, ctx) as head:
        step = TrainStep(explainer, epochs * setup.batches, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, nesterov=nesterov, amp=amp, head=head, ctx=ctx)
        trainer = Trainer(explainer, step, setup.loader, epochs=epochs, batches=setup.batches,
                          val_loader=setup.val_loader, val_batches=setup.val_batches, image_key=image_key,
                          progress=progress, max_skipped_steps=max_skipped_steps, checkpoint=path,
                          checkpoint_every=checkpoint_every,
                          settings={**settings, "amp_dtype": str(step.precision.dtype)}, ctx=ctx)
        if setup.checkpoint is not None:
            trainer.resume(setup.checkpoint)
        history = trainer.fit()
    explainer.head.eval()
    history.schedule = schedule.as_dict()
    if history.dead_classes():
        history.blank_class = blank_class(explainer)
    explainer.history = history
    if dist_.is_main_process(ctx):
        for advice in history.warnings():
            logger.warning("%s", advice)
    return history
