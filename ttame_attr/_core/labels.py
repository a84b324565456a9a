"""Labels of multi-label and single-logit classifiers: which classes an image "has".

A softmax classifier's label is its arg-max. A multi-label classifier (one sigmoid per class,
e.g. chest X-ray findings or COCO tags) gives an image every class whose sigmoid probability
exceeds a threshold; a binary detector with one logit, ``(N, 1)``, has one class, 0, read as
"the positive evidence". This module turns logits into those labels
(:func:`positive_labels`), into the flat ``(image, label)`` pairs that training and the
metrics work on (:meth:`PositiveLabels.pairs`), and bounds how many pairs one training step
masks (:func:`sample_pairs`). See ``docs/multilabel.rst``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["LabelPairs", "PositiveLabels", "check_multi_label_options", "check_threshold",
           "fixed_width_labels", "positive_labels", "sample_pairs"]

#: Default probability above which a label counts as present.
DEFAULT_THRESHOLD = 0.5


def check_threshold(threshold: Any) -> float:
    """``threshold`` as a float in ``(0, 1)``, else ValueError naming it."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: expected a probability in (0, 1), got {threshold!r}. The usual value "
                         "is 0.5 (a positive logit).")
    return float(threshold)


def check_multi_label_options(multi_label: Any, threshold: Any, max_masked: Any) -> float:
    """Check ``TTAME``'s ``multi_label``, ``threshold`` and ``max_masked``; the threshold as a float.

    Raises:
        TypeError: ``multi_label`` not a bool.
        ValueError: a threshold outside ``(0, 1)``, a ``max_masked`` that is not a positive int.
    """
    if not isinstance(multi_label, bool):
        raise TypeError(f"multi_label: expected True or False, got {multi_label!r}.")
    if max_masked is not None and (isinstance(max_masked, bool) or not isinstance(max_masked, int)
                                   or max_masked < 1):
        raise ValueError(f"max_masked: expected a positive int or None (twice the batch size), "
                         f"got {max_masked!r}.")
    return check_threshold(threshold)


def _check_logits(logits: Any) -> Tensor:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits: expected a torch.Tensor (N, K), got {type(logits).__name__}.")
    if logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits: expected shape (N, K) with N, K >= 1, got {tuple(logits.shape)}. "
                         "Pass the classifier's output (a single-logit model gives (N, 1)).")
    if not logits.is_floating_point():
        raise TypeError(f"logits: expected a floating-point tensor, got dtype {logits.dtype}.")
    return logits


@dataclass(frozen=True)
class LabelPairs:
    """A flat list of ``(image, label)`` pairs, ``P`` of them.

    Attributes:
        image: ``(P,)`` long, the image (row of the batch) of each pair.
        label: ``(P,)`` long, the class of each pair.
    """

    image: Tensor
    label: Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class PositiveLabels:
    """The labels of each image, most probable first, padded to ``L`` per image.

    Attributes:
        classes: ``(N, L)`` long; ``-1`` where ``valid`` is False (padding).
        valid: ``(N, L)`` bool; every row has at least one True (the first column).
        probs: ``(N, L)`` float32 sigmoid probabilities of ``classes`` (0 at padding).
        fallback: ``(N,)`` bool, True where no class exceeded the threshold and the top-1 class
            was taken instead.
    """

    classes: Tensor
    valid: Tensor
    probs: Tensor
    fallback: Tensor

    @property
    def counts(self) -> Tensor:
        """``(N,)`` number of labels of each image (>= 1)."""
        return self.valid.sum(dim=1)

    def pairs(self) -> LabelPairs:
        """Every ``(image, label)`` pair, image by image, most probable label first."""
        image, slot = self.valid.nonzero(as_tuple=True)
        return LabelPairs(image=image, label=self.classes[image, slot])

    def multi_hot(self, num_classes: int) -> Tensor:
        """``(N, num_classes)`` bool, True at each image's labels."""
        out = torch.zeros(self.classes.shape[0], num_classes, dtype=torch.bool, device=self.classes.device)
        pairs = self.pairs()
        out[pairs.image, pairs.label] = True
        return out


