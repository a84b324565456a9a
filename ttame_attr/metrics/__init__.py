"""Evaluation metrics for attribution maps of image classifiers.

Every metric works with T-TAME and with any other attribution method: pass precomputed maps
``(N, 1, h, w)``, ``(N, h, w)`` or ``(N, C, h, w)`` (channels averaged, any resolution,
upsampled bilinearly), a callable ``explain(inputs, target) -> maps``, or an object with a
Captum-style ``attribute(inputs, target=...)``. Each metric has a functional form returning a
small result dataclass and a stateful form with ``update()`` / ``compute()`` / ``reset()``.

- :func:`average_drop_increase` / :class:`AverageDropIncrease`: Average Drop and Increase in
  Confidence at kept fractions, with the T-TAME paper's protocol (100%, 50%, 15% by per-image
  quantiles, maps min-max scaled at their own resolution, masking in pixel space when the
  normalisation is known; given a TTAME explainer, its pre-sigmoid maps).
- :func:`road` / :class:`ROAD`: ROAD MoRF and LeRF with the noisy linear imputer
  (:func:`noisy_linear_impute`).
- :func:`deletion`, :func:`insertion` / :class:`Deletion`, :class:`Insertion`: RISE curves
  and AUC.
- :func:`pointing_game`, :func:`energy_pointing_game` and their stateful classes;
  :func:`pointing_game_per_label`, :func:`energy_pointing_game_per_label` for multi-label
  images (one trial per labelled object).
- :func:`evaluate`: several metrics over a loader, one explanation per batch.

Multi-label and single-logit ``(N, 1)`` models: pass ``multi_label=True`` to AD/IC, ROAD,
deletion / insertion and :func:`evaluate`, which then read each label's sigmoid probability
(ROAD: the label stays positive) instead of a softmax probability (``docs/multilabel.rst``).

Metrics run the model in eval mode and restore each module's mode afterwards (a model in
training mode gets a logged warning; its batch-norm statistics are never updated). Maps holding
NaN or inf are refused with a ``ValueError`` naming the images (:func:`evaluate` can skip and
count them instead). They run under ``torch.no_grad()`` on the model's device and never
modify the inputs, the maps or the model.
"""

from ttame_attr.metrics._ad_ic import ADICResult, AverageDropIncrease, average_drop_increase, kept_mask
from ttame_attr.metrics._deletion import CurveResult, Deletion, Insertion, deletion, gaussian_blur, insertion
from ttame_attr.metrics._evaluate import METRIC_NAMES, evaluate
from ttame_attr.metrics._imputation import noisy_linear_impute
from ttame_attr.metrics._multilabel import (
    energy_pointing_game_per_label,
    label_pairs,
    pointing_game_per_label,
)
from ttame_attr.metrics._pointing import (
    EnergyPointingGame,
    EnergyPointingResult,
    PointingGame,
    PointingGameResult,
    energy_pointing_game,
    pointing_game,
)
from ttame_attr.metrics._road import ROAD, ROADResult, road

__all__ = [
    "METRIC_NAMES", "ROAD", "ADICResult", "AverageDropIncrease", "CurveResult", "Deletion",
    "EnergyPointingGame", "EnergyPointingResult", "Insertion", "PointingGame", "PointingGameResult",
    "ROADResult", "average_drop_increase", "deletion", "energy_pointing_game",
    "energy_pointing_game_per_label", "evaluate", "gaussian_blur", "insertion", "kept_mask", "label_pairs",
    "noisy_linear_impute", "pointing_game", "pointing_game_per_label", "road",
]
