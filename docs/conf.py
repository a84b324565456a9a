"""Sphinx configuration of the ttame_attr documentation."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import ttame_attr  # noqa: E402

project = "ttame_attr"
author = "ttame_attr developers"
copyright = "2026, ttame_attr developers"
release = ttame_attr.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
]

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Names re-exported from private modules are documented where the user imports them.
add_module_names = False
nitpicky = False

exclude_patterns = ["_build", "make_figures.py"]
html_theme = "furo"  # a maintained theme whose content column fits the code blocks
html_static_path = ["_static"]
html_title = f"ttame_attr {release}"

# Docstring examples are written for ``pytest --doctest-modules``, where the module's own names
# are in scope; give the doctest builder the same names.
doctest_global_setup = """
import torch
from torch import nn
from ttame_attr import *
from ttame_attr.adapters import *
from ttame_attr.metrics import *
from ttame_attr.data import *
from ttame_attr.classifiers import *
from ttame_attr.training import *
from ttame_attr.viz import *
from ttame_attr.export import *
from ttame_attr.cli import main
torch.manual_seed(0)
"""


def _figures(app) -> None:  # noqa: ANN001 - Sphinx passes the application
    import make_figures

    if not make_figures.OUT.exists():
        make_figures.draw()


def setup(app) -> None:  # noqa: ANN001
    app.connect("builder-inited", _figures)
