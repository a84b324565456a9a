"""Spawned-process code for ``test_distributed_checkpoint.py``: DDP with checkpoints and resume."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from _ddp_workers import LR, PER_RANK_BATCH, SEED, _error, _head_state, images, make_explainer
from ddp_spawn import leave_without_teardown
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

CRASH_AT = 7  # the 7th step of 8 (epoch 2, batch 3): after the step-6 checkpoint


class CrashAt(nn.Module):
    """The paper's loss, raising at its ``at``-th call on every rank (a killed run)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        from ttame_attr import TTAMELoss

        self.inner, self.at, self.calls = TTAMELoss(), at, 0

    def forward(self, logits: Tensor, labels: Tensor, masks: Tensor) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("simulated crash")
        return self.inner(logits, labels, masks)


def run_checkpoints(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from ttame_attr import fit

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    result: dict[str, Any] = {}
    out = Path(out_dir)
    x = images()

    def loader() -> DataLoader:
        return DataLoader(TensorDataset(x), batch_size=PER_RANK_BATCH, shuffle=True)

    def train(explainer: Any, **kwargs: Any) -> Any:
        return fit(explainer, loader(), epochs=2, lr=LR, progress=False, seed=SEED, **kwargs)

    try:
        full = make_explainer()
        result["full_history"] = train(full).as_dicts()
        result["full"] = _head_state(full)

        # Killed at step 7 on every rank, then resumed from the shared checkpoint (step 6).
        shared = out / "shared.pt"
        crashing = make_explainer()
        crashing.loss_fn = CrashAt(CRASH_AT)
        result["crash"] = _error_any(lambda: train(crashing, checkpoint_path=shared,
                                                   checkpoint_every=2))
        resumed = make_explainer(head_seed=rank)  # other weights: the checkpoint replaces them
        result["resumed_history"] = train(
            resumed, checkpoint_path=shared, checkpoint_every=2, resume=True
        ).as_dicts()
        result["resumed"] = _head_state(resumed)

        # One path per rank: only rank 0 writes, so rank 1 has nothing to resume from and
        # every rank stops with an error instead of training different heads.
        own = out / f"own{rank}.pt"
        train(make_explainer(), checkpoint_path=own)
        result["own_exists"] = own.exists()
        result["err_disagree"] = _error(
            lambda: train(make_explainer(), checkpoint_path=own, resume=True)
        )

        # checkpoint_path is checked before training on rank 0, which writes it: a bad one there
        # stops every rank at once; a bad one on another rank is never written, so it trains.
        blocker = out / "plain"
        blocker.write_text("a file, not a folder")
        bad, good = blocker / "ckpt.pt", out / f"good{rank}.pt"
        counted = make_explainer()
        counted.loss_fn = CrashAt(1)  # any step taken would raise RuntimeError
        result["err_bad_on_rank0"] = _error(
            lambda: train(counted, checkpoint_path=bad if rank == 0 else good))
        result["err_bad_on_rank1"] = _error(
            lambda: train(make_explainer(), checkpoint_path=bad if rank == 1 else good))
    except Exception:
        result["crash_trace"] = traceback.format_exc()
        raise
    finally:
        torch.save(result, out / f"ckpt_rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()
    leave_without_teardown()


def _error_any(fn) -> str | None:
    try:
        fn()
    except RuntimeError as err:
        return str(err)
    return None
