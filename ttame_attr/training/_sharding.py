"""Each rank's share of the data: loaders sharded with ``DistributedSampler``."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

if TYPE_CHECKING:
    from ttame_attr.training.distributed import DistributedContext

__all__ = ["set_loader_epoch", "shard_loader"]

logger = logging.getLogger(__name__)


def _rebuild(loader: DataLoader, sampler: DistributedSampler, name: str) -> DataLoader:
    """``loader``'s own class, rebuilt with ``sampler`` and every other setting it had."""
    cls = type(loader)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    base = inspect.signature(DataLoader.__init__).parameters
    kwargs = {key: getattr(loader, key, None) for key in base
              if key not in ("self", "shuffle", "batch_sampler") and (takes_any or key in params)}
    kwargs["sampler"] = sampler
    if loader.num_workers == 0:
        kwargs.pop("prefetch_factor", None)
    for key, param in params.items():  # a subclass's own arguments, from its attributes
        if key in base or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if hasattr(loader, key):
            kwargs[key] = getattr(loader, key)
        elif param.default is param.empty:
            raise ValueError(f"{name}: fit cannot rebuild this {cls.__name__} with a DistributedSampler: its "
                             f"argument {key!r} is not an attribute of the loader. Build it with "
                             "sampler=DistributedSampler(dataset) yourself, or pass distributed=False.")
    return cls(**kwargs)


def _already_sharded(loader: DataLoader, ctx: DistributedContext, name: str) -> bool:
    """``True`` if ``loader`` shards for this rank; ``False`` if fit can shard it; else raises."""
    custom_batches = not isinstance(loader.batch_sampler, (BatchSampler, type(None)))
    kind, sampler = ("batch_sampler", loader.batch_sampler) if custom_batches else ("sampler", loader.sampler)
    replicas, rank = getattr(sampler, "num_replicas", None), getattr(sampler, "rank", None)
    if replicas is not None and rank is not None:
        if (int(replicas), int(rank)) == (ctx.world_size, ctx.rank):
            return True
        raise ValueError(f"{name}: its {kind} shards for num_replicas={replicas}, rank={rank}, but this "
                         f"process is rank {ctx.rank} of {ctx.world_size}. Build it with "
                         "DistributedSampler(dataset) inside the process (it reads the group), or let fit "
                         "shard a plain DataLoader for you.")
    plain = isinstance(sampler, SequentialSampler) or (
        isinstance(sampler, RandomSampler) and not sampler.replacement and sampler._num_samples is None)
    if custom_batches or not plain:
        what = type(sampler).__name__
        if isinstance(sampler, RandomSampler):
            what += " with replacement or num_samples"
        raise ValueError(f"{name}: its {kind} ({what}) does not shard the data across the {ctx.world_size} "
                         "ranks, and fit cannot shard it without changing what it does (every rank would "
                         "train on the same batches). Use a DataLoader with shuffle=True/False (fit then "
                         "shards it), a DistributedSampler(dataset), a sampler with num_replicas/rank "
                         "attributes that shards by rank, or pass distributed=False.")
    size = len(loader.dataset)  # type: ignore[arg-type]
    if size < ctx.world_size:
        raise ValueError(f"{name}: the dataset has {size} samples, fewer than the {ctx.world_size} "
                         "processes; some ranks would only see copies of other ranks' images. Use fewer "
                         "processes or more data.")
    return False


def shard_loader(loader: Any, ctx: DistributedContext, *, seed: int = 0, name: str = "loader",
                 shuffle: bool | None = None) -> Any:
    """A loader that gives this rank its share of the data.

    - A DataLoader whose sampler (or batch sampler) already shards for this rank (a
      ``DistributedSampler``, or any sampler with matching ``num_replicas`` and ``rank``) is kept.
    - One with the default sampler (sequential, or random) is rebuilt, as its own class, with a
      ``DistributedSampler`` over the same dataset and every other setting it had (logged on
      rank 0).
    - Iterable datasets and loaders that are not DataLoaders are kept with a warning: they must
      yield different data on each rank themselves.

    Args:
        loader: the user's loader (never modified).
        ctx: the ranks to shard for.
        seed: the ``DistributedSampler``'s seed (the same on every rank).
        name: the argument's name, for messages.
        shuffle: force shuffling on or off (``None``: as the loader did).

    Returns:
        ``loader`` itself or the rebuilt loader.

    Raises:
        ValueError: for a sampler that shards for another world size or rank, or that cannot be
            sharded without changing what it does (weighted, subset, a user's own); for a dataset
            with fewer samples than ranks.
    """
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        if ctx.is_main:
            what = ("DataLoader over an IterableDataset" if isinstance(loader, DataLoader)
                    else type(loader).__name__)
            logger.warning("%s: fit cannot shard it (a %s); it must give each rank different batches itself "
                           "(otherwise every rank trains on the same data).", name, what)
        return loader
    if _already_sharded(loader, ctx, name):
        return loader
    do_shuffle = isinstance(loader.sampler, RandomSampler) if shuffle is None else bool(shuffle)
    sampler = DistributedSampler(loader.dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=do_shuffle, seed=seed, drop_last=False)
    if ctx.is_main:
        logger.info("%s: rebuilt with a DistributedSampler (shuffle=%s) over %d ranks: %d of the "
                    "%d samples per rank", name, do_shuffle, ctx.world_size, sampler.num_samples,
                    len(loader.dataset))  # type: ignore[arg-type]
    return _rebuild(loader, sampler, name)


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """``set_epoch(epoch)`` on the loader's sampler (or batch sampler) when it has one.

    A ``DistributedSampler`` draws the same permutation every epoch unless it is re-seeded.
    """
    batch_sampler = getattr(loader, "batch_sampler", None)
    for candidate in (getattr(loader, "sampler", None), batch_sampler,
                      getattr(batch_sampler, "sampler", None)):
        set_epoch = getattr(candidate, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
            return
