"""One training step of the T-TAME head: the paper's optimiser, schedule and mixed precision.

Also the error raised when steps keep failing (:class:`TrainingDivergedError`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ttame_attr._core.loss import LossTerms, MultiLabelTTAMELoss, TTAMELoss
from ttame_attr._core.masking import Masker
from ttame_attr._core.multilabel import multilabel_forward
from ttame_attr._core.outputs import extract_logits
from ttame_attr._core.parts import ExplainerParts
from ttame_attr._core.storage import all_finite
from ttame_attr.training import distributed as dist_

__all__ = ["MixedPrecision", "StepResult", "TrainStep", "TrainingDivergedError", "param_groups"]


class TrainingDivergedError(FloatingPointError):
    """Training produced non-finite values it cannot recover from.

    Raised by :func:`~ttame_attr.fit` after more than ``max_skipped_steps`` steps with a non-finite
    loss or gradient, or when the head's weights became non-finite (the checkpoint is then not
    written, so the file on disk keeps the last good weights).
    """


def param_groups(head: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: weight decay on weights, none on biases (the paper's recipe).

    Args:
        head: the module whose trainable parameters are grouped.
        weight_decay: the decay of the weights.

    Returns:
        Two groups: the weights with ``weight_decay``, then the biases with 0.

    Example:
        >>> groups = param_groups(torch.nn.Linear(3, 2), weight_decay=5e-4)
        >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
        [(1, 0.0005), (1, 0.0)]
    """
    decay, no_decay = [], []
    for name, param in head.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith("bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass(frozen=True)
class StepResult:
    """What one :class:`TrainStep` did.

    Attributes:
        terms: the loss and its terms on the batch (:class:`~ttame_attr.LossTerms`).
        fidelity: share of masked images still classified as the clean image (0-d tensor);
            multi-label: whose label stays positive.
        batch_size: images in the batch.
        stepped: whether the optimiser stepped.
        skip_reason: why it did not: ``"loss"`` or ``"gradient"`` (not finite), ``"overflow"``
            (float16 overflow, left to the gradient scaler), else ``None``.
        labels: ``(B,)`` the model's predictions on the clean images (the classes trained); for a
            multi-label explainer ``(P,)``, the label of each masked ``(image, label)`` pair.
        peaks: ``(B,)`` (or ``(P,)``) the largest value of each masked image's own-label mask
            (in ``[0, 1]``).
        floors: ``(B,)`` (or ``(P,)``) the smallest value of each masked image's own-label mask.
    """

    terms: LossTerms
    fidelity: Tensor
    batch_size: int
    stepped: bool
    skip_reason: str | None = None
    labels: Tensor | None = None
    peaks: Tensor | None = None
    floors: Tensor | None = None


class MixedPrecision:
    """Autocast and the gradient scaler: backward, unscale, finite check and optimiser step.

    Args:
        device: the head's device.
        amp: as :func:`~ttame_attr.fit`'s.
    """

    def __init__(self, device: torch.device, amp: bool | None) -> None:
        self.device = device
        self.dtype: torch.dtype | None = None
        use = device.type == "cuda" if amp is None else bool(amp)
        if use:
            half = device.type == "cuda" and not torch.cuda.is_bf16_supported()
            self.dtype = torch.float16 if half else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager[Any]:
        """The autocast context of the forward passes (a no-op without mixed precision)."""
        return nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)

    def backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer,
                          params: list[Tensor]) -> str | None:
        """Back-propagate ``loss`` to ``params`` and step; ``None``, or why it did not step.

        Gradients that are not finite skip the step (``"gradient"``); with float16 the
        scaler's own overflow handling skips it and lowers the scale (``"overflow"``).
        """
        scaler = self.scaler
        scaler.scale(loss).backward(inputs=params)
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        # identical on all ranks after DDP's all-reduce of the gradients
        if all_finite([p.grad for p in params if p.grad is not None]):
            scaler.step(optimizer)
            scaler.update()
            return None
        if scaler.is_enabled():
            scaler.step(optimizer)  # sees the inf recorded by unscale_, skips
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return "overflow" if scaler.is_enabled() else "gradient"


