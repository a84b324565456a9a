"""Deletion and insertion curves and their AUC (Petsiuk et al., RISE, BMVC 2018)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr._core.images import check_images
from ttame_attr.metrics._common import (
    MapsOrExplain,
    TargetArg,
    check_multi_label,
    check_positive_int,
    chunks,
    in_eval_mode,
    make_baseline,
    pixel_ranks,
    prepare,
    probabilities,
)
from ttame_attr.metrics._stateful import Accumulator, PerSampleResult

__all__ = ["CurveResult", "Deletion", "Insertion", "deletion", "gaussian_blur", "insertion"]

BaselineArg = float | Tensor | Literal["blur"]


@dataclass(frozen=True)
class CurveResult(PerSampleResult):
    """A deletion or insertion curve per image and its area under the curve.

    Attributes:
        kind: ``"deletion"`` (lower AUC is better) or ``"insertion"`` (higher is better).
        fractions: ``(S + 1,)`` fraction of pixels deleted / inserted at each step, from 0 to 1.
        curves: ``(N, S + 1)`` softmax probability of the target class at each step (sigmoid
            with ``multi_label``).
        aucs: ``(N,)`` trapezoidal area under each curve over ``fractions`` (in ``[0, 1]``).
        auc: mean of ``aucs``.
        target: ``(N,)`` class evaluated per image.
    """

    kind: str
    fractions: Tensor
    curves: Tensor = field(repr=False)
    aucs: Tensor = field(repr=False)
    auc: float
    target: Tensor = field(repr=False)

    SETTINGS: ClassVar[tuple[str, ...]] = ("kind", "fractions")
    SAMPLES: ClassVar[tuple[str, ...]] = ("curves", "target")

    @property
    def mean_curve(self) -> Tensor:
        """``(S + 1,)`` curve averaged over the images."""
        return self.curves.mean(dim=0)

    @classmethod
    def from_per_sample(cls, kind: str, fractions: Tensor, curves: Tensor, target: Tensor) -> CurveResult:
        """Build the result from per-sample curves ``(N, S + 1)``."""
        aucs = torch.trapezoid(curves, x=fractions.to(curves), dim=1)
        return cls(kind=kind, fractions=fractions, curves=curves, aucs=aucs, auc=float(aucs.mean()),
                   target=target)


def gaussian_blur(images: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Blur every channel with a normalised Gaussian kernel, zero padding (as RISE does).

    Args:
        images: ``(N, C, H, W)``.
        kernel_size: odd kernel width (RISE: 11).
        sigma: Gaussian standard deviation in pixels (RISE: 5).

    Returns:
        A new ``(N, C, H, W)`` tensor.

    Raises:
        TypeError: if ``images`` is not a floating point tensor.
        ValueError: if ``images`` is not 4-D, or the kernel arguments are invalid.
    """
    odd = isinstance(kernel_size, int) and not isinstance(kernel_size, bool) and kernel_size % 2 == 1
    if not odd or kernel_size < 1:
        raise ValueError(f"kernel_size: expected an odd positive integer, got {kernel_size!r}.")
    if not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ValueError(f"sigma: expected a positive number, got {sigma!r}.")
    check_images(images, "images")
    c = images.shape[1]
    ax = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-(ax**2) / (2.0 * sigma**2))
    kernel = torch.outer(g, g)
    kernel = (kernel / kernel.sum()).to(device=images.device, dtype=images.dtype)
    weight = kernel.expand(c, 1, kernel_size, kernel_size)
    return F.conv2d(images, weight, padding=kernel_size // 2, groups=c)


def _resolve_baseline(baseline: BaselineArg, inputs: Tensor, blur: tuple[int, float]) -> Tensor:
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline: expected a number, a tensor or the string 'blur', got {baseline!r}.")
        return gaussian_blur(inputs, *blur)
    return make_baseline(baseline, inputs).expand_as(inputs)


@torch.no_grad()
def _curves(model: nn.Module, inputs: Tensor, maps: Tensor, target: Tensor, steps: int, start: Tensor,
            end: Tensor, max_batch: int | None, multi_label: bool = False) -> tuple[Tensor, Tensor]:
    """Probabilities ``(N, S + 1)`` while pixels switch from ``start`` to ``end`` by rank."""
    n, _, h, w = inputs.shape
    pixels = h * w
    points = steps + 1
    ks = torch.tensor([round(i / steps * pixels) for i in range(points)], device=inputs.device)
    ranks = pixel_ranks(maps, descending=True)
    probs = torch.empty(n * points, device=inputs.device)
    for part in chunks(n * points, max_batch if max_batch is not None else n):
        flat = torch.arange(part.start, part.stop, device=inputs.device)
        image, step = flat // points, flat % points
        switched = (ranks[image] < ks[step].view(-1, 1)).view(-1, 1, h, w)
        perturbed = torch.where(switched, end[image], start[image])
        probs[part] = probabilities(model, perturbed, target[image], multi_label=multi_label)[0]
    return probs.view(n, points), ks.double() / pixels


def _run(
    kind: str, model: nn.Module, inputs: Tensor, maps: MapsOrExplain, target: TargetArg, steps: int | None,
    baseline: BaselineArg, blur: tuple[int, float], max_batch: int | None, multi_label: bool = False,
) -> CurveResult:
    max_batch = check_positive_int(max_batch, "max_batch")
    prep = prepare(model, inputs, maps, target, kind, multi_label=multi_label)
    x = prep.inputs
    n_steps = x.shape[-2] if steps is None else int(check_positive_int(steps, "steps", allow_none=False))
    base = _resolve_baseline(baseline, x, blur)
    start, end = (x, base) if kind == "deletion" else (base, x)
    curves, fractions = _curves(model, x, prep.maps, prep.target, n_steps, start, end, max_batch, multi_label)
    return CurveResult.from_per_sample(kind, fractions.float(), curves, prep.target)


@in_eval_mode("deletion")
def deletion(
    model: nn.Module, inputs: Tensor, maps: MapsOrExplain, target: TargetArg = None, steps: int | None = None,
    baseline: BaselineArg = 0.0, max_batch: int | None = None, blur_kernel: int = 11, blur_sigma: float = 5.0,
    *, multi_label: bool = False,
) -> CurveResult:
    """Deletion curve and AUC: most relevant pixels removed first (lower is better).

    Removed pixels are set to ``baseline`` (RISE: 0, i.e. black in the space of ``inputs``).
    """
    return _run("deletion", model, inputs, maps, target, steps, baseline, (blur_kernel, blur_sigma),
                max_batch, multi_label)


@in_eval_mode("insertion")
def insertion(
    model: nn.Module, inputs: Tensor, maps: MapsOrExplain, target: TargetArg = None, steps: int | None = None,
    baseline: BaselineArg = "blur", max_batch: int | None = None, blur_kernel: int = 11,
    blur_sigma: float = 5.0, *, multi_label: bool = False,
) -> CurveResult:
    """Insertion curve and AUC: most relevant pixels inserted first (higher is better).

    The curve starts from ``baseline`` (RISE: ``"blur"``, a Gaussian blur of the image with
    kernel 11 and sigma 5, zero padding) and pixels of the image are inserted into it.
    """
    return _run("insertion", model, inputs, maps, target, steps, baseline, (blur_kernel, blur_sigma),
                max_batch, multi_label)


_SHARED_DOC = """
    Pixels are ranked by the map upsampled (bilinear) to the input size (ties: earlier
    row-major pixel first). At step ``i`` of ``steps`` the ``round(i / steps * H * W)``
    top-ranked pixels are switched; the softmax probability of the target class is recorded
    at the ``steps + 1`` points, and the area under the curve is the trapezoid rule over the
    switched fraction (0 to 1), so it lies in ``[0, 1]``. All ``N * (steps + 1)`` perturbed
    images are classified in chunks of ``max_batch``; model mode, gradients and ``maps`` as in
    :func:`average_drop_increase`.

    Args:
        model: the classifier.
        inputs: images ``(N, C, H, W)``; not modified.
        maps: precomputed maps or an explanation method, as in :func:`average_drop_increase`.
        target: ``None`` (the model's prediction on the clean image), an int, or a LongTensor
            ``(N,)``.
        steps: number of steps; default ``H``, i.e. one image row's worth of pixels per step
            (RISE: 224 steps of 224 pixels on 224x224 images).
        baseline: value of removed pixels / starting image: a number, a tensor broadcastable
            to ``(N, C, H, W)``, or ``"blur"``.
        max_batch: most perturbed images per forward pass (default ``N``).
        blur_kernel: Gaussian kernel size for ``baseline="blur"``.
        blur_sigma: Gaussian sigma for ``baseline="blur"``.
        multi_label: ``True`` for a multi-label or single-logit model: the curves are the
            target label's sigmoid probability instead of its softmax probability.

    Returns:
        A :class:`CurveResult` with per-sample curves ``(N, steps + 1)``, AUCs ``(N,)`` and
        their mean ``auc``.

    Raises:
        TypeError: non-tensor inputs or maps, non-integer target.
        ValueError: wrong shapes, mismatched batch sizes, empty batch, non-positive ``steps``,
            an unknown baseline string.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> res = {name}(model, torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8), steps=4)
        >>> res.curves.shape
        torch.Size([2, 5])
"""

for _fn in (deletion, insertion):
    _fn.__doc__ = (_fn.__doc__ or "") + _SHARED_DOC.replace("{name}", _fn.__name__)


class _CurveMetric(Accumulator):
    _curve: Callable[..., CurveResult]
    _default_baseline: BaselineArg

    def __init__(self, model: nn.Module, steps: int | None = None, baseline: BaselineArg | None = None,
                 max_batch: int | None = None, blur_kernel: int = 11, blur_sigma: float = 5.0, *,
                 multi_label: bool = False) -> None:
        super().__init__(
            self._curve, model, steps=check_positive_int(steps, "steps"),
            baseline=self._default_baseline if baseline is None else baseline,
            max_batch=check_positive_int(max_batch, "max_batch"), blur_kernel=blur_kernel,
            blur_sigma=blur_sigma, multi_label=check_multi_label(multi_label),
        )


class Deletion(_CurveMetric):
    """Stateful deletion AUC accumulated over batches; see :func:`deletion`.

    Args:
        model, steps, max_batch, blur_kernel, blur_sigma, multi_label: as in :func:`deletion`.
        baseline: as in :func:`deletion`; ``None`` is its default, 0.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> metric = Deletion(model, steps=4)
        >>> _ = metric.update(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))
        >>> metric.compute().aucs.shape
        torch.Size([2])
    """

    _curve = staticmethod(deletion)
    _default_baseline = 0.0


class Insertion(_CurveMetric):
    """Stateful insertion AUC accumulated over batches; see :func:`insertion`.

    Args:
        model, steps, max_batch, blur_kernel, blur_sigma, multi_label: as in :func:`insertion`.
        baseline: as in :func:`insertion`; ``None`` is its default, ``"blur"``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> metric = Insertion(model, steps=4)
        >>> _ = metric.update(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))
        >>> round(metric.compute().fractions[-1].item(), 3)
        1.0
    """

    _curve = staticmethod(insertion)
    _default_baseline = "blur"
