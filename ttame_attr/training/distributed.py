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
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor

from ttame_attr.training._sharding import set_loader_epoch, shard_loader
from ttame_attr.training._sync_bn import SyncBatchNorm, data_parallel_head

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
