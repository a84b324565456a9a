"""``_core.optional.require``: the one way an optional dependency is imported or named."""

import sys

import pytest

from ttame_attr._core.optional import require


def test_require_returns_the_top_level_package() -> None:
    import json

    assert require("json.decoder", "core", "this test") is json


def test_a_missing_module_names_the_extra_and_what_needs_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(ImportError, match=r'ttame_attr.audit .*needs scikit-learn: install it with '
                                          r'`pip install "ttame-attr\[audit\]"`\. \(or'):
        from ttame_attr.audit._cluster import require_sklearn

        require_sklearn()


def test_the_store_names_its_extra_without_pyarrow(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    from ttame_attr.dataset._columns import require_pyarrow

    with pytest.raises(ImportError, match=r'the explanation store needs pyarrow: .*ttame-attr\[dataset\]'):
        require_pyarrow()
