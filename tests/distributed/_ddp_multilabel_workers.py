"""Spawned-process code for ``test_distributed_multilabel.py``: multi-label fit on 2 CPU ranks (gloo).

Each rank writes what it saw to ``out_dir/ml_rank{r}.pt``.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from _ddp_workers import EPOCHS, LR, N_IMAGES, PER_RANK_BATCH, SEED, _head_state, images, tiny_model
from ddp_spawn import leave_without_teardown
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

#: Positive labels of image i: classes 0 .. LABEL_COUNTS[i] - 1 (1 or 2 labels: at most 4 pairs
#: per rank of 2 images, within every bound on the masked pairs, 2 * B, of a rank and of one process).
LABEL_COUNTS = [1 + (i % 3 == 0 or i % 5 == 0) for i in range(N_IMAGES)]
#: The labels each rank hands to gather_labels in the crafted case: 3 pairs on rank 0, 1 on rank 1.
CRAFTED = {0: [0, 2, 1], 1: [3]}


class Tagger(nn.Module):
    """A tiny multi-label classifier of 5 classes whose image i has LABEL_COUNTS[i] positive labels.

    The count ``s`` is written in the image itself (channel 0, pixel (0, 0)); class ``k`` gets
    the logit ``4 * (s - k - 0.5)`` plus a small CNN's logit (|cnn| < 1 on these images), so
    classes ``0 .. s-1`` are positive and the masked images' logits depend on every pixel.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_model()

    def forward(self, x: Tensor) -> Tensor:
        s = x[:, 0, 0, 0, None]
        k = torch.arange(5, dtype=x.dtype, device=x.device)
        return self.body(x) + 4.0 * (s - k - 0.5)


def tagged_images() -> Tensor:
    """The 16 images of the other DDP tests, each with its label count in pixel (0, 0) of channel 0."""
    x = images()
    x[:, 0, 0, 0] = torch.tensor(LABEL_COUNTS, dtype=x.dtype)
    return x


def make_multilabel_explainer(head_seed: int = 0) -> Any:
    from ttame_attr import TTAME

    model = Tagger()
    torch.manual_seed(head_seed)
    return TTAME(model, layers=["body.1", "body.3", "body.5"], input_size=(3, 16, 16), multi_label=True)


def _fit(explainer: Any) -> Any:
    from ttame_attr import fit

    x = tagged_images()
    loader = DataLoader(TensorDataset(x), batch_size=PER_RANK_BATCH, shuffle=True)  # fit shards it
    return fit(explainer, loader, epochs=EPOCHS, lr=LR, progress=False, seed=SEED)


def run_multilabel(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from ttame_attr.training import distributed as dist_

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    result: dict[str, Any] = {}
    try:
        # 1. Multi-label fit; rank 1 starts from other head weights (DDP copies rank 0's).
        explainer = make_multilabel_explainer(head_seed=0 if rank == 0 else 123)
        result["history"] = _fit(explainer).as_dicts()
        result["state"] = _head_state(explainer)

        # 2. gather_labels on crafted pair labels: 3 pairs on rank 0, 1 on rank 1.
        ctx = dist_.DistributedContext(rank, world, "gloo", torch.device("cpu"))
        everything, offset, weight = dist_.gather_labels(torch.tensor(CRAFTED[rank]), ctx)
        result["gathered"] = (everything.tolist(), offset, weight)

        # 3. The same fit with every rank's loss weight replaced by 1 (no share weighting).
        real = dist_.gather_labels

        def unweighted(labels: Tensor, ctx: Any) -> tuple[Tensor, int, float]:
            everything, offset, _ = real(labels, ctx)
            return everything, offset, 1.0

        dist_.gather_labels = unweighted
        try:
            plain = make_multilabel_explainer()
            _fit(plain)
            result["unweighted_state"] = _head_state(plain)
        finally:
            dist_.gather_labels = real
    except Exception:
        result["crash"] = traceback.format_exc()
        raise
    finally:
        torch.save(result, Path(out_dir) / f"ml_rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()
    leave_without_teardown()
