"""Run every metric of ``ttame_attr.metrics`` on the maps of one method."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from _quality.methods import Explainer
from ttame_attr.data import CLASS_NAMES
from ttame_attr.metrics import (
    ROAD,
    AverageDropIncrease,
    Deletion,
    EnergyPointingGame,
    Insertion,
    PointingGame,
)

#: Removed fractions of ROAD (the paper's).
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


@dataclass
class EvalSet:
    """The held-out images: pixel space ``(N, 3, H, W)``, labels, masks, predicted classes."""

    images: Tensor
    labels: Tensor
    masks: Tensor
    predicted: Tensor


@torch.no_grad()
def make_eval_set(pixel_model: nn.Module, data: Any, n: int, batch: int = 250) -> EvalSet:
    images, labels, masks = data.generate(range(n))
    predicted = torch.cat([pixel_model(images[i:i + batch]).argmax(1) for i in range(0, n, batch)])
    return EvalSet(images, labels, masks, predicted)


def explain_images(method: Explainer, images: Tensor, targets: Tensor) -> Tensor:
    """Maps ``(n, 1, H, W)`` of ``method`` for ``targets``, in batches of ``method.batch_size``."""
    out = []
    for i in range(0, images.shape[0], method.batch_size):
        x = images[i:i + method.batch_size]
        maps = method.explain(x, targets[i:i + method.batch_size]).detach().float().cpu()
        if maps.shape != (x.shape[0], 1, *x.shape[-2:]):
            raise RuntimeError(f"{method.name} returned maps of shape {tuple(maps.shape)}")
        out.append(maps)
    return torch.cat(out)


def compute_maps_interleaved(
    methods: list[Explainer], evalset: EvalSet, chunk: int = 20
) -> dict[str, tuple[Tensor, float]]:
    """``{name: (maps (N, 1, H, W) of the predicted classes, seconds per image)}``.

    The methods are timed in one interleaved pass: the images are cut into chunks of ``chunk``
    and every method explains a chunk before any method moves to the next one; the order of the
    methods rotates by one from chunk to chunk, so that none always runs first (or right after
    another). Load from other processes, and drifting clock speeds, then hit every method alike.
    One untimed call per method on the first image comes first (lazy set-up, first-call costs).
    """
    n = evalset.images.shape[0]
    for method in methods:
        explain_images(method, evalset.images[:1], evalset.predicted[:1])
    parts: dict[str, list[Tensor]] = {m.name: [] for m in methods}
    seconds = dict.fromkeys(parts, 0.0)
    for r, start in enumerate(range(0, n, chunk)):
        x, t = evalset.images[start:start + chunk], evalset.predicted[start:start + chunk]
        k = r % max(len(methods), 1)
        for method in methods[k:] + methods[:k]:
            begin = time.perf_counter()
            parts[method.name].append(explain_images(method, x, t))
            seconds[method.name] += time.perf_counter() - begin
    return {name: (torch.cat(parts[name]), seconds[name] / n) for name in parts}


def evaluate_maps(
    pixel_model: nn.Module,
    evalset: EvalSet,
    maps: Tensor,
    *,
    deletion_steps: int,
    batch: int = 100,
    road_chunk: int = 200,
    seed: int = 0,
    pg_tolerance: float = 4.0,
    road_max_iter: int = 2000,
    adic_maps: Tensor | None = None,
) -> dict[str, Any]:
    """All metrics for one method's maps, as a flat JSON-ready dict; AD/IC read ``adic_maps``
    when given (T-TAME's pre-sigmoid maps at map size, as the authors evaluate them).

    Besides the means, ``ad_15_per_class`` splits AD 15% by predicted class
    (:func:`ad_per_class`): a class map that marks the background scores near 100 there while
    the mean hides it."""
    gen = torch.Generator().manual_seed(seed)  # the same ROAD noise for every method
    # One ROAD object per removed fraction: the imputation solver iterates until the hardest
    # system of a chunk converges (90% removed needs ~4x the iterations of 10%), so chunks of one
    # fraction are ~2x cheaper than chunks mixing all seven. Same metric, same defaults.
    road_parts = {
        f"road_{f}": ROAD(pixel_model, fractions=(f,), generator=gen, max_batch=road_chunk,
                          max_iter=road_max_iter)
        for f in ROAD_FRACTIONS
    }
    metrics = {
        "ad_ic": AverageDropIncrease(pixel_model),
        **road_parts,
        "deletion": Deletion(pixel_model, steps=deletion_steps, max_batch=road_chunk),
        "insertion": Insertion(pixel_model, steps=deletion_steps, max_batch=road_chunk),
    }
    pg, pg_tol, epg = PointingGame(), PointingGame(tolerance=pg_tolerance), EnergyPointingGame()
    seconds: dict[str, float] = {}
    n = evalset.images.shape[0]
    for i in range(0, n, batch):
        x = evalset.images[i:i + batch]
        t = evalset.predicted[i:i + batch]
        m = maps[i:i + batch]
        for name, metric in metrics.items():
            start = time.perf_counter()
            metric.update(x, adic_maps[i:i + batch] if name == "ad_ic" and adic_maps is not None else m, t)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        gt = evalset.masks[i:i + batch]
        pg.update(m, gt)
        pg_tol.update(m, gt)
        epg.update(m, gt)
    adic = metrics["ad_ic"].compute()
    roads = [metrics[name].compute() for name in road_parts]
    morf = [float(r.morf_accuracy[0]) for r in roads]
    lerf = [float(r.lerf_accuracy[0]) for r in roads]
    dele = metrics["deletion"].compute()
    ins = metrics["insertion"].compute()
    result: dict[str, Any] = {}
    for f in adic.fractions:
        pct = round(100 * f)
        result[f"ad_{pct}"] = adic.average_drop[f]
        result[f"ic_{pct}"] = adic.increase_in_confidence[f]
    result.update(
        ad_15_per_class=ad_per_class(adic.drop[:, adic.fractions.index(0.15)], evalset.predicted),
        road_morf=sum(morf) / len(morf),
        road_lerf=sum(lerf) / len(lerf),
        road_fractions=list(ROAD_FRACTIONS),
        road_morf_curve=morf,
        road_lerf_curve=lerf,
        deletion_auc=dele.auc,
        insertion_auc=ins.auc,
        pointing_game=pg.compute().accuracy,
        pointing_game_tol=pg_tol.compute().accuracy,
        energy_pointing_game=epg.compute().energy,
        metric_seconds=seconds,
    )
    return result


def ad_per_class(drop: Tensor, predicted: Tensor) -> dict[str, dict[str, float]]:
    """``{class name: {"n": images, "ad": mean drop}}`` of the per-image drops ``drop`` ``(N,)``
    (``ADICResult.drop`` at one fraction), split by the predicted class ``predicted`` ``(N,)``.
    The mean of the classes' ``ad`` weighted by ``n`` is the AD of all images."""
    return {CLASS_NAMES[c]: {"n": int((predicted == c).sum()), "ad": float(drop[predicted == c].mean())}
            for c in range(len(CLASS_NAMES)) if bool((predicted == c).any())}
