"""The package's shape: no import cycles, small modules, short functions."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import package_structure as structure  # noqa: E402

MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 80


def test_the_import_graph_is_read() -> None:
    graph = structure.import_graph()
    # Known edges, a lazy (function-level) one among them: the check sees every kind.
    assert "ttame_attr._core.ttame" in graph["ttame_attr"]
    assert "ttame_attr.training._fit" in graph["ttame_attr._core.ttame"]
    assert "ttame_attr.demo" in graph["ttame_attr.cli"]  # a function-level import
    assert "ttame_attr.adapters._hooks" in graph["ttame_attr._core.features"]


def test_no_import_cycles() -> None:
    assert structure.import_cycles(structure.import_graph()) == []


def test_cycles_are_found(tmp_path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert structure.import_cycles(graph) == [["a", "b", "c"]]


def test_type_only_and_lazy_imports_are_told_apart(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg import hidden\n"
        "def f():\n    from pkg import lazy\n"
    )
    found = structure.imports_of("pkg.m", source, {"pkg.hidden", "pkg.lazy", "pkg.m"})
    assert found == {"pkg.lazy"}


def test_modules_are_small() -> None:
    large = {name: n for name, n in structure.module_lines().items() if n > MAX_MODULE_LINES}
    assert large == {}


def test_functions_are_short() -> None:
    long = [f"{f.module}:{f.line} {f.name} ({f.code_lines} lines)" for f in structure.function_sizes()
            if f.code_lines > MAX_FUNCTION_CODE_LINES]
    assert long == []
