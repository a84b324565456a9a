"""Synthetic localisation data and small classifiers to explain on it.

:class:`SyntheticShapes` renders, from a seed, images with one class-defining shape among
distractors and clutter, plus the ground-truth mask of that shape. :func:`build_classifier`,
:func:`train_classifier` and :func:`load_or_train` give small CNN / ViT / Swin classifiers for it.
"""

from ttame_attr.data._classifiers import (
    ARCHITECTURES,
    RECIPES,
    SmallResNet,
    TrainingHistory,
    build_classifier,
    evaluate_accuracy,
    load_or_train,
    train_classifier,
)
from ttame_attr.data._synthetic import (
    CLASS_NAMES,
    DISTRACTOR_NAMES,
    MEAN,
    STD,
    SyntheticShapes,
    make_loaders,
    normalize,
)

__all__ = [
    "ARCHITECTURES",
    "CLASS_NAMES",
    "DISTRACTOR_NAMES",
    "MEAN",
    "RECIPES",
    "STD",
    "SmallResNet",
    "SyntheticShapes",
    "TrainingHistory",
    "build_classifier",
    "evaluate_accuracy",
    "load_or_train",
    "make_loaders",
    "normalize",
    "train_classifier",
]
