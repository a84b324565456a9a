"""Data-parallel training of the T-TAME head with ``torch.distributed`` (DDP under torchrun).

:func:`~ttame_attr.fit` calls into this module when it runs in several processes. The design:

- **Same result as one process on the global batch.** With ``W`` ranks of ``B`` images each, a
  step is the step one process would take on the ``W * B`` images together: the labels of the
  whole global batch are gathered so every rank computes the maps of *all* ``W * B`` labels for
  its own images (the loss's ``(B, B, h, w)`` masks become this rank's rows of the global
  ``(W * B, W * B, h, w)`` tensor), each rank's loss is weighted by its share of the global batch,
  and the head's BatchNorm layers use the statistics of the global batch (a synchronised
  BatchNorm that, unlike :class:`torch.nn.SyncBatchNorm`, also works with gloo on CPUs).
- Only the attention head is wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`; the frozen backbone is not.
- Every rank runs the same number of steps (the minimum over ranks) and takes the same decision
  to skip a step with a non-finite loss, so no rank ever waits for a collective the others
  will not reach. Set-up errors found on any rank are raised on every rank.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

if TYPE_CHECKING:
    from ttame_attr._core.training import Trainer

__all__ = [
    "DistributedContext",
    "SyncBatchNorm",
    "agree_num_steps",
    "all_ranks_finite",
    "check_same_on_all_ranks",
    "distributed_head",
    "gather_labels",
    "is_main_process",
    "local_device",
    "prepare_loaders",
    "raise_if_any_rank_failed",
    "reduce_sums",
    "resolve_distributed",
    "set_loader_epoch",
    "shard_loader",
]

logger = logging.getLogger(__name__)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistributedContext:
    """The process group :func:`~ttame_attr.fit` trains in.

    Attributes:
        rank: this process's rank in the group.
        world_size: number of processes.
        backend: ``"nccl"``, ``"gloo"``, ...
        comm_device: where small bookkeeping tensors are put for collectives (the CUDA device
            for NCCL, the CPU for gloo).
        bn_group: a separate group over the same ranks for the BatchNorm synchronisation, so its
            collectives never interleave with DDP's gradient reduction.
        initialized_here: whether :func:`resolve_distributed` created the default process group.
    """

    rank: int
    world_size: int
    backend: str
    comm_device: torch.device
    bn_group: Any = None
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the process that logs, shows progress, writes files)."""
        return self.rank == 0


def is_main_process(ctx: DistributedContext | None) -> bool:
    """``True`` on rank 0 and in single-process runs: the process that logs and writes files."""
    return ctx is None or ctx.is_main


