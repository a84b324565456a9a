"""Code run in the spawned processes of the distributed tests (2 CPU ranks, gloo).

Each rank runs every scenario in turn and writes what it saw to ``out_dir/rank{r}.pt``; the
tests in ``test_distributed_fit.py`` read those files. One spawn for all scenarios keeps the
cost of starting two Python processes (importing torch) paid once.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from ddp_spawn import WORLD, leave_without_teardown
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, TensorDataset, WeightedRandomSampler

N_IMAGES = 16
PER_RANK_BATCH = 2
EPOCHS = 2
LR = 0.5
SEED = 7


def tiny_model() -> nn.Module:
    """A seeded 3-stage CNN on 16x16 images, 5 classes: features at 16, 8 and 4 pixels."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )


def make_explainer(head_seed: int = 0, device: str = "cpu") -> Any:
    from ttame_attr import TTAME

    model = tiny_model().to(device)
    torch.manual_seed(head_seed)
    return TTAME(model, layers=["1", "3", "5"], input_size=(3, 16, 16))


def images(n: int = N_IMAGES) -> Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 16, 16, generator=gen)


class ShardSampler(Sampler[int]):
    """A user's own sharding sampler (it has num_replicas/rank), giving ranks unequal shares."""

    def __init__(self, indices: list[int], num_replicas: int, rank: int) -> None:
        self.indices, self.num_replicas, self.rank = indices, num_replicas, rank

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ShardBatches(Sampler[list[int]]):
    """A user's own sharding batch sampler: fixed batches for this rank."""

    def __init__(self, batches: list[list[int]], num_replicas: int, rank: int) -> None:
        self.batches, self.num_replicas, self.rank = batches, num_replicas, rank

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


UNEQUAL_BATCHES = {0: [[0, 1, 2], [4, 5, 6]], 1: [[3], [7]]}


