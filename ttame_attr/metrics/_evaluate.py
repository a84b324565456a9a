"""Run several metrics over a data loader, computing each explanation once per batch."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ttame_attr._core.images import check_images
from ttame_attr._core.labels import check_threshold, positive_labels
from ttame_attr._core.outputs import forward_logits
from ttame_attr._core.parts import ExplainerParts
from ttame_attr._core.progress import progress_bar
from ttame_attr.metrics._ad_ic import AverageDropIncrease
from ttame_attr.metrics._common import (
    MapsOrExplain,
    check_finite_maps,
    check_multi_label,
    clean_forward,
    get_maps,
    in_eval_mode,
    model_device,
    nonfinite_maps,
)
from ttame_attr.metrics._deletion import Deletion, Insertion
from ttame_attr.metrics._road import ROAD

__all__ = ["METRIC_NAMES", "evaluate"]

logger = logging.getLogger(__name__)

_FACTORIES = {"ad_ic": AverageDropIncrease, "road": ROAD, "deletion": Deletion, "insertion": Insertion}
#: Names accepted by :func:`evaluate` (each built with its defaults).
METRIC_NAMES: tuple[str, ...] = tuple(_FACTORIES)

MetricArg = str | Any


def _build(metrics: Sequence[MetricArg] | Mapping[str, Any], model: nn.Module,
           normalization: Any, multi_label: bool = False) -> dict[str, Any]:
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, (str, bytes)):
        items = [(metrics, metrics)]
    else:
        items = [(m if isinstance(m, str) else type(m).__name__, m) for m in metrics]
    if not items:
        raise ValueError(f"metrics: expected at least one metric, e.g. {list(METRIC_NAMES)}.")
    built: dict[str, Any] = {}
    for name, metric in items:
        if isinstance(metric, str):
            if metric not in _FACTORIES:
                raise ValueError(f"metrics: unknown metric name {metric!r}; valid names are "
                                 f"{list(METRIC_NAMES)}, or pass a metric object with update()/compute().")
            options = {"normalization": normalization} if metric == "ad_ic" else {}
            metric = _FACTORIES[metric](model, multi_label=multi_label, **options)
        elif not (callable(getattr(metric, "update", None)) and callable(getattr(metric, "compute", None))):
            raise TypeError(f"metrics: {name!r} is a {type(metric).__name__}, expected a metric name or an "
                            "object with update(inputs, maps, target) and compute() (e.g. ROAD(model)).")
        if name in built:
            raise ValueError(f"metrics: the name {name!r} appears twice; pass a dict with unique names.")
        built[name] = metric
    return built


def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError("loader: expected batches that are tensors (N, C, H, W) or tuples (inputs, labels, ...), "
                    f"got {type(batch).__name__}. Wrap the loader so it yields one of these.")


def _batch_targets(model: nn.Module, x: Tensor, labels: Any, target: str, multi_label: bool,
                   threshold: float) -> tuple[Tensor, Tensor]:
    """The images and the class evaluated for each; multi-label: one row per (image, label) pair."""
    if target == "label":
        if labels is None:
            raise ValueError("target: 'label' needs batches (inputs, labels, ...); this batch has no "
                             "labels. Use target='predicted' or a loader that yields labels.")
        tgt = torch.as_tensor(labels, device=x.device)
        if multi_label and tgt.dim() == 2:  # multi-hot (N, K): every labelled class of every image
            image, label = (tgt > 0.5 if tgt.is_floating_point() else tgt.bool()).nonzero(as_tuple=True)
            return x[image], label
        return x, tgt.long().view(-1)
    if not multi_label:
        return x, clean_forward(model, x).argmax(dim=1)
    with torch.no_grad():
        pairs = positive_labels(forward_logits(model, x), threshold).pairs()
    return x[pairs.image], pairs.label


@in_eval_mode("evaluate")
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    explain: MapsOrExplain,
    metrics: Sequence[MetricArg] | Mapping[str, Any] = ("ad_ic", "road"),
    target: Literal["predicted", "label"] = "predicted",
    progress: bool = False,
    max_batches: int | None = None,
    normalization: Any = None,
    *,
    multi_label: bool | None = None,
    threshold: float = 0.5,
    nonfinite: Literal["raise", "skip"] = "raise",
) -> dict[str, Any]:
    """Evaluate an explanation method with several metrics over a data loader.

    Each batch is explained once (with the target below) and the same maps are passed to every
    metric. A :class:`~ttame_attr.TTAME` explainer is, besides, passed itself to AD/IC, which
    takes the paper's maps from it (pre-sigmoid, at map size: one more forward pass). The model
    runs in eval mode (a warning if it was in training mode), and every module's mode is
    restored afterwards.

    Args:
        model: the classifier.
        loader: iterable of batches: tensors ``(N, C, H, W)`` or tuples ``(inputs, labels, ...)``.
        explain: ``explain(inputs, target) -> maps`` or an object with
            ``attribute(inputs, target=...)``.
        metrics: names from :data:`METRIC_NAMES` (each built with its defaults), stateful metric
            objects (:class:`AverageDropIncrease`, :class:`ROAD`, :class:`Deletion`,
            :class:`Insertion`, or any object with ``update(inputs, maps, target)`` and
            ``compute()``), or a dict ``{name: metric}``.
        target: ``"predicted"`` (the model's top-1 on the clean image, as in the paper) or
            ``"label"`` (the second element of each batch).
        progress: show a tqdm progress bar.
        max_batches: stop after this many batches (all by default).
        normalization: ``(mean, std)`` (or ``"imagenet"``, an image processor) of the inputs,
            for the ``"ad_ic"`` built by name, which then masks in pixel space as the paper
            does (default: the explainer's, for a TTAME explainer; else the inputs as given).
            Give it to compare methods alike: masked pixels black for every method.
        multi_label: ``True`` for a multi-label or single-logit model: every positive label of
            every image is evaluated (each image repeated once per label: ``target="predicted"``
            takes the labels whose sigmoid exceeds ``threshold``, or the top-1 when none does;
            ``target="label"`` takes a multi-hot ``(N, K)`` second element), and the metrics
            built by name use sigmoid probabilities. Default: the explainer's ``multi_label``
            when it has one, else ``False``.
        threshold: the probability above which a label is positive (multi-label only).
        nonfinite: what to do with an image whose map holds NaN or inf: ``"raise"`` (default) a
            ``ValueError`` naming the images (their positions in the loader), or ``"skip"``:
            leave them out of every metric; the result then also holds ``"nonfinite"``, the
            list of their positions (a logged warning gives the count).

    Returns:
        ``{name: result}``, each metric's ``compute()`` result (and, with ``nonfinite="skip"``,
        ``"nonfinite"``: the loader positions of the images left out).

    Raises:
        ValueError: unknown metric names, an unknown ``target`` mode, ``target="label"``
            without labels in the batches, an empty loader, maps holding NaN or inf (unless
            ``nonfinite="skip"``).
        TypeError: batches or metrics of the wrong type.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).eval()
        >>> loader = [torch.rand(2, 3, 8, 8) for _ in range(2)]
        >>> explain = lambda x, t: x.mean(dim=1, keepdim=True)
        >>> out = evaluate(model, loader, explain, metrics=["ad_ic"])
        >>> out["ad_ic"].masked_probs.shape
        torch.Size([4, 3])
    """
    if target not in ("predicted", "label"):
        raise ValueError(f"target: expected 'predicted' or 'label', got {target!r}.")
    if nonfinite not in ("raise", "skip"):
        raise ValueError(f"nonfinite: expected 'raise' or 'skip', got {nonfinite!r}.")
    explainer = explain if isinstance(explain, ExplainerParts) else None
    if normalization is None and explainer is not None:
        normalization = explainer.normalization
    if multi_label is None:
        multi_label = bool(getattr(explainer, "multi_label", False))
    multi_label = check_multi_label(multi_label)
    threshold = check_threshold(threshold)
    built = _build(metrics, model, normalization, multi_label)
    seen, images, skipped = 0, 0, []
    for batch in progress_bar(loader, enabled=progress, desc="evaluate"):
        if max_batches is not None and seen >= max_batches:
            break
        inputs, labels = _split_batch(batch)
        x = check_images(inputs).to(model_device(model, inputs.device))
        x, tgt = _batch_targets(model, x, labels, target, multi_label, threshold)
        if not tgt.numel():
            continue  # a multi-hot batch without any label
        maps = get_maps(explain, x, tgt)
        first, images, seen = images, images + x.shape[0], seen + 1
        if nonfinite == "raise":
            if isinstance(maps, Tensor) and maps.dim() > 1:
                check_finite_maps(maps, first)
        else:
            x, tgt, maps, bad = _finite_only(x, tgt, maps)
            skipped.extend(first + i for i in bad)
            if x.shape[0] == 0:
                continue
        for metric in built.values():
            paper = explainer is not None and isinstance(metric, AverageDropIncrease)
            metric.update(x, explainer if paper else maps, tgt)
    if seen == 0:
        raise ValueError("loader: yielded no batches; nothing to evaluate.")
    if skipped:
        logger.warning("evaluate: left out %d of %d images whose maps hold NaN or inf (positions %s%s)",
                       len(skipped), images, skipped[:10], ", ..." if len(skipped) > 10 else "")
    if len(skipped) == images:
        raise ValueError(f"maps: the maps of all {images} images hold NaN or inf; nothing to evaluate. Fix "
                         "the explanation method.")
    logger.info("evaluate: %d batches, metrics %s", seen, list(built))
    results: dict[str, Any] = {name: metric.compute() for name, metric in built.items()}
    if nonfinite == "skip":
        results["nonfinite"] = skipped
    return results


def _finite_only(x: Tensor, tgt: Tensor, maps: Any) -> tuple[Tensor, Tensor, Any, list[int]]:
    """The images of a batch whose maps are finite (and the positions of the others)."""
    if not isinstance(maps, Tensor) or maps.dim() < 2 or maps.shape[0] != x.shape[0]:
        return x, tgt, maps, []  # the metrics report the wrong shape
    bad = nonfinite_maps(maps)
    if not bool(bad.any()):
        return x, tgt, maps, []
    keep = ~bad.to(x.device)
    return x[keep], tgt[keep], maps[keep.to(maps.device)], bad.nonzero().flatten().tolist()
