"""The audit's paths for large stores: the sampled k-means fit, the streaming read of the store."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _stores import shapes_store  # noqa: E402

from ttame_attr import ExplanationStore  # noqa: E402
from ttame_attr.audit import _cluster  # noqa: E402
from ttame_attr.audit._collect import collect  # noqa: E402


def _two_spots(n_a: int, n_b: int, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Evidence on an 8x8 grid: ``n_a`` maps peaking at the top-left cell, ``n_b`` at the bottom-right
    one (with a little noise everywhere), shuffled or not; and which of the two each map is."""
    rng = np.random.default_rng(0)
    truth = np.r_[np.zeros(n_a, int), np.ones(n_b, int)]
    truth = rng.permutation(truth) if shuffle else truth
    ev = rng.random((n_a + n_b, 64)) * 0.05
    ev[truth == 0, 0] += 1.0
    ev[truth == 1, 63] += 1.0
    return (ev / ev.sum(1, keepdims=True)).astype(np.float32), truth


def test_the_sampled_kmeans_fit_assigns_every_image(monkeypatch) -> None:
    ev, truth = _two_spots(130, 70)
    full = _cluster.cluster(ev, max_groups=3, min_group_size=5, seed=0)
    monkeypatch.setattr(_cluster, "FIT_LIMIT", 40)  # fit on 40 of the 200 maps,
    monkeypatch.setattr(_cluster, "SILHOUETTE_LIMIT", 15)  # silhouettes on 15 of those
    sampled = _cluster.cluster(ev, max_groups=3, min_group_size=5, seed=0)
    assert sampled.shape == (200,) and sampled.dtype == np.int64
    # every map, in the sample or not, is in the group of its spot; groups numbered by size
    assert np.array_equal(sampled, truth)
    assert np.array_equal(sampled, full)


def test_a_silhouette_sample_of_one_group_is_skipped(monkeypatch) -> None:
    ev, _ = _two_spots(195, 5, shuffle=False)
    monkeypatch.setattr(_cluster, "SILHOUETTE_LIMIT", 3)
    monkeypatch.setattr(np.random, "default_rng", lambda seed: _FirstRows())
    # the 3 maps scoring the silhouette are all of the big group: no silhouette, so one group
    assert np.array_equal(_cluster.cluster(ev, max_groups=2, min_group_size=5, seed=0), np.zeros(200, int))


class _FirstRows:
    """A stand-in generator whose ``choice`` picks the first rows (of the big group in the test)."""

    def choice(self, n: int, size: int, replace: bool = True) -> np.ndarray:
        return np.arange(size)


class _ReaderOnly:
    """A store seen through the reader API only (no ``iter_batches``): the audit's other path."""

    def __init__(self, store: ExplanationStore) -> None:
        self._store = store
        for name in ("manifest", "map_size", "num_classes", "class_names", "top_k", "path"):
            setattr(self, name, getattr(store, name))

    def __len__(self) -> int:
        return len(self._store)

    def table(self, columns=None):
        return self._store.table(columns)

    def maps(self, rows):
        return self._store.maps(rows)

    def iter_classes(self):
        return self._store.iter_classes()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return shapes_store(tmp_path_factory.mktemp("store") / "store", n=40)[0]


def _same(a, b) -> None:
    assert (a.grid, a.map_size, a.num_images, a.has_masks) == (b.grid, b.map_size, b.num_images, b.has_masks)
    assert np.array_equal(a.index, b.index) and [d.cls for d in a.classes] == [d.cls for d in b.classes]
    for x, y in zip(a.classes, b.classes):
        for name in ("rows", "evidence", "border", "off_object", "off_peak", "blank", "mean_map"):
            np.testing.assert_allclose(getattr(x, name), getattr(y, name), rtol=0, atol=1e-6, err_msg=name)


def test_the_streaming_read_equals_the_reader_path(store) -> None:
    opened = ExplanationStore(store)
    streamed = collect(opened, 4, 7)
    assert streamed.has_masks and sum(len(d.rows) for d in streamed.classes) == 40
    _same(streamed, collect(_ReaderOnly(opened), 4, 7))


def test_the_streaming_read_places_rows_by_index_whatever_the_shard_order(store, tmp_path) -> None:
    shuffled = tmp_path / "shuffled"
    shutil.copytree(store, shuffled)
    manifest = json.loads((shuffled / "manifest.json").read_text())
    assert len(manifest["shards"]) == 3
    manifest["shards"] = manifest["shards"][::-1]  # the shards read last first
    (shuffled / "manifest.json").write_text(json.dumps(manifest))
    _same(collect(ExplanationStore(shuffled), 4, 7), collect(ExplanationStore(store), 4, 7))
