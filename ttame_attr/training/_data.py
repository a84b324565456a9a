"""The batches of each epoch, and how a resumed run sees exactly the same ones again.

A shuffled ``DataLoader`` draws its order when its iterator is created (from the loader's or
sampler's ``generator``, else from the global torch RNG), and augmentations draw from the global
RNGs (main process) or from worker seeds drawn at that moment. So :class:`DataOrder` records every
RNG state (torch CPU and CUDA, Python ``random``, NumPy, the loader's and the sampler's
generators) at the start of each epoch, before the iterator is created, and a checkpoint keeps
it. Resuming in the middle of an epoch restores those states, creates the iterator (the
permutation, worker seeds and generators come out identical), fetches and discards the batches
already trained on (one data-loading pass over them, no model forward), then restores the RNG
states saved with the checkpoint before the first new batch. Nothing of the user's loader is
modified.

The replay is exact for loaders whose randomness comes from those generators (every torch
``DataLoader`` and the usual torchvision transforms). A custom iterable that keeps other hidden
state (a streaming dataset that remembers its position) is replayed only if it yields the same
batches every time it is iterated from the same RNG states.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ttame_attr.training import distributed as dist_
from ttame_attr.training._loop import LoopPiece

__all__ = ["DataOrder", "batch_images", "capture_rng", "loader_len", "restore_rng"]

logger = logging.getLogger(__name__)

_IMAGE_KEYS = ("image", "images", "img", "pixel_values", "input", "inputs", "x")


def batch_images(batch: Any, image_key: str | None = None) -> Tensor:
    """The image tensor of a batch: a tensor, the first item of a tuple/list, or a dict entry."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        keys = (image_key,) if image_key else _IMAGE_KEYS
        for key in keys:
            if key in batch and isinstance(batch[key], Tensor):
                return batch[key]
        raise ValueError(f"loader: a dict batch has no image tensor under {list(keys)} (keys: "
                         f"{list(batch)}). Pass image_key='...' naming the image entry.")
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError("loader: expected batches that are image tensors, (images, labels) tuples or dicts with "
                    f"an image entry, got {type(batch).__name__}.")


def loader_len(loader: Any) -> int | None:
    """``len(loader)``, or ``None`` for a loader without a length."""
    try:
        return len(loader)
    except TypeError:
        return None


def _loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The explicit generators a loader draws its order and worker seeds from."""
    found: dict[str, torch.Generator] = {}
    candidates = (("loader", loader), ("sampler", getattr(loader, "sampler", None)),
                  ("batch_sampler", getattr(getattr(loader, "batch_sampler", None), "sampler", None)))
    for name, owner in candidates:
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found.values()):
            found[name] = generator
    return found


def capture_rng(loader: Any = None) -> dict[str, Any]:
    """Every RNG state that decides the data order and augmentations (``loader``'s generators
    included), as values that :func:`torch.load` with ``weights_only=True`` reads back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(gauss)],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {name: g.get_state() for name, g in _loader_generators(loader).items()
                       if g.device.type == "cpu"},
    }


def restore_rng(state: Mapping[str, Any], loader: Any = None) -> None:
    """Put back RNG states recorded by :func:`capture_rng` (the loader's generators included)."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    elif cuda:
        logger.warning("T-TAME resume: the checkpoint holds %d CUDA RNG states but %d GPUs are visible; "
                       "CUDA random numbers will not replay exactly.", len(cuda),
                       torch.cuda.device_count() if torch.cuda.is_available() else 0)
    generators = _loader_generators(loader)
    for name, saved in state.get("generators", {}).items():
        if name in generators:
            generators[name].set_state(saved.cpu())


class DataOrder(LoopPiece):
    """Draws each epoch's batches from ``loader``, in the order a resumed run must replay.

    State: ``epoch_rng`` (the RNG states at the start of the epoch in progress, ``None``
    between epochs) and ``rng`` (the RNG states when the state was taken).

    Args:
        loader: the (sharded) training loader.
        batches_per_epoch: under DDP every rank stops after this many batches.
        ctx: the distributed context: the sampler is re-seeded every epoch.
        record: keep the epoch's RNG states (only needed when checkpointing).
    """

    def __init__(self, loader: Any, batches_per_epoch: int, ctx: dist_.DistributedContext | None,
                 record: bool) -> None:
        self.loader, self.batches_per_epoch, self.ctx, self.record = loader, batches_per_epoch, ctx, record
        self.epoch_rng: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None

    def batches(self, epoch: int, skip: int) -> Iterator[Any]:
        """The batches of ``epoch`` after the first ``skip`` (already trained on)."""
        loader, resume = self.loader, self._resume
        self._resume = None
        if self.ctx is not None:  # re-seed the sampler, before the order is drawn
            dist_.set_loader_epoch(loader, epoch)
        if resume is not None:  # the RNG states the interrupted epoch's order was drawn from
            epoch_rng = resume.get("epoch_rng")
            restore_rng(epoch_rng if skip > 0 and epoch_rng is not None else resume["rng"], loader)
        self.epoch_rng = capture_rng(loader) if self.record else None
        iterator = iter(loader)
        if resume is not None and skip > 0:
            for _ in range(skip):  # trained on before the interruption
                next(iterator, None)
            restore_rng(resume["rng"], loader)  # as they were when the checkpoint was written
        if self.ctx is not None:  # every rank runs exactly batches_per_epoch steps
            iterator = itertools.islice(iterator, max(self.batches_per_epoch - skip, 0))
        return iterator

    def on_epoch_end(self, loop: Any, record: dict[str, Any]) -> None:
        self.epoch_rng = None

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_rng": self.epoch_rng, "rng": capture_rng(self.loader)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = {"epoch_rng": state.get("epoch_rng"), "rng": state["rng"]}
