"""The end-to-end demo: ``ttame demo`` or ``python -m ttame_attr.demo``.

Trains a small CNN on the synthetic shapes data, fits T-TAME to explain it, compares it with
Grad-CAM on held-out images (AD/IC, ROAD, pointing game) and writes a self-contained
``report.html`` with the pictures, the metrics table and the training curves, plus the PNGs and
``results.json``.
"""

import sys

from ttame_attr.demo._run import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "main", "run_demo"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of the demo (the same options as ``ttame demo``)."""
    from ttame_attr.cli import main as cli_main

    return cli_main(["demo", *(argv if argv is not None else sys.argv[1:])])