def local_device() -> torch.device:
    """The device of this process under torchrun: ``cuda:LOCAL_RANK`` when CUDA is there, else CPU.

    Move the model there *before* building the :class:`~ttame_attr.TTAME`, so the head is
    created on the same device.

    Example:
        >>> import torch
        >>> from ttame_attr._core.distributed import local_device
        >>> isinstance(local_device(), torch.device)
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _env_world_size() -> int | None:
    value = os.environ.get("WORLD_SIZE")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(
            f"WORLD_SIZE: the environment variable must be an integer, got {value!r}."
        ) from err


def resolve_distributed(
    distributed: bool | None, device: torch.device
) -> DistributedContext | None:
    """Decide whether :func:`~ttame_attr.fit` trains data-parallel, and set the group up.

    - ``distributed=None`` (default, automatic): use the default process group when one is
      initialised with more than one process; otherwise, when torchrun's environment is present
      (``WORLD_SIZE`` > 1 with ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), initialise it
      (NCCL for a CUDA head, gloo otherwise; logged). Without ``WORLD_SIZE`` nothing is
      initialised: a plain single-process run.
    - ``distributed=True``: the same, but it is an error when there is neither a group nor
      torchrun's environment.
    - ``distributed=False``: never distribute; each process trains its own head.

    Args:
        distributed: ``None``, ``True`` or ``False`` as above.
        device: the device of the head.

    Returns:
        A :class:`DistributedContext`, or ``None`` for a single-process run (also a group of one).

    Raises:
        TypeError: if ``distributed`` is not ``None`` or a bool.
        ValueError: for ``distributed=True`` without a group, an incomplete torchrun
            environment, or an NCCL group with a head on the CPU.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(
            f"distributed: expected None (automatic), True or False, got {distributed!r}."
        )
    if distributed is False:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            logger.info(
                "fit: distributed=False: rank %d trains its own head, nothing is synchronised",
                dist.get_rank(),
            )
        return None
    if not dist.is_available():
        if distributed:
            raise ValueError(
                "distributed=True: this PyTorch build has no torch.distributed. Use a build with "
                "distributed support or pass distributed=None/False."
            )
        return None
    initialized_here = False
    if not dist.is_initialized():
        world = _env_world_size()
        if world is None:
            if distributed:
                raise ValueError(
                    "distributed=True: no process group is initialised and WORLD_SIZE is not set. "
                    "Launch the script with torchrun (e.g. `torchrun --nproc_per_node=8 "
                    "train.py`) or call torch.distributed.init_process_group() before fit."
                )
            return None
        if world <= 1:
            return None
        missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={world} is set but {missing} are not: fit cannot join the process "
                "group. Launch with torchrun, or call torch.distributed.init_process_group() "
                "yourself before fit."
            )
        backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
        options: dict[str, Any] = {}
        if backend == "nccl" and "device_id" in inspect.signature(dist.init_process_group).parameters:
            options["device_id"] = device  # bind NCCL to the head's GPU (torch >= 2.3)
        dist.init_process_group(backend=backend, **options)
        initialized_here = True
        if dist.get_rank() == 0:
            logger.info(
                "fit: initialised a %s process group of %d processes from torchrun's environment",
                backend, dist.get_world_size(),
            )
    world = dist.get_world_size()
    if world <= 1:
        return None
    backend = str(dist.get_backend())
    if device.type != "cuda" and backend == "nccl":
        raise ValueError(
            f"model: the process group uses NCCL, which needs CUDA tensors, but the explainer is "
            f"on {device}. Move the model to its process's GPU, torch.device('cuda', "
            "int(os.environ['LOCAL_RANK'])), before building TTAME, or use the gloo backend for "
            "CPU training."
        )
    comm_device = device if device.type == "cuda" and backend != "gloo" else torch.device("cpu")
    return DistributedContext(
        rank=dist.get_rank(), world_size=world, backend=backend, comm_device=comm_device,
        initialized_here=initialized_here,
    )


# ---------------------------------------------------------------------- agreement between ranks
def raise_if_any_rank_failed(error: Exception | None, ctx: DistributedContext) -> None:
    """Raise on every rank when any rank found a set-up error (a collective: all ranks call it).

    A rank that raised alone would leave the others waiting in their next collective forever.

    Raises:
        The rank's own error, or a ``ValueError`` naming the failed ranks on the others.
    """
    flags = torch.zeros(ctx.world_size, dtype=torch.int32, device=ctx.comm_device)
    flags[ctx.rank] = int(error is not None)
    dist.all_reduce(flags)
    failed = [r for r, f in enumerate(flags.tolist()) if f]
    if not failed:
        return
    if error is not None:
        raise error
    raise ValueError(
        f"fit: the set-up failed on rank(s) {failed} (see their error); rank {ctx.rank} stops too."
    )


