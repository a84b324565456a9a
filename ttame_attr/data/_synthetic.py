"""The seeded :class:`SyntheticShapes` dataset, its normalisation and its loaders."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ttame_attr.data._render import CLASS_NAMES, N_PARAMS, render

#: Per-channel mean of the images (in ``[0, 1]``), measured on 4,096 training images of seed 0 at
#: 64x64. Use with :data:`STD` (e.g. via :func:`normalize`) before feeding a classifier.
MEAN: tuple[float, float, float] = (0.4292, 0.4301, 0.4305)
#: Per-channel standard deviation matching :data:`MEAN`.
STD: tuple[float, float, float] = (0.1178, 0.1173, 0.1177)

_SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    """SplitMix64 finaliser: a well-spread 64-bit hash of ``value``."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _item_seed(seed: int, stream: int, index: int) -> int:
    """Seed of the generator of one item; distinct streams never share items."""
    return _mix64(_mix64(_mix64(seed) ^ stream) ^ index) & ((1 << 63) - 1)


def check_int(name: str, value: object, minimum: int | None) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``, else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}.")
    return value


class SyntheticShapes(Dataset):
    """Seeded synthetic dataset of one class-defining shape among distractors and clutter.

    Item ``i`` is the tuple ``(image, label, mask)``:

    * ``image``: float32 tensor ``(3, H, W)`` with values in ``[0, 1]`` (not normalised; see
      :data:`MEAN`, :data:`STD` and :func:`normalize`), or whatever ``transform`` returns;
    * ``label``: ``int`` in ``[0, num_classes)``, the index in :attr:`class_names` of the shape of
      the class object;
    * ``mask``: float32 tensor ``(1, H, W)``, 1.0 on the pixels of the class object and 0.0
      elsewhere (left out, giving ``(image, label)``, when ``return_mask=False``).

    The class object is a rotated shape from :data:`CLASS_NAMES` (disc, square, triangle, cross,
    star, ring, frame, heart) with diameter 0.15-0.4 of the image side, placed fully inside the
    image and drawn on top. Two to four distractors from :data:`DISTRACTOR_NAMES` (elongated
    ellipse, crescent, L shape; diameter 0.12-0.3) are placed to avoid it where possible, so they
    overlap it at most partially. The background is smooth colour noise, a colour gradient and
    thin random lines. All objects take colours from the same distribution, so only the shape of
    the class object tells the class. Every class shape has a mirror symmetry and all objects are
    rotated uniformly, so flips and 90-degree rotations of an image never change its label.

    Item ``i`` depends only on ``(seed, split, offset + i)``: its random numbers come from a
    generator seeded with a hash of them. ``__getitems__`` renders a whole batch at once
    (PyTorch's ``DataLoader`` uses it automatically) with the same tensors as rendering the items
    one by one; thousands of images per second on one CPU core.

    Args:
        num_samples: number of items (``len(dataset)``), >= 1.
        image_size: side ``H = W`` of the square images in pixels, >= 16.
        seed: base seed; different seeds give different datasets.
        split: ``"train"``, ``"val"`` or ``"test"``; the three splits are disjoint streams, so a
            held-out split never repeats a training image.
        offset: index of the first item within the split's stream, >= 0. Datasets with the same
            seed and split and non-overlapping ``[offset, offset + num_samples)`` ranges hold
            different images (e.g. a fresh training set per epoch).
        transform: optional callable applied to each image tensor ``(3, H, W)``. It sees the
            image only, not the mask, so use it for photometric changes or normalisation, not
            for geometric ones.
        return_mask: whether items include the mask.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument is out of range or ``split`` is unknown.

    Example:
        >>> ds = SyntheticShapes(8, image_size=32, seed=0, split="val")
        >>> image, label, mask = ds[0]
        >>> tuple(image.shape), tuple(mask.shape), 0 <= label < ds.num_classes
        ((3, 32, 32), (1, 32, 32), True)
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    num_classes: int = len(CLASS_NAMES)
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __init__(self, num_samples: int, image_size: int = 64, seed: int = 0, split: str = "train",
                 offset: int = 0, transform: Callable[[Tensor], Tensor] | None = None,
                 return_mask: bool = True) -> None:
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=16)
        self.seed = check_int("seed", seed, minimum=None)
        self.offset = check_int("offset", offset, minimum=0)
        if not isinstance(split, str) or split not in _SPLITS:
            raise ValueError(f"split: expected one of {sorted(_SPLITS)}, got {split!r}. Use `offset` to take "
                             "different items from the same split.")
        if transform is not None and not callable(transform):
            raise TypeError("transform: expected a callable taking a (3, H, W) tensor or None, got "
                            f"{type(transform).__name__}.")
        if not isinstance(return_mask, bool):
            raise TypeError(f"return_mask: expected a bool, got {type(return_mask).__name__}.")
        self.split, self.transform, self.return_mask = split, transform, return_mask

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, image_size={self.image_size}, "
                f"seed={self.seed}, split={self.split!r}, offset={self.offset})")

    def _check_index(self, index: int) -> int:
        """``index`` as an int in ``[0, len(self))``."""
        if isinstance(index, bool) or not isinstance(index, int):
            try:
                index = int(index)  # numpy / 0-d tensor indices
            except (TypeError, ValueError):
                raise TypeError(f"index: expected an int, got {type(index).__name__}.") from None
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} items.")
        return index

    def generate(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Render several items at once, as batched tensors, without ``transform``.

        Args:
            indices: item indices in ``[-len(self), len(self))``.

        Returns:
            ``(images, labels, masks)`` with shapes ``(B, 3, H, W)`` (float32 in ``[0, 1]``),
            ``(B,)`` (int64) and ``(B, 1, H, W)`` (float32, 0 or 1).

        Raises:
            IndexError: if an index is out of range.
            ValueError: if ``indices`` is empty.
        """
        checked = [self._check_index(i) for i in indices]
        if not checked:
            raise ValueError("indices: expected at least one index, got an empty sequence.")
        size, stream = self.image_size, _SPLITS[self.split]
        params = torch.empty(len(checked), N_PARAMS)
        noise = torch.empty(len(checked), 3, size, size)
        generator = torch.Generator()
        for row, index in enumerate(checked):
            generator.manual_seed(_item_seed(self.seed, stream, self.offset + index))
            params[row] = torch.rand(N_PARAMS, generator=generator)
            noise[row] = torch.randn(3, size, size, generator=generator)
        return render(params, noise, size)

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor] | tuple[Tensor, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple]:
        images, labels, masks = self.generate(indices)
        if self.transform is not None:
            images = [self.transform(image) for image in images]
        if self.return_mask:
            return [(image, int(label), mask) for image, label, mask in zip(images, labels, masks)]
        return [(image, int(label)) for image, label in zip(images, labels)]


