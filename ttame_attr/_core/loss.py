"""The T-TAME training loss: cross-entropy on masked images, area and variation of the masks."""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LossTerms", "TTAMELoss", "area_loss", "variation_loss"]


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
