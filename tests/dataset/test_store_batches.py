"""ExplanationStore.iter_batches and .columns: a streaming read, each shard once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from store_worker import make_explainer  # noqa: E402

from ttame_attr import explain_dataset  # noqa: E402
from ttame_attr.dataset._columns import decode_maps  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    torch.manual_seed(5)
    data = TensorDataset(torch.rand(11, 3, 32, 32), torch.arange(11) % 3)
    return explain_dataset(make_explainer(), data, tmp_path_factory.mktemp("s") / "store", top_k=2,
                           batch_size=4, shard_size=5, progress=False)


def test_iter_batches_reads_the_columns_asked_shard_by_shard(store) -> None:
    batches = list(store.iter_batches(["index", "maps"], batch_size=2))
    # shards of 5, 5 and 1 rows, at most 2 rows a batch: 3 + 3 + 1 batches
    assert [b.num_rows for b in batches] == [2, 2, 1, 2, 2, 1, 1]
    assert all(b.schema.names == ["index", "maps"] for b in batches)
    index = np.concatenate([b.column("index").to_numpy() for b in batches])
    assert index.tolist() == list(range(11))
    maps = np.concatenate([decode_maps(b.column("maps"), (2, *store.map_size)) for b in batches])
    torch.testing.assert_close(torch.from_numpy(maps.astype(np.float32)), store.maps(slice(None)))
    assert {"index", "path", "label", "classes", "maps"} <= set(store.columns)
    assert "object_mask" not in store.columns


def test_iter_batches_refuses_a_bare_column_name(store) -> None:
    with pytest.raises(TypeError, match="columns: expected a list"):
        next(store.iter_batches("maps"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_iter_batches_refuses_a_batch_size_that_is_not_a_positive_int(store, bad) -> None:
    with pytest.raises(ValueError, match=f"batch_size: expected a positive integer, got {bad!r}"):
        next(store.iter_batches(["index"], batch_size=bad))