def normalize(images: Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Tensor:
    """Normalise images in ``[0, 1]`` channel-wise into a new tensor: ``(x - mean) / std``.

    Args:
        images: tensor ``(3, H, W)`` or ``(N, 3, H, W)``.
        mean: three per-channel means.
        std: three per-channel standard deviations.

    Returns:
        Tensor of the same shape as ``images``.

    Raises:
        ValueError: if ``images`` does not have 3 channels in dimension -3.
    """
    if not isinstance(images, Tensor) or images.dim() not in (3, 4) or images.shape[-3] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images: expected a tensor of shape (3, H, W) or (N, 3, H, W), got {shape}.")
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - m) / s


def make_loaders(num_train: int = 20000, num_val: int = 2000, num_test: int = 2000, *, image_size: int = 64,
                 seed: int = 0, batch_size: int = 128, return_mask: bool = False, num_workers: int = 0,
                 shuffle_train: bool = True) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, validation and test loaders over disjoint :class:`SyntheticShapes` splits.

    Images come out in ``[0, 1]``; normalise them with :func:`normalize` before a classifier
    (``train_classifier`` does so itself).

    Args:
        num_train: training items.
        num_val: validation items.
        num_test: test items.
        image_size: image side in pixels.
        seed: dataset seed; the training order is shuffled with a generator seeded from it.
        batch_size: batch size of all three loaders.
        return_mask: also yield the ``(B, 1, H, W)`` masks.
        num_workers: ``DataLoader`` worker processes.
        shuffle_train: shuffle the training loader.

    Returns:
        ``(train_loader, val_loader, test_loader)``; batches are ``(images (B, 3, H, W),
        labels (B,))`` or, with ``return_mask``, ``(images, labels, masks (B, 1, H, W))``.

    Raises:
        ValueError: if a size or ``batch_size`` is not a positive int.
    """
    check_int("batch_size", batch_size, minimum=1)
    train, val, test = (
        SyntheticShapes(n, image_size=image_size, seed=seed, split=split, return_mask=return_mask)
        for n, split in ((num_train, "train"), (num_val, "val"), (num_test, "test")))
    return (DataLoader(train, batch_size=batch_size, shuffle=shuffle_train, num_workers=num_workers,
                       generator=torch.Generator().manual_seed(seed)),
            DataLoader(val, batch_size=batch_size, num_workers=num_workers),
            DataLoader(test, batch_size=batch_size, num_workers=num_workers))