class TrainStep:
    """One training step of a T-TAME head, with the paper's recipe.

    For a batch ``x``: the frozen model predicts labels ``y`` on the clean images; the head
    makes the ``(B, B, h, w)`` maps of the batch's labels for every image; each image is
    multiplied by its own label's map (in ``explainer.mask_space``) and classified again; the
    loss (:class:`~ttame_attr.TTAMELoss`) is back-propagated to the head only and SGD (Nesterov,
    weight decay on weights only) steps, with OneCycleLR to ``lr``. A multi-label explainer
    (``explainer.multi_label``) masks one image per ``(image, label)`` pair of the images'
    positive labels instead (at most ``explainer.max_masked``; see :doc:`/multilabel`). A step whose loss or
    gradients are not finite is skipped: the head's weights, its BatchNorm statistics and the
    optimiser are left as they were.

    Args:
        explainer: the :class:`~ttame_attr.TTAME` whose head is trained.
        total_steps: the length of the OneCycleLR schedule.
        lr, momentum, weight_decay, nesterov, amp: as :func:`~ttame_attr.fit`'s.
        head: the module that computes the maps: the explainer's head (default) or its
            DistributedDataParallel wrapper.
        ctx: the distributed context (then each step is the step of the global batch).

    Example:
        >>> import torch, torchvision
        >>> from ttame_attr import TTAME, TrainStep
        >>> explainer = TTAME(torchvision.models.resnet18(num_classes=4), input_size=(3, 32, 32))
        >>> step = TrainStep(explainer, total_steps=10)
        >>> step(torch.rand(2, 3, 32, 32)).stepped
        True
    """

    def __init__(self, explainer: ExplainerParts, total_steps: int, *, lr: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True,
                 amp: bool | None = None, head: nn.Module | None = None,
                 ctx: dist_.DistributedContext | None = None) -> None:
        self.explainer = explainer
        self.head = head if head is not None else explainer.head
        self.ctx = ctx
        self.total_steps = max(total_steps, 1)
        self.optimizer = torch.optim.SGD(param_groups(explainer.head, weight_decay), lr=lr, momentum=momentum,
                                         nesterov=nesterov)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=lr,
                                                             total_steps=self.total_steps)
        self.precision = MixedPrecision(explainer.device, amp)
        self.masker = Masker(explainer.mask_space, explainer.normalization)
        self.step_count = 0

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.optimizer.param_groups[0]["lr"]

    def loss(self, x: Tensor) -> tuple[LossTerms, Tensor]:
        """The loss terms and the fidelity on images ``x`` (gradients flow to the head)."""
        terms, fidelity, _, _ = self._forward(x)
        return terms, fidelity

    def _masker(self) -> Masker:
        """The masker of the explainer's current ``mask_space`` and ``normalization``."""
        space, norm = self.explainer.mask_space, self.explainer.normalization
        if (self.masker.space, self.masker.normalization) != (space, norm):
            self.masker = Masker(space, norm)
        return self.masker

    def _forward(self, x: Tensor) -> tuple[LossTerms, Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """The loss terms, the fidelity, the loss to back-propagate (under DDP weighted by this
        rank's share of the global batch), and the labels with the peak and floor of each masked
        image's own-label mask."""
        explainer = self.explainer
        with torch.no_grad(), self.precision.autocast():
            features, logits = explainer.extractor(x, need_logits=True)
            assert logits is not None
            labels = logits.argmax(dim=1)
        features = [f.detach() for f in features]
        if getattr(explainer, "multi_label", False):
            return self._multilabel_forward(x, features, logits)
        # Under DDP: the labels of the global batch, so the maps (B, G, h, w) are this rank's
        # rows of the global batch's (G, G, h, w); image i is column offset + i.
        all_labels, offset, weight = dist_.gather_labels(labels, self.ctx)
        with self.precision.autocast():
            masks = torch.sigmoid(self.head(features, all_labels))  # (B, G, h, w)
            rows = torch.arange(x.shape[0], device=x.device)
            own = masks[rows, rows + offset][:, None]  # (B, 1, h, w): image i's own label's map
            logits_masked = extract_logits(explainer.model(self._masker()(x, own)))
        terms = explainer.loss_fn(logits_masked, labels, masks)
        fidelity = (logits_masked.argmax(dim=1) == labels).float().mean()
        flat = own.detach().flatten(1)
        return terms, fidelity, terms.total * weight, (labels, flat.amax(dim=1).float(),
                                                      flat.amin(dim=1).float())

    def _multilabel_forward(self, x: Tensor, features: list[Tensor], logits: Tensor
                            ) -> tuple[LossTerms, Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """:meth:`_forward` of a multi-label explainer: one entry per masked ``(image, label)`` pair.

        Under DDP each rank masks the pairs of its own images, with the maps of the pair labels
        of the whole global batch (gathered: the ranks' numbers of pairs differ), as one process
        would; the loss weights are :meth:`_shares`'.
        """
        explainer = self.explainer
        pair_weight = 1.0

        def gather(labels: Tensor) -> tuple[Tensor, int]:
            nonlocal pair_weight
            everything, offset, pair_weight = dist_.gather_labels(labels, self.ctx)
            return everything, offset

        everyone, _, image_weight = dist_.gather_labels(torch.arange(x.shape[0], device=x.device), self.ctx)
        scaled = self.ctx is not None and isinstance(explainer.loss_fn, MultiLabelTTAMELoss)
        images = everyone.numel() if scaled else None  # the variation's B / M is the global batch's
        out = multilabel_forward(explainer, x, features, logits, head=self.head,
                                 threshold=explainer.threshold, max_pairs=explainer.max_masked,
                                 autocast=self.precision.autocast(), mask=self._masker(), gather=gather,
                                 images=images)
        flat = out.own.flatten(1)
        return out.terms, out.fidelity, self._shares(out.terms, pair_weight, image_weight), (
            out.pairs.label, flat.amax(dim=1).float(), flat.amin(dim=1).float())

    def _shares(self, terms: LossTerms, pair_weight: float, image_weight: float) -> Tensor:
        """A multi-label rank's loss to back-propagate: DDP averages the ranks' gradients, so each
        term is weighted by this rank's share of what the global batch's term averages over.

        The cross-entropy is a mean over the rank's ``P_r`` pairs (weight ``W * P_r / P``), the
        area and variation terms over its ``B_r`` images' maps (weight ``W * B_r / B``). A loss of
        the user's own (not :class:`~ttame_attr.TTAMELoss` or
        :class:`~ttame_attr.MultiLabelTTAMELoss`, whose total is ``ce_coeff * ce`` plus those
        terms) is weighted by the pairs' share as a whole.
        """
        loss_fn = self.explainer.loss_fn
        if pair_weight == image_weight or type(loss_fn) not in (TTAMELoss, MultiLabelTTAMELoss):
            return terms.total * pair_weight
        ce = terms.ce * loss_fn.ce_coeff
        return ce * pair_weight + (terms.total - ce) * image_weight

    def __call__(self, x: Tensor) -> StepResult:
        """One optimiser step on images ``x`` (``(B, C, H, W)`` on the head's device)."""
        self.head.train()
        head = self.explainer.head
        buffers = [b.detach().clone() for b in head.buffers()]
        terms, fidelity, weighted, (labels, peaks, floors) = self._forward(x)
        self.optimizer.zero_grad(set_to_none=True)
        if not dist_.all_ranks_finite(terms.total, self.ctx):  # all ranks skip together
            reason: str | None = "loss"
        else:
            params = [p for p in head.parameters() if p.requires_grad]
            reason = self.precision.backward_and_step(weighted, self.optimizer, params)
        if reason is not None:  # undo what the forward pass did to BatchNorm running statistics
            with torch.no_grad():
                for buffer, value in zip(head.buffers(), buffers):
                    buffer.copy_(value)
            return StepResult(terms, fidelity, x.shape[0], False, reason, labels, peaks, floors)
        if self.step_count < self.total_steps:
            self.scheduler.step()
        self.step_count += 1
        return StepResult(terms, fidelity, x.shape[0], True, None, labels, peaks, floors)

    def state_dict(self) -> dict[str, Any]:
        """The head's weights, the optimiser, schedule and scaler, and the step counter."""
        return {"head": {k: v.detach().cpu() for k, v in self.explainer.head.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.precision.scaler.state_dict(), "step": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (``ValueError`` if it does not fit)."""
        try:
            self.explainer.load_state_dict(state["head"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.precision.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise ValueError(f"the saved state does not fit this run's head or optimiser "
                             f"({type(err).__name__}: {err}).") from err
        self.step_count = int(state["step"])
