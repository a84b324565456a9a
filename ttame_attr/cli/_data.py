"""Images for the command line: a folder (ImageFolder or flat), a list file, or single files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ttame_attr.cli._errors import CLIError

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "eval_transform", "find_images", "load_batch", "train_transform"]

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


class ImageFiles(Dataset):
    """Images read from files with PIL, as ``(image, index)`` pairs (labels are not needed).

    Args:
        files: image paths.
        transform: PIL image -> ``(C, H, W)`` tensor.
    """

    def __init__(self, files: Sequence[Path], transform) -> None:
        self.files = list(files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        path = self.files[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except OSError as err:
            raise CLIError(f"data: cannot read the image {str(path)!r} ({err}).") from None
        return self.transform(image), index


def load_batch(files: Sequence[Path], transform) -> Tensor:
    """All ``files`` as one ``(N, C, H, W)`` tensor."""
    dataset = ImageFiles(files, transform)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])
