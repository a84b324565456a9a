"""fit on 2 CPU processes (gloo) against a single-process run on the same global batches.

One spawn runs every scenario of ``_ddp_workers.run_all`` on both ranks (paying for two Python
start-ups once); the tests below check what each rank wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import _ddp_workers
import pytest
import torch
from _ddp_workers import (
    EPOCHS,
    LR,
    PER_RANK_BATCH,
    UNEQUAL_BATCHES,
    GlobalBatches,
    images,
    make_explainer,
    run_all,
)
from ddp_spawn import WORLD, run_ranks
from torch.utils.data import DataLoader, TensorDataset

import ttame_attr
from ttame_attr import fit


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run far faster on one thread than on several fighting for a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    # port 0: in the torchrun-environment scenario rank 0's store binds a port the system picks
    # and hands it to rank 1 (no free-port probe that another process could race).
    run_ranks(run_all, (WORLD, str(out / "init"), str(out), "cpu", False, False, 0))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def reference() -> tuple[dict, list[dict]]:
    """One process, batches of WORLD * PER_RANK_BATCH images: the same global batches."""
    x = images()
    explainer = make_explainer(head_seed=0)
    loader = DataLoader(TensorDataset(x), batch_sampler=GlobalBatches())
    val = DataLoader(TensorDataset(x[:8]), batch_size=WORLD * PER_RANK_BATCH)
    with one_thread():
        history = fit(explainer, loader, epochs=EPOCHS, lr=LR, progress=False, val_loader=val,
                      distributed=False)
    return explainer.head.state_dict(), history.as_dicts()


def test_no_rank_crashed(ranks: list[dict]) -> None:
    assert [r.get("crash") for r in ranks] == [None, None]


def test_ranks_end_with_identical_head(ranks: list[dict]) -> None:
    # Rank 1 started from other weights (seed 123): DDP copied rank 0's, training kept them equal.
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_matches_single_process_on_global_batches(ranks: list[dict], reference) -> None:
    ref_state, _ = reference
    state = ranks[0]["state"]
    assert state.keys() == ref_state.keys()
    init = make_explainer(head_seed=0).head.state_dict()
    for key, value in ref_state.items():
        # BatchNorm statistics (running mean/var) are those of the global batch.
        torch.testing.assert_close(state[key], value, rtol=1e-4, atol=1e-5, msg=key)
    moved = max(float((ref_state[k].float() - init[k].float()).abs().max()) for k in init)
    assert moved > 1e-3  # the comparison is not between two untrained heads
    assert int(state["branches.0.bn.num_batches_tracked"]) == EPOCHS * 4


def test_logged_terms_are_global_means(ranks: list[dict], reference) -> None:
    _, ref_history = reference
    assert ranks[0]["history"] == ranks[1]["history"]
    assert len(ranks[0]["history"]) == EPOCHS
    for got, want in zip(ranks[0]["history"], ref_history):
        assert got["steps"] == want["steps"]
        assert got["skipped_steps"] == want["skipped_steps"] == 0
        assert got["dead_classes"] == want["dead_classes"]  # the ranks' class peaks, max-reduced
        assert got["full_classes"] == want["full_classes"]  # and their floors, min-reduced
        for key in ("loss", "ce", "area", "variation", "fidelity", "lr", "val_loss", "val_ce",
                    "val_area", "val_variation", "val_fidelity"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


def test_the_package_raises_no_deprecation_warning(ranks: list[dict]) -> None:
    # torch.distributed.nn's collectives warn (FutureWarning) from their caller's line: every
    # rank of every torchrun job printed them from ttame_attr/training/distributed.py.
    package = str(Path(ttame_attr.__file__).parent)
    for rank in ranks:
        assert ("UserWarning", _ddp_workers.__file__, "the capture works") in rank["warnings"]
        ours = [w for w in rank["warnings"] if w[1].startswith(package)
                and w[0] in ("FutureWarning", "DeprecationWarning")]
        assert ours == []


def test_head_and_loader_are_restored(ranks: list[dict]) -> None:
    for rank in ranks:
        assert "BatchNorm2d" in rank["head_types"]
        assert "SyncBatchNorm" not in rank["head_types"]
        assert "DistributedDataParallel" not in rank["head_types"]
        assert rank["loader_unchanged"] == "RandomSampler"  # the user's loader is not modified


def test_only_rank_zero_logs_epochs(ranks: list[dict]) -> None:
    def epochs(rank: dict) -> list[str]:
        return [m for _, m in rank["messages"] if m.startswith("T-TAME epoch")]

    assert len(epochs(ranks[0])) > 0
    assert epochs(ranks[1]) == []
    assert any("rebuilt with a DistributedSampler" in m for _, m in ranks[0]["messages"])


def test_non_finite_loss_on_one_rank_is_skipped_on_every_rank(ranks: list[dict]) -> None:
    a, b = ranks[0]["nan_history"][0], ranks[1]["nan_history"][0]
    assert a["skipped_steps"] == b["skipped_steps"] == 1
    assert a["steps"] == b["steps"] == 3  # 4 batches per rank, one skipped
    for key in ranks[0]["nan_state"]:
        assert torch.equal(ranks[0]["nan_state"][key], ranks[1]["nan_state"][key]), key
        assert torch.isfinite(ranks[0]["nan_state"][key].float()).all(), key


def test_unequal_batch_counts_run_the_minimum_with_a_warning(ranks: list[dict]) -> None:
    # Rank 0 has 3 batches, rank 1 has 2 (and steps_per_epoch=5 asks for more): both run 2.
    assert ranks[0]["uneven_steps"] == ranks[1]["uneven_steps"] == 2
    warnings = [m for level, m in ranks[0]["messages"] if level == "WARNING"]
    assert any("between 2 and 3 batches" in m for m in warnings)
    assert any("steps_per_epoch=5 but rank 0 has only 3 batches" in m for m in warnings)


def test_unequal_batch_sizes_match_the_global_batch(ranks: list[dict]) -> None:
    # Rank 0 takes 3 images per step, rank 1 takes 1: each step is the 4-image global batch's.
    x = images()
    explainer = make_explainer()
    batches = [UNEQUAL_BATCHES[0][k] + UNEQUAL_BATCHES[1][k] for k in range(2)]
    with one_thread():
        history = fit(explainer, DataLoader(TensorDataset(x), batch_sampler=batches), epochs=1,
                      lr=LR, progress=False, distributed=False)
    for key, value in explainer.head.state_dict().items():
        torch.testing.assert_close(ranks[0]["unequal_state"][key], value, rtol=1e-4, atol=1e-5,
                                   msg=key)
        assert torch.equal(ranks[0]["unequal_state"][key], ranks[1]["unequal_state"][key])
    assert ranks[0]["unequal_history"][0]["loss"] == pytest.approx(history[0].loss, rel=1e-4)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("err_weighted", "WeightedRandomSampler) does not shard"),
        ("err_tiny", "the dataset has 1 samples, fewer than the 2 processes"),
        ("err_empty", "yields no batches"),
    ],
)
def test_bad_setups_raise_on_every_rank(ranks: list[dict], key: str, expected: str) -> None:
    for rank in ranks:
        assert rank[key] is not None and rank[key].startswith("ValueError"), rank[key]
        assert expected in rank[key]


def test_a_rank_that_is_fine_stops_with_the_misconfigured_one(ranks: list[dict]) -> None:
    # A DistributedSampler built for rank 0 in both processes: right on rank 0, wrong on rank 1.
    assert "shards for num_replicas=2, rank=0, but this process is rank 1" in ranks[1][
        "err_wrong_rank"]
    assert "rank(s) [1]" in ranks[0]["err_wrong_rank"]
    # Only rank 1 has a sampler that does not shard; rank 0 must not train alone (it would wait
    # forever for rank 1).
    assert ranks[0]["err_one_bad"] is not None and "rank(s) [1]" in ranks[0]["err_one_bad"]
    assert "does not shard" in ranks[1]["err_one_bad"]


def test_fit_initialises_the_group_from_torchrun_environment(ranks: list[dict]) -> None:
    a, b = ranks[0]["auto"], ranks[1]["auto"]
    assert a["initialised"] and b["initialised"]
    assert (a["world"], a["backend"], a["steps"]) == (2, "gloo", 2)  # 8 images, 2 ranks of 2
    assert a["port"] == b["port"] > 0  # both joined the store rank 0 bound
    for key in a["state"]:  # heads built with different seeds end identical
        assert torch.equal(a["state"][key], b["state"][key]), key
    assert any("initialised a gloo process group of 2 processes" in m
               for _, m in ranks[0]["messages"])
