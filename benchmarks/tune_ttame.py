"""Score T-TAME training settings on the *validation* split (never the benchmark's test images).

Usage (from the repository root, classifiers cached by ``benchmarks/quality.py``)::

    python benchmarks/tune_ttame.py --backbones cnn vit swin             # quality.py's settings
    python benchmarks/tune_ttame.py --backbones vit --lr 1e-3            # the paper's max lr
    python benchmarks/tune_ttame.py --backbones vit --lr 1e-2 --epochs 16
    python benchmarks/tune_ttame.py --backbones swin --n-train 1000 --epochs 64 --lr 5e-3 --seed 1

Fits (or loads from ``--cache``) a T-TAME head with :data:`quality.TTAME_CONFIGS` and the given
overrides, then scores it on ``--n-images`` validation images: AD / IC at 100/50/15% (of the
pre-sigmoid maps at the head's map size, the authors' protocol, as ``quality.py`` and
``budget.py`` score them), the pointing game (strict and with 4 px tolerance, and strict per class)
and ROAD MoRF, and AD 15% per predicted class (a class map that marks the background scores near
100 there while the mean hides it). Prints one JSON line per backbone, with the schedule the fit
ran and the classes whose maps died in training (``fit`` warns of them). ``quality.py``'s learning
rate and epochs were chosen with this script, when it scored AD/IC on the sigmoid maps
``attribute`` returns.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _quality import methods as M  # noqa: E402
from _quality.models import get_classifier, get_ttame  # noqa: E402
from quality import BACKBONES, IMAGE_SIZE, TTAME_CONFIGS  # noqa: E402

from ttame_attr.data import CLASS_NAMES, SyntheticShapes  # noqa: E402
from ttame_attr.metrics import ROAD, AverageDropIncrease, PointingGame  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--lr", type=float, default=None, help="override TTAME_CONFIGS")
    p.add_argument("--epochs", type=int, default=None, help="override TTAME_CONFIGS")
    p.add_argument("--n-train", type=int, default=None, help="override TTAME_CONFIGS")
    p.add_argument("--seed", type=int, default=None, help="T-TAME's training seed (override TTAME_CONFIGS)")
    p.add_argument("--n-images", type=int, default=300, help="validation images scored")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "_cache")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"lr": args.lr, "epochs": args.epochs, "n_train": args.n_train, "seed": args.seed}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    images, _, masks = SyntheticShapes(
        args.n_images, IMAGE_SIZE, seed=0, split="val"
    ).generate(range(args.n_images))
    for arch in args.backbones:
        cfg = dataclasses.replace(TTAME_CONFIGS[arch], **overrides)
        model, _ = get_classifier(arch, args.cache, IMAGE_SIZE, False, 0, {})
        pixel_model = M.PixelModel(model).eval()
        start = time.perf_counter()
        explainer, meta = get_ttame(model, arch, cfg, args.cache, IMAGE_SIZE)
        fit_seconds = time.perf_counter() - start
        with torch.no_grad():
            predicted = pixel_model(images).argmax(1)
        method = M.TTAMEMethod(explainer)
        maps = method.explain(images, predicted)
        adic = AverageDropIncrease(pixel_model)
        adic.update(images, method.adic_maps(images, predicted), predicted)
        adic_result = adic.compute()
        strict, tolerant = PointingGame(), PointingGame(tolerance=4.0)
        strict.update(maps, masks)
        tolerant.update(maps, masks)
        road = ROAD(pixel_model, generator=torch.Generator().manual_seed(0))
        road.update(images, maps, predicted)
        drop_15 = adic_result.drop[:, adic_result.fractions.index(0.15)]
        peak = maps.flatten(1).argmax(1)
        hits = masks.flatten(1)[torch.arange(len(peak)), peak] > 0
        last = meta["history"][-1] if meta.get("history") else {}
        print(json.dumps({
            "backbone": arch,
            "config": dataclasses.asdict(cfg),
            "cached": meta["cached"],
            "fit_seconds": round(fit_seconds),
            "final_loss": last.get("loss"),
            "fidelity": last.get("fidelity"),
            "dead_classes": last.get("dead_classes"),
            "full_classes": last.get("full_classes"),
            "schedule": meta.get("schedule"),
            "ad": {str(k): round(v, 2) for k, v in adic_result.average_drop.items()},
            "ic": {str(k): round(v, 1) for k, v in adic_result.increase_in_confidence.items()},
            "ad_15_per_class": {
                name: round(drop_15[predicted == c].mean().item(), 2)
                for c, name in enumerate(CLASS_NAMES) if bool((predicted == c).any())
            },
            "pointing_game": strict.compute().accuracy,
            "pointing_game_tol": tolerant.compute().accuracy,
            "pointing_game_per_class": {
                name: round(hits[predicted == c].float().mean().item(), 2)
                for c, name in enumerate(CLASS_NAMES) if bool((predicted == c).any())
            },
            "road_morf": round(float(road.compute().morf_accuracy.mean()), 3),
        }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
