"""Static facts about the package's source: its import graph, module and function sizes.

Used by ``tests/test_package_structure.py``; run as a script for a report::

    python tests/package_structure.py
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ttame_attr"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_name(path: Path) -> str:
    """``ttame_attr/_core/head.py`` -> ``ttame_attr._core.head`` (``__init__`` is the package)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: set[str], type_only: bool = False) -> set[str]:
    """Package modules that ``module`` imports, at module level or inside functions.

    Imports under ``if TYPE_CHECKING:`` are left out (they never run) unless ``type_only`` is
    true. ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module,
    else of ``pkg``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_only:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if candidate in modules:
                    found.add(candidate)
                elif target in modules:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph(type_only: bool = False) -> dict[str, set[str]]:
    """``{module: modules it imports}`` for the whole package (with ``type_only``: the imports
    under ``if TYPE_CHECKING:`` too)."""
    files = source_files()
    names = set(files)
    return {name: imports_of(name, path, names, type_only) for name, path in files.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


@dataclass(frozen=True)
class FunctionSize:
    """One function or method and its number of code lines (docstring excluded)."""

    module: str
    name: str
    line: int
    code_lines: int


def _docstring_lines(node: ast.AST) -> set[int]:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and (
        isinstance(body[0].value.value, str)
    ):
        return set(range(body[0].lineno, body[0].end_lineno + 1))
    return set()


def function_sizes() -> list[FunctionSize]:
    """Every function and method of the package with its code lines.

    Code lines are the non-blank, non-comment lines from ``def`` to the end of the body,
    without the docstring.
    """
    sizes = []
    for name, path in source_files().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            skip = _docstring_lines(node)
            count = 0
            for number in range(node.lineno, node.end_lineno + 1):
                text = lines[number - 1].strip()
                if number in skip or not text or text.startswith("#"):
                    continue
                count += 1
            sizes.append(FunctionSize(name, node.name, node.lineno, count))
    return sizes


def module_lines() -> dict[str, int]:
    """Lines of every module file (all lines, as ``wc -l`` counts them)."""
    return {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in source_files().items()
    }


def main() -> int:
    lines = module_lines()
    print(f"{len(lines)} modules, {sum(lines.values())} lines in {PACKAGE}/")
    for name, n in sorted(lines.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {n:5d}  {name}")
    long = sorted((f for f in function_sizes() if f.code_lines > 60), key=lambda f: -f.code_lines)
    print(f"functions over 60 code lines: {len(long)}")
    for f in long:
        print(f"  {f.code_lines:4d}  {f.module}:{f.line} {f.name}")
    cycles = import_cycles(import_graph(type_only=True))
    print(f"import cycles (type-only imports included): {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
