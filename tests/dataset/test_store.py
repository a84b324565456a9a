"""explain_dataset and ExplanationStore: values equal to explain, the reader, resume, refusal."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from store_worker import make_explainer  # noqa: E402
from tiny_models import model_snapshot  # noqa: E402

from ttame_attr import ExplanationStore, explain_dataset  # noqa: E402
from ttame_attr.dataset import map_statistics  # noqa: E402


@pytest.fixture(scope="module")
def explainer():
    return make_explainer()


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(5)
    return TensorDataset(torch.rand(11, 3, 32, 32), torch.arange(11) % 3)


def _run(explainer, data, store, **kw):
    options = {"top_k": 2, "batch_size": 4, "shard_size": 5, "progress": False, **kw}
    return explain_dataset(explainer, data, store, **options)


def test_round_trip_equals_explain(explainer, data, tmp_path):
    before = model_snapshot(explainer.model)
    store = _run(explainer, data, tmp_path / "s")
    assert len(store) == 11 and store.top_k == 2 and store.map_size == explainer.map_size
    assert store.num_classes == 5 and store.complete
    expected = explainer.explain(data.tensors[0], top_k=2, upsample=False)
    table = store.table()
    assert table.column("index").to_pylist() == list(range(11))
    assert table.column("label").to_pylist() == (torch.arange(11) % 3).tolist()
    assert table.column("path").null_count == 11
    assert torch.equal(torch.tensor(table.column("classes").to_pylist()), expected.classes)
    probs = torch.tensor(table.column("probabilities").to_pylist())
    torch.testing.assert_close(probs, expected.probabilities, rtol=1e-5, atol=1e-6)
    maps = store.maps(list(range(11)))
    assert maps.dtype == torch.float32 and maps.shape == (11, 2, *explainer.map_size)
    torch.testing.assert_close(maps, expected.maps.half().float(), rtol=0, atol=1e-3)
    stats = map_statistics(expected.maps)
    for name, values in stats.items():
        torch.testing.assert_close(torch.tensor(table.column(name).to_pylist()), values, rtol=1e-4, atol=1e-5)
    # rows by position, slice, tensor; the model is untouched
    torch.testing.assert_close(store.maps(slice(3, 5)), maps[3:5])
    torch.testing.assert_close(store.maps(torch.tensor([10, 0])), maps[[10, 0]])
    after = model_snapshot(explainer.model)
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])
    flags = [{k: v for k, v in snap.items() if k != "state"} for snap in (before, after)]
    assert flags[0] == flags[1]


def test_by_class_and_readers(explainer, data, tmp_path):
    store = _run(explainer, DataLoader(data, batch_size=3), tmp_path / "s", batch_size=None)
    assert store.manifest["options"]["batch_size"] == 3  # the DataLoader's
    predicted = [c[0] for c in store.table(["classes"]).column("classes").to_pylist()]
    groups = store.by_class()
    assert sorted(groups) == sorted(set(predicted)) and list(groups) == sorted(groups)
    for cls, rows in store.iter_classes():
        assert all(predicted[r] == cls for r in rows)
    assert sum(len(r) for r in groups.values()) == 11
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "s" / "shards").num_rows == 11
    import datasets
    hf = datasets.load_dataset("parquet", data_files=str(tmp_path / "s" / "shards" / "*.parquet"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert len(hf) == 11 and "maps" in hf.column_names
    assert store.table(["index"]).to_pandas()["index"].tolist() == list(range(11))


def test_statistics_by_hand():
    m = torch.zeros(1, 2, 8, 8)
    m[0, 0, 0, 0] = 1.0  # one border pixel
    m[0, 1] = 0.25
    m[0, 1, 2:6, 2:6] = 1.0  # the centre block, area 16/64
    s = map_statistics(m)
    assert s["peak_y"][0, 0] == 1 / 16 and s["peak_x"][0, 0] == 1 / 16
    assert s["border_mass"][0, 0] == 1 and s["center_mass"][0, 0] == 0 and s["entropy"][0, 0] == 0
    total = 16 + 48 * 0.25
    assert math.isclose(float(s["center_mass"][0, 1]), 16 / total, rel_tol=1e-6)
    assert math.isclose(float(s["border_mass"][0, 1]), 28 * 0.25 / total, rel_tol=1e-6)  # 1-pixel rim
    assert s["area"][0, 1] == 16 / 64 and s["peak_y"][0, 1] == 2.5 / 8
    p = torch.tensor([1.0] * 16 + [0.25] * 48) / total
    assert math.isclose(float(s["entropy"][0, 1]), float(-(p * p.log()).sum() / math.log(64)), rel_tol=1e-5)
    assert map_statistics(torch.zeros(1, 1, 4, 4))["center_mass"].item() == 0


def test_resume_skips_and_verifies_finished_shards(explainer, data, tmp_path):
    path = tmp_path / "s"
    full = _run(explainer, data, path).table()
    shard0 = path / "shards" / "shard-000000.parquet"
    stamp = shard0.stat().st_mtime_ns
    (path / "shards" / "shard-000001.parquet").write_bytes(b"corrupt")  # detected by its hash
    (path / "records" / "shard-000002.json").unlink()  # never recorded: computed again
    again = _run(explainer, data, path)
    assert shard0.stat().st_mtime_ns == stamp
    assert again.table().equals(full) and again.complete


def test_refusals(explainer, data, tmp_path):
    path = tmp_path / "s"
    _run(explainer, data, path)
    with pytest.raises(ValueError, match="options.top_k: stored 2, now 1"):
        _run(explainer, data, path, top_k=1)
    with pytest.raises(ValueError, match="options.shard_size: stored 5, now 4"):
        _run(explainer, data, path, shard_size=4)
    with pytest.raises(ValueError, match="data.size: stored 11, now 5"):
        _run(explainer, TensorDataset(data.tensors[0][:5]), path)
    other = make_explainer()
    with torch.no_grad():
        next(other.head.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="head_sha256"):
        _run(other, data, path)
    with pytest.raises(ValueError, match="resume=True"):
        _run(explainer, data, path, resume=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        _run(explainer, data, tmp_path / "file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        _run(explainer, data, tmp_path / "full")
    with pytest.raises(TypeError, match="explainer"):
        _run(explainer.model, data, tmp_path / "t")
    with pytest.raises(ValueError, match="upsample=False"):
        _run(explainer.as_module(2), data, tmp_path / "t")
    with pytest.raises(ValueError, match="batch_size"):
        _run(explainer, data, tmp_path / "t", batch_size=0)


def test_exported_module_gives_the_same_store(explainer, data, tmp_path):
    a = _run(explainer, data, tmp_path / "a").table()
    b = _run(explainer.as_module(2, upsample=False), data, tmp_path / "b").table()
    assert a.equals(b)


def test_reader_errors(explainer, data, tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        ExplanationStore(tmp_path / "missing")
    with pytest.raises(ValueError, match="no manifest.json"):
        ExplanationStore(tmp_path)
    path = tmp_path / "s"
    _run(explainer, data, path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="newer"):
        ExplanationStore(path)
    (path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="not an explanation store"):
        ExplanationStore(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    store = ExplanationStore(path)
    with pytest.raises(IndexError, match="out of range"):
        store.maps([11])
    with pytest.raises(TypeError, match="rows"):
        store.maps([0.5])


def test_files_unreadable_skipped_and_listed(explainer, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        folder = tmp_path / "img" / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    bad = tmp_path / "img" / "cat" / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        _run(explainer, tmp_path / "img", tmp_path / "s1")
    store = _run(explainer, tmp_path / "img", tmp_path / "s2", skip_unreadable=True, num_workers=1)
    assert len(store) == 6 and store.manifest["skipped"] == 1 and store.class_names == ["cat", "dog"]
    assert str(bad) in (tmp_path / "s2" / "skipped.txt").read_text()
    table = store.table(["index", "path", "label"])
    assert str(bad) not in table.column("path").to_pylist()
    assert table.column("label").to_pylist() == [0, 0, 0, 1, 1, 1]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p} {k}\n" for k, p in enumerate(table.column("path").to_pylist()[:3])))
    listed = _run(explainer, listing, tmp_path / "s3")
    assert listed.table(["label"]).column("label").to_pylist() == [0, 1, 2]


def test_a_multi_label_explainer_is_refused_before_anything_is_written(data, tmp_path):
    from tiny_models import make_tiny_cnn

    from ttame_attr import TTAME

    explainer = TTAME(make_tiny_cnn(num_classes=5, seed=0), input_size=(3, 32, 32), multi_label=True)
    store = tmp_path / "store"
    with pytest.raises(ValueError, match=r"explainer: .*multi-label"):
        _run(explainer, data, store)
    with pytest.raises(ValueError, match=r"explainer: .*multi-label"):
        _run(explainer.as_module(upsample=False), data, store)
    assert not store.exists()


class _BatchReading(torch.utils.data.Dataset):
    """``data``'s items, with a batch method ``__getitems__`` that records the indices it is given."""

    def __init__(self, data):
        self.data, self.batches = data, []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.data[index]

    def __getitems__(self, indices):
        self.batches.append(list(indices))
        return [self.data[i] for i in indices]


def test_batch_method_used_and_store_identical(explainer, data, tmp_path):
    plain = _run(explainer, data, tmp_path / "plain")
    batched_data = _BatchReading(data)
    batched = _run(explainer, batched_data, tmp_path / "batched")
    # every batch read in one call, in the order of the shards (shard 5, batch 4: never crossing a shard)
    assert batched_data.batches == [[0, 1, 2, 3], [4], [5, 6, 7, 8], [9], [10]]
    assert batched.table().equals(plain.table())
    assert torch.equal(batched.maps(list(range(11))), plain.maps(list(range(11))))


def test_batch_method_of_wrong_length_refused(explainer, data, tmp_path):
    class Short(_BatchReading):
        def __getitems__(self, indices):
            return super().__getitems__(indices)[:-1]

    with pytest.raises(ValueError, match="__getitems__ returned 3 items for 4 indices"):
        _run(explainer, Short(data), tmp_path / "short")