@torch.no_grad()
def positive_labels(logits: Tensor, threshold: float = DEFAULT_THRESHOLD,
                    max_labels: int | None = None) -> PositiveLabels:
    """The labels of a multi-label (or single-logit) classifier's outputs.

    Class ``k`` is a label of image ``i`` when ``sigmoid(logits[i, k]) > threshold``; an image
    with no such class gets its top-1 class (largest logit) instead, so every image has at
    least one label. Labels are ordered by probability (ties: smaller class index first) and at
    most ``max_labels`` are kept per image. For a single-logit model, ``(N, 1)``, every image
    has the one label 0, "the positive evidence" (``fallback`` tells which images the model
    calls negative).

    Args:
        logits: ``(N, K)`` logits (not probabilities); ``K = 1`` for a binary detector.
        threshold: probability above which a class is a label, in ``(0, 1)`` (0.5: a positive
            logit).
        max_labels: most labels per image (the most probable are kept); ``None`` for all.

    Returns:
        A :class:`PositiveLabels` padded to ``L = min(max count, max_labels)`` columns.

    Raises:
        TypeError: non-tensor or integer logits.
        ValueError: logits not ``(N, K)``, a threshold outside ``(0, 1)``, a non-positive
            ``max_labels``.

    Example:
        >>> out = positive_labels(torch.tensor([[2.0, -1.0, 0.5], [-3.0, -1.0, -2.0]]))
        >>> out.classes.tolist(), out.valid.tolist(), out.fallback.tolist()
        ([[0, 2], [1, -1]], [[True, True], [True, False]], [False, True])
    """
    logits = _check_logits(logits)
    threshold = check_threshold(threshold)
    if max_labels is not None and (isinstance(max_labels, bool) or not isinstance(max_labels, int)
                                   or max_labels < 1):
        raise ValueError(f"max_labels: expected a positive int or None, got {max_labels!r}.")
    probs = logits.detach().float().sigmoid()
    n, k = probs.shape
    positive = probs > threshold
    fallback = ~positive.any(dim=1)
    top1 = logits.detach().float().argmax(dim=1)
    positive[fallback, top1[fallback]] = True
    # order: positives first, by probability (stable sort keeps the smaller index on ties)
    key = torch.where(positive, probs, torch.full_like(probs, -1.0))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    width = int(positive.sum(dim=1).max())
    if max_labels is not None:
        width = min(width, max_labels)
    order = order[:, :width]
    valid = positive.gather(1, order)
    classes = torch.where(valid, order, torch.full_like(order, -1))
    kept_probs = torch.where(valid, probs.gather(1, order), torch.zeros(n, width, device=probs.device))
    return PositiveLabels(classes=classes, valid=valid, probs=kept_probs, fallback=fallback)


def sample_pairs(labels: PositiveLabels, max_pairs: int | None,
                 generator: torch.Generator | None = None) -> LabelPairs:
    """At most ``max_pairs`` ``(image, label)`` pairs to mask in one training step.

    All pairs when there are at most ``max_pairs``. Otherwise every image first keeps its most
    probable label (while ``max_pairs`` allows: with ``max_pairs < N`` the images are sampled),
    and the remaining places go to the other pairs, drawn uniformly without replacement, so
    over many steps every positive label is trained. The result is sorted by image, then by
    the label's rank.

    Args:
        labels: from :func:`positive_labels`.
        max_pairs: the bound (e.g. ``2 * N``), or ``None`` for every pair.
        generator: random generator on ``labels``' device (reproducible sampling).

    Returns:
        :class:`LabelPairs` with ``P <= max_pairs`` pairs.

    Raises:
        ValueError: a non-positive ``max_pairs``.

    Example:
        >>> labels = positive_labels(torch.tensor([[1.0, 2.0, 3.0], [1.0, -1.0, -1.0]]))
        >>> pairs = sample_pairs(labels, max_pairs=3)
        >>> pairs.image.tolist(), pairs.label.tolist()[0::2]  # each image's top label, one more drawn
        ([0, 0, 1], [2, 0])
    """
    if max_pairs is not None and (isinstance(max_pairs, bool) or not isinstance(max_pairs, int)
                                  or max_pairs < 1):
        raise ValueError(f"max_pairs: expected a positive int or None, got {max_pairs!r}.")
    valid = labels.valid
    total = int(valid.sum())
    if max_pairs is None or total <= max_pairs:
        return labels.pairs()
    n, width = valid.shape
    device = valid.device
    # a random priority per slot: the first slot of each image ranks before every other slot
    noise = torch.rand(n, width, generator=generator, device=device)
    priority = torch.where(valid, noise, torch.full_like(noise, -1.0))
    priority[:, 0] += 2.0  # first slots (always valid) in [2, 3): chosen first
    chosen = priority.flatten().topk(max_pairs).indices
    keep = torch.zeros(n * width, dtype=torch.bool, device=device)
    keep[chosen] = True
    image, slot = keep.view(n, width).nonzero(as_tuple=True)
    return LabelPairs(image=image, label=labels.classes[image, slot])


def fixed_width_labels(logits: Tensor, width: int,
                       threshold: float = DEFAULT_THRESHOLD) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`positive_labels` with a fixed number of columns, for traced and exported graphs.

    No shape depends on the values and nothing synchronises with the host, so
    ``torch.export``, ONNX and ``torch.compile`` see one graph. Where ``positive_labels(logits,
    threshold, max_labels=width)`` has fewer than ``width`` columns, the extra columns are
    padding; otherwise the two agree (up to the order of exactly tied probabilities).

    Args:
        logits: ``(N, K)`` logits.
        width: columns ``L``, in ``[1, K]`` (the most labels an image can return).
        threshold: probability above which a label is positive.

    Returns:
        ``(classes, probs, valid)``, each ``(N, L)``: the ``L`` most probable classes (``-1``
        at padding), their sigmoid probabilities (0 at padding) and a bool validity mask whose
        first column is always True (the top-1 when no label is positive).

    Example:
        >>> classes, probs, valid = fixed_width_labels(torch.tensor([[2.0, -1.0, 0.5]]), 3)
        >>> classes.tolist(), valid.tolist()
        ([[0, 2, -1]], [[True, True, False]])
    """
    probs = logits.float().sigmoid()
    top_p, top_c = probs.topk(width, dim=1)
    first = torch.arange(width, device=logits.device) == 0
    valid = (top_p > threshold) | first
    classes = torch.where(valid, top_c, torch.full_like(top_c, -1))
    return classes, torch.where(valid, top_p, torch.zeros_like(top_p)), valid
