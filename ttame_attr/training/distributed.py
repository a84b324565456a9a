"""Data-parallel training of the T-TAME head with ``torch.distributed`` (DDP under torchrun).

With ``W`` ranks of ``B`` images each, a step is the step one process would take on the ``W * B``
images together: every rank computes the maps of *all* the global batch's labels for its own
images (:func:`gather_labels`), each rank's loss is weighted by its share of the global batch,
and the head's BatchNorm layers use the statistics of the global batch (:class:`SyncBatchNorm`).
Only the attention head is wrapped in DistributedDataParallel (:func:`data_parallel_head`), not
the frozen backbone; loaders are sharded with a ``DistributedSampler`` (:func:`shard_loader`).
The ranks agree on the set-up in one all-reduce (:func:`agree`) and take every decision to skip
a non-finite loss together (:func:`all_ranks_finite`), so no rank ever waits for a collective
the others will not reach.

The whole layer is this one module, in reading order: the context, the collectives, sharding
the loaders, the data-parallel head (its pieces use one another; split, they only import each
other in a circle).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

__all__ = ["DistributedContext", "SyncBatchNorm", "agree", "all_ranks_finite", "data_parallel_head",
           "gather_labels", "is_main_process", "local_device", "reduce_max", "reduce_sums",
           "resolve_distributed", "set_loader_epoch", "shard_loader"]

logger = logging.getLogger(__name__)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistributedContext:
    """The process group :func:`~ttame_attr.fit` trains in.

    Attributes:
        rank: this process's rank in the group.
        world_size: number of processes.
        backend: ``"nccl"``, ``"gloo"``, ...
        comm_device: where small bookkeeping tensors go for collectives (the CUDA device for
            NCCL, the CPU for gloo).
    """

    rank: int
    world_size: int
    backend: str
    comm_device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the process that logs, shows progress, writes files)."""
        return self.rank == 0


def is_main_process(ctx: DistributedContext | None) -> bool:
    """``ctx.is_main``, or ``True`` in a single-process run (``ctx`` is ``None``)."""
    return ctx is None or ctx.is_main


def local_device() -> torch.device:
    """The device of this process under torchrun: ``cuda:LOCAL_RANK`` when CUDA is there, else CPU.

    Move the model there *before* building the :class:`~ttame_attr.TTAME`, so the head is created
    on the same device.

    Example:
        >>> import torch
        >>> from ttame_attr.training import local_device
        >>> isinstance(local_device(), torch.device)
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _init_from_torchrun(distributed: bool | None, device: torch.device) -> bool:
    """Initialise the default group from torchrun's environment; ``False`` if there is none."""
    value = os.environ.get("WORLD_SIZE")
    if value is None:
        if distributed:
            raise ValueError("distributed=True: no process group is initialised and WORLD_SIZE is not set. "
                             "Launch the script with torchrun (e.g. `torchrun --nproc_per_node=8 train.py`) "
                             "or call torch.distributed.init_process_group() before fit.")
        return False
    try:
        world = int(value)
    except ValueError as err:
        raise ValueError(f"WORLD_SIZE: the environment variable must be an integer, got {value!r}.") from err
    if world <= 1:
        return False
    missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} is set but {missing} are not: fit cannot join the process "
                         "group. Launch with torchrun, or call torch.distributed.init_process_group() "
                         "yourself before fit.")
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    options: dict[str, Any] = {}
    if backend == "nccl" and "device_id" in inspect.signature(dist.init_process_group).parameters:
        options["device_id"] = device  # bind NCCL to the head's GPU (torch >= 2.3)
    dist.init_process_group(backend=backend, **options)
    if dist.get_rank() == 0:
        logger.info("fit: initialised a %s process group of %d processes from torchrun's environment",
                    backend, dist.get_world_size())
    return True


