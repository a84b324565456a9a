"""Deciding to distribute and sharding loaders, in one process (no process group needed)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from ttame_attr.training.distributed import (
    DistributedContext,
    gather_labels,
    is_main_process,
    reduce_sums,
    resolve_distributed,
    set_loader_epoch,
    shard_loader,
)

CPU = torch.device("cpu")


def ctx(rank: int = 1, world: int = 2) -> DistributedContext:
    return DistributedContext(rank=rank, world_size=world, backend="gloo", comm_device=CPU)


def dataset(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32)[:, None])


@pytest.fixture
def no_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_single_process_without_torchrun_environment(no_torchrun: None) -> None:
    assert resolve_distributed(None, CPU) is None
    assert resolve_distributed(False, CPU) is None


def test_distributed_true_without_group_is_an_error(no_torchrun: None) -> None:
    with pytest.raises(ValueError, match="torchrun"):
        resolve_distributed(True, CPU)


def test_world_size_one_is_a_single_process(no_torchrun: None, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resolve_distributed(None, CPU) is None


def test_incomplete_torchrun_environment_is_named(no_torchrun: None, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match=r"\['MASTER_ADDR', 'MASTER_PORT'\]"):
        resolve_distributed(None, CPU)


def test_bad_distributed_argument() -> None:
    with pytest.raises(TypeError, match="distributed: expected None"):
        resolve_distributed("yes", CPU)  # type: ignore[arg-type]


def test_single_process_helpers_are_identities() -> None:
    labels = torch.tensor([3, 1])
    assert gather_labels(labels, None) == (labels, 0, 1.0)
    assert reduce_sums({"loss": 2.0}, 4, None) == ({"loss": 2.0}, 4)
    assert is_main_process(None) and is_main_process(ctx(rank=0)) and not is_main_process(ctx())


def collate(items):
    return torch.stack([item[0] for item in items]) * 10


def test_plain_loader_is_rebuilt_with_same_settings() -> None:
    loader = DataLoader(dataset(), batch_size=3, shuffle=False, collate_fn=collate, drop_last=True)
    sharded = shard_loader(loader, ctx(rank=1))
    assert sharded is not loader and loader.sampler.__class__.__name__ == "SequentialSampler"
    assert isinstance(sharded.sampler, DistributedSampler)
    assert (sharded.sampler.num_replicas, sharded.sampler.rank) == (2, 1)
    assert not sharded.sampler.shuffle
    assert (sharded.batch_size, sharded.drop_last, sharded.collate_fn) == (3, True, collate)
    # Rank 1 of 2 takes samples 1, 3, 5, 7, 9; batches of 3 with drop_last: one batch.
    batches = list(sharded)
    assert len(batches) == len(sharded) == 1
    assert batches[0].flatten().tolist() == [10.0, 30.0, 50.0]


def test_shuffling_loader_shards_shuffled_and_reseeds_each_epoch() -> None:
    loader = DataLoader(dataset(40), batch_size=40, shuffle=True)
    rank0 = shard_loader(loader, ctx(rank=0), seed=3)
    rank1 = shard_loader(loader, ctx(rank=1), seed=3)
    assert rank0.sampler.shuffle and rank0.sampler.seed == 3
    a0, a1 = next(iter(rank0))[0].flatten(), next(iter(rank1))[0].flatten()
    # The two ranks' shares are disjoint and together the whole dataset.
    assert sorted(torch.cat([a0, a1]).tolist()) == list(range(40))
    assert next(iter(rank0))[0].flatten().tolist() == a0.tolist()  # same epoch: same order
    set_loader_epoch(rank0, 1)
    assert next(iter(rank0))[0].flatten().tolist() != a0.tolist()


def test_sharded_loader_is_kept() -> None:
    loader = DataLoader(dataset(), batch_size=2, sampler=DistributedSampler(dataset(), 2, rank=1))
    assert shard_loader(loader, ctx(rank=1)) is loader


def test_sampler_for_another_rank_is_an_error() -> None:
    loader = DataLoader(dataset(), batch_size=2, sampler=DistributedSampler(dataset(), 2, rank=0))
    with pytest.raises(ValueError, match="this process is rank 1 of 2"):
        shard_loader(loader, ctx(rank=1))


@pytest.mark.parametrize(
    "sampler",
    [
        WeightedRandomSampler(torch.ones(10), 10),
        SubsetRandomSampler(list(range(5))),
        RandomSampler(dataset(), replacement=True),
    ],
)
def test_non_sharding_samplers_are_errors(sampler) -> None:
    loader = DataLoader(dataset(), batch_size=2, sampler=sampler)
    with pytest.raises(ValueError, match="loader: its"):
        shard_loader(loader, ctx())


def test_non_sharding_batch_sampler_is_an_error() -> None:
    loader = DataLoader(dataset(), batch_sampler=[[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="batch_sampler"):
        shard_loader(loader, ctx())


def test_world_larger_than_dataset_is_an_error() -> None:
    loader = DataLoader(dataset(3), batch_size=1)
    with pytest.raises(ValueError, match="3 samples, fewer than the 4 processes"):
        shard_loader(loader, ctx(rank=0, world=4))


def test_other_iterables_are_kept_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    batches = [torch.zeros(2, 3, 8, 8)]
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        assert shard_loader(batches, ctx(rank=0)) is batches
    assert "cannot shard it" in caplog.text
