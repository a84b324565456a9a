"""The recipe: the schedule ``fit`` trains with, and what to change when the trained head shows
it was not enough.

The paper trains 8 epochs at a one-cycle maximum learning rate of 1e-3 on ImageNet (40,000 steps
per epoch). ``recipe="auto"`` (the default) keeps those values for runs as long as the paper's
and scales them for shorter ones:

* epochs: 8, raised for a small loader until the run has :data:`AUTO_MIN_STEPS` steps (at most
  :data:`AUTO_MAX_EPOCHS` epochs), more for the families in :data:`AUTO_MIN_STEPS_BY_FAMILY`;
* maximum learning rate: ``1e-3 * sqrt(320,000 / total steps)``, between 1e-3 and
  :data:`AUTO_MAX_LR`, lower for the families in :data:`AUTO_MAX_LR_BY_FAMILY`.

``recipe="paper"`` gives exactly the paper's values; ``epochs=`` and ``lr=`` given to ``fit``
always win. The evidence behind the numbers is in :doc:`/training` and ``benchmarks/results/``.

The advice (:func:`under_training_advice`, :func:`dead_class_advice`, :func:`full_class_advice`)
is the text :class:`~ttame_attr.training.TrainingHistory` gives when a run ended under-trained or
with dead or full class maps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AUTO_MAX_EPOCHS", "AUTO_MAX_LR", "AUTO_MAX_LR_BY_FAMILY", "AUTO_MIN_STEPS",
           "AUTO_MIN_STEPS_BY_FAMILY", "PAPER_EPOCHS", "PAPER_LR", "PAPER_STEPS", "RECIPES", "Schedule",
           "auto_max_lr", "auto_min_steps", "check_recipe", "dead_class_advice", "full_class_advice",
           "resolve_schedule", "under_training_advice"]

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


#: The most classes an advice lists by name; the rest are counted.
LISTED_CLASSES = 20


def _listed(classes: list[int]) -> str:
    """``classes`` for an advice: the first :data:`LISTED_CLASSES`, then how many more."""
    more = f" and {len(classes) - LISTED_CLASSES} more" if len(classes) > LISTED_CLASSES else ""
    return ", ".join(str(k) for k in classes[:LISTED_CLASSES]) + more


def under_training_advice(source: str, loss: list[float], fidelity: list[float], epochs: int,
                          family: str | None) -> str:
    """What to do when the last epoch still improved the head.

    Args:
        source: ``"training"`` or ``"validation"``: whose means ``loss`` and ``fidelity`` are.
        loss, fidelity: the last two epochs' values, earlier first.
        epochs: the epochs the run had.
        family: the backbone family (sets the learning rate suggested).
    """
    drop = (loss[0] - loss[1]) / max(abs(loss[0]), 1e-12)
    # The rule's largest rate for this backbone: 1e-2, or 5e-3 on a Swin.
    cap = f"{auto_max_lr(family):.0e}".replace("e-0", "e-")
    return (f"the T-TAME head is probably under-trained: over its last epoch the {source} loss fell "
            f"{drop:.1%} ({loss[0]:.4f} -> {loss[1]:.4f}) and the fidelity moved {fidelity[0]:.3f} -> "
            f"{fidelity[1]:.3f}. Train longer (e.g. epochs={2 * epochs}), with a higher maximum "
            f"learning rate (lr={cap} suits runs of a few thousand steps; the paper's lr=1e-3 is for "
            f"ImageNet's 40,000 steps per epoch) or on more images.")


def full_class_advice(full: list[int], floor: float) -> str:
    """What to do about full class maps (above ``floor`` everywhere); empty when there are none."""
    if not full:
        return ""
    return (f"the T-TAME head's maps of class(es) {_listed(full)} are full: in the last epoch their "
            f"masks stayed above {floor} on every pixel of every one of their images, so they "
            "keep the whole image and explain nothing (their top pixels are no more salient than the "
            "rest). The sigmoid is saturated there, so training cannot pull such a map down once it is "
            "there. Refit a new head with a lower maximum learning rate (e.g. recipe='paper', or lr= "
            "half of history.schedule['lr']) or with another seed.")


def dead_class_advice(dead: list[int], blank_class: int | None, peak: float) -> str:
    """What to do about dead class maps (below ``peak`` everywhere); empty when there are none.

    ``blank_class``, the class the classifier gives a fully masked image, gets its own advice:
    an empty mask already keeps that class, so its map has no reason to live.
    """
    if not dead:
        return ""
    parts = []
    lost = [k for k in dead if k != blank_class]
    if lost:
        parts.append(
            f"the T-TAME head has given up on class(es) {_listed(lost)}: in the last epoch their masks "
            f"stayed below {peak} on every pixel of every one of their images, so their "
            "explanations are blank and their masked images lose the class. The area term holds such a "
            "map at zero once it is there. Refit a new head built with head_init='zeros' (the default; "
            "'pytorch' makes this likely), with a lower maximum learning rate, or with another seed.")
    if blank_class is not None and blank_class in dead:
        parts.append(
            f"the T-TAME head has given up on class {blank_class}, which is what the classifier "
            "predicts for a fully masked image (every pixel masked). For that class an empty mask "
            "already keeps the prediction, so the loss is lowest with no map at all and its "
            "explanations are blank. This comes from the classifier (its default class), not from "
            "training: another seed or learning rate may not change it. Judge this class's "
            "explanations with deletion metrics (AD, ROAD MoRF) rather than by the maps.")
    return " Also, ".join(parts)
