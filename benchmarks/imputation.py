"""ROAD's noisy linear imputation: the exact sparse-LU solver against the conjugate gradient.

Usage (from the repository root)::

    python benchmarks/imputation.py                  # 100 SyntheticShapes images, 64x64
    python benchmarks/imputation.py --threads 1 --images 50
    python benchmarks/imputation.py --quick          # 4 images 32x32, 2 repetitions, to a temp dir

For each removed fraction of ROAD, the pixels are removed in the order of a smooth random
saliency map (contiguous regions, as real explanation maps remove), and both solvers impute
them; repetitions are interleaved with the order of the solvers alternating (cg then direct on
even repetitions, direct then cg on odd ones, so that neither always runs first) and the medians
compared, after one untimed call of each solver. Prints the seconds per image of each solver,
their ratio, and the largest difference between the two results (the conjugate gradient stops
at a relative residual of 1e-5, the direct solver is exact to rounding).

Writes ``imputation.json`` (the run: command line, date, machine, versions, git commit; every
fraction's times; ``summary.cg_over_direct``) and ``imputation.md`` (the table, between
``<!-- table: solvers -->`` and ``<!-- /table -->``) into ``--out`` (default
``benchmarks/results/``; ``--quick``: a temporary folder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import default_out, run_header, run_info, write_results  # noqa: E402

from ttame_attr.data import SyntheticShapes  # noqa: E402
from ttame_attr.metrics import noisy_linear_impute  # noqa: E402

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
SOLVERS = ("cg", "direct")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 4 images 32x32, 2 repetitions")
    p.add_argument("--out", type=Path, default=None,
                   help="folder of imputation.json/.md (default benchmarks/results/; --quick: a "
                        "temp dir)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.size, args.reps = min(args.images, 4), 32, min(args.reps, 2)
    args.out = args.out or default_out(args.quick, "imputation")
    return args


def solver_order(rep: int) -> tuple[str, ...]:
    """cg first on even repetitions, direct first on odd ones."""
    return SOLVERS if rep % 2 == 0 else SOLVERS[::-1]


def time_fraction(images: torch.Tensor, removed: torch.Tensor, reps: int) -> dict[str, Any]:
    """Both solvers on one removal pattern, ``reps`` times with alternating order."""
    n = images.shape[0]
    times: dict[str, list[float]] = {k: [] for k in SOLVERS}
    outs: dict[str, torch.Tensor] = {}
    for rep in range(reps):
        for solver in solver_order(rep):
            start = time.perf_counter()
            outs[solver] = noisy_linear_impute(images, removed, noise_std=0.0, solver=solver)
            times[solver].append(time.perf_counter() - start)
    med = {k: statistics.median(v) / n for k, v in times.items()}
    return {"cg_s_per_image": med["cg"], "direct_s_per_image": med["direct"],
            "cg_over_direct": med["cg"] / med["direct"],
            "max_abs_diff": (outs["cg"] - outs["direct"]).abs().max().item(),
            "cg_seconds": times["cg"], "direct_seconds": times["direct"]}


def markdown(rows: list[dict[str, Any]], summary: dict[str, float]) -> str:
    lines = ["| removed | cg s / image | direct s / image | cg / direct | max abs diff |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fraction']:.0%} | {r['cg_s_per_image']:.4f} | "
                     f"{r['direct_s_per_image']:.4f} | {r['cg_over_direct']:.2f} | "
                     f"{r['max_abs_diff']:.1e} |")
    lines.append(f"| all | {summary['cg_s_per_image']:.4f} | {summary['direct_s_per_image']:.4f} "
                 f"| {summary['cg_over_direct']:.2f} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = run_info("imputation.py", argv)
    n, size = args.images, args.size
    images = SyntheticShapes(n, size, seed=0, split="test").generate(range(n))[0]
    gen = torch.Generator().manual_seed(0)
    saliency = F.interpolate(torch.rand(n, 1, 5, 5, generator=gen), size=(size, size),
                             mode="bilinear", align_corners=False).view(n, -1)
    order = saliency.argsort(dim=1, descending=True)
    print(f"{n} images {size}x{size}, {torch.get_num_threads()} threads, {args.reps} reps")
    print(f"{'removed':>8} {'cg s/img':>9} {'direct s/img':>13} {'cg/direct':>10} {'max |diff|':>11}")
    rows = []
    for fraction in FRACTIONS:
        removed = torch.zeros(n, size * size, dtype=torch.bool)
        removed.scatter_(1, order[:, : round(fraction * size * size)], True)
        if not rows:  # untimed first calls (imports, lazy set-up) of both solvers
            for solver in SOLVERS:
                noisy_linear_impute(images[:1], removed[:1].view(1, size, size), noise_std=0.0,
                                    solver=solver)
        row = {"fraction": fraction, **time_fraction(images, removed.view(n, size, size), args.reps)}
        rows.append(row)
        print(f"{fraction:>8.0%} {row['cg_s_per_image']:>9.4f} {row['direct_s_per_image']:>13.4f} "
              f"{row['cg_over_direct']:>10.2f} {row['max_abs_diff']:>11.1e}")
    cg = sum(r["cg_s_per_image"] for r in rows)
    direct = sum(r["direct_s_per_image"] for r in rows)
    summary = {"cg_s_per_image": cg, "direct_s_per_image": direct, "cg_over_direct": cg / direct}
    print(f"{'all':>8} {cg:>9.4f} {direct:>13.4f} {cg / direct:>10.2f}")
    settings = {"images": n, "size": size, "reps": args.reps, "quick": args.quick,
                "fractions": list(FRACTIONS), "timing": "median of the repetitions; solver order "
                "alternating: cg first on even repetitions, direct first on odd ones"}
    payload = {"run": run, "settings": settings, "fractions": rows, "summary": summary}
    text = ("# ROAD imputation solvers: `benchmarks/imputation.py`\n\n" + run_header(run)
            + f"\n{n} images {size}x{size}, {args.reps} repetitions, {settings['timing']}.\n\n"
            + f"<!-- table: solvers -->\n{markdown(rows, summary)}<!-- /table -->\n")
    paths = write_results(args.out, "imputation", payload, text)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
