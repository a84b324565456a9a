"""The multi-label forward pass of a training step, and multi-label explanations.

Both work on a :class:`~ttame_attr.TTAME` explainer (read through its ``extractor``, ``head``,
``model``, ``mask_images`` and ``loss_fn``), so that ``TrainStep`` and ``TTAME.explain`` can call
them when the explainer is multi-label (``docs/multilabel.rst``). Nothing here imports the
facade: the explainer is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ttame_attr._core.labels import DEFAULT_THRESHOLD, LabelPairs, positive_labels, sample_pairs
from ttame_attr._core.loss import LossTerms
from ttame_attr._core.maps import Scale, check_map_options, resize_maps, scale_maps, target_size
from ttame_attr._core.modes import eval_mode
from ttame_attr._core.outputs import extract_logits

__all__ = ["Explanation", "MultiLabelExplanation", "MultiLabelForward", "explain_multilabel",
           "explain_softmax", "multilabel_forward"]


@dataclass(frozen=True)
class MultiLabelForward:
    """What the multi-label forward pass of one step computed.

    Attributes:
        terms: the loss terms (:class:`~ttame_attr.MultiLabelTTAMELoss` by default).
        fidelity: 0-d, share of masked images whose label stays positive.
        pairs: the ``P`` ``(image, label)`` pairs masked.
        own: ``(P, 1, h, w)`` each pair's own sigmoid map (detached).
    """

    terms: LossTerms
    fidelity: Tensor
    pairs: LabelPairs
    own: Tensor


def multilabel_forward(explainer: Any, x: Tensor, features: list[Tensor], logits: Tensor, *,
                       head: nn.Module | None = None, threshold: float = DEFAULT_THRESHOLD,
                       max_pairs: int | None = None, generator: torch.Generator | None = None,
                       autocast: AbstractContextManager[Any] | None = None,
                       mask: Callable[[Tensor, Tensor], Tensor] | None = None,
                       gather: Callable[[Tensor], tuple[Tensor, int]] | None = None,
                       images: int | None = None) -> MultiLabelForward:
    """The loss of one multi-label training step, after the clean forward pass.

    The labels of each image are its positive labels (:func:`~ttame_attr.positive_labels`);
    at most ``max_pairs`` ``(image, label)`` pairs are kept (:func:`~ttame_attr.sample_pairs`,
    default ``2 * B``). The head makes the ``(B, P, h, w)`` maps of the pairs' labels for every
    image; image ``i`` of pair ``p`` is masked by its own map ``[i, p]`` and classified again;
    ``explainer.loss_fn(logits_masked (P, K), labels (P,), maps)`` gives the loss.

    Args:
        explainer: the :class:`~ttame_attr.TTAME` being trained (its ``loss_fn`` should be a
            :class:`~ttame_attr.MultiLabelTTAMELoss`).
        x: ``(B, C, H, W)`` the batch, as the model takes it.
        features: the head's inputs from the clean pass (detached).
        logits: ``(B, K)`` the clean logits.
        head: the module computing the maps (the explainer's head, or its DDP wrapper).
        threshold: probability above which a label is positive.
        max_pairs: most masked images per step; ``None``: ``2 * B``.
        generator: random generator for the pair sample, on the batch's device.
        autocast: the mixed-precision context of the forward passes (none by default).
        mask: ``mask(images, maps)`` multiplies images by maps; ``explainer.mask_images`` by default.
        gather: under DDP, ``gather(labels)`` gives the pair labels of every rank (the maps'
            ``M`` columns) and the column of this rank's first pair; by default ``(labels, 0)``.
        images: under DDP, the global batch's number of images, passed to the loss as
            ``images=`` (:class:`~ttame_attr.MultiLabelTTAMELoss` scales its variation by it).

    Returns:
        A :class:`MultiLabelForward`; gradients flow from ``terms.total`` to the head.
    """
    batch = x.shape[0]
    labels = positive_labels(logits.detach(), threshold)
    pairs = sample_pairs(labels, 2 * batch if max_pairs is None else max_pairs, generator)
    head = explainer.head if head is None else head
    mask = explainer.mask_images if mask is None else mask
    columns, offset = (pairs.label, 0) if gather is None else gather(pairs.label)
    rows = torch.arange(len(pairs), device=x.device)
    with autocast if autocast is not None else nullcontext():
        masks = torch.sigmoid(head(features, columns))  # (B, M, h, w), M = P in one process
        own = masks[pairs.image, rows + offset][:, None]  # (P, 1, h, w)
        logits_masked = extract_logits(explainer.model(mask(x[pairs.image], own)))
    extra = {} if images is None else {"images": images}
    terms = explainer.loss_fn(logits_masked, pairs.label, masks, **extra)
    kept = logits_masked.detach().float()[rows, pairs.label].sigmoid() > threshold
    return MultiLabelForward(terms=terms, fidelity=kept.float().mean(), pairs=pairs, own=own.detach())


@dataclass
class Explanation:
    """A prediction and its explanation, from one forward pass (see :meth:`TTAME.explain`).

    Attributes:
        logits: ``(N, num_classes)`` the classifier's logits.
        classes: ``(N, k)`` the top-``k`` classes, most probable first.
        probabilities: ``(N, k)`` their softmax probabilities.
        maps: ``(N, k, H, W)`` one map per returned class.
    """

    logits: Tensor
    classes: Tensor
    probabilities: Tensor
    maps: Tensor


@dataclass(frozen=True)
class MultiLabelExplanation:
    """A multi-label prediction and its explanation, from one forward pass.

    Attributes:
        logits: ``(N, K)`` the classifier's logits.
        classes: ``(N, L)`` each image's labels, most probable first; ``-1`` at padding.
        probabilities: ``(N, L)`` their sigmoid probabilities (0 at padding).
        valid: ``(N, L)`` bool, False at padding.
        maps: ``(N, L, H, W)`` one map per label (zeros at padding).
    """

    logits: Tensor
    classes: Tensor
    probabilities: Tensor
    valid: Tensor
    maps: Tensor


def _top_k(logits: Tensor, top_k: int) -> tuple[Tensor, Tensor, Tensor]:
    probs = logits.float().sigmoid()
    top_p, top_c = probs.topk(top_k, dim=1)
    return top_c, top_p, torch.ones_like(top_c, dtype=torch.bool)


def explain_multilabel(explainer: Any, x: Tensor, *, threshold: float = DEFAULT_THRESHOLD,
                       max_labels: int | None = None, top_k: int | None = None, scale: Scale = "sigmoid",
                       upsample: bool | tuple[int, int] = True) -> MultiLabelExplanation:
    """Predict and explain a multi-label (or single-logit) batch in one forward pass.

    Args:
        explainer: a :class:`~ttame_attr.TTAME`.
        x: ``(N, C, H, W)`` images on the model's device and dtype.
        threshold: probability above which a label is positive.
        max_labels: most labels returned per image (the most probable).
        top_k: instead of the positive labels, the ``top_k`` labels by sigmoid probability.
        scale, upsample: as in :meth:`TTAME.attribute <ttame_attr.TTAME.attribute>`.

    Returns:
        A :class:`MultiLabelExplanation`.

    Raises:
        ValueError: ``top_k`` outside ``[1, K]``, a bad threshold, scale or ``max_labels``.
    """
    check_map_options(scale, "bilinear")
    with torch.no_grad(), eval_mode(explainer.head):
        features, logits = explainer.extractor(x, need_logits=True)
        assert logits is not None
        if top_k is not None:
            num = logits.shape[1]
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num:
                raise ValueError(f"top_k: expected an int in [1, {num}] or None (the positive labels), "
                                 f"got {top_k!r}.")
            classes, probs, valid = _top_k(logits, top_k)
        else:
            labels = positive_labels(logits, threshold, max_labels)
            classes, probs, valid = labels.classes, labels.probs, labels.valid
        maps = explainer.head(features, classes.clamp_min(0))
        maps = scale_maps(resize_maps(maps, target_size(upsample, x.shape[-2:])), scale)
        maps = maps * valid[:, :, None, None].to(maps.dtype)
    return MultiLabelExplanation(logits=logits, classes=classes, probabilities=probs, valid=valid, maps=maps)


def explain_softmax(explainer: Any, x: Tensor, top_k: int | None, *, scale: Scale = "sigmoid",
                    upsample: bool | tuple[int, int] = True) -> Explanation:
    """:meth:`TTAME.explain <ttame_attr.TTAME.explain>` of a softmax classifier: the ``top_k``
    (default 1) classes by softmax probability and their maps."""
    num = explainer.num_classes
    top_k = 1 if top_k is None else top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num:
        raise ValueError(f"top_k: expected an int in [1, {num}], got {top_k!r}.")
    check_map_options(scale, "bilinear")
    with torch.no_grad(), eval_mode(explainer.head):
        features, logits = explainer.extractor(x, need_logits=True)
        assert logits is not None
        probs = logits.float().softmax(dim=1)
        top_p, top_c = probs.topk(top_k, dim=1)
        maps = explainer.head(features, top_c)
        maps = scale_maps(resize_maps(maps, target_size(upsample, x.shape[-2:])), scale)
    return Explanation(logits=logits, classes=top_c, probabilities=top_p, maps=maps)
