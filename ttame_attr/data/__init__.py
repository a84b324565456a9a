"""Synthetic localisation data to explain classifiers on.

:class:`SyntheticShapes` renders, from a seed, images with one class-defining shape among
distractors and clutter, plus the ground-truth mask of that shape. Small classifiers trained on
it are in :mod:`ttame_attr.classifiers`. :class:`MultiShapes` is its multi-label variant: two
or three class shapes per image, a multi-hot label vector and one mask per class.
"""

from ttame_attr.data._multi import MultiShapes
from ttame_attr.data._render import CLASS_NAMES, DISTRACTOR_NAMES
from ttame_attr.data._synthetic import MEAN, STD, SyntheticShapes, make_loaders, normalize

__all__ = ["CLASS_NAMES", "DISTRACTOR_NAMES", "MEAN", "STD", "MultiShapes", "SyntheticShapes", "make_loaders",
           "normalize"]
