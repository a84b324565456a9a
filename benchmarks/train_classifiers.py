"""Train the three SyntheticShapes classifiers and report held-out accuracy and training time.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/train_classifiers.py                 # cnn, vit, swin
    PYTHONPATH=. python benchmarks/train_classifiers.py --archs cnn --retrain

Checkpoints and metrics are cached under ``benchmarks/_cache/`` (git-ignored) by
:func:`ttame_attr.classifiers.load_or_train`; a second run only loads and re-evaluates them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from _quality.models import CLASSIFIER_NUM_EVAL

from ttame_attr.classifiers import ARCHITECTURES, evaluate_accuracy, load_or_train
from ttame_attr.data import SyntheticShapes

CACHE = Path(__file__).resolve().parent / "_cache"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="ignore cached checkpoints")
    parser.add_argument("--cache-dir", type=Path, default=CACHE)
    parser.add_argument("--num-test", type=int, default=CLASSIFIER_NUM_EVAL,
                        help="validation and test images measured (default: the quality benchmark's, "
                             "whose cache key holds it)")
    parser.add_argument("--num-train", type=int, default=None, help="override the recipe")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs:
        start = time.perf_counter()
        model, info = load_or_train(
            arch,
            args.cache_dir,
            seed=args.seed,
            device=args.device,
            progress=True,
            retrain=args.retrain,
            num_eval=args.num_test,
            num_train=args.num_train,
            epochs=args.epochs,
        )
        wall = time.perf_counter() - start
        test_loader = torch.utils.data.DataLoader(
            SyntheticShapes(args.num_test, seed=args.seed, split="test", return_mask=False),
            batch_size=500,
        )
        accuracy = evaluate_accuracy(model, test_loader, args.device)
        row = {
            "arch": arch,
            "params": sum(p.numel() for p in model.parameters()),
            "recipe": info["recipe"],
            "test_accuracy": accuracy,
            "val_accuracy": info["val_accuracy"],
            "train_seconds": info["train_seconds"],
            "wall_seconds_this_run": wall,
            "cached": info["cached"],
            "threads": args.threads,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{'arch':6s} {'params':>8s} {'test acc':>9s} {'train s':>8s}  cached")
    for r in rows:
        print(
            f"{r['arch']:6s} {r['params']:8d} {r['test_accuracy']:9.4f} "
            f"{r['train_seconds']:8.1f}  {r['cached']}"
        )


if __name__ == "__main__":
    main()
