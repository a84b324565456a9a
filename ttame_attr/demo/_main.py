"""The demo's command line: ``ttame demo`` and ``python -m ttame_attr.demo`` share it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ttame_attr.demo._run import DemoConfig, run_demo

__all__ = ["add_arguments", "main", "run_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the demo's options to ``parser`` (and return it)."""
    parser.add_argument("--out", default="ttame_demo_output",
                        help="output folder (default ttame_demo_output)")
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--train-classifier", action="store_true",
                        help="train the classifier here instead of loading the shipped one (rougher)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the demo with parsed options, printing its status lines.

    Raises:
        ValueError: for a bad option or a missing plotting library (the message says which).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            "demo: the report needs matplotlib; install it with `pip install ttame-attr[demo]`.") from None
    config = DemoConfig.quick(args.seed) if args.quick else DemoConfig.full(args.seed)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected a positive integer, got {args.threads}.")
        config.threads = args.threads
    config.train_classifier = bool(args.train_classifier)
    run_demo(args.out, config, progress=not args.quiet, echo=print)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ttame_attr.demo [options]``; returns the exit status."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m ttame_attr.demo",
        description="The end-to-end T-TAME demo on synthetic data, with an HTML report."))
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    try:
        return run_from_args(args)
    except ValueError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
