"""Small classifiers of :class:`~ttame_attr.data.SyntheticShapes` to explain, and their training.

- :func:`build_classifier`: an untrained CNN (:class:`SmallResNet`), ViT or Swin for the data.
- :func:`train_classifier` / :func:`evaluate_accuracy`: AdamW with a one-cycle schedule, on the
  package's epoch loop; accuracy over a loader.
- :func:`load_or_train`: a trained classifier, cached on disk under a key that changes with the
  code that builds and trains it.
- :func:`load_reference_classifier`: the trained CNN shipped with the package (the demo's), and
  :class:`Normalized`, the wrapper that lets it take images in ``[0, 1]``.
"""

from ttame_attr.classifiers._cache import RECIPES, cache_key, load_or_train
from ttame_attr.classifiers._models import ARCHITECTURES, SmallResNet, build_classifier
from ttame_attr.classifiers._reference import (
    REFERENCE_WEIGHTS,
    Normalized,
    load_reference_classifier,
    save_reference_weights,
    write_reference_weights,
)
from ttame_attr.classifiers._training import ClassifierHistory, augment, evaluate_accuracy, train_classifier

__all__ = [
    "ARCHITECTURES", "RECIPES", "REFERENCE_WEIGHTS", "ClassifierHistory", "Normalized", "SmallResNet",
    "augment", "build_classifier", "cache_key", "evaluate_accuracy", "load_or_train",
    "load_reference_classifier", "save_reference_weights", "train_classifier", "write_reference_weights",
]
