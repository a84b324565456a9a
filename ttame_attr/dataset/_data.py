"""What :func:`~ttame_attr.explain_dataset` reads: a DataLoader, a Dataset, a folder or a list file.

Everything becomes a map-style dataset addressed by index (an image's ``index`` in the store is
its position in it), read in batches that never cross a shard's boundary (:class:`ShardBatches`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = ["IMAGENET", "Batch", "ShardBatches", "Source", "collate", "resolve_source"]

logger = logging.getLogger(__name__)

#: ImageNet's mean and std (``ttame_attr.IMAGENET_MEAN`` / ``IMAGENET_STD``): the default normalisation.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class Source:
    """A dataset to explain, by index.

    Attributes:
        dataset: map-style; items are an image tensor, ``(image, label)``, ``(image, label,
            mask)``, or an ``Unreadable`` marker for a file that cannot be read.
        paths: the file of each index, or ``None``.
        class_names: names of the labels, when the data has them.
        batch_size, num_workers, pin_memory: the loader's settings (from a given DataLoader).
    """

    dataset: Any
    paths: list[str] | None = None
    class_names: list[str] | None = None
    loader: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data in the manifest: its size and a hash of its file paths."""
        digest = None
        if self.paths is not None:
            digest = hashlib.sha256("\n".join(self.paths).encode("utf-8")).hexdigest()
        return {"size": len(self.dataset), "paths_sha256": digest}


class _LabelledFiles(Dataset):
    """``ImageFiles`` with labels: ``(image, label)`` items, ``Unreadable`` for a bad file."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int] | None, transform: Any) -> None:
        from ttame_attr.cli._data import ImageFiles

        self.files = ImageFiles(files, transform, report_unreadable=True)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Any:
        item = self.files[index]
        if isinstance(item, tuple) and not hasattr(item, "reason"):
            return item[0], -1 if self.labels is None else self.labels[index]
        return item


def _folder_labels(root: Path, files: list[Path]) -> tuple[list[int] | None, list[str] | None]:
    """ImageFolder labels (``root/CLASS/image``: every image exactly one folder down), else none."""
    parents = [f.parent for f in files]
    if not files or any(p.parent != root for p in parents):
        return None, None
    names = sorted({p.name for p in parents})
    position = {name: i for i, name in enumerate(names)}
    return [position[p.name] for p in parents], names


def _list_labels(path: Path) -> list[int] | None:
    """Labels from a list file's second field (``path label``), if every line has an integer one."""
    labels = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < 2 or not parts[1].lstrip("-").isdigit():
            return None
        labels.append(int(parts[1]))
    return labels


def _files_source(data: str | Path, transform: Any) -> Source:
    from ttame_attr.cli._data import find_images
    from ttame_attr.cli._errors import CLIError

    path = Path(data)
    try:
        files = find_images([str(path)])
    except CLIError as err:
        raise ValueError(str(err)) from None
    labels, names = (None, None)
    if path.is_dir():
        labels, names = _folder_labels(path, files)
    elif path.suffix.lower() in (".txt", ".lst", ".csv"):
        labels = _list_labels(path)
    return Source(_LabelledFiles(files, labels, transform), [str(f) for f in files], names)


def _dataset_paths(dataset: Any) -> list[str] | None:
    """File paths of a dataset that lists them (torchvision ``samples``, or ``files``)."""
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list) and len(samples) == len(dataset):
        return [str(s[0]) if isinstance(s, (tuple, list)) else str(s) for s in samples]
    files = getattr(dataset, "files", None)
    if isinstance(files, list) and len(files) == len(dataset):
        return [str(f) for f in files]
    return None


