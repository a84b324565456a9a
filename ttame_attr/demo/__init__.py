"""The end-to-end demo: ``ttame demo`` or ``python -m ttame_attr.demo``.

Loads the shipped classifier of the synthetic shapes data (or trains one), fits T-TAME to
explain it, compares it with Grad-CAM on held-out images (AD/IC, ROAD, pointing game) and writes
a self-contained ``report.html`` with the pictures, the metrics table and the training curves,
plus the PNGs and ``results.json``.
"""

from ttame_attr.demo._main import add_arguments, main, run_from_args
from ttame_attr.demo._run import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "add_arguments", "main", "run_demo", "run_from_args"]
