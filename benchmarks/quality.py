"""Explanation quality of T-TAME against Grad-CAM, Grad-CAM++, Score-CAM, RISE and IG.

One command::

    python benchmarks/quality.py                    # cnn, vit, swin; 500 held-out images
    python benchmarks/quality.py --backbones cnn --n-images 200
    python benchmarks/quality.py --quick --out /tmp/q   # tiny smoke run (untrained-ish models)

For each backbone (a small CNN, ViT and Swin trained on :class:`ttame_attr.data.SyntheticShapes`
by :func:`ttame_attr.classifiers.load_or_train`, cached under ``benchmarks/_cache/``) it fits a T-TAME
head (cached too), explains the predicted class of ``--n-images`` held-out test images with every
method, and scores the maps with every metric of :mod:`ttame_attr.metrics`: AD/IC at 100/50/15%,
ROAD MoRF/LeRF, deletion/insertion AUC, pointing game and energy pointing game against the
dataset's object masks. It writes ``results.json``, ``<backbone>.md`` (a table) and
``<backbone>.png`` (overlays: images x methods) into ``--out`` and prints each method's seconds
per image.

Images are handled in ``[0, 1]`` pixel space: the metrics see ``Normalize + classifier``, so
masked or deleted pixels are black and ROAD imputes pixel values, for every method alike.
Baseline maps (RISE, Score-CAM, ... all but T-TAME) are cached under ``--cache`` keyed by the
classifier's weights and the method's settings; ``--no-map-cache`` recomputes them.

Cost (seconds per image on one core of the 2-core development machine, the other core busy; CNN,
500 images): T-TAME 0.001, Grad-CAM 0.003, Score-CAM 0.11, IG (50 steps) 0.11, RISE 0.9 (1,000
masks); all metrics together about 0.19 per image and method (ROAD's exact imputation is 0.11
of it). With the classifiers, T-TAME heads and baseline maps cached (``--cache``), a run of the
three backbones on 500 images is metrics only. On slow machines use fewer images / masks
(``--n-images``, ``--rise-masks``, ``--deletion-steps``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM opens a bar per image

import torch  # noqa: E402
from _quality import methods as M  # noqa: E402
from _quality.evaluation import compute_maps, evaluate_maps, make_eval_set  # noqa: E402
from _quality.models import TTAMEConfig, fingerprint, get_classifier, get_ttame  # noqa: E402
from _quality.report import figure, goal_status, markdown_table  # noqa: E402

from ttame_attr.data import CLASS_NAMES, SyntheticShapes  # noqa: E402

BACKBONES = ("cnn", "vit", "swin")
IMAGE_SIZE = 64

#: T-TAME training per backbone: the paper's recipe (SGD Nesterov 0.9, wd 5e-4, OneCycleLR,
#: batch 32, loss weights 1.5/2/0.01) on 8,000 training images (250 steps per epoch), with the
#: maximum learning rate raised from the paper's 1e-3 to 1e-2: the paper trains 40,000 steps per
#: ImageNet epoch, this benchmark 250. Chosen with ``benchmarks/tune_ttame.py`` on 300 images of
#: the *validation* split (never the test images the benchmark reports), lr 1e-3 -> 1e-2:
#: CNN AD15 2.75 -> 2.45, IC15 49.3 -> 53.3, PG 0.72 -> 0.76;
#: ViT AD15 42.6 -> 33.7, IC15 9.7 -> 13.7 (16 epochs instead of 8: AD15 30.5, IC15 12.3);
#: Swin AD15 10.1 -> 9.4, IC15 41.7 -> 40.0, PG 0.59 -> 0.62 (a draw; 1e-2 kept for all three).
#: The ViT gets 16 epochs: its loss was still falling after 8.
TTAME_CONFIGS: dict[str, TTAMEConfig] = {
    "cnn": TTAMEConfig(n_train=8000, epochs=8, lr=1e-2),
    "vit": TTAMEConfig(n_train=8000, epochs=16, lr=1e-2),
    "swin": TTAMEConfig(n_train=8000, epochs=8, lr=1e-2),
}
QUICK_TTAME = TTAMEConfig(n_train=64, epochs=1, lr=1e-3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--n-images", type=int, default=500, help="held-out images per backbone")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "_cache")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 32x32 images, tiny training, few images and masks")
    p.add_argument("--rise-masks", type=int, default=1000,
                   help="RISE masks per image (8x8 cells on 64x64 images)")
    p.add_argument("--rise-cells", type=int, default=8)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--deletion-steps", type=int, default=32)
    p.add_argument("--road-max-iter", type=int, default=2000,
                   help="iteration cap of ROAD's conjugate gradient (used without scipy)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="subset of methods (T-TAME Grad-CAM Grad-CAM++ Score-CAM RISE IG)")
    p.add_argument("--classifier-n-train", type=int, default=None,
                   help="override the classifier recipe of ttame_attr.classifiers.RECIPES")
    p.add_argument("--classifier-epochs", type=int, default=None)
    p.add_argument("--classifier-lr", type=float, default=None)
    p.add_argument("--ttame-epochs", type=int, default=None, help="override TTAME_CONFIGS")
    p.add_argument("--ttame-lr", type=float, default=None, help="override TTAME_CONFIGS")
    p.add_argument("--ttame-n-train", type=int, default=None, help="override TTAME_CONFIGS")
    p.add_argument("--ttame-mask-space", choices=("auto", "input", "pixel"), default=None,
                   help="override TTAME_CONFIGS")
    p.add_argument("--no-map-cache", action="store_true", help="recompute every baseline's maps")
    p.add_argument("--figure-images", type=int, default=6)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n_images < 1:
        p.error("--n-images: expected a positive number of images")
    if args.quick:
        args.n_images = min(args.n_images, 2)
        args.rise_masks, args.ig_steps, args.deletion_steps = 16, 4, 4
        args.road_max_iter = 20
        args.figure_images = min(args.figure_images, 3)
        args.no_map_cache = True
        args.cache = args.out / "_cache_quick"
    return args


def build_methods(
    arch: str, model: torch.nn.Module, pixel_model: torch.nn.Module, explainer: Any,
    args: argparse.Namespace, image_size: int,
) -> list[M.Explainer]:
    all_methods: list[M.Explainer] = [
        M.TTAMEMethod(explainer),
        M.PytorchGradCAM("Grad-CAM", model, arch),
        M.PytorchGradCAM("Grad-CAM++", model, arch),
        M.PytorchGradCAM("Score-CAM", model, arch),
        M.RISE(pixel_model, image_size, n_masks=args.rise_masks, cells=args.rise_cells,
               seed=args.seed),
        M.CaptumIG(pixel_model, n_steps=args.ig_steps),
    ]
    if args.methods:
        unknown = set(args.methods) - {m.name for m in all_methods}
        if unknown:
            raise SystemExit(f"--methods: unknown {sorted(unknown)}")
        all_methods = [m for m in all_methods if m.name in args.methods]
    return all_methods


def cached_maps(
    method: M.Explainer, evalset: Any, cache: Path | None, key_parts: dict[str, Any]
) -> tuple[torch.Tensor, float, bool]:
    """Maps and seconds per image of ``method``, from ``cache`` when it holds them."""
    if cache is None:
        maps, sec = compute_maps(method, evalset)
        return maps, sec, False
    key = hashlib.sha1(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / "maps" / f"{method.name}_{key}.pt"
    if path.exists():
        blob = torch.load(path, weights_only=True)
        return blob["maps"].float(), float(blob["seconds_per_image"]), True
    maps, sec = compute_maps(method, evalset)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"maps": maps.float(), "seconds_per_image": torch.tensor(sec)}, path)
    return maps, sec, False


def run_backbone(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    image_size = 32 if args.quick else IMAGE_SIZE
    t0 = time.perf_counter()
    recipe = {
        "num_train": args.classifier_n_train, "epochs": args.classifier_epochs,
        "lr": args.classifier_lr,
    }
    recipe = {k: v for k, v in recipe.items() if v is not None}
    model, cls_info = get_classifier(arch, args.cache, image_size, args.quick, args.seed, recipe)
    pixel_model = M.PixelModel(model).eval()
    test = SyntheticShapes(args.n_images, image_size=image_size, seed=args.seed, split="test")
    evalset = make_eval_set(pixel_model, test, args.n_images)
    acc = float((evalset.predicted == evalset.labels).float().mean())
    cls_info["test_accuracy"] = acc
    print(f"[{arch}] classifier: {acc:.1%} on the {args.n_images} evaluation images "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    cfg = QUICK_TTAME if args.quick else TTAME_CONFIGS[arch]
    overrides = {
        "epochs": args.ttame_epochs, "lr": args.ttame_lr, "n_train": args.ttame_n_train,
        "mask_space": args.ttame_mask_space,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    t1 = time.perf_counter()
    explainer: Any = None
    ttame_meta: dict[str, Any] = {"skipped": "T-TAME not in --methods"}
    if args.methods is None or "T-TAME" in args.methods:
        explainer, ttame_meta = get_ttame(model, arch, cfg, args.cache, image_size)
        last = ttame_meta["history"][-1] if ttame_meta.get("history") else {}
        print(f"[{arch}] T-TAME head ({'cached' if ttame_meta['cached'] else 'trained'}, "
              f"{time.perf_counter() - t1:.0f} s): layers {explainer.layers}, "
              f"final fidelity {last.get('fidelity', float('nan')):.3f}", flush=True)

    methods = build_methods(arch, model, pixel_model, explainer, args, image_size)
    results: dict[str, dict[str, Any]] = {}
    fig_maps: dict[str, torch.Tensor] = {}
    fp = fingerprint(model)
    map_cache = None if args.no_map_cache else args.cache
    for method in methods:
        try:
            t2 = time.perf_counter()
            cache = None if method.name == "T-TAME" else map_cache
            maps, sec, from_cache = cached_maps(method, evalset, cache, {
                "model": fp, "method": method.name, "settings": method.describe(),
                "n": args.n_images, "seed": args.seed, "size": image_size,
            })
            t3 = time.perf_counter()
            res = evaluate_maps(pixel_model, evalset, maps, deletion_steps=args.deletion_steps,
                                seed=args.seed, road_max_iter=args.road_max_iter)
            res["seconds_per_image"] = sec
            res["maps_from_cache"] = from_cache
            res["settings"] = method.describe()
            results[method.name] = res
            fig_maps[method.name] = maps[: args.figure_images]
            print(f"[{arch}] {method.name:<10} {sec:8.4f} s/image"
                  f"{' (cached maps)' if from_cache else ''}; metrics "
                  f"{time.perf_counter() - t3:.0f} s; AD15 {res['ad_15']:.2f} "
                  f"IC15 {res['ic_15']:.2f} MoRF {res['road_morf']:.3f} "
                  f"PG {res['pointing_game']:.3f} ({time.perf_counter() - t2:.0f} s)", flush=True)
        finally:
            method.close()

    out = {
        "backbone": arch,
        "n_images": args.n_images,
        "image_size": image_size,
        "classifier": {**cls_info, "fingerprint": fp,
                       "params": sum(p.numel() for p in model.parameters())},
        "ttame": ttame_meta,
        "methods": results,
        "goal_ranks": goal_status(results),
        "seconds": time.perf_counter() - t0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{arch}.md").write_text(markdown_table(arch, out))
    k = args.figure_images
    labels = [
        f"pred {CLASS_NAMES[int(p)]}\ntrue {CLASS_NAMES[int(t)]}"
        for p, t in zip(evalset.predicted[:k], evalset.labels[:k])
    ]
    figure(args.out / f"{arch}.png", arch, evalset.images[:k], evalset.masks[:k], fig_maps,
           labels)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("ttame_attr.training", "ttame_attr.classifiers"):  # epoch lines of the training
        logging.getLogger(name).setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "n_images": args.n_images, "quick": args.quick, "rise_masks": args.rise_masks,
            "rise_cells": args.rise_cells, "ig_steps": args.ig_steps,
            "deletion_steps": args.deletion_steps, "road_max_iter": args.road_max_iter,
            "seed": args.seed,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "backbones": {},
    }
    for arch in args.backbones:
        report["backbones"][arch] = run_backbone(arch, args)
    report["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    tables = [markdown_table(a, r) for a, r in report["backbones"].items()]
    (args.out / "results.md").write_text("\n".join(tables))
    print("\nSeconds per image:")
    for arch, res in report["backbones"].items():
        times = ", ".join(f"{m} {r['seconds_per_image']:.4f}" for m, r in res["methods"].items())
        print(f"  {arch}: {times}")
    print(f"\nWrote {args.out}/results.json, results.md, "
          + ", ".join(f"{a}.md/{a}.png" for a in args.backbones)
          + f" in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