def resolve_source(data: Any, transform: Any) -> Source:
    """A :class:`Source` for ``data`` (see :func:`~ttame_attr.explain_dataset`).

    Raises:
        TypeError: for an iterable-style dataset or something that is not data.
        ValueError: for a missing path or a folder without images.
    """
    if isinstance(data, (str, Path)):
        return _files_source(data, transform)
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, Path)) for d in data):
        files = [Path(d) for d in data]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"data: no such image file(s) {missing[:3]}.")
        return Source(_LabelledFiles(files, None, transform), [str(f) for f in files])
    settings: dict[str, Any] = {}
    if isinstance(data, DataLoader):
        settings = {"batch_size": data.batch_size, "num_workers": data.num_workers,
                    "pin_memory": data.pin_memory}
        data = data.dataset
    if isinstance(data, IterableDataset) or not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(f"data: expected a DataLoader over a map-style Dataset, a Dataset (with __len__ and "
                        f"__getitem__), a folder or a list file of image paths, got {type(data).__name__}. "
                        "An IterableDataset has no index to shard and resume by: use ray.data with "
                        "ttame_attr.integrations.ray.ExplainBatch, or wrap it in a map-style Dataset.")
    classes = getattr(data, "classes", None)
    names = [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None
    return Source(data, _dataset_paths(data), names, settings)


class _Indexed(Dataset):
    """``(index, item)`` pairs, so that the collate function knows each image's index."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _IndexedBatched(_Indexed):
    """:class:`_Indexed` over a dataset with a batch method ``__getitems__`` (which PyTorch's
    DataLoader calls with a batch's indices, as it would on the dataset itself): the batch is read
    in one call, the pairs in the order of ``indices``."""

    def __getitems__(self, indices: list[int]) -> list[tuple[int, Any]]:
        items = self.dataset.__getitems__(list(indices))
        if len(items) != len(indices):
            raise ValueError(f"data: {type(self.dataset).__name__}.__getitems__ returned {len(items)} items "
                             f"for {len(indices)} indices; it must return one item per index, in order.")
        return list(zip(indices, items))


def _indexed(dataset: Any) -> _Indexed:
    """``(index, item)`` pairs of ``dataset``, read a batch at a time when it has ``__getitems__``."""
    return _IndexedBatched(dataset) if callable(getattr(dataset, "__getitems__", None)) else _Indexed(dataset)


@dataclass
class Batch:
    """A collated batch: ``indices`` of all its items, the readable ones' images, labels (-1
    unknown), masks (or ``None``), and ``[index, reason]`` of the unreadable ones."""

    indices: list[int]
    kept: list[int]
    images: Tensor | None
    labels: Tensor
    masks: Tensor | None
    bad: list[tuple[int, str]]

    def pin_memory(self) -> Batch:
        if self.images is not None:
            self.images = self.images.pin_memory()
        return self


def _split(item: Any) -> tuple[Tensor, int, Tensor | None]:
    if isinstance(item, Tensor):
        return item, -1, None
    if isinstance(item, dict):
        image = item.get("image", item.get("pixel_values"))
        return image, int(item.get("label", -1)), item.get("mask")
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        label = item[1] if len(item) > 1 else -1
        known = isinstance(label, int) or (isinstance(label, Tensor) and label.numel() == 1)
        label = int(label) if known else -1
        mask = item[2] if len(item) > 2 and isinstance(item[2], Tensor) else None
        return item[0], label, mask
    raise TypeError(f"data: an item must be an image tensor, (image, label), (image, label, mask) or a dict "
                    f"with 'image' and 'label', got {type(item).__name__}.")


def collate(items: list[tuple[int, Any]]) -> Batch:
    """Collate ``(index, item)`` pairs into a :class:`Batch` (in worker processes)."""
    good, bad = [], []
    for index, item in items:
        if hasattr(item, "reason") and hasattr(item, "index"):
            bad.append((index, item.reason))
        else:
            good.append((index, *_split(item)))
    images = torch.stack([g[1] for g in good]) if good else None
    masks = [g[3] for g in good]
    stacked = torch.stack(masks) if good and all(m is not None for m in masks) else None
    return Batch([i for i, _ in items], [g[0] for g in good], images,
                 torch.tensor([g[2] for g in good], dtype=torch.int64), stacked, bad)


class ShardBatches:
    """A batch sampler over shards: the batches of each shard in turn, never crossing a shard.

    Shard ``s`` holds the indices ``[s * shard_size, (s + 1) * shard_size)``; its batches start at
    its first index, so an image's batch is the same whichever rank computes it and however often
    the run was resumed. Holds no list of indices (memory stays flat).
    """

    def __init__(self, shards: Sequence[int], shard_size: int, batch_size: int, length: int) -> None:
        self.shards, self.shard_size = list(shards), shard_size
        self.batch_size, self.length = batch_size, length

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.length))

    def __iter__(self) -> Iterator[list[int]]:
        for shard in self.shards:
            span = self.shard_range(shard)
            for start in range(span.start, span.stop, self.batch_size):
                yield list(range(start, min(start + self.batch_size, span.stop)))

    def __len__(self) -> int:
        return sum(-(-len(self.shard_range(s)) // self.batch_size) for s in self.shards)

    def images(self) -> int:
        return sum(len(self.shard_range(s)) for s in self.shards)


def make_loader(source: Source, batches: ShardBatches, num_workers: int, pin_memory: bool) -> DataLoader:
    """The DataLoader of the pending shards (worker processes decode; batches prefetched)."""
    extra = {"persistent_workers": False, "prefetch_factor": 4} if num_workers > 0 else {}
    return DataLoader(_indexed(source.dataset), batch_sampler=batches, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin_memory, **extra)
