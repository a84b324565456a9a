"""Tests of the seeded multi-label MultiShapes dataset."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from ttame_attr.data import CLASS_NAMES, MultiShapes, SyntheticShapes

SIZE = 32


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return MultiShapes(60, image_size=SIZE, seed=3).generate(range(60))


def test_item_format() -> None:
    image, labels, masks = MultiShapes(3, image_size=SIZE)[1]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert labels.shape == (len(CLASS_NAMES),) and labels.dtype == torch.float32
    assert masks.shape == (len(CLASS_NAMES), SIZE, SIZE) and masks.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_labels_are_the_visible_objects(batch) -> None:
    _, labels, masks = batch
    assert set(labels.unique().tolist()) <= {0.0, 1.0} and set(masks.unique().tolist()) <= {0.0, 1.0}
    counts = labels.sum(dim=1)
    assert counts.min() >= 2 and counts.max() <= 3
    assert set(counts.tolist()) == {2.0, 3.0}  # both counts occur in 60 images
    assert torch.equal(labels, (masks.flatten(2).sum(dim=2) > 0).float())
    assert masks.sum(dim=1).max() <= 1.0  # each pixel shows at most one class object
    visible = masks.flatten(2).sum(dim=2)[labels > 0]
    assert visible.min() >= 10  # overlaps stay partial: every labelled object is clearly visible


def test_every_class_occurs(batch) -> None:
    assert (batch[1].sum(dim=0) > 0).all()


def test_deterministic_and_order_independent() -> None:
    ds = MultiShapes(10, image_size=SIZE, seed=5, split="val")
    images, labels, masks = ds.generate([7, 2])
    single = ds[2]
    assert torch.equal(images[1], single[0]) and torch.equal(labels[1], single[1])
    assert torch.equal(masks[1], single[2])
    again = MultiShapes(10, image_size=SIZE, seed=5, split="val").generate([7])
    assert torch.equal(again[0][0], images[0])
    assert torch.equal(MultiShapes(5, image_size=SIZE, seed=5, split="val", offset=2)[0][0], single[0])
    assert torch.equal(ds[-1][0], ds[9][0])


def test_seeds_and_splits_differ() -> None:
    a = MultiShapes(2, image_size=SIZE, seed=0)[0][0]
    assert not torch.equal(a, MultiShapes(2, image_size=SIZE, seed=1)[0][0])
    assert not torch.equal(a, MultiShapes(2, image_size=SIZE, seed=0, split="test")[0][0])
    assert not torch.equal(a, SyntheticShapes(2, image_size=SIZE, seed=0)[0][0])


def test_object_counts_option() -> None:
    _, labels, _ = MultiShapes(12, image_size=SIZE, min_objects=3, max_objects=4).generate(range(12))
    counts = labels.sum(dim=1)
    assert counts.min() >= 3 and counts.max() <= 4  # three or four objects, all visible here


def test_loader_and_transform() -> None:
    ds = MultiShapes(6, image_size=SIZE, transform=lambda x: x * 0.0)
    images, labels, masks = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, SIZE, SIZE) and images.abs().sum() == 0
    assert labels.shape == (4, 8) and masks.shape == (4, 8, SIZE, SIZE)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_samples": 2, "image_size": 8}, ValueError, "image_size"),
    ({"num_samples": 2, "split": "dev"}, ValueError, "split"),
    ({"num_samples": 2, "min_objects": 3, "max_objects": 2}, ValueError, "max_objects"),
    ({"num_samples": 2, "max_objects": 9}, ValueError, "max_objects"),
    ({"num_samples": 2, "transform": 3}, TypeError, "transform"),
    ({"num_samples": 2.0}, TypeError, "num_samples"),
])
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MultiShapes(**kwargs)


def test_bad_indices() -> None:
    ds = MultiShapes(3, image_size=SIZE)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="indices"):
        ds.generate([])
