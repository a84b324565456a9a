"""``ttame_attr.audit`` on maps drawn by hand (an in-memory store): signals, scores, JSON, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _fake_store import FakeStore, blob, planted  # noqa: E402

from ttame_attr import AuditReport, audit  # noqa: E402
from ttame_attr.audit._collect import evidence_of  # noqa: E402
from ttame_attr.audit._signals import block_sums, excess, mean_excess, outlier, position, region_name, tv  # noqa: E402


@pytest.fixture(scope="module")
def planted_report() -> tuple[AuditReport, np.ndarray]:
    store, marked = planted(n_per_class=40)
    return audit(store, examples=4, max_images=None), marked


# ---- the signals, on numbers worked out by hand -------------------------------------------------

def test_evidence_is_the_excess_over_the_median_summing_to_one() -> None:
    m = torch.tensor([[[0.1, 0.1], [0.1, 0.5]]])  # median of the 4 values 0.1 -> excess (0, 0, 0, 0.4)
    ev, flat = evidence_of(m, (2, 2))
    assert ev.tolist() == [[0.0, 0.0, 0.0, 1.0]] and flat.tolist() == [False]
    ev, flat = evidence_of(torch.full((1, 4, 4), 0.3) + 0.01 * torch.eye(4), (2, 2))  # excess 0.005
    assert ev.tolist() == [[0.25, 0.25, 0.25, 0.25]] and flat.tolist() == [True]


def test_block_sums_region_names_and_distances() -> None:
    assert block_sums(np.arange(9, dtype=float), (3, 3)).tolist() == [8, 15, 12, 21, 36, 27, 20, 33, 24]
    assert [region_name(c, (8, 8)) for c in (0, 7, 63, 27, 3, 24)] == [
        "top-left corner", "top-right corner", "bottom-right corner", "centre", "top edge", "left edge"]
    assert tv(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    assert excess(0.6, 0.2) == pytest.approx(0.4)
    assert excess(0.1, 0.2) == 0.0


def test_position_signal_by_hand() -> None:
    # 100 images peak in cell 0 of a 4x4 grid; the other classes' 100 images peak in cell 15.
    signal = position(np.zeros(100, dtype=int), np.bincount([15] * 100, minlength=16).astype(float), (4, 4))
    # Wilson's lower bound (z = 2) of 100 / 100: (1 + 0.02 - 2 * sqrt(0.0001)) / 1.04 = 1 / 1.04
    assert signal.cell == 0 and signal.share == pytest.approx(1 / 1.04) and signal.baseline == 0.0
    assert signal.value == pytest.approx(1 / 1.04)
    # Half of 100 images in cell 0: (0.5 + 0.02 - 2 * sqrt(0.0025 + 0.0001)) / 1.04 = 0.40194;
    # the other classes peak in cell 0's block 10% of the time: 0.40194 - 0.1.
    peaks = np.array([0] * 50 + [15] * 50)
    other = np.bincount([1] * 10 + [10] * 90, minlength=16).astype(float)
    signal = position(peaks, other, (4, 4))
    assert (signal.share, signal.baseline) == (pytest.approx(0.40194, abs=1e-5), pytest.approx(0.1))
    assert signal.value == pytest.approx(0.30194, abs=1e-5)


def test_mean_excess_and_outlier_by_hand() -> None:
    sig = mean_excess(np.full(10, 0.6), 0.2)  # Wilson: (0.6 + 0.2 - 2 * sqrt(0.024 + 0.01)) / 1.4
    assert sig.share == pytest.approx((0.8 - 2 * np.sqrt(0.034)) / 1.4)
    assert sig.value == pytest.approx(sig.share - 0.2)
    group = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    rest = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # mean (0, .5, .5), spread 0.5
    value, distance, alike = outlier(group, rest)
    assert (distance, alike) == (1.0, 1.0) and value == pytest.approx(1.0)  # (1 - .5) / (1 - .5)
    assert outlier(group, None) == (0.0, 0.0, 1.0)


# ---- the audit on a planted shortcut and on a control --------------------------------------------

def test_planted_shortcut_is_found(planted_report) -> None:
    report, marked = planted_report
    first = report.classes[0]
    assert first["class"] == 2 and first["flagged"] and first["name"] == "shape2"
    assert any("top-left corner" in r for r in first["reasons"])
    assert [c["class"] for c in report.flagged] == [2]
    n = int(marked.sum())
    assert np.mean([marked[im["index"]] for im in report.images[:n]]) == 1.0
    group = first["groups"][0]
    members = [im for im in report.images if im["class"] == 2 and im["group"] == group["group"]]
    assert len(members) == group["size"]
    assert np.mean([marked[im["index"]] for im in members]) >= 0.9
    assert all(marked[t["index"]] for t in group["typical"])
    assert "fixed spot" in report.images[0]["reasons"][0] or "group" in report.images[0]["reasons"][0]


def test_control_flags_nothing() -> None:
    store, marked = planted(n_per_class=60, marked_share=0.0, seed=3)
    assert not marked.any()
    report = audit(store)
    assert report.flagged == []
    assert max(c["score"] for c in report.classes) < report.options["threshold"]


def test_border_and_off_object_signals() -> None:
    rng = np.random.default_rng(0)
    maps, classes, masks = [], [], []
    for c in range(3):
        for _ in range(30):
            y, x = rng.uniform(3, 13, 2)
            mask = blob(16, 16, y, x, 2.0) > 0.5
            if c == 1:  # evidence on a frame around the image, off the object
                m = np.full((16, 16), 0.1, np.float32)
                m[:2], m[-2:], m[:, :2], m[:, -2:] = 1.0, 1.0, 1.0, 1.0
            else:
                m = blob(16, 16, y, x, 2.0)
            maps.append(m)
            classes.append(c)
            masks.append(mask)
    report = audit(FakeStore(np.stack(maps), np.array(classes), masks=np.stack(masks)), max_groups=1)
    first = report.classes[0]
    assert first["class"] == 1 and first["flagged"]
    assert first["signals"]["border"]["value"] > 0.5 and first["signals"]["off_object"]["value"] > 0.5
    assert first["signals"]["border"]["share"] == pytest.approx(1 / (1 + 4 / 30), abs=1e-4)  # 30/30, Wilson
    assert any("border" in r for r in first["reasons"])
    assert any("off the object" in r for r in first["reasons"])
    assert all(not c["flagged"] for c in report.classes[1:])


def test_without_masks_there_is_no_off_object_signal() -> None:
    store, _ = planted(n_per_class=20)
    store._masks = None
    report = audit(store, max_groups=1)
    assert all("off_object" not in c["signals"] for c in report.classes)


# ---- the JSON ---------------------------------------------------------------------------------------

def test_json_schema(planted_report, tmp_path) -> None:
    report, _ = planted_report
    json_path, html_path = report.write(tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert html_path.name == "audit.html" and html_path.is_file()
    assert {"format", "format_version", "options", "provenance", "summary", "classes", "images"} <= set(data)
    assert data["format"] == "ttame_attr.audit" and data["format_version"] == 1
    assert data["options"]["threshold"] == 0.5 and data["summary"]["flagged"] == [2]
    assert data["provenance"]["manifest"]["format"] == "ttame_attr.store"
    assert isinstance(data["provenance"]["manifest"]["shards"], int)
    scores = [c["score"] for c in data["classes"]]
    assert scores == sorted(scores, reverse=True) and len(data["classes"]) == 4
    for c in data["classes"]:
        assert {"class", "name", "images", "score", "flagged", "reasons", "signals", "groups"} <= set(c)
        assert 0.0 <= c["score"] <= 1.0 and c["reasons"] and all(isinstance(r, str) for r in c["reasons"])
        assert sum(g["size"] for g in c["groups"]) == c["images"]
        for g in c["groups"]:
            assert {"group", "size", "share", "score", "reasons", "signals", "typical"} <= set(g)
            assert {"index", "path"} <= set(g["typical"][0])
    images = data["images"]
    assert len(images) == 160 and sorted(im["index"] for im in images) == list(range(160))
    assert [im["score"] for im in images] == sorted((im["score"] for im in images), reverse=True)
    assert {"index", "path", "class", "score", "group", "reasons"} <= set(images[0])


def test_max_images_limits_the_list() -> None:
    store, _ = planted(n_per_class=10)
    assert len(audit(store, max_groups=1, max_images=7).images) == 7


# ---- streaming and errors ---------------------------------------------------------------------------

class _Recording(FakeStore):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[int] = []
        self.columns: list = []

    def maps(self, rows):
        out = super().maps(rows)
        self.reads.append(out.shape[0])
        return out

    def table(self, columns=None):
        self.columns.append(columns)
        return super().table(columns)


def test_maps_are_read_in_chunks_and_never_all_at_once() -> None:
    base, _ = planted(n_per_class=25)
    store = _Recording(base._maps, base._classes, masks=base._masks)
    audit(store, chunk_size=16, examples=2, show_classes=1)
    assert None not in store.columns  # no full-table read (that would load every map)
    assert max(store.reads) <= 16
    assert sum(store.reads[: 100 // 16 + 1]) == 100  # one pass over all rows, then the examples


def test_bad_options_and_stores() -> None:
    store, _ = planted(n_per_class=5)
    with pytest.raises(TypeError, match="grid"):
        audit(store, grid=2.5)
    with pytest.raises(ValueError, match="max_groups"):
        audit(store, max_groups=0)
    with pytest.raises(ValueError, match="threshold"):
        audit(store, threshold=1.5)
    with pytest.raises(TypeError, match="store: expected a store path"):
        audit(object())
    empty = FakeStore(np.zeros((0, 1, 4, 4)), np.zeros((0, 1)), num_classes=2)
    with pytest.raises(ValueError, match="no explanations"):
        audit(empty)
    store.manifest["format_version"] = 0
    with pytest.raises(ValueError, match="older"):
        audit(store)


def test_flat_maps_are_left_out() -> None:
    store, marked = planted(n_per_class=30)
    flat = np.flatnonzero(store._classes[:, 0] == 0)[:20]  # 20 of class 0's maps: no evidence
    store._maps[flat] = 0.05
    dead = np.flatnonzero(store._classes[:, 0] == 1)  # all of class 1's
    store._maps[dead] = 0.001
    report = audit(store, max_images=None)
    by_class = {c["class"]: c for c in report.classes}
    assert by_class[0]["flat_maps"] == 20 and not by_class[0]["flagged"]
    assert by_class[1]["flat_maps"] == 30 and by_class[1]["score"] == 0.0 and by_class[1]["groups"] == []
    assert "flat" in by_class[1]["reasons"][0]
    assert [c["class"] for c in report.flagged] == [2]
    flat_images = [im for im in report.images if im["index"] in set(flat) | set(dead)]
    assert all(im["group"] == -1 and im["score"] == 0.0 for im in flat_images)
