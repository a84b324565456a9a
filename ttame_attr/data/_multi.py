"""The seeded multi-label :class:`MultiShapes` dataset: two or three class shapes per image."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ttame_attr.data._render import (
    _PIXEL_NOISE,
    CLASS_NAMES,
    DISTRACTOR_NAMES,
    N_PARAMS,
    _background,
    _hsv_to_rgb,
    _inside,
    _lines,
)
from ttame_attr.data._synthetic import _SPLITS, MEAN, STD, _item_seed, check_int

__all__ = ["MultiShapes"]

_SCALE = (0.18, 0.34)  # object diameters as a fraction of the image side
_DIST_SCALE = (0.12, 0.26)
_CANDIDATES = 8
_STREAM = 16  # item seeds of MultiShapes never coincide with SyntheticShapes' (streams 0-2)


def _draw_object(image: Tensor, kind: str, centre: Tensor, radius: float, angle: float, colour: Tensor,
                 xs: Tensor, ys: Tensor) -> Tensor:
    """Paint one rotated shape onto ``image`` ``(3, H, W)`` in place; return its occupancy ``(H, W)``."""
    rel_x, rel_y = xs - centre[0], ys - centre[1]
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    u = (rel_x * cos_a + rel_y * sin_a) / radius
    v = (-rel_x * sin_a + rel_y * cos_a) / radius
    inside = _inside(kind, u, v)
    shade = 1.0 + 0.15 * u.clamp(-1.0, 1.0)
    image[:, inside] = (colour.view(3, 1, 1) * shade)[:, inside]
    return inside


def _place(generator: torch.Generator, radius: float, size: int, taken: list[tuple[Tensor, float]],
           inside: bool) -> Tensor:
    """The centre, among a few random candidates, that overlaps the objects placed so far least."""
    if inside:  # fully in the image
        cand = radius + torch.rand(_CANDIDATES, 2, generator=generator) * (size - 2 * radius)
    else:  # distractors may be cut by the edge
        cand = -0.5 * radius + torch.rand(_CANDIDATES, 2, generator=generator) * (size + radius)
    overlap = torch.zeros(_CANDIDATES)
    for centre, r in taken:
        overlap += (radius + r - (cand - centre).norm(dim=1)).clamp_min(0.0)
    return cand[int(overlap.argmin())]


def render_multi(generator: torch.Generator, size: int, min_objects: int,
                 max_objects: int) -> tuple[Tensor, Tensor, Tensor]:
    """One scene: ``(image (3, H, W), labels (K,), masks (K, H, W))`` from ``generator``."""
    num_classes = len(CLASS_NAMES)
    params = torch.rand(1, N_PARAMS, generator=generator)
    noise = torch.randn(1, 3, size, size, generator=generator)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)
    image = _lines(params, _background(params, size, xs, ys), size)[0]
    xs2, ys2 = xs[0].expand(size, size), ys[0].expand(size, size)
    n_objects = min_objects + int(torch.randint(max_objects - min_objects + 1, (1,), generator=generator))
    classes = torch.randperm(num_classes, generator=generator)[:n_objects].tolist()
    n_dist = 1 + int(torch.randint(2, (1,), generator=generator))
    kinds = [DISTRACTOR_NAMES[int(k)] for k in torch.randint(len(DISTRACTOR_NAMES), (n_dist,),
                                                               generator=generator)]
    taken: list[tuple[Tensor, float]] = []
    owner = torch.full((size, size), -1, dtype=torch.long)  # which class object shows at each pixel
    # class objects first in placement (they get the free space), distractors drawn first (beneath)
    layout = []
    for is_class, kind in [(True, CLASS_NAMES[k]) for k in classes] + [(False, k) for k in kinds]:
        low, high = _SCALE if is_class else _DIST_SCALE
        u = torch.rand(5, generator=generator).tolist()
        radius = size * (low + (high - low) * u[0]) / 2
        centre = _place(generator, radius, size, taken, inside=is_class)
        taken.append((centre, radius))
        hue, sat, val = torch.tensor(u[2]), torch.tensor(0.55 + 0.45 * u[3]), torch.tensor(0.55 + 0.45 * u[4])
        colour = _hsv_to_rgb(hue, sat, val)
        layout.append((is_class, kind, centre, radius, u[1] * 2 * math.pi, colour))
    for is_class, kind, centre, radius, angle, colour in layout[n_objects:] + layout[:n_objects]:
        inside = _draw_object(image, kind, centre, radius, angle, colour, xs2, ys2)
        owner[inside] = CLASS_NAMES.index(kind) if is_class else -1
    masks = torch.stack([owner == k for k in range(num_classes)]).float()
    labels = (masks.flatten(1).sum(dim=1) > 0).float()
    image = (image + _PIXEL_NOISE * noise[0]).clamp(0.0, 1.0)
    return image.contiguous(), labels, masks


class MultiShapes(Dataset):
    """Seeded multi-label synthetic dataset: two or three class shapes per image, a mask per class.

    Item ``i`` is the tuple ``(image, labels, masks)``:

    * ``image``: float32 ``(3, H, W)`` in ``[0, 1]`` (normalise with :data:`MEAN` / :data:`STD`
      like :class:`SyntheticShapes`), or whatever ``transform`` returns;
    * ``labels``: float32 multi-hot ``(num_classes,)``, 1.0 for every class whose shape is in
      the image (the targets of a binary cross-entropy classifier);
    * ``masks``: float32 ``(num_classes, H, W)``, mask ``k`` is 1.0 on the visible pixels of the
      class-``k`` object (all zeros for an absent class).

    Each image holds ``min_objects`` to ``max_objects`` class objects of distinct classes (from
    :data:`CLASS_NAMES`, diameter 0.18-0.34 of the side, fully inside the image), each placed
    where it overlaps the earlier ones least among eight random candidates, and one or two
    distractors (:data:`DISTRACTOR_NAMES`) beneath them, on the cluttered background of
    :class:`SyntheticShapes`. Objects drawn later hide earlier ones; the masks are what stays
    visible, and a class is labelled when any of its pixels is (overlaps are partial in
    practice: the placement avoids them).

    Item ``i`` depends only on ``(seed, split, offset + i)`` (a stream of its own, disjoint
    from :class:`SyntheticShapes`'), so the dataset is deterministic and its splits disjoint.

    Args:
        num_samples: number of items, >= 1.
        image_size: side ``H = W`` in pixels, >= 16.
        seed: base seed.
        split: ``"train"``, ``"val"`` or ``"test"``.
        offset: index of the first item within the split's stream, >= 0.
        transform: optional callable applied to each image ``(3, H, W)`` (not to the masks).
        min_objects: fewest class objects per image, >= 1.
        max_objects: most class objects per image, ``min_objects`` to ``num_classes``.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range or an unknown ``split``.

    Example:
        >>> ds = MultiShapes(4, image_size=32, seed=0)
        >>> image, labels, masks = ds[0]
        >>> tuple(image.shape), tuple(labels.shape), tuple(masks.shape), 2 <= labels.sum() <= 3
        ((3, 32, 32), (8,), (8, 32, 32), tensor(True))
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    num_classes: int = len(CLASS_NAMES)
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __init__(self, num_samples: int, image_size: int = 64, seed: int = 0, split: str = "train",
                 offset: int = 0, transform: Callable[[Tensor], Tensor] | None = None, *,
                 min_objects: int = 2, max_objects: int = 3) -> None:
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=16)
        self.seed = check_int("seed", seed, minimum=None)
        self.offset = check_int("offset", offset, minimum=0)
        self.min_objects = check_int("min_objects", min_objects, minimum=1)
        self.max_objects = check_int("max_objects", max_objects, minimum=min_objects)
        if max_objects > self.num_classes:
            raise ValueError(f"max_objects: expected at most {self.num_classes} (one object per class), "
                             f"got {max_objects}.")
        if not isinstance(split, str) or split not in _SPLITS:
            raise ValueError(f"split: expected one of {sorted(_SPLITS)}, got {split!r}.")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}.")
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, image_size={self.image_size}, "
                f"seed={self.seed}, split={self.split!r}, offset={self.offset}, "
                f"objects={self.min_objects}-{self.max_objects})")

    def generate(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Render several items as batched tensors, without ``transform``.

        Returns:
            ``(images (B, 3, H, W), labels (B, K), masks (B, K, H, W))``, all float32.

        Raises:
            IndexError: an index out of range.
            ValueError: ``indices`` empty.
        """
        checked = []
        for index in indices:
            index = int(index)
            if index < 0:
                index += self.num_samples
            if not 0 <= index < self.num_samples:
                raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} items.")
            checked.append(index)
        if not checked:
            raise ValueError("indices: expected at least one index, got an empty sequence.")
        generator = torch.Generator()
        items = []
        for index in checked:
            generator.manual_seed(_item_seed(self.seed, _STREAM + _SPLITS[self.split], self.offset + index))
            items.append(render_multi(generator, self.image_size, self.min_objects, self.max_objects))
        images, labels, masks = (torch.stack(t) for t in zip(*items))
        return images, labels, masks

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Tensor, Tensor]]:
        images, labels, masks = self.generate(indices)
        if self.transform is not None:
            images = [self.transform(image) for image in images]
        return list(zip(images, labels, masks))
