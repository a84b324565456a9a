"""Synthetic localisation data and small classifiers to explain on it."""

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
    "CLASS_NAMES",
    "DISTRACTOR_NAMES",
    "MEAN",
    "STD",
    "SyntheticShapes",
    "make_loaders",
    "normalize",
]
