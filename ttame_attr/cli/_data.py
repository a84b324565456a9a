"""Images for the command line: a folder (ImageFolder or flat), a list file, or single files."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ttame_attr.cli._errors import CLIError

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "ReadableBatches", "Unreadable", "collate_readable",
           "eval_transform", "find_images", "image_loader", "load_batch", "to_rgb", "train_transform",
           "unreadable_message"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _listed(path: Path, source: str) -> list[Path]:
    """The image paths a list file names."""
    listed = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line.replace(",", " ").split()[0])
        entry = entry if entry.is_absolute() else path.parent / entry
        if not entry.is_file():
            raise CLIError(f"data: {str(entry)!r}, listed in {source!r}, does not exist.")
        listed.append(entry)
    if not listed:
        raise CLIError(f"data: the list file {source!r} names no images.")
    return listed


def find_images(sources: Sequence[str]) -> list[Path]:
    """Image files from paths: image files, folders (searched recursively, sorted), list files.

    A list file (``.txt``/``.lst``/``.csv``) holds one image path per line (the first
    comma/whitespace-separated field; ``#`` comments and blank lines skipped), relative paths
    taken from the list file's folder.

    Raises:
        CLIError: for a missing path, an empty folder or a list naming missing files.
    """
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        suffix = path.suffix.lower()
        if not path.exists():
            raise CLIError(f"data: no such file or folder {source!r}.")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CLIError(f"data: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {source!r}.")
            files.extend(found)
        elif suffix in (".txt", ".lst", ".csv"):
            files.extend(_listed(path, source))
        elif suffix in IMAGE_SUFFIXES:
            files.append(path)
        else:
            raise CLIError(f"data: {source!r} is neither an image ({', '.join(IMAGE_SUFFIXES)}), a folder, "
                           "nor a list file (.txt).")
    return files


def _transform(input_size: tuple[int, int, int], mean: Sequence[float], std: Sequence[float], train: bool):
    """Resize to 256/224 of the input side (the paper's ratio), crop (and flip), normalise."""
    from torchvision import transforms as T

    hw = tuple(input_size[1:])
    crop = [T.RandomCrop(hw, pad_if_needed=True), T.RandomHorizontalFlip()] if train else [T.CenterCrop(hw)]
    return T.Compose([T.Resize(round(min(hw) * 256 / 224)), *crop, T.ToTensor(), T.Normalize(mean, std)])


def train_transform(input_size: tuple[int, int, int], mean: Sequence[float], std: Sequence[float]):
    """The paper's augmentation scaled to the model: Resize(256/224 x), RandomCrop, flip, normalise."""
    return _transform(input_size, mean, std, train=True)


def eval_transform(input_size: tuple[int, int, int], mean: Sequence[float], std: Sequence[float]):
    """Evaluation preprocessing: Resize(256/224 x), CenterCrop to the model's size, normalise."""
    return _transform(input_size, mean, std, train=False)


def unreadable_message(option: str, path: Path, reason: str) -> str:
    """The error for an image that cannot be read, with the fix."""
    return (f"{option}: cannot read the image {str(path)!r} ({reason}). Remove it, or pass "
            "--skip-unreadable to skip unreadable images.")


#: The largest value of each integer PIL mode wider than 8 bits (16-bit PNG / TIFF).
_HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535}


def to_rgb(img: Any) -> Any:
    """A PIL image as 8-bit RGB, high bit depths scaled, not clipped.

    ``Image.convert("RGB")`` clips 16-bit and 32-bit grey images at 255 (a 0-65535 gradient
    becomes almost all white). Here a 16-bit image (``I;16*``, or ``I`` with values in
    0..65535) is scaled by 255 / 65535 and a float image (``F``) with values in [0, 1] by 255,
    rounded to 8 bits (the precision the transforms and most models work at).

    Raises:
        ValueError: for a 32-bit integer image with values outside 0..65535 or a float image
            outside [0, 1] (or holding NaN), whose range cannot be told from the file.
    """
    import numpy as np
    from PIL import Image

    if img.mode not in (*_HIGH_DEPTH, "I", "F"):
        return img.convert("RGB")
    values = np.asarray(img, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode == "F":
        if not (np.isfinite(values).all() and low >= 0.0 and high <= 1.0):
            raise ValueError(f"a 32-bit float image with values in [{low:g}, {high:g}]; only floats in "
                             "[0, 1] are read (their range is not in the file): scale it to [0, 1] or save "
                             "it as an 8- or 16-bit image")
        peak = 1.0
    elif img.mode == "I" and (low < 0 or high > 65535):
        raise ValueError(f"a 32-bit integer image with values in [{low:g}, {high:g}], beyond 16 bits (its "
                         "range is not in the file): save it as an 8- or 16-bit image")
    else:
        peak = 65535.0
    grey = np.rint(values * (255.0 / peak)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


class Unreadable(NamedTuple):
    """What :class:`ImageFiles` returns for a file PIL cannot read (``report_unreadable=True``)."""

    index: int
    reason: str


class ImageFiles(Dataset):
    """Images read from files with PIL, as ``(image, index)`` pairs (labels are not needed).

    Args:
        files: image paths.
        transform: PIL image -> ``(C, H, W)`` tensor.
        report_unreadable: return an :class:`Unreadable` for a file that cannot be read instead
            of raising (what :func:`image_loader` does, so that worker processes report the file
            to the main process instead of failing).
        option: the option the files came from, for messages.

    Raises:
        CLIError: (``__getitem__``) for an unreadable file unless ``report_unreadable``.
    """

    def __init__(self, files: Sequence[Path], transform, report_unreadable: bool = False,
                 option: str = "data") -> None:
        self.files = list(files)
        self.transform = transform
        self.report_unreadable = report_unreadable
        self.option = option

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | Unreadable:
        from PIL import Image

        path = self.files[index]
        try:
            with Image.open(path) as img:
                image = to_rgb(img)
        except Exception as err:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
            reason = f"{type(err).__name__}: {err}"
            if self.report_unreadable:
                return Unreadable(index, reason)
            raise CLIError(unreadable_message(self.option, path, reason)) from None
        return self.transform(image), index


def collate_readable(items: list[Any]) -> tuple[Tensor | None, Tensor, list[Unreadable]]:
    """``(images or None, indices, unreadable)`` of a batch of :class:`ImageFiles` items."""
    good = [item for item in items if not isinstance(item, Unreadable)]
    bad = [item for item in items if isinstance(item, Unreadable)]
    images = torch.stack([image for image, _ in good]) if good else None
    return images, torch.tensor([index for _, index in good], dtype=torch.long), bad


class ReadableBatches:
    """A loader of :class:`ImageFiles` that stops at an unreadable image or skips it.

    Iterates the ``DataLoader`` (``collate_fn=collate_readable``) and yields ``(images,
    indices)`` batches, which :meth:`TTAME.fit <ttame_attr.TTAME.fit>` and
    :func:`ttame_attr.metrics.evaluate` accept. Unreadable files come back from the worker
    processes with their batch. With ``skip=False`` the first one raises a :class:`CLIError`
    naming it; with ``skip=True`` it is logged once, recorded in :attr:`skipped` and left out (a
    batch with no readable image is dropped). ``len()`` and the loader's generators and sampler are
    the ``DataLoader``'s (the training loop replays a resumed epoch from them).

    Args:
        loader: the ``DataLoader``.
        skip: skip unreadable images instead of stopping.
        option: the option the images came from, for messages (``data``, ``--val``).
    """

    def __init__(self, loader: DataLoader, skip: bool, option: str = "data") -> None:
        self.loader, self.skip, self.option = loader, skip, option
        self.files: list[Path] = loader.dataset.files  # type: ignore[attr-defined]
        self._skipped: dict[int, str] = {}
        self._read: set[int] = set()

    @property
    def skipped(self) -> dict[Path, str]:
        """``{path: reason}`` of every image skipped so far, in the order of the files."""
        return {self.files[i]: self._skipped[i] for i in sorted(self._skipped)}

    generator = property(lambda self: self.loader.generator)
    sampler = property(lambda self: self.loader.sampler)
    batch_sampler = property(lambda self: self.loader.batch_sampler)

    def __len__(self) -> int:
        return len(self.loader)

    def check_unread(self) -> int:
        """Read every file no iteration has loaded yet (``drop_last`` leaves the last, partial
        batch out of each epoch), recording the unreadable ones in :attr:`skipped` as well, so
        that ``--skip-unreadable`` reports every unreadable file, not only those that happened
        to be read. Returns how many files were checked."""
        unread = [i for i in range(len(self.files)) if i not in self._read]
        for index in unread:
            item = self.loader.dataset[index]
            if isinstance(item, Unreadable):
                self._skipped[index] = item.reason
            self._read.add(index)
        return len(unread)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yielded = 0
        for images, indices, bad in self.loader:
            self._read.update(indices.tolist())
            self._read.update(item.index for item in bad)
            for item in bad:
                path = self.files[item.index]
                if not self.skip:
                    raise CLIError(unreadable_message(self.option, path, item.reason))
                if item.index not in self._skipped:
                    logger.warning("%s: skipping the unreadable image %s (%s)", self.option, path,
                                   item.reason)
                    self._skipped[item.index] = item.reason
            if images is not None:
                yielded += 1
                yield images, indices
        if not yielded and self._skipped:
            path, reason = next(iter(self.skipped.items()))
            raise CLIError(f"{self.option}: none of the {len(self.files)} images could be read (e.g. "
                           f"{str(path)!r}: {reason}).")


def image_loader(files: Sequence[Path], transform, *, skip: bool, option: str = "data",
                 **loader_kwargs: Any) -> ReadableBatches:
    """A :class:`ReadableBatches` over ``files`` (``loader_kwargs`` go to the ``DataLoader``)."""
    dataset = ImageFiles(files, transform, report_unreadable=True, option=option)
    return ReadableBatches(DataLoader(dataset, collate_fn=collate_readable, **loader_kwargs), skip, option)


def load_batch(files: Sequence[Path], transform, skip: bool = False,
               option: str = "images") -> tuple[Tensor | None, list[int], dict[Path, str]]:
    """``(images, kept, skipped)``: the readable ``files`` as one ``(N, C, H, W)`` tensor (``None``
    if none is), their positions in ``files``, and ``{path: reason}`` of the unreadable ones.

    Raises:
        CLIError: for an unreadable file unless ``skip``.
    """
    dataset = ImageFiles(files, transform, report_unreadable=skip, option=option)
    items = [dataset[i] for i in range(len(dataset))]
    skipped = {dataset.files[item.index]: item.reason for item in items if isinstance(item, Unreadable)}
    good = [item for item in items if not isinstance(item, Unreadable)]
    images = torch.stack([image for image, _ in good]) if good else None
    return images, [index for _, index in good], skipped
