"""The arrays the HTML report draws: mean maps, and the maps and images of example images."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ttame_attr.audit._collect import StoreSummary
from ttame_attr.audit._score import ClassScore, ImageScores

__all__ = ["gather_pictures", "image_source"]

logger = logging.getLogger(__name__)

ImageFn = Callable[[int, int], "np.ndarray | None"]


def _as_image(item: Any) -> np.ndarray | None:
    """A dataset item (tensor, array, PIL image, or a tuple starting with one) as ``(H, W, 3)`` in [0, 1]."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    if hasattr(item, "convert"):  # a PIL image
        arr = np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0
    else:
        t = torch.as_tensor(item).detach().cpu().float()
        if t.dim() == 4:
            t = t[0]
        if t.dim() != 3:
            return None
        arr = (t.permute(1, 2, 0) if t.shape[0] in (1, 3) else t).numpy()
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:  # normalised inputs: stretch for display
        arr = (arr - lo) / max(hi - lo, 1e-6)
    return np.ascontiguousarray(arr[..., :3], dtype=np.float32)


def image_source(images: Any, summary: StoreSummary) -> ImageFn | None:
    """``(index, row) -> (H, W, 3) image or None``, from ``images`` or the store's paths."""
    if images is None and summary.paths is None:
        return None

    def fetch(index: int, row: int) -> np.ndarray | None:
        try:
            if images is None:
                from PIL import Image

                with Image.open(summary.paths[row]) as img:
                    img.thumbnail((160, 160))
                    return _as_image(img)
            return _as_image(images(index) if callable(images) and not hasattr(images, "__getitem__")
                             else images[index])
        except (OSError, IndexError, KeyError, TypeError, ValueError) as err:
            logger.warning("no picture for image %d: %s", index, err)
            return None

    return fetch


def _examples(maps: dict[int, np.ndarray], summary: StoreSummary, rows: np.ndarray,
              fetch: ImageFn | None) -> dict[str, Any]:
    """The maps (from ``maps``, read beforehand) and the pictures of the images at ``rows``."""
    stack = np.stack([maps[int(r)] for r in rows]) if len(rows) else np.zeros((0, *summary.map_size),
                                                                             dtype=np.float32)
    pics = [fetch(int(summary.index[r]), int(r)) if fetch is not None else None for r in rows]
    return {"index": [int(summary.index[r]) for r in rows], "maps": stack, "images": pics}


def _read_maps(store: Any, rows: list[np.ndarray]) -> dict[int, np.ndarray]:
    """``{row: top-1 map}`` of every row in ``rows``, read in one call (each shard read at most once)."""
    wanted = np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)
    if len(wanted) == 0:
        return {}
    maps = store.maps(wanted)[:, 0].float().numpy()
    return {int(r): m for r, m in zip(wanted, maps)}


def gather_pictures(store: Any, summary: StoreSummary, shown: list[tuple[ClassScore, ImageScores]],
                    images: Any, examples: int) -> dict[int, dict[str, Any]]:
    """``{class: pictures}`` for the classes the HTML report details.

    Each entry holds ``mean_map`` ``(h, w)``, ``groups`` (per group, most suspicious first: its
    ``mean`` coarse evidence ``(gh, gw)`` and its typical images' ``maps`` and ``images``) and
    ``top`` (the class's most suspicious images). Only the maps of the images shown are read
    (in one pass over the store), and only their pictures are fetched.
    """
    fetch = image_source(images, summary)
    by_class = {d.cls: d for d in summary.classes}
    plan = []
    for cs, im in shown:
        data = by_class[cs.cls]
        top = np.argsort(-im.score, kind="stable")[:examples]
        plan.append((cs, im, data, top, [data.rows[g.typical] for g in cs.groups], data.rows[top]))
    maps = _read_maps(store, [r for *_, group_rows, top_rows in plan for r in (*group_rows, top_rows)])
    out: dict[int, dict[str, Any]] = {}
    for cs, im, data, top, group_rows, top_rows in plan:
        groups = []
        for g, rows in zip(cs.groups, group_rows):
            mean = data.evidence[g.members].mean(axis=0).reshape(summary.grid)
            groups.append({"group": g.group, "mean": mean, **_examples(maps, summary, rows, fetch)})
        out[cs.cls] = {"mean_map": data.mean_map, "groups": groups,
                       "top": _examples(maps, summary, top_rows, fetch),
                       "top_scores": [float(im.score[i]) for i in top]}
    return out
