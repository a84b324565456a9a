"""The T-TAME training loss: cross-entropy on masked images, area and variation of the masks."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr._core.checks import check_positive_int

__all__ = ["LossTerms", "MultiLabelTTAMELoss", "TTAMELoss", "area_loss", "variation_loss"]


class LossTerms(NamedTuple):
    """The total loss and its three weighted-sum ingredients (before weighting)."""

    total: Tensor
    ce: Tensor
    area: Tensor
    variation: Tensor


def area_loss(masks: Tensor, power: float = 0.3, eps: float = 5e-4) -> Tensor:
    """``mean((masks + eps) ** power)``: small for small masks.

    Args:
        masks: sigmoid masks of any shape, e.g. ``(B, B, h, w)``.
    """
    return (masks + eps).pow(power).mean()


def variation_loss(masks: Tensor, border: float = 0.3) -> Tensor:
    """Squared finite differences plus a border penalty, divided by ``2 * B``.

    ``V(m) = (sum |dx m|^2 + sum |dy m|^2 + border * (sum m[..., 0, :]^2 + sum m[..., -1, :]^2
    + sum m[..., :, 0]^2 + sum m[..., :, -1]^2)) / (2 * B)``: the four border rows and columns
    are summed separately, so the corners count twice.

    Args:
        masks: ``(B, M, h, w)`` masks; ``B`` (the batch size) normalises the sum.
    """
    if masks.dim() != 4:
        raise ValueError(f"masks: expected (B, M, h, w), got shape {tuple(masks.shape)}.")
    dy = (masks[:, :, 1:, :] - masks[:, :, :-1, :]).pow(2).sum()
    dx = (masks[:, :, :, 1:] - masks[:, :, :, :-1]).pow(2).sum()
    edges = (
        masks[:, :, 0, :].pow(2).sum()
        + masks[:, :, -1, :].pow(2).sum()
        + masks[:, :, :, 0].pow(2).sum()
        + masks[:, :, :, -1].pow(2).sum()
    )
    return (dx + dy + border * edges) / (2 * masks.shape[0])


class TTAMELoss(nn.Module):
    """``L = ce * CE(logits_masked, y) + area * mean((m + eps)^power) + var * V(m)``.

    Defaults are the paper's: ``ce=1.5``, ``area=2``, ``var=0.01``, ``power=0.3``,
    ``eps=5e-4``, ``border=0.3``.

    Example:
        >>> import torch
        >>> loss = TTAMELoss()
        >>> terms = loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.full((2, 2, 4, 4), 0.5))
        >>> round(terms.area.item(), 4) == round(0.5005 ** 0.3, 4)
        True
    """

    def __init__(
        self,
        ce: float = 1.5,
        area: float = 2.0,
        var: float = 0.01,
        power: float = 0.3,
        eps: float = 5e-4,
        border: float = 0.3,
    ) -> None:
        super().__init__()
        self.ce_coeff, self.area_coeff, self.var_coeff = float(ce), float(area), float(var)
        self.power, self.eps, self.border = float(power), float(eps), float(border)

    def forward(self, logits_masked: Tensor, labels: Tensor, masks: Tensor) -> LossTerms:
        """Compute the loss.

        Args:
            logits_masked: ``(B, K)`` logits of the masked images.
            labels: ``(B,)`` the backbone's own predictions on the clean images.
            masks: ``(B, B, h, w)`` sigmoid maps of the batch's labels for every image.
        """
        ce = F.cross_entropy(logits_masked.float(), labels)
        masks = masks.float()
        area = area_loss(masks, self.power, self.eps)
        var = variation_loss(masks, self.border)
        total = self.ce_coeff * ce + self.area_coeff * area + self.var_coeff * var
        return LossTerms(total, ce, area, var)

    def extra_repr(self) -> str:
        return (
            f"ce={self.ce_coeff}, area={self.area_coeff}, var={self.var_coeff}, "
            f"power={self.power}, eps={self.eps}, border={self.border}"
        )


class MultiLabelTTAMELoss(TTAMELoss):
    """The paper's loss for multi-label and single-logit classifiers, one term per label.

    ``L = ce * BCE(logits_masked[p, label_p], 1) + area * mean((m + eps)^power)
    + var * V(m) * B / M``.

    Training masks one image per ``(image, label)`` pair ``p`` (see
    :func:`~ttame_attr._core.labels.sample_pairs`): image ``i`` multiplied by the map of its
    label ``k``. The masked image must keep label ``k``: binary cross-entropy of that label's
    logit against 1, averaged over the pairs (the paper's cross-entropy "keep the predicted
    class", with each label a yes/no question instead of a choice among classes). The area and
    variation terms are the paper's, on the ``(B, M, h, w)`` sigmoid maps of the batch's pair
    labels for every image, so the maps of labels an image does not have are pushed towards
    zero as the paper pushes the other classes' maps. The paper's ``V`` sums over the maps and
    divides by ``2 * B``, which on its ``(B, B)`` maps weighs each map as the area term does;
    with ``M`` columns (about two per image) it would weigh the variation ``M / B`` times more,
    so it is scaled by ``B / M``: the three terms then keep their balance whatever the number
    of columns (repeating columns changes none of them). With one label per image and the
    columns the images' labels, ``masks`` is the paper's ``(B, B, h, w)`` and only the first
    term differs. ``LossTerms.ce`` holds the BCE term, ``LossTerms.variation`` the scaled
    ``V``. Defaults are the paper's coefficients; ``scale_variation=False`` keeps the paper's
    ``V`` unscaled (see :doc:`/multilabel`).

    Example:
        >>> loss = MultiLabelTTAMELoss()
        >>> terms = loss(torch.zeros(3, 4), torch.tensor([0, 2, 1]), torch.full((2, 3, 4, 4), 0.5))
        >>> round(terms.ce.item(), 4)  # BCE of logit 0 against 1: log 2
        0.6931
    """

    def __init__(self, ce: float = 1.5, area: float = 2.0, var: float = 0.01, power: float = 0.3,
                 eps: float = 5e-4, border: float = 0.3, *, scale_variation: bool = True) -> None:
        super().__init__(ce, area, var, power, eps, border)
        if not isinstance(scale_variation, bool):
            raise TypeError(f"scale_variation: expected True (scale V by B / M) or False (the paper's V "
                            f"unscaled), got {scale_variation!r}.")
        self.scale_variation = scale_variation

    def forward(self, logits_masked: Tensor, labels: Tensor, masks: Tensor,
                images: int | None = None) -> LossTerms:
        """Compute the loss.

        Args:
            logits_masked: ``(P, K)`` logits of the ``P`` masked images, one per pair.
            labels: ``(P,)`` long, the label each masked image must keep.
            masks: ``(B, M, h, w)`` sigmoid maps of the pairs' labels for every image of the batch.
            images: the ``B`` of the ``B / M`` scale: the images of the whole batch when
                ``masks`` holds one process's rows of a data-parallel batch; ``masks.shape[0]``
                by default.

        Raises:
            ValueError: ``logits_masked`` not ``(P, K)``, ``labels`` not ``(P,)``, or ``images``
                not a positive int.
        """
        check_positive_int(images, "images")
        if logits_masked.dim() != 2 or labels.shape != (logits_masked.shape[0],):
            raise ValueError(f"labels: expected shape ({logits_masked.shape[0]},), one label per masked "
                             f"image of logits_masked {tuple(logits_masked.shape)}, got "
                             f"{tuple(labels.shape)}.")
        picked = logits_masked.float().gather(1, labels.view(-1, 1).long()).squeeze(1)
        bce = F.binary_cross_entropy_with_logits(picked, torch.ones_like(picked))
        masks = masks.float()
        area = area_loss(masks, self.power, self.eps)
        var = variation_loss(masks, self.border)
        if self.scale_variation:
            var = var * ((masks.shape[0] if images is None else images) / masks.shape[1])
        total = self.ce_coeff * bce + self.area_coeff * area + self.var_coeff * var
        return LossTerms(total, bce, area, var)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_variation={self.scale_variation}"
