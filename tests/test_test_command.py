"""The test commands: ``bash scripts/test.sh`` runs everything (what CI runs), ``--quick``
leaves out only the tests marked ``slow``, and that marker is registered."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_deselects_slow_and_the_plain_command_does_not() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert re.search(r'"\$arg" == "--quick" \]\]; then\s+args\+=\(-m "not slow"\)', script)
    assert "not slow" not in script.replace('args+=(-m "not slow")', "")  # only --quick deselects
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test.sh\n" in ci and "--quick" not in ci


def test_the_slow_marker_is_registered_and_quick_leaves_only_those_tests_out() -> None:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               "--strict-markers", "-m", "not slow", "tests/export/test_onnx.py"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # an unknown marker fails
    kept, total, left_out = map(int, re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)",
                                               proc.stdout).groups())
    assert kept > 0 and left_out > 0 and kept + left_out == total
    assert all("test_onnx_runtime_alone" not in line for line in proc.stdout.splitlines())
