"""Explaining a whole dataset into a store users can query (see :doc:`/dataset`).

:func:`explain_dataset` writes sharded Parquet files (one row per image: classes,
probabilities, float16 maps, per-map statistics) with a manifest, resumably and across
torchrun ranks; :class:`ExplanationStore` reads them back as a table and the maps as tensors.
"""

from ttame_attr.dataset._columns import STAT_COLUMNS, batch_columns, decode_maps, map_statistics, to_arrow
from ttame_attr.dataset._reader import ExplanationStore
from ttame_attr.dataset._run import explain_dataset

__all__ = ["STAT_COLUMNS", "ExplanationStore", "batch_columns", "decode_maps", "explain_dataset",
           "map_statistics", "to_arrow"]
