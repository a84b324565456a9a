"""``fit``'s schedule: the paper's (8 epochs, maximum learning rate 1e-3) or one scaled to the run.

The paper trains on ImageNet: 1.28 M images in batches of 32 are 40,000 steps per epoch, 320,000
steps in 8 epochs, at a one-cycle maximum learning rate of 1e-3. Users fit on their own data,
often a few thousand images: a few hundred steps per epoch, where the paper's learning rate
leaves the head under-trained (``benchmarks/tune_ttame.py``, behind ``benchmarks/quality.py``'s
settings: at 250 steps per epoch, 1e-2 beat 1e-3 on the validation split of every backbone, and
the ViT needed 16 epochs). ``benchmarks/budget.py`` measures this rule against the paper's values
and the tuned settings from 1,000 to 16,000 images.

``recipe="auto"`` (the default) keeps the paper's values for runs as long as the paper's and
scales them for shorter runs:

* epochs: 8, raised for a small loader until the run has :data:`AUTO_MIN_STEPS` steps (at most
  :data:`AUTO_MAX_EPOCHS` epochs), more for the backbone families in
  :data:`AUTO_MIN_STEPS_BY_FAMILY`: 8,000 for the ViT, where 4,000 steps lost a class map or
  trailed the tuned setting's IC 15% on a retrained classifier and 8,000 did neither (see
  :doc:`/training`);
* maximum learning rate: ``1e-3 * sqrt(320,000 / total steps)``, between 1e-3 and a cap: the
  shorter the run, the larger the steps. The cap is :data:`AUTO_MAX_LR` (1e-2), lower for the
  backbone families in :data:`AUTO_MAX_LR_BY_FAMILY`: 5e-3 for the Swin, whose heads lost a
  class map or left one full in five of ten runs at 8.9e-3 to 1e-2 in the budget study, and in
  none of ten at 5e-3 or 3e-3 (see :doc:`/training`).

``recipe="paper"`` gives exactly the paper's values. ``epochs=`` and ``lr=`` given to ``fit``
always win; the rule fills in only what is not given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AUTO_MAX_EPOCHS", "AUTO_MAX_LR", "AUTO_MAX_LR_BY_FAMILY", "AUTO_MIN_STEPS",
           "AUTO_MIN_STEPS_BY_FAMILY", "PAPER_EPOCHS", "PAPER_LR", "PAPER_STEPS", "RECIPES", "Schedule",
           "auto_max_lr", "auto_min_steps", "check_recipe", "resolve_schedule"]

#: The paper's epochs and one-cycle maximum learning rate.
PAPER_EPOCHS = 8
PAPER_LR = 1e-3
#: The paper's run: 40,000 steps per ImageNet epoch (1.28 M images, batch 32) x 8 epochs.
PAPER_STEPS = 320_000
#: ``recipe="auto"``: the fewest steps a run gets by adding epochs, the most epochs it adds,
#: and the largest maximum learning rate.
AUTO_MIN_STEPS = 4000
AUTO_MAX_EPOCHS = 64
AUTO_MAX_LR = 1e-2
#: ``recipe="auto"``: a lower cap on the maximum learning rate for these backbone families (the
#: adapter's ``family``); the others get :data:`AUTO_MAX_LR`.
AUTO_MAX_LR_BY_FAMILY: dict[str, float] = {"swin": 5e-3}
#: ``recipe="auto"``: more steps for these backbone families (the adapter's ``family``); the
#: others get :data:`AUTO_MIN_STEPS`.
AUTO_MIN_STEPS_BY_FAMILY: dict[str, int] = {"vit": 8000}
RECIPES = ("auto", "paper")


def auto_max_lr(family: str | None) -> float:
    """The largest maximum learning rate ``recipe="auto"`` gives a backbone of ``family``."""
    return AUTO_MAX_LR_BY_FAMILY.get(family or "", AUTO_MAX_LR)


def auto_min_steps(family: str | None) -> int:
    """The fewest steps ``recipe="auto"`` gives a run on a backbone of ``family`` by adding epochs."""
    return AUTO_MIN_STEPS_BY_FAMILY.get(family or "", AUTO_MIN_STEPS)


@dataclass(frozen=True)
class Schedule:
    """The epochs and maximum learning rate a ``fit`` ran with, and where they came from.

    ``source`` says, per value, ``"given"`` (an argument of ``fit``), ``"paper"`` or
    ``"scaled"`` (``recipe="auto"`` departed from the paper's value).
    """

    recipe: str
    epochs: int
    lr: float
    steps_per_epoch: int
    source: dict[str, str]
    #: The backbone family the schedule was made for (``None``: not said; the general cap).
    family: str | None = None

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def departs_from_paper(self) -> bool:
        return "scaled" in self.source.values()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_steps": self.total_steps}

    def describe(self) -> str:
        """One sentence for the log: the schedule, and how it differs from the paper's."""
        text = (f"{self.epochs} epochs of {self.steps_per_epoch} steps ({self.total_steps} steps) at a "
                f"maximum learning rate of {self.lr:.3g}")
        if not self.departs_from_paper:
            return text
        scaled = " and ".join(k for k, v in self.source.items() if v == "scaled")
        cap = auto_max_lr(self.family)
        capped = (f", the cap for {self.family} backbones" if self.source["lr"] == "scaled" and self.lr == cap
                  and cap != AUTO_MAX_LR else "")
        floor = auto_min_steps(self.family)
        longer = (f", at least {floor} steps for {self.family} backbones" if self.source["epochs"] == "scaled"
                  and floor != AUTO_MIN_STEPS else "")
        return (f"{text}{capped}{longer}: recipe='auto' scaled the {scaled} to this run's length (the paper: "
                f"{PAPER_EPOCHS} epochs of 40,000 steps at {PAPER_LR:g}); recipe='paper' or epochs=/lr= give "
                "other values")


def _auto_epochs(steps_per_epoch: int, family: str | None) -> int:
    floor = auto_min_steps(family)
    if PAPER_EPOCHS * steps_per_epoch >= floor:
        return PAPER_EPOCHS
    return min(AUTO_MAX_EPOCHS, math.ceil(floor / steps_per_epoch))


def _auto_lr(total_steps: int, family: str | None) -> float:
    return min(auto_max_lr(family), max(PAPER_LR, PAPER_LR * math.sqrt(PAPER_STEPS / total_steps)))


def check_recipe(recipe: object) -> None:
    """Raise a ValueError naming the choices unless ``recipe`` is one of :data:`RECIPES`."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe: expected one of {RECIPES}, got {recipe!r}. 'auto' scales the epochs and "
                         "learning rate to the run's length; 'paper' uses the paper's 8 epochs at 1e-3.")


def resolve_schedule(recipe: str, epochs: int | None, lr: float | None, steps_per_epoch: int,
                     family: str | None = None) -> Schedule:
    """The :class:`Schedule` of a run of ``steps_per_epoch`` steps per epoch.

    Args:
        recipe: ``"auto"`` or ``"paper"`` (see the module's description).
        epochs: given by the user, or ``None`` for the recipe's.
        lr: given by the user, or ``None`` for the recipe's.
        steps_per_epoch: optimiser steps per epoch (positive).
        family: the backbone's family (``"cnn"``, ``"vit"``, ``"swin"``: the adapter's), which
            sets the cap on ``recipe="auto"``'s learning rate (:func:`auto_max_lr`) and the
            fewest steps it adds epochs for (:func:`auto_min_steps`).

    Raises:
        ValueError: for an unknown ``recipe``.
    """
    check_recipe(recipe)
    source: dict[str, str] = {}
    if epochs is None:
        epochs = PAPER_EPOCHS if recipe == "paper" else _auto_epochs(steps_per_epoch, family)
        source["epochs"] = "paper" if epochs == PAPER_EPOCHS else "scaled"
    else:
        source["epochs"] = "given"
    if lr is None:
        lr = PAPER_LR if recipe == "paper" else _auto_lr(epochs * steps_per_epoch, family)
        source["lr"] = "paper" if lr == PAPER_LR else "scaled"
    else:
        source["lr"] = "given"
    return Schedule(recipe, int(epochs), float(lr), int(steps_per_epoch), source, family)
