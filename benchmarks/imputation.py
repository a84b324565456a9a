"""ROAD's noisy linear imputation: the exact sparse-LU solver against the conjugate gradient.

Usage (from the repository root)::

    python benchmarks/imputation.py                  # 100 SyntheticShapes images, 64x64
    python benchmarks/imputation.py --threads 1 --images 50

For each removed fraction of ROAD, the pixels are removed in the order of a smooth random
saliency map (contiguous regions, as real explanation maps remove), and both solvers impute
them; repetitions are interleaved and the medians compared. Prints the seconds per image of each
solver, their ratio, and the largest difference between the two results (the conjugate gradient
stops at a relative residual of 1e-5, the direct solver is exact to rounding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ttame_attr.data import SyntheticShapes  # noqa: E402
from ttame_attr.metrics import noisy_linear_impute  # noqa: E402

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, size = args.images, args.size
    images = SyntheticShapes(n, size, seed=0, split="test").generate(range(n))[0]
    gen = torch.Generator().manual_seed(0)
    saliency = F.interpolate(torch.rand(n, 1, 5, 5, generator=gen), size=(size, size),
                             mode="bilinear", align_corners=False).view(n, -1)
    order = saliency.argsort(dim=1, descending=True)
    print(f"{n} images {size}x{size}, {torch.get_num_threads()} threads, {args.reps} reps")
    print(f"{'removed':>8} {'cg s/img':>9} {'direct s/img':>13} {'cg/direct':>10} {'max |diff|':>11}")
    totals = {"cg": 0.0, "direct": 0.0}
    for fraction in FRACTIONS:
        removed = torch.zeros(n, size * size, dtype=torch.bool)
        removed.scatter_(1, order[:, : round(fraction * size * size)], True)
        removed = removed.view(n, size, size)
        times: dict[str, list[float]] = {"cg": [], "direct": []}
        outs: dict[str, torch.Tensor] = {}
        for _ in range(args.reps):
            for solver in ("cg", "direct"):
                start = time.perf_counter()
                outs[solver] = noisy_linear_impute(images, removed, noise_std=0.0, solver=solver)
                times[solver].append(time.perf_counter() - start)
        med = {k: statistics.median(v) / n for k, v in times.items()}
        for k in totals:
            totals[k] += med[k]
        diff = (outs["cg"] - outs["direct"]).abs().max().item()
        print(f"{fraction:>8.0%} {med['cg']:>9.4f} {med['direct']:>13.4f} "
              f"{med['cg'] / med['direct']:>10.2f} {diff:>11.1e}")
    print(f"{'all':>8} {totals['cg']:>9.4f} {totals['direct']:>13.4f} "
          f"{totals['cg'] / totals['direct']:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
