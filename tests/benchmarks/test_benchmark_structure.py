"""The benchmark scripts keep the package's rule: no function over 80 lines of code."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MAX_FUNCTION_CODE_LINES = 80


def code_lines(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Non-blank, non-comment lines from ``def`` to the end of the body, docstring excluded."""
    skip: set[int] = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
        first.value.value, str
    ):
        skip = set(range(first.lineno, first.end_lineno + 1))
    return sum(
        1 for n in range(node.lineno, node.end_lineno + 1)
        if n not in skip and lines[n - 1].strip() and not lines[n - 1].strip().startswith("#")
    )


def test_benchmark_functions_are_short() -> None:
    long = []
    for path in sorted(BENCHMARKS.rglob("*.py")):
        if "_cache" in path.parts:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(lines, node)
                if n > MAX_FUNCTION_CODE_LINES:
                    long.append(f"{path.relative_to(BENCHMARKS)}:{node.lineno} {node.name} ({n})")
    assert long == []
