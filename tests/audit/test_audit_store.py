"""The audit on real stores written by ``explain_dataset``: wiring, masks, images, files."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _stores import shapes_store, tiny_explainer  # noqa: E402

from ttame_attr import ExplanationStore, audit, explain_dataset  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, object]:
    return shapes_store(tmp_path_factory.mktemp("store") / "store")


def test_audit_of_a_real_store(store, tmp_path) -> None:
    path, data = store
    opened = ExplanationStore(path)
    report = audit(path, images=data, max_groups=2, min_group_size=3, examples=2, max_images=None)
    predicted = {int(c): len(r) for c, r in opened.by_class().items()}
    assert {c["class"]: c["images"] for c in report.classes} == predicted
    assert sorted(im["index"] for im in report.images) == list(range(48))
    audited = [c for c in report.classes if c["flat_maps"] < c["images"]]
    assert audited and all("off_object" in c["signals"] for c in audited)  # the store has object masks
    assert report.provenance["manifest"]["head_sha256"] == opened.manifest["head_sha256"]
    assert report.provenance["store"] == str(path)
    json_path, html_path = report.write(tmp_path / "audit")
    assert json.loads(json_path.read_text())["summary"]["images"] == 48
    html = html_path.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    shown = [c for c in report.classes if c["class"] in report.pictures]
    assert len(shown) >= min(3, len(report.classes))
    chunks = html.split('src="data:image/png;base64,')[1:]
    assert chunks and all(base64.b64decode(c.split('"')[0])[:8] == b"\x89PNG\r\n\x1a\n" for c in chunks)


def test_the_store_is_read_once_in_record_batches(store) -> None:
    path, _ = store
    opened = ExplanationStore(path)
    batches, calls = [], []
    real_batches, real_maps = opened.iter_batches, opened.maps

    def spy_batches(columns, batch_size=1024):
        batches.append((list(columns), batch_size))
        yield from real_batches(columns, batch_size)

    def spy_maps(rows):
        calls.append(rows)
        return real_maps(rows)

    opened.iter_batches, opened.maps = spy_batches, spy_maps
    report = audit(opened, chunk_size=16, max_groups=1, show_classes=0, examples=3)
    # one pass over the columns it needs, chunk_size rows at a time
    assert batches == [(["index", "maps", "object_mask"], 16)]
    # then one read of the maps of the example images of the classes shown (<= 3 typical + 3 top each)
    assert len(calls) <= 1 and all(len(rows) <= 6 * len(report.pictures) for rows in calls)


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """Six random 40x48 PNGs in two class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        folder = tmp_path / "images" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return tmp_path / "images"


def test_pictures_come_from_the_store_paths(image_dir, tmp_path) -> None:
    store = explain_dataset(tiny_explainer(num_classes=2), image_dir, tmp_path / "files", progress=False)
    report = audit(store, max_groups=1, examples=2)
    paths = {im["path"] for im in report.images}
    assert paths == {str(p) for p in Path(image_dir).rglob("*.png")}
    pics = next(iter(report.pictures.values()))
    assert all(img is not None and img.shape[-1] == 3 for img in pics["top"]["images"])
    assert np.isfinite(pics["mean_map"]).all()
