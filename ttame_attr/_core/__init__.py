"""Private implementation of ttame_attr. Public names are re-exported from ``ttame_attr``."""