def resolve_distributed(distributed: bool | None, device: torch.device) -> DistributedContext | None:
    """Decide whether :func:`~ttame_attr.fit` trains data-parallel, and set the group up.

    When no default process group is initialised but torchrun's environment is present
    (``WORLD_SIZE`` > 1 with ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), the group is initialised
    (NCCL for a CUDA head, gloo otherwise; logged).

    Args:
        distributed: ``fit``'s argument: ``None`` (automatic), ``True`` (an error without a group
            or torchrun's environment) or ``False`` (each process trains its own head).
        device: the head's device.

    Returns:
        A :class:`DistributedContext`, or ``None`` for a single-process run (also a group of one).

    Raises:
        TypeError: if ``distributed`` is not ``None`` or a bool.
        ValueError: for ``distributed=True`` without a group, an incomplete torchrun
            environment, or an NCCL group with a head on the CPU.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed: expected None (automatic), True or False, got {distributed!r}.")
    available = dist.is_available()
    if distributed is False:
        if available and dist.is_initialized() and dist.get_world_size() > 1:
            logger.info("fit: distributed=False: rank %d trains its own head, nothing is synchronised",
                        dist.get_rank())
        return None
    if not available:
        if distributed:
            raise ValueError("distributed=True: this PyTorch build has no torch.distributed. Use a build "
                             "with distributed support or pass distributed=None/False.")
        return None
    if not dist.is_initialized() and not _init_from_torchrun(distributed, device):
        return None
    if dist.get_world_size() <= 1:
        return None
    backend = str(dist.get_backend())
    if device.type != "cuda" and backend == "nccl":
        raise ValueError(f"model: the process group uses NCCL, which needs CUDA tensors, but the explainer "
                         f"is on {device}. Move the model to its process's GPU, torch.device('cuda', "
                         "int(os.environ['LOCAL_RANK'])), before building TTAME, or use the gloo backend "
                         "for CPU training.")
    comm_device = device if device.type == "cuda" and backend != "gloo" else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), backend, comm_device)


def agree(ctx: DistributedContext | None, error: Exception | None,
          **values: int | None) -> dict[str, tuple[int, int] | None]:
    """Agree on the set-up in one all-reduce: any rank's error, and each value's range.

    Args:
        ctx: ``None``: this process alone.
        error: this rank's set-up error, if any; raised once every rank knows of it.
        **values: integers each rank knows (``None`` for unknown).

    Returns:
        ``{name: (minimum, maximum)}`` over ranks, ``None`` where some rank does not know it.

    Raises:
        ValueError: on the ranks without an error of their own, naming the ranks that failed.
    """
    if ctx is None:
        if error is not None:
            raise error
        return {k: None if v is None else (int(v), int(v)) for k, v in values.items()}
    world = ctx.world_size
    flat = [0] * world
    flat[ctx.rank] = int(error is not None)
    for value in values.values():  # unknown, maximum, -minimum
        flat += [1, 0, 0] if value is None else [0, int(value), -int(value)]
    t = torch.tensor(flat, dtype=torch.int64, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    got = t.tolist()
    failed = [r for r in range(world) if got[r]]
    if error is not None:
        raise error
    if failed:
        raise ValueError(f"fit: the set-up failed on rank(s) {failed} (see their error); rank "
                         f"{ctx.rank} stops too.")
    out: dict[str, tuple[int, int] | None] = {}
    for i, name in enumerate(values):
        unknown, high, neg_low = got[world + 3 * i: world + 3 * i + 3]
        out[name] = None if unknown else (-neg_low, high)
    return out


def all_ranks_finite(value: Tensor, ctx: DistributedContext | None) -> bool:
    """Whether ``value`` is finite on every rank (so that all ranks skip a step together)."""
    finite = torch.isfinite(value.detach()).all()
    if ctx is None:
        return bool(finite)
    t = finite.to(device=ctx.comm_device, dtype=torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_labels(labels: Tensor, ctx: DistributedContext | None) -> tuple[Tensor, int, float]:
    """The labels of the global batch, this rank's offset in it and its loss weight.

    Returns:
        ``(G,)`` the labels of all ranks in rank order (``G`` the global batch size), the index
        of this rank's first image in them, and ``W * B / G``: the factor that makes DDP's
        average of the ranks' losses equal the loss of the global batch when the ranks' batch
        sizes differ (1 when they are equal). ``(labels, 0, 1.0)`` without ``ctx``.
    """
    if ctx is None:
        return labels, 0, 1.0
    n = labels.shape[0]
    sizes = dist_fn.all_gather(torch.tensor([n], dtype=torch.int64, device=ctx.comm_device))
    counts = [int(s) for s in torch.cat(sizes).tolist()]
    padded = torch.zeros(max(counts), dtype=torch.int64, device=ctx.comm_device)
    padded[:n] = labels.to(device=ctx.comm_device, dtype=torch.int64)
    parts = dist_fn.all_gather(padded)
    everything = torch.cat([p[:c] for p, c in zip(parts, counts)]).to(labels.device)
    return everything, sum(counts[: ctx.rank]), ctx.world_size * n / sum(counts)


def reduce_sums(sums: Mapping[str, float], count: int,
                ctx: DistributedContext | None) -> tuple[dict[str, float], int]:
    """Sum running totals (and their sample count) over ranks, for global means."""
    if ctx is None:
        return dict(sums), count
    keys = sorted(sums)
    t = torch.tensor([float(count)] + [float(sums[k]) for k in keys], dtype=torch.float64,
                     device=ctx.comm_device)
    dist.all_reduce(t)
    values = t.tolist()
    return dict(zip(keys, values[1:])), int(round(values[0]))


def reduce_max(values: Tensor, ctx: DistributedContext | None) -> Tensor:
    """The elementwise maximum of ``values`` (a CPU float tensor, same shape on every rank) over
    ranks; ``values`` itself without DDP."""
    if ctx is None:
        return values
    t = values.to(device=ctx.comm_device, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().to(values.dtype)


# ---------------------------------------------------------------- sharding the loaders

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


# ---------------------------------------------------------------- the head, data-parallel

class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across ranks.

    :class:`torch.nn.SyncBatchNorm` runs on GPUs only; this one sums the statistics with the
    differentiable ``torch.distributed.nn`` all-reduce and so works with any backend, gloo on
    CPUs included. Each forward sums, in float32, the per-channel count, sum and sum of squares
    of ``x - s`` with ``s`` the running mean (the same on every rank and close to the batch mean,
    which keeps the variance accurate). In eval mode it is a plain BatchNorm with the running
    statistics.

    Args:
        original: the BatchNorm it stands in for; its parameters and running buffers are shared
            (same names: ``state_dict`` keys are unchanged).
        group: the process group of the all-reduce.
    """

    def __init__(self, original: nn.modules.batchnorm._BatchNorm, group: Any) -> None:
        super().__init__(original.num_features, eps=original.eps, momentum=original.momentum,
                         affine=original.affine, track_running_stats=original.track_running_stats,
                         device=torch.device("meta"))
        self.weight, self.bias = original.weight, original.bias
        self.running_mean, self.running_var = original.running_mean, original.running_var
        self.num_batches_tracked = original.num_batches_tracked
        self.training = original.training
        self.group = group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2-D input, got {input.dim()}-D.")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not self.training and not (self.running_mean is None and self.running_var is None):
            return nn.functional.batch_norm(input, self.running_mean, self.running_var,
                                            self.weight, self.bias, False, 0.0, self.eps)
        shape = [1, input.shape[1]] + [1] * (input.dim() - 2)
        dims = [0, *range(2, input.dim())]
        x = input.to(torch.promote_types(input.dtype, torch.float32))  # float32 under autocast
        c = x.shape[1]
        shift = self.running_mean.detach().to(x.dtype) if self.running_mean is not None else x.new_zeros(c)
        d = x - shift.view(shape)
        stats = torch.cat([d.sum(dims), d.pow(2).sum(dims), x.new_tensor([float(x.numel() // c)])])
        stats = dist_fn.all_reduce(stats, group=self.group)
        n = stats[-1]
        mean_d = stats[:c] / n
        var = (stats[c: 2 * c] / n - mean_d.pow(2)).clamp_min(0.0)
        y = (d - mean_d.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.to(x.dtype).view(shape) + self.bias.to(x.dtype).view(shape)
        if self.training and self.track_running_stats:
            self._update_running_stats(shift + mean_d, var * (n / (n - 1.0).clamp_min(1.0)))
        return y.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, unbiased_var: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var.to(self.running_var.dtype), alpha=factor)


@contextmanager
def data_parallel_head(head: nn.Module, ctx: DistributedContext | None) -> Iterator[nn.Module]:
    """For the block, the module that trains ``head`` data-parallel; everything restored after.

    Puts :class:`SyncBatchNorm` in place of the head's BatchNorm layers (sharing their weights
    and buffers) and wraps the head in DistributedDataParallel, which copies rank 0's weights
    and buffers to every rank. On exit (also after an error) the head gets its own BatchNorm
    modules back. Without ``ctx``: yields ``head`` itself.
    """
    if ctx is None:
        yield head
        return
    from torch.nn.parallel import DistributedDataParallel

    group = dist.new_group(ranks=list(range(ctx.world_size)))  # never interleaves with DDP's
    swapped = []
    for parent in list(head.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, child_name, SyncBatchNorm(child, group))
                swapped.append((parent, child_name, child))
    try:
        device = next(head.parameters()).device
        # After DDP's first copy the synchronised BatchNorm keeps the buffers identical, so they
        # need no broadcast at every forward.
        ddp_params = inspect.signature(DistributedDataParallel).parameters
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in ddp_params
                   else {"broadcast_buffers": False})
        yield DistributedDataParallel(head, device_ids=[device] if device.type == "cuda" else None, **no_sync)
    finally:
        for parent, child_name, original in reversed(swapped):
            setattr(parent, child_name, original)
        dist.destroy_process_group(group)
