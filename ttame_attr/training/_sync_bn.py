"""The head trained data-parallel: DistributedDataParallel, BatchNorm on the global batch."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn

if TYPE_CHECKING:
    from ttame_attr.training.distributed import DistributedContext

__all__ = ["SyncBatchNorm", "data_parallel_head"]


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
