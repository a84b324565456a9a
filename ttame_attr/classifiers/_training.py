"""Training the small classifiers: AdamW, a one-cycle schedule, flips and 90-degree turns.

Its own small loop: one pass over the loader per epoch, a step per batch, then the epoch's means
and the validation accuracy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr._core.progress import progress_bar
from ttame_attr.data import normalize
from ttame_attr.data._synthetic import check_int

__all__ = ["ClassifierHistory", "augment", "evaluate_accuracy", "train_classifier"]

logger = logging.getLogger(__name__)


@dataclass
class ClassifierHistory:
    """What :func:`train_classifier` measured, one entry per epoch.

    Attributes:
        train_loss: mean training loss of each epoch.
        train_accuracy: training accuracy of each epoch (on augmented images).
        val_accuracy: accuracy on the validation loader after each epoch.
        seconds: wall-clock seconds of the whole run.
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Return the history as a plain ``dict`` (e.g. for JSON)."""
        return asdict(self)


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random horizontal flips and 90-degree rotations of a ``(B, 3, H, W)`` batch.

    All class shapes have a mirror symmetry and appear at every rotation, so labels stay valid.
    """
    batch = images.shape[0]
    flip = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    turns = torch.randint(0, 4, (batch,), generator=generator).to(images.device)
    out = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    rotated = torch.stack([torch.rot90(out, k, dims=(-2, -1)) for k in range(4)])
    return rotated[turns, torch.arange(batch, device=images.device)]


def _unpack(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` of a batch, on ``device``."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("loader batches: expected (images, labels) or (images, labels, masks), got "
                         f"{type(batch).__name__}.")
    return batch[0].to(device), batch[1].to(device)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu",
                      normalize_inputs: bool = True) -> float:
    """Top-1 accuracy of ``model`` over a loader of ``(images, labels[, masks])`` batches.

    The model's training flag is restored afterwards.

    Args:
        model: classifier returning logits ``(N, K)``.
        loader: batches with images ``(N, 3, H, W)`` in ``[0, 1]``.
        device: where to run the model.
        normalize_inputs: normalise images with :data:`~ttame_attr.data.MEAN` /
            :data:`~ttame_attr.data.STD` first.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for batch in loader:
            images, labels = _unpack(batch, device)
            if normalize_inputs:
                images = normalize(images)
            correct += int((model(images).argmax(1) == labels).sum())
            total += labels.numel()
    finally:
        model.train(was_training)
    return correct / max(total, 1)


@dataclass(frozen=True)
class _Result:
    """What one step did, for the epoch's means."""

    batch_size: int
    loss: float
    correct: int


class _ClassifierStep:
    """One AdamW step of the classifier on an ``(images, labels[, masks])`` batch."""

    def __init__(self, model: nn.Module, epochs: int, steps_per_epoch: int, lr: float,
                 weight_decay: float, label_smoothing: float, augment_images: bool,
                 normalize_inputs: bool, device: torch.device, seed: int) -> None:
        self.model, self.device, self.label_smoothing = model, device, label_smoothing
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=lr, pct_start=0.15,
                                                             total_steps=epochs * steps_per_epoch)
        self.augment, self.normalize = augment_images, normalize_inputs
        self.generator = torch.Generator().manual_seed(seed)
        self.step_count = 0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def __call__(self, batch: Any) -> _Result:
        self.model.train()
        images, labels = _unpack(batch, self.device)
        if self.augment:
            images = augment(images, self.generator)
        if self.normalize:
            images = normalize(images)
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        return _Result(labels.numel(), float(loss.detach()), int((logits.argmax(1) == labels).sum()))


def train_classifier(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, epochs: int,
                     lr: float = 2e-3, device: str | torch.device = "cpu", progress: bool = False, *,
                     weight_decay: float = 0.05, label_smoothing: float = 0.1, augment: bool = True,
                     normalize_inputs: bool = True, seed: int = 0) -> ClassifierHistory:
    """Train ``model`` in place with AdamW and a one-cycle schedule.

    Batches are ``(images, labels)`` or ``(images, labels, masks)`` with images in ``[0, 1]``
    (as :func:`~ttame_attr.data.make_loaders` gives).

    Args:
        model: the classifier; trained in place and left in eval mode.
        train_loader: training batches; must have a ``len()``.
        val_loader: validation batches, evaluated after every epoch, or ``None``.
        epochs: number of passes over ``train_loader``, >= 1.
        lr: peak learning rate of the one-cycle schedule.
        device: where to train.
        progress: show a progress bar and log one INFO line per epoch (else DEBUG).
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        augment: randomly flip and rotate each batch by multiples of 90 degrees.
        normalize_inputs: normalise images with :data:`~ttame_attr.data.MEAN` /
            :data:`~ttame_attr.data.STD`.
        seed: seed of the augmentation generator.

    Returns:
        The :class:`ClassifierHistory`.

    Raises:
        ValueError: if ``epochs`` < 1 or ``lr`` <= 0.
    """
    check_int("epochs", epochs, minimum=1)
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr: expected a positive float, got {lr!r}.")
    device = torch.device(device)
    model.to(device)
    steps = len(train_loader)  # type: ignore[arg-type]
    step = _ClassifierStep(model, epochs, steps, lr, weight_decay, label_smoothing, augment, normalize_inputs,
                           device, seed)
    history = ClassifierHistory()
    log = logger.info if progress else logger.debug
    start = time.perf_counter()
    for epoch in range(epochs):
        loss_sum = correct = seen = 0.0
        bar = progress_bar(enabled=progress, total=steps, desc=f"classifier epoch {epoch + 1}/{epochs}")
        for batch in train_loader:
            result = step(batch)
            loss_sum += result.loss * result.batch_size
            correct += result.correct
            seen += result.batch_size
            bar.update(1)
            bar.set_postfix({"loss": f"{result.loss:.3f}"})
        bar.close()
        if seen == 0:
            raise ValueError("train_loader: it yielded no batches in this epoch.")
        history.train_loss.append(loss_sum / seen)
        history.train_accuracy.append(correct / seen)
        if val_loader is not None:
            history.val_accuracy.append(evaluate_accuracy(model, val_loader, device, normalize_inputs))
        log("epoch %d/%d: loss %.4f, train acc %.4f, val acc %s, %.1f s", epoch + 1, epochs,
            history.train_loss[-1], history.train_accuracy[-1],
            f"{history.val_accuracy[-1]:.4f}" if history.val_accuracy else "n/a", time.perf_counter() - start)
    history.seconds = time.perf_counter() - start
    model.eval()
    return history
