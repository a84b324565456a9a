"""Tests of the seeded synthetic shapes dataset."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from ttame_attr.data import (
    CLASS_NAMES,
    MEAN,
    STD,
    SyntheticShapes,
    make_loaders,
    normalize,
)

SIZE = 32


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return SyntheticShapes(400, image_size=SIZE, seed=3).generate(range(400))


def test_item_format() -> None:
    ds = SyntheticShapes(4, image_size=SIZE, seed=0)
    image, label, mask = ds[1]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert mask.shape == (1, SIZE, SIZE) and mask.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < ds.num_classes
    assert ds.num_classes == len(CLASS_NAMES) == len(ds.class_names) == 8
    assert len(ds) == 4


def test_default_image_size_is_64() -> None:
    image, _, mask = SyntheticShapes(1)[0]
    assert image.shape == (3, 64, 64) and mask.shape == (1, 64, 64)


def test_ranges(batch) -> None:
    images, labels, masks = batch
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_same_seed_same_data() -> None:
    a = SyntheticShapes(16, image_size=SIZE, seed=7).generate(range(16))
    b = SyntheticShapes(16, image_size=SIZE, seed=7).generate(range(16))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_different_seed_or_split_differs() -> None:
    base = SyntheticShapes(16, image_size=SIZE, seed=7).generate(range(16))[0]
    other_seed = SyntheticShapes(16, image_size=SIZE, seed=8).generate(range(16))[0]
    other_split = SyntheticShapes(16, image_size=SIZE, seed=7, split="test").generate(range(16))[0]
    assert (base - other_seed).abs().amax(dim=(1, 2, 3)).min() > 0.1
    assert (base - other_split).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_item_independent_of_batching_and_order() -> None:
    ds = SyntheticShapes(10, image_size=SIZE, seed=1)
    images, labels, masks = ds.generate([9, 2, 5])
    single = ds[2]
    assert torch.equal(images[1], single[0]) and torch.equal(masks[1], single[2])
    assert int(labels[1]) == single[1]
    assert torch.equal(ds[-1][0], images[0])


def test_offset_shifts_items() -> None:
    a = SyntheticShapes(10, image_size=SIZE, seed=1)
    b = SyntheticShapes(5, image_size=SIZE, seed=1, offset=5)
    assert torch.equal(a[7][0], b[2][0])


def test_mask_marks_one_object_of_plausible_size(batch) -> None:
    _, _, masks = batch
    area = masks.sum(dim=(1, 2, 3)) / SIZE**2
    assert (area > 0).all()
    # Diameter 0.15-0.4 of the side: the area is at most that of a disc of diameter 0.4 ...
    assert area.max() <= torch.pi * 0.2**2 + 0.02
    # ... and at least a thin shape (a ring / frame of the smallest size) covers a few pixels.
    assert masks.sum(dim=(1, 2, 3)).min() >= 4


def test_mask_pixels_hold_one_colour() -> None:
    # The class object is a flat colour times a mild shading, drawn on top of everything:
    # inside the mask the colour varies little compared with the cluttered rest of the image.
    images, _, masks = SyntheticShapes(64, image_size=64, seed=0).generate(range(64))
    inside_spread, outside_spread = [], []
    for image, mask in zip(images, masks):
        on = mask[0] > 0
        chroma = image / image.sum(0, keepdim=True).clamp_min(1e-3)
        inside_spread.append(chroma[:, on].std(dim=1).mean())
        outside_spread.append(image[:, ~on].std(dim=1).mean())
    assert torch.stack(inside_spread).median() < 0.05
    assert torch.stack(outside_spread).median() > 0.05


def test_class_object_differs_from_its_surroundings() -> None:
    images, _, masks = SyntheticShapes(64, image_size=64, seed=0).generate(range(64))
    ring = torch.nn.functional.max_pool2d(masks, 5, 1, 2) - masks  # a 2-px band around it
    contrast = []
    for image, mask, band in zip(images, masks, ring):
        inside = image[:, mask[0] > 0].mean(dim=1)
        around = image[:, band[0] > 0].mean(dim=1)
        contrast.append((inside - around).abs().max())
    assert torch.stack(contrast).median() > 0.1


def test_labels_roughly_balanced() -> None:
    labels = SyntheticShapes(4000, image_size=16, seed=0).generate(range(4000))[1]
    counts = torch.bincount(labels, minlength=len(CLASS_NAMES)).float()
    assert counts.min() > 0.8 * 500 and counts.max() < 1.2 * 500


def test_return_mask_false_and_transform() -> None:
    ds = SyntheticShapes(3, image_size=SIZE, return_mask=False, transform=normalize)
    item = ds[0]
    assert len(item) == 2
    raw = SyntheticShapes(3, image_size=SIZE)[0][0]
    assert torch.allclose(item[0], normalize(raw))


def test_dataloader_uses_batched_rendering() -> None:
    ds = SyntheticShapes(10, image_size=SIZE, seed=2)
    images, labels, masks = next(iter(DataLoader(ds, batch_size=4)))
    ref = ds.generate(range(4))
    assert torch.equal(images, ref[0]) and torch.equal(labels, ref[1])
    assert torch.equal(masks, ref[2])


def test_make_loaders() -> None:
    train, val, test = make_loaders(8, 4, 4, image_size=SIZE, batch_size=4, return_mask=True)
    images, labels, masks = next(iter(val))
    assert images.shape == (4, 3, SIZE, SIZE) and masks.shape == (4, 1, SIZE, SIZE)
    assert labels.shape == (4,)
    assert len(train.dataset) == 8 and test.dataset.split == "test"
    assert len(next(iter(make_loaders(4, 4, 4, image_size=SIZE)[0]))) == 2


def test_normalize_known_values() -> None:
    x = torch.tensor(MEAN).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(normalize(x), torch.zeros(3, 2, 2), atol=1e-6)
    y = normalize((torch.tensor(MEAN) + torch.tensor(STD)).view(1, 3, 1, 1))
    assert torch.allclose(y, torch.ones(1, 3, 1, 1), atol=1e-5)


def test_normalization_constants_match_data() -> None:
    images = SyntheticShapes(512, image_size=64, seed=0).generate(range(512))[0]
    assert torch.allclose(images.mean(dim=(0, 2, 3)), torch.tensor(MEAN), atol=0.02)
    assert torch.allclose(images.std(dim=(0, 2, 3)), torch.tensor(STD), atol=0.02)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"num_samples": 4, "image_size": 8}, ValueError, "image_size"),
        ({"num_samples": 4, "split": "training"}, ValueError, "split"),
        ({"num_samples": 4, "offset": -1}, ValueError, "offset"),
        ({"num_samples": 4, "transform": 3}, TypeError, "transform"),
        ({"num_samples": 4, "return_mask": "yes"}, TypeError, "return_mask"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SyntheticShapes(**kwargs)


def test_bad_indices() -> None:
    ds = SyntheticShapes(3, image_size=SIZE)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(ValueError, match="indices"):
        ds.generate([])
    with pytest.raises(ValueError, match="images"):
        normalize(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="batch_size"):
        make_loaders(4, 4, 4, batch_size=0)
