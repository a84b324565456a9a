"""The package's shape: no import cycles, small modules, short functions."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import package_structure as structure  # noqa: E402

MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 80
#: Modules allowed past MAX_MODULE_LINES, with their limit: cohesive modules that splitting would
#: only turn into import circles (issue 36). The distributed layer: the context, the collectives,
#: sharding the loaders and the data-parallel head, one file as timm's ``utils/distributed.py``.
LONG_MODULES = {"ttame_attr.training.distributed": 500}

#: The facade (``TTAME``) and the packages above it, the only ones that may import it (or the
#: top-level package that re-exports it): the package itself, the CLI and the demo.
FACADE = "ttame_attr._core.ttame"
ABOVE_FACADE = ("ttame_attr.cli", "ttame_attr.demo")


def test_the_import_graph_is_read() -> None:
    graph = structure.import_graph()
    # Known edges, a lazy (function-level) one among them: the check sees every kind.
    assert "ttame_attr._core.ttame" in graph["ttame_attr"]
    assert "ttame_attr.training" in graph["ttame_attr._core.ttame"]  # the facade imports training
    assert "ttame_attr.demo" in graph["ttame_attr.cli"]  # a function-level import
    assert "ttame_attr.adapters._hooks" in graph["ttame_attr._core.features"]


def test_no_import_cycles() -> None:
    assert structure.import_cycles(structure.import_graph()) == []


def test_no_import_cycles_with_type_only_imports() -> None:
    graph = structure.import_graph(type_only=True)
    # a type-only edge is seen: the export module names the core's explainer parts for type hints
    assert "ttame_attr._core.parts" in graph["ttame_attr.export._export"]
    assert structure.import_cycles(graph) == []


def _above_the_facade(module: str) -> bool:
    return module == "ttame_attr" or any(module == p or module.startswith(p + ".") for p in ABOVE_FACADE)


def test_nothing_below_the_facade_imports_it() -> None:
    """Dependencies point one way: adapters <- core engine <- training, export, metrics <- TTAME
    <- cli, demo. Type-only imports count, and so does the top-level package (it re-exports TTAME)."""
    graph = structure.import_graph(type_only=True)
    importers = {m for m, deps in graph.items() if FACADE in deps or "ttame_attr" in deps}
    assert importers, "the check sees no importer of the facade at all"
    assert sorted(m for m in importers if not _above_the_facade(m)) == []
    below = ("ttame_attr.training", "ttame_attr.export", "ttame_attr.metrics", "ttame_attr._core.head_file")
    assert not [m for m in graph if m.startswith(below) and FACADE in graph[m]]


def test_the_facade_check_finds_a_type_only_import(tmp_path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from ttame_attr._core.ttame import TTAME\n")
    found = structure.imports_of("ttame_attr.training.m", source, {FACADE, "ttame_attr.training.m"},
                                 type_only=True)
    assert found == {FACADE}
    assert not _above_the_facade("ttame_attr.training.m") and _above_the_facade("ttame_attr.cli._commands")


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
    large = {name: n for name, n in structure.module_lines().items()
             if n > LONG_MODULES.get(name, MAX_MODULE_LINES)}
    assert large == {}


def test_functions_are_short() -> None:
    long = [f"{f.module}:{f.line} {f.name} ({f.code_lines} lines)" for f in structure.function_sizes()
            if f.code_lines > MAX_FUNCTION_CODE_LINES]
    assert long == []