class GlobalBatches(Sampler[list[int]]):
    """The global batches of the DistributedSampler(shuffle=True, seed=SEED) run, in one process.

    Epoch ``e`` permutes with seed ``SEED + e`` (what ``set_epoch`` does); rank ``r`` takes every
    ``WORLD``-th index from ``r``; global batch ``k`` is batch ``k`` of every rank together.
    """

    def __init__(self) -> None:
        self.epoch = 0

    def __iter__(self):
        gen = torch.Generator().manual_seed(SEED + self.epoch)
        self.epoch += 1
        perm = torch.randperm(N_IMAGES, generator=gen).tolist()
        shards = [perm[r::WORLD] for r in range(WORLD)]
        for k in range(0, N_IMAGES // WORLD, PER_RANK_BATCH):
            yield [i for shard in shards for i in shard[k : k + PER_RANK_BATCH]]

    def __len__(self) -> int:
        return N_IMAGES // (WORLD * PER_RANK_BATCH)


class NaNOnce(nn.Module):
    """The paper's loss, but with a NaN total at one step on one rank."""

    def __init__(self, bad: bool) -> None:
        super().__init__()
        from ttame_attr import TTAMELoss

        self.inner, self.bad, self.calls = TTAMELoss(), bad, 0

    def forward(self, logits: Tensor, labels: Tensor, masks: Tensor) -> Any:
        terms = self.inner(logits, labels, masks)
        self.calls += 1
        if self.bad and self.calls == 2:
            return terms._replace(total=terms.total * float("nan"))
        return terms


def _error(fn) -> str | None:
    try:
        fn()
    except (TypeError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def _head_state(explainer: Any) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in explainer.head.state_dict().items()}


def run_all(
    rank: int, world: int, init_file: str, out_dir: str, device: str = "cpu",
    amp: bool = False, only_main: bool = False, port: int | None = None,
) -> None:
    """Entry point of each spawned process (``torch.multiprocessing.start_processes``).

    ``device``, ``amp`` and ``only_main`` are for ``gpu_check.py`` (two ranks sharing one GPU);
    ``port``: the TCP port of the store for the last scenario (fit initialising the group from
    torchrun's environment variables), ``0`` for one the system picks; ``None`` skips it.
    """
    start = time.perf_counter()
    from ttame_attr import fit

    torch.set_num_threads(1)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.getLogger("ttame_attr").addHandler(Keep())
    # Every warning raised in the worker, as (category, file, message): the package's own code
    # must raise no deprecation warning (torch's deprecated collectives warn from the caller).
    seen: list[tuple[str, str, str]] = []
    warnings.simplefilter("always")
    warnings.showwarning = lambda msg, cat, filename, *_: seen.append((cat.__name__, filename, str(msg)))
    warnings.warn("the capture works", UserWarning, stacklevel=1)
    logging.getLogger("ttame_attr").setLevel(logging.INFO)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    result: dict[str, Any] = {"seconds": {"import_and_init": time.perf_counter() - start}, "warnings": seen}
    try:
        x = images()
        # 1. The main run: a shuffling loader without DistributedSampler (fit shards it), a
        #    validation loader, and rank 1 starting from other head weights (DDP copies rank 0's).
        explainer = make_explainer(head_seed=0 if rank == 0 else 123, device=device)
        loader = DataLoader(TensorDataset(x), batch_size=PER_RANK_BATCH, shuffle=True)
        val = DataLoader(TensorDataset(x[:8]), batch_size=PER_RANK_BATCH)
        history = fit(
            explainer, loader, epochs=EPOCHS, lr=LR, progress=False, val_loader=val, seed=SEED,
            amp=amp,
        )
        result["seconds"]["main_fit"] = time.perf_counter() - start
        result["state"] = _head_state(explainer)
        result["history"] = history.as_dicts()
        result["head_types"] = sorted({type(m).__name__ for m in explainer.head.modules()})
        result["loader_unchanged"] = type(loader.sampler).__name__
        if only_main:
            return

        # 2. A non-finite loss on rank 1 only: both ranks skip that step, no hang.
        nan_explainer = make_explainer()
        nan_explainer.loss_fn = NaNOnce(bad=rank == 1)
        nan_history = fit(
            nan_explainer, DataLoader(TensorDataset(x), batch_size=PER_RANK_BATCH),
            epochs=1, lr=LR, progress=False,
        )
        result["nan_history"] = nan_history.as_dicts()
        result["nan_state"] = _head_state(nan_explainer)

        # 3. Ranks with unequal numbers of batches (a user's own sharding sampler): both run the
        #    minimum, with a warning; steps_per_epoch larger than a rank's batches is capped.
        mine = list(range(rank * 8, rank * 8 + (6 if rank == 0 else 4)))
        uneven = DataLoader(
            TensorDataset(x), batch_size=PER_RANK_BATCH, sampler=ShardSampler(mine, world, rank)
        )
        uneven_history = fit(
            make_explainer(), uneven, epochs=1, lr=LR, progress=False, steps_per_epoch=5
        )
        result["uneven_steps"] = uneven_history[0].steps

        # 4. Ranks with unequal batch sizes (3 + 1 images): still the global batch's step.
        unequal = DataLoader(
            TensorDataset(x), batch_sampler=ShardBatches(UNEQUAL_BATCHES[rank], world, rank)
        )
        unequal_explainer = make_explainer()
        unequal_history = fit(unequal_explainer, unequal, epochs=1, lr=LR, progress=False)
        result["unequal_state"] = _head_state(unequal_explainer)
        result["unequal_history"] = unequal_history.as_dicts()

        # 5. Bad set-ups: clear errors on every rank, never a hang.
        weighted = DataLoader(
            TensorDataset(x), batch_size=2,
            sampler=WeightedRandomSampler(torch.ones(N_IMAGES), N_IMAGES),
        )
        result["err_weighted"] = _error(
            lambda: fit(make_explainer(), weighted, epochs=1, progress=False)
        )
        tiny = DataLoader(TensorDataset(x[:1]), batch_size=1)
        result["err_tiny"] = _error(lambda: fit(make_explainer(), tiny, epochs=1, progress=False))
        wrong_rank = DataLoader(
            TensorDataset(x), batch_size=2,
            sampler=torch.utils.data.DistributedSampler(TensorDataset(x), world, rank=0),
        )
        result["err_wrong_rank"] = _error(
            lambda: fit(make_explainer(), wrong_rank, epochs=1, progress=False)
        )
        # Only rank 1 has a bad loader: rank 0 must not wait forever.
        one_bad = weighted if rank == 1 else DataLoader(TensorDataset(x), batch_size=2)
        result["err_one_bad"] = _error(
            lambda: fit(make_explainer(), one_bad, epochs=1, progress=False)
        )
        # drop_last with a batch larger than a rank's share: no batches on any rank.
        empty = DataLoader(TensorDataset(x[:4]), batch_size=4, drop_last=True)
        result["err_empty"] = _error(lambda: fit(make_explainer(), empty, epochs=1, progress=False))

        # 6. No process group, but torchrun's environment: fit initialises the group itself.
        #    As under torchrun, the store is served by someone else (torchrun's agent; here
        #    rank 0, before fit) and every rank joins it as a client. Rank 0's server is bound
        #    from the moment its port is chosen, and the port reaches rank 1 over the group
        #    still open: no window in which another process could take a "free" port.
        if port is not None:
            agent_store = None
            chosen: list[Any] = [None]
            if rank == 0:
                agent_store = dist.TCPStore("127.0.0.1", port, None, is_master=True,
                                            wait_for_workers=False)
                chosen = [agent_store.port]
            dist.broadcast_object_list(chosen, src=0)
            dist.destroy_process_group()
            os.environ.update(
                RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(chosen[0]),
                TORCHELASTIC_USE_AGENT_STORE="True",
            )
            auto = make_explainer(head_seed=rank)
            auto_history = fit(auto, DataLoader(TensorDataset(x[:8]), batch_size=2), epochs=1,
                               lr=LR, progress=False)
            result["auto"] = {
                "initialised": dist.is_initialized(),
                "world": dist.get_world_size(),
                "backend": str(dist.get_backend()),
                "steps": auto_history[0].steps,
                "state": _head_state(auto),
                "port": int(chosen[0]),
            }
            del agent_store  # (rank 0) the server outlives fit's process group
        result["seconds"]["all"] = time.perf_counter() - start
        result["messages"] = [(r.levelname, r.getMessage()) for r in records]
    except Exception:
        result["crash"] = traceback.format_exc()
        raise
    finally:
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()
    leave_without_teardown()
