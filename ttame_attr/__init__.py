"""ttame_attr: T-TAME explanations for image classifiers."""

from ttame_attr._version import __version__

__all__ = ["__version__"]