def agree_num_steps(
    n_local: int | None, ctx: DistributedContext, what: str = "loader", loader: Any = None
) -> int | None:
    """The number of batches every rank runs per epoch: the minimum over ranks.

    All ranks must run the same number of steps, or the ones with more batches wait forever for
    the others in DDP's gradient reduction. A difference is logged (rank 0) as a warning.

    Args:
        n_local: this rank's number of batches (``None`` when unknown), e.g. ``steps_per_epoch``.
        ctx: the distributed context.
        what: the loader's name, for messages.
        loader: when given and it has a ``len`` smaller than ``n_local``, its length is used
            instead (a rank cannot run more steps than it has batches; logged).

    Returns:
        The minimum over ranks, or ``None`` when some rank does not know its length.
    """
    try:
        length = len(loader) if loader is not None else None
    except TypeError:
        length = None
    if n_local is not None and length is not None and length < n_local:
        logger.warning(
            "%s: steps_per_epoch=%d but rank %d has only %d batches; it runs at most %d",
            what, n_local, ctx.rank, length, length,
        )
        n_local = length
    value = -1 if n_local is None else int(n_local)
    t = torch.tensor([value, -value], dtype=torch.int64, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    low, high = int(t[0]), -int(t[1])
    if low < 0:
        return None
    if low != high and ctx.is_main:
        logger.warning(
            "%s: the ranks have between %d and %d batches per epoch; every rank runs %d so that "
            "none waits for the others (the extra batches are skipped). Shard with a "
            "DistributedSampler to give every rank the same number.", what, low, high, low,
        )
    return low


def check_same_on_all_ranks(value: int, ctx: DistributedContext | None, what: str, fix: str) -> None:
    """Raise on every rank unless ``value`` is the same on all of them (a collective).

    For example the step a resumed run continues from: a rank that resumed from another
    checkpoint (or from none) would train a different head, and wait at another step.

    Raises:
        ValueError: naming ``what``, the values seen and ``fix``.
    """
    if ctx is None:
        return
    t = torch.tensor([int(value), -int(value)], dtype=torch.int64, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    low, high = int(t[0]), -int(t[1])
    if low != high:
        raise ValueError(
            f"{what}: the ranks disagree (values from {low} to {high}, this rank {value}). {fix}"
        )


def all_ranks_finite(value: Tensor, ctx: DistributedContext | None) -> bool:
    """Whether ``value`` is finite on every rank (so that all ranks skip a step together)."""
    finite = bool(torch.isfinite(value.detach()).all())
    if ctx is None:
        return finite
    t = torch.tensor([int(finite)], dtype=torch.int32, device=ctx.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_labels(labels: Tensor, ctx: DistributedContext | None) -> tuple[Tensor, int, float]:
    """The labels of the global batch, this rank's offset in it and its loss weight.

    Args:
        labels: ``(B,)`` this rank's predicted labels.
        ctx: the distributed context, or ``None`` (then ``(labels, 0, 1.0)``).

    Returns:
        ``(G,)`` the labels of all ranks in rank order (``G`` the global batch size), the index
        of this rank's first image in them, and ``W * B / G``: the factor that makes DDP's
        average of the ranks' losses equal the loss of the global batch when the ranks' batch
        sizes differ (1 when they are equal).
    """
    if ctx is None:
        return labels, 0, 1.0
    n = labels.shape[0]
    sizes_t = torch.tensor([n], dtype=torch.int64, device=ctx.comm_device)
    sizes = [torch.zeros_like(sizes_t) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, sizes_t)
    counts = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(counts), dtype=torch.int64, device=ctx.comm_device)
    padded[:n] = labels.to(device=ctx.comm_device, dtype=torch.int64)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    everything = torch.cat([p[:c] for p, c in zip(parts, counts)]).to(labels.device)
    total = sum(counts)
    return everything, sum(counts[: ctx.rank]), ctx.world_size * n / total


def reduce_sums(
    sums: Mapping[str, float], count: int, ctx: DistributedContext | None
) -> tuple[dict[str, float], int]:
    """Sum running totals (and their sample count) over ranks, for global means."""
    if ctx is None:
        return dict(sums), count
    keys = sorted(sums)
    t = torch.tensor(
        [float(count)] + [float(sums[k]) for k in keys], dtype=torch.float64,
        device=ctx.comm_device,
    )
    dist.all_reduce(t)
    values = t.tolist()
    return dict(zip(keys, values[1:])), int(round(values[0]))


# ---------------------------------------------------------------------- data sharding
def _sampler_shards(sampler: Any, ctx: DistributedContext) -> bool | None:
    """True if ``sampler`` shards for this rank, False if it shards for another set-up, None if
    it does not shard at all."""
    replicas, rank = getattr(sampler, "num_replicas", None), getattr(sampler, "rank", None)
    if replicas is None or rank is None:
        return None
    return int(replicas) == ctx.world_size and int(rank) == ctx.rank


def _rebuild(loader: DataLoader, sampler: DistributedSampler) -> DataLoader:
    kwargs: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "sampler": sampler,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "drop_last": loader.drop_last,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
        "pin_memory_device": getattr(loader, "pin_memory_device", ""),
    }
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    if hasattr(loader, "in_order"):
        kwargs["in_order"] = loader.in_order
    return DataLoader(loader.dataset, **kwargs)


def shard_loader(
    loader: Any, ctx: DistributedContext, *, seed: int = 0, name: str = "loader",
    shuffle: bool | None = None,
) -> Any:
    """A loader that gives this rank its share of the data.

    - A :class:`~torch.utils.data.DataLoader` whose sampler already shards for this rank (a
      :class:`~torch.utils.data.DistributedSampler`, or any sampler with matching
      ``num_replicas`` and ``rank``) is kept.
    - One with the default sampler (sequential, or random for ``shuffle=True``) is rebuilt with a
      ``DistributedSampler`` over the same dataset (shuffling if it shuffled, seeded with
      ``seed``) and the same batch size, workers, ``collate_fn``, ``drop_last``, pinning, ...
      (logged on rank 0).
    - Any other sampler (weighted, subset, a user's own) cannot be sharded without changing
      what it does: ``ValueError``.
    - Iterable datasets and loaders that are not DataLoaders are kept with a warning: they must
      yield different data on each rank themselves.

    Args:
        loader: the user's loader.
        ctx: the distributed context.
        seed: the ``DistributedSampler``'s seed (the same on every rank).
        name: the argument's name, for messages.
        shuffle: force shuffling on or off (``None``: as the loader did).

    Returns:
        The loader to iterate on this rank.

    Raises:
        ValueError: for a sampler that shards for another world size or rank, or that cannot be
            sharded; for a dataset with fewer samples than ranks.
    """
    if not isinstance(loader, DataLoader):
        if ctx.is_main:
            logger.warning(
                "%s: a %s is not a torch DataLoader, so fit cannot shard it; it must give each "
                "rank different batches itself (otherwise every rank trains on the same data).",
                name, type(loader).__name__,
            )
        return loader
    if isinstance(loader.dataset, IterableDataset):
        if ctx.is_main:
            logger.warning(
                "%s: an IterableDataset cannot be sharded with a sampler; it must yield different "
                "samples on each rank (use torch.distributed.get_rank() inside it).", name,
            )
        return loader
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None and not isinstance(batch_sampler, BatchSampler):
        shards = _sampler_shards(batch_sampler, ctx)
        if shards:
            return loader
        raise ValueError(
            f"{name}: its batch_sampler ({type(batch_sampler).__name__}) does not shard the data "
            f"across the {ctx.world_size} ranks, so every rank would train on the same batches. "
            "Give it num_replicas/rank and shard by rank, use a DistributedSampler with "
            "batch_size=..., or pass distributed=False."
        )
    sampler = loader.sampler
    shards = _sampler_shards(sampler, ctx)
    if shards:
        return loader
    if shards is False:
        raise ValueError(
            f"{name}: its sampler shards for num_replicas={sampler.num_replicas}, "
            f"rank={sampler.rank}, but this process is rank {ctx.rank} of {ctx.world_size}. Build "
            "it with DistributedSampler(dataset) inside the process (it reads the group), or "
            "let fit shard a plain DataLoader for you."
        )
    if not isinstance(sampler, (SequentialSampler, RandomSampler)):
        raise ValueError(
            f"{name}: its sampler ({type(sampler).__name__}) does not shard the data across the "
            f"{ctx.world_size} ranks, and fit cannot shard it without changing what it does. Use "
            "a DataLoader with shuffle=True/False (fit then shards it), a "
            "DistributedSampler(dataset), a sampler with num_replicas/rank attributes that "
            "shards by rank, or pass distributed=False."
        )
    if isinstance(sampler, RandomSampler) and (
        sampler.replacement or sampler._num_samples is not None
    ):
        raise ValueError(
            f"{name}: its RandomSampler draws with replacement or a custom num_samples, which a "
            "DistributedSampler cannot reproduce. Use shuffle=True, or a sampler that shards by "
            "rank, or pass distributed=False."
        )
    size = len(loader.dataset)  # type: ignore[arg-type]
    if size < ctx.world_size:
        raise ValueError(
            f"{name}: the dataset has {size} samples, fewer than the {ctx.world_size} processes; "
            "some ranks would only see copies of other ranks' images. Use fewer processes or "
            "more data."
        )
    do_shuffle = isinstance(sampler, RandomSampler) if shuffle is None else bool(shuffle)
    dist_sampler = DistributedSampler(
        loader.dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=do_shuffle,
        seed=seed, drop_last=False,
    )
    if ctx.is_main:
        logger.info(
            "%s: rebuilt with a DistributedSampler (shuffle=%s) over %d ranks: %d of the %d "
            "samples per rank", name, do_shuffle, ctx.world_size, dist_sampler.num_samples, size,
        )
    return _rebuild(loader, dist_sampler)


def prepare_loaders(
    loader: Any, val_loader: Any, ctx: DistributedContext, seed: int = 0
) -> tuple[Any, Any, int | None]:
    """Shard the training and validation loaders (a collective: all ranks call it).

    The validation loader is sharded without shuffling. A set-up error on any rank is raised on
    every rank (see :func:`raise_if_any_rank_failed`).

    Returns:
        ``(loader, val_loader, n_val)``: the sharded loaders and the number of validation
        batches every rank runs (``None`` without a validation loader or when its length is
        unknown).
    """
    error: Exception | None = None
    try:
        loader = shard_loader(loader, ctx, seed=seed, name="loader")
        if val_loader is not None:
            val_loader = shard_loader(val_loader, ctx, seed=seed, name="val_loader", shuffle=False)
    except (TypeError, ValueError) as err:
        error = err
    raise_if_any_rank_failed(error, ctx)
    n_val = None
    if val_loader is not None:
        try:
            local: int | None = len(val_loader)
        except TypeError:
            local = None
        n_val = agree_num_steps(local, ctx, "val_loader")
        if n_val is None and ctx.is_main:
            logger.warning(
                "val_loader: it has no len(), so the ranks cannot agree on its number of batches; "
                "it must yield the same number on every rank or the validation pass hangs."
            )
    return loader, val_loader, n_val


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch(epoch)`` on the loader's sampler (or batch sampler) when it has one.

    A ``DistributedSampler`` draws the same permutation every epoch unless it is re-seeded.
    """
    for candidate in (
        getattr(loader, "sampler", None),
        getattr(loader, "batch_sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        set_epoch = getattr(candidate, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
            return


# ---------------------------------------------------------------------- synchronised BatchNorm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=ctx.group)
        return out, None


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across ranks.

    :class:`torch.nn.SyncBatchNorm` runs on GPUs only; this one uses a differentiable all-reduce
    and so works with any backend, gloo on CPUs included. It shares the parameters and running
    buffers of the BatchNorm it stands in for (same names, so ``state_dict`` keys are unchanged).
    One all-reduce per forward (and one per backward) sums, in float32, the per-channel count,
    sum and sum of squares of ``x - s``, where the shift ``s`` is the running mean (the same on
    every rank and close to the batch mean, which keeps ``E[(x-s)^2] - E[x-s]^2`` accurate). In
    eval mode it is a plain BatchNorm with the running statistics.

    Args:
        original: the BatchNorm (1d/2d/3d) to stand in for.
        group: the process group to synchronise over.
    """

    def __init__(self, original: nn.modules.batchnorm._BatchNorm, group: Any) -> None:
        super().__init__(
            original.num_features, eps=original.eps, momentum=original.momentum,
            affine=original.affine, track_running_stats=original.track_running_stats,
            device=torch.device("meta"),
        )
        self.weight = original.weight
        self.bias = original.bias
        self.running_mean = original.running_mean
        self.running_var = original.running_var
        self.num_batches_tracked = original.num_batches_tracked
        self.training = original.training
        self.group = group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2-D input, got {input.dim()}-D.")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        if not bn_training:
            return nn.functional.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                self.eps,
            )
        shape = [1, input.shape[1]] + [1] * (input.dim() - 2)
        dims = [0, *range(2, input.dim())]
        compute = torch.promote_types(input.dtype, torch.float32)  # float32 under autocast
        x = input.to(compute)
        channels = x.shape[1]
        shift = (
            self.running_mean.detach().to(compute) if self.running_mean is not None
            else x.new_zeros(channels)
        )
        d = x - shift.view(shape)
        n_local = x.numel() // channels
        stats = torch.cat([d.sum(dims), d.pow(2).sum(dims), x.new_tensor([float(n_local)])])
        stats = _AllReduceSum.apply(stats, self.group)
        n = stats[-1]
        mean_d = stats[:channels] / n
        var = (stats[channels : 2 * channels] / n - mean_d.pow(2)).clamp_min(0.0)
        mean = shift + mean_d
        y = (d - mean_d.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.to(compute).view(shape) + self.bias.to(compute).view(shape)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum
                )
                count = float(n)
                unbiased = var * (count / max(count - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        return y.to(input.dtype)


def _swap_batchnorms(
    head: nn.Module, group: Any
) -> list[tuple[nn.Module, str, nn.Module]]:
    swapped = []
    for parent in list(head.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
                child, SyncBatchNorm
            ):
                setattr(parent, child_name, SyncBatchNorm(child, group))
                swapped.append((parent, child_name, child))
    return swapped


@contextmanager
def distributed_head(trainer: Trainer, ctx: DistributedContext | None) -> Iterator[None]:
    """For the block, train ``trainer``'s head data-parallel; restore everything afterwards.

    Creates the BatchNorm group, puts :class:`SyncBatchNorm` in place of the head's BatchNorm
    layers (sharing their weights and buffers), wraps the head in
    :class:`~torch.nn.parallel.DistributedDataParallel` (which copies rank 0's weights and
    buffers to every rank) and points ``trainer.head`` and ``trainer.dist`` at them. On exit
    (also after an error) the head gets its own BatchNorm modules back, ``trainer.head`` is the
    bare head again and the group is destroyed. A no-op when ``ctx`` is ``None``.
    """
    if ctx is None:
        yield
        return
    from torch.nn.parallel import DistributedDataParallel

    head = trainer.head
    ctx.bn_group = dist.new_group(ranks=list(range(ctx.world_size)))
    swapped = _swap_batchnorms(head, ctx.bn_group)
    try:
        device = next(head.parameters()).device
        # DDP copies rank 0's weights and buffers to every rank here; after that the synchronised
        # BatchNorm keeps the buffers identical, so they need no broadcast at every forward.
        no_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        ddp = DistributedDataParallel(
            head, device_ids=[device] if device.type == "cuda" else None, **no_sync
        )
        trainer.head = ddp
        trainer.dist = ctx
        yield
    finally:
        trainer.head = head
        trainer.dist = None
        for parent, child_name, original in reversed(swapped):
            setattr(parent, child_name, original)
        if ctx.bn_group is not None:
            dist.destroy_process_group(ctx.bn_group)
            ctx.bn_group = None
