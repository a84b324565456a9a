"""Groups of images explained the same way: k-means on the coarse evidence (scikit-learn).

As in SpRAy (Lapuschkin et al., 2019), the explanations of one class are downsampled and
clustered; SpRAy uses spectral clustering and the eigengap to pick the number of groups. Here
k-means runs on the evidence grids themselves (each summing to one), so that two explanations
are close when their evidence *mass* lies in the same places: where an explanation puts most of
its evidence decides its group, not how its faint remainder spreads. (Square roots of the grids,
the Hellinger geometry, weigh a smooth map's many faint cells as much as its peak: on T-TAME's
smooth CNN maps they split the images carrying a planted mark by where their faint evidence lay
and mixed in images explained by their object; see ``docs/audit.rst``.) The number of groups is
the one with the best silhouette, kept only if that silhouette shows groups at all.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ttame_attr._core.optional import require

__all__ = ["cluster", "require_sklearn"]

logger = logging.getLogger(__name__)

#: Below this silhouette the class's explanations are taken as one group.
MIN_SILHOUETTE = 0.15
#: At most this many explanations fit the k-means and score the silhouettes (the rest are
#: assigned to the nearest centre), so the clustering's cost does not grow with the class.
FIT_LIMIT = 1000
#: At most this many of those score the silhouettes (the same random ones for every number of
#: groups): the silhouette's cost grows with the square of the images it scores.
SILHOUETTE_LIMIT = 500


def require_sklearn() -> Any:
    """The ``sklearn`` module, or an ImportError naming the extra to install."""
    return require("sklearn", "audit", "ttame_attr.audit (grouping explanations)", package="scikit-learn",
                   note="(or `pip install scikit-learn`)")


def _sizes_ok(labels: np.ndarray, k: int, min_size: int) -> bool:
    return bool(np.bincount(labels, minlength=k).min() >= min_size)


def features(evidence: np.ndarray) -> np.ndarray:
    """The vectors k-means groups: the evidence grids themselves (Euclidean distance between them)."""
    return np.clip(evidence, 0.0, None).astype(np.float64)


def cluster(evidence: np.ndarray, max_groups: int, min_group_size: int, seed: int) -> np.ndarray:
    """Group a class's explanations.

    Args:
        evidence: ``(n, cells)`` coarse evidence, rows summing to one.
        max_groups: the most groups to try (1 turns clustering off).
        min_group_size: every group has at least this many images, else fewer groups are used.
        seed: seeds the sampling and k-means.

    Returns:
        ``(n,)`` int64 group of each image, groups numbered by size (0 the largest).
    """
    n = evidence.shape[0]
    if max_groups < 2 or n < 2 * min_group_size:
        return np.zeros(n, dtype=np.int64)
    require_sklearn()
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = features(evidence)
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(n, FIT_LIMIT, replace=False)] if n > FIT_LIMIT else x
    scored = rng.choice(len(fit), SILHOUETTE_LIMIT, replace=False) if len(fit) > SILHOUETTE_LIMIT else None
    best, best_score = None, MIN_SILHOUETTE
    for k in range(2, min(max_groups, n // min_group_size) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(fit)
        if len(np.unique(km.labels_)) < 2:
            continue
        labels = km.predict(x)
        if not _sizes_ok(labels, k, min_group_size):
            continue
        sub = km.labels_ if scored is None else km.labels_[scored]
        if len(np.unique(sub)) < 2:
            continue
        score = float(silhouette_score(fit if scored is None else fit[scored], sub))
        logger.debug("k=%d silhouette %.3f", k, score)
        if score > best_score:
            best, best_score = labels, score
    if best is None:
        return np.zeros(n, dtype=np.int64)
    order = np.argsort(-np.bincount(best), kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return renumber[best].astype(np.int64)
