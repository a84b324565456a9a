"""Ray Data: ExplainBatch in map_batches on a local Ray instance (2 CPUs), written to Parquet."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).parent))
from store_worker import make_explainer  # noqa: E402

from ttame_attr.dataset import decode_maps, map_statistics  # noqa: E402
from ttame_attr.integrations.ray import ExplainBatch, preprocess_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_explain_batch_on_a_local_ray_instance(tmp_path, monkeypatch):
    import ray

    # the workers import the tiny test model from tests/ (pickled by reference)
    paths = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    images = np.random.default_rng(0).integers(0, 255, (6, 40, 48, 3), dtype=np.uint8)
    explainer = make_explainer()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"image": im, "path": f"img{i}.png"} for i, im in enumerate(images)])
        out = ds.map_batches(ExplainBatch, fn_constructor_kwargs={"explainer": explainer, "top_k": 2},
                             batch_size=3, concurrency=1, batch_format="numpy").materialize()
        out.write_parquet(str(tmp_path / "pq"))
    finally:
        ray.shutdown()
    table = pq.read_table(tmp_path / "pq")
    table = table.take(np.argsort(table.column("path").to_numpy(zero_copy_only=False)))
    assert table.column("path").to_pylist() == [f"img{i}.png" for i in range(6)]
    x = preprocess_images(images, explainer.input_size, explainer.normalization)
    expected = explainer.explain(x, top_k=2, upsample=False)
    assert torch.equal(torch.tensor(table.column("classes").to_pylist()), expected.classes)
    maps = torch.from_numpy(decode_maps(table.column("maps"), (2, *explainer.map_size)).astype(np.float32))
    torch.testing.assert_close(maps, expected.maps.half().float(), rtol=0, atol=1e-3)
    area = torch.tensor(table.column("area").to_pylist())
    torch.testing.assert_close(area, map_statistics(expected.maps)["area"])


def test_explain_batch_errors():
    import pytest

    explainer = make_explainer()
    batch_fn = ExplainBatch(lambda: explainer, top_k=1)  # a factory is called in the actor
    with pytest.raises(ValueError, match="'image'"):
        batch_fn({"pixels": np.zeros((1, 8, 8, 3), np.uint8)})
    out = batch_fn({"image": np.zeros((2, 8, 8, 3), np.uint8), "id": np.array([4, 5])})
    assert out.column("id").to_pylist() == [4, 5] and out.num_rows == 2
