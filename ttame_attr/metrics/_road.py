"""ROAD: RemOve And Debias (Rong et al., ICML 2022), MoRF and LeRF with noisy linear imputation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from ttame_attr.metrics._common import (
    MapsOrExplain,
    TargetArg,
    check_fractions,
    check_multi_label,
    check_positive_int,
    chunks,
    in_eval_mode,
    pixel_ranks,
    prepare,
    probabilities,
)
from ttame_attr.metrics._imputation import check_solver, noisy_linear_impute
from ttame_attr.metrics._stateful import Accumulator, PerSampleResult

__all__ = ["ROAD", "ROADResult", "road"]

DEFAULT_REMOVED: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class ROADResult(PerSampleResult):
    """ROAD scores for Most Relevant First (MoRF) and Least Relevant First (LeRF) removal.

    Attributes:
        fractions: removed fractions of pixels ``(P,)``, e.g. ``(0.1, ..., 0.9)``.
        morf_accuracy: ``(P,)`` MoRF curve: share of images whose top-1 class after removal is
            still the target (lower is better).
        lerf_accuracy: ``(P,)`` LeRF curve (higher is better).
        morf_prob: ``(P,)`` mean softmax probability of the target class, MoRF.
        lerf_prob: ``(P,)`` the same for LeRF.
        morf_average: mean of ``morf_accuracy`` over the fractions.
        lerf_average: mean of ``lerf_accuracy`` over the fractions.
        target: ``(N,)`` class evaluated per image.
        morf_probs, lerf_probs: ``(N, P)`` per-sample probabilities of the target class.
        morf_top1, lerf_top1: ``(N, P)`` per-sample top-1 classes after removal.
    """

    fractions: tuple[float, ...]
    morf_accuracy: Tensor
    lerf_accuracy: Tensor
    morf_prob: Tensor
    lerf_prob: Tensor
    morf_average: float
    lerf_average: float
    target: Tensor
    morf_probs: Tensor = field(repr=False)
    lerf_probs: Tensor = field(repr=False)
    morf_top1: Tensor = field(repr=False)
    lerf_top1: Tensor = field(repr=False)

    SETTINGS: ClassVar[tuple[str, ...]] = ("fractions",)
    SAMPLES: ClassVar[tuple[str, ...]] = ("target", "morf_probs", "morf_top1", "lerf_probs", "lerf_top1")

    @property
    def combined(self) -> float:
        """``(lerf_average - morf_average) / 2`` (higher is better), as in pytorch-grad-cam."""
        return (self.lerf_average - self.morf_average) / 2.0

    @classmethod
    def from_per_sample(cls, fractions: Sequence[float], target: Tensor, morf_probs: Tensor,
                        morf_top1: Tensor, lerf_probs: Tensor, lerf_top1: Tensor) -> ROADResult:
        """Aggregate per-sample ``(N, P)`` probabilities and top-1 classes."""
        morf_acc = (morf_top1 == target.view(-1, 1)).float().mean(dim=0)
        lerf_acc = (lerf_top1 == target.view(-1, 1)).float().mean(dim=0)
        return cls(
            fractions=tuple(fractions), morf_accuracy=morf_acc, lerf_accuracy=lerf_acc,
            morf_prob=morf_probs.mean(dim=0), lerf_prob=lerf_probs.mean(dim=0),
            morf_average=float(morf_acc.mean()), lerf_average=float(lerf_acc.mean()), target=target,
            morf_probs=morf_probs, lerf_probs=lerf_probs, morf_top1=morf_top1, lerf_top1=lerf_top1,
        )


@torch.no_grad()
def _road_probs(model: nn.Module, inputs: Tensor, maps: Tensor, target: Tensor, fractions: Sequence[float],
                noise_std: float, generator: torch.Generator | None, max_batch: int | None, tol: float,
                max_iter: int, solver: str, multi_label: bool = False) -> tuple[Tensor, Tensor]:
    """Probabilities and top-1 classes ``(N, 2, P)`` (order 0 = MoRF, 1 = LeRF)."""
    n, _, h, w = inputs.shape
    p = len(fractions)
    jobs = 2 * p
    ranks = torch.stack([pixel_ranks(maps, True), pixel_ranks(maps, False)], dim=1)  # (N, 2, HW)
    ks = torch.tensor([round(f * (h * w)) for f in fractions], device=inputs.device)
    probs = torch.empty(n * jobs, device=inputs.device)
    top1 = torch.empty(n * jobs, dtype=torch.long, device=inputs.device)
    for part in chunks(n * jobs, max_batch if max_batch is not None else n):
        flat = torch.arange(part.start, part.stop, device=inputs.device)
        image, job = flat // jobs, flat % jobs
        order, level = job // p, job % p
        removed = ranks[image, order] < ks[level].view(-1, 1)
        imputed = noisy_linear_impute(inputs[image], removed.view(-1, h, w), noise_std, generator, tol,
                                      max_iter, solver)
        probs[part], top1[part] = probabilities(model, imputed, target[image], multi_label=multi_label)
    return probs.view(n, 2, p), top1.view(n, 2, p)


@in_eval_mode("road")
def road(
    model: nn.Module, inputs: Tensor, maps: MapsOrExplain, target: TargetArg = None,
    fractions: Sequence[float] = DEFAULT_REMOVED, noise_std: float = 0.01,
    generator: torch.Generator | None = None, max_batch: int | None = None, tol: float = 1e-5,
    max_iter: int = 2000, solver: str = "auto", *, multi_label: bool = False,
) -> ROADResult:
    """ROAD MoRF / LeRF scores with the noisy linear imputer (Rong et al., ICML 2022).

    For every removed fraction ``f`` the ``round(f * H * W)`` most (MoRF) or least (LeRF)
    relevant pixels of the upsampled map are removed (ties: earlier row-major pixel first),
    imputed by :func:`noisy_linear_impute` (each removed pixel the weighted mean of its 8
    neighbours, plus Gaussian noise of std ``noise_std``, in the space of ``inputs``), and the
    masked image is classified. The score at ``f`` is the share of images whose top-1 class is
    still the target; with the default target (the model's prediction on the clean image) this
    is the paper's "prediction stays the same". Pass the true labels as ``target`` for ROAD's
    accuracy against labels. Mean probabilities of the target are reported too.

    Imputation and forward passes run batched, on the model's device; model mode, gradients
    and ``maps`` as in :func:`average_drop_increase`.

    Args:
        model: the classifier.
        inputs: images ``(N, C, H, W)``; not modified.
        maps: precomputed maps or an explanation method, as in :func:`average_drop_increase`.
        target: ``None`` (predicted class), an int, or a LongTensor ``(N,)``.
        fractions: removed fractions of pixels, each in ``(0, 1]``.
        noise_std: std of the imputation noise (ROAD: 0.01); 0 disables it.
        generator: ``torch.Generator`` on the device, for reproducible noise.
        max_batch: most images per imputation and forward pass (default ``N``); the
            ``N * 2 * P`` perturbed images are processed in chunks of this size.
        tol: relative residual tolerance of the conjugate gradient solver.
        max_iter: iteration cap of the conjugate gradient solver.
        solver: imputation solver, ``"auto"``, ``"direct"`` or ``"cg"`` (see
            :func:`noisy_linear_impute`): ``"auto"`` solves CPU images exactly with scipy when it
            is installed and runs the batched conjugate gradient on the device otherwise.
        multi_label: ``True`` for a multi-label or single-logit model: an image counts while
            the target label stays positive (sigmoid probability above 0.5) rather than while it
            stays the top-1 class, and the probabilities are sigmoids; ``morf_top1`` /
            ``lerf_top1`` then hold the target where it stays positive and ``-1`` elsewhere.

    Returns:
        A :class:`ROADResult` with MoRF/LeRF curves ``(P,)``, their averages and per-sample
        values.

    Raises:
        TypeError: non-tensor inputs or maps, non-integer target.
        ValueError: wrong shapes, mismatched batch sizes, empty batch, fractions outside
            ``(0, 1]``, negative ``noise_std``, unknown ``solver``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> res = road(model, torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), fractions=(0.5,))
        >>> res.morf_accuracy.shape
        torch.Size([1])
    """
    fr = check_fractions(fractions)
    max_batch = check_positive_int(max_batch, "max_batch")
    if not isinstance(noise_std, (int, float)) or isinstance(noise_std, bool) or noise_std < 0:
        raise ValueError(f"noise_std: expected a number >= 0, got {noise_std!r}. ROAD uses 0.01.")
    check_solver(solver)
    prep = prepare(model, inputs, maps, target, "road", multi_label=multi_label)
    probs, top1 = _road_probs(model, prep.inputs, prep.maps, prep.target, fr, float(noise_std), generator,
                              max_batch, tol, max_iter, solver, multi_label)
    return ROADResult.from_per_sample(fr, prep.target, probs[:, 0], top1[:, 0], probs[:, 1], top1[:, 1])


class ROAD(Accumulator):
    """Stateful ROAD (MoRF and LeRF) accumulated over batches; see :func:`road`.

    Args:
        model, fractions, noise_std, generator, max_batch, tol, max_iter, solver, multi_label: as in
            :func:`road`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> metric = ROAD(model, fractions=(0.2, 0.8))
        >>> _ = metric.update(torch.rand(3, 3, 8, 8), torch.rand(3, 1, 8, 8))
        >>> metric.compute().lerf_probs.shape
        torch.Size([3, 2])
    """

    def __init__(
        self, model: nn.Module, fractions: Sequence[float] = DEFAULT_REMOVED, noise_std: float = 0.01,
        generator: torch.Generator | None = None, max_batch: int | None = None, tol: float = 1e-5,
        max_iter: int = 2000, solver: str = "auto", *, multi_label: bool = False,
    ) -> None:
        super().__init__(
            road, model, fractions=check_fractions(fractions), noise_std=noise_std, generator=generator,
            max_batch=check_positive_int(max_batch, "max_batch"), tol=tol, max_iter=max_iter,
            solver=check_solver(solver), multi_label=check_multi_label(multi_label),
        )
