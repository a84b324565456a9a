"""Checkpoints and resume under DDP (2 CPU processes, gloo): rank 0 writes, every rank resumes."""

from __future__ import annotations

import pytest
import torch
from _ddp_checkpoint_workers import run_checkpoints
from ddp_spawn import WORLD, run_ranks


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp_ckpt")
    run_ranks(run_checkpoints, (WORLD, str(out / "init"), str(out)))
    return [torch.load(out / f"ckpt_rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_killed_and_resumed_run_equals_uninterrupted_run(ranks: list[dict]) -> None:
    for rank in ranks:
        assert rank.get("crash_trace") is None
        assert rank["crash"] == "simulated crash"
        for key, value in rank["full"].items():
            torch.testing.assert_close(rank["resumed"][key], value, rtol=1e-5, atol=1e-6,
                                       msg=key)
            assert torch.equal(rank["resumed"][key], ranks[0]["resumed"][key]), key
    # The epoch means, including the epoch cut by the crash, are the global ones.
    full, resumed = ranks[0]["full_history"], ranks[0]["resumed_history"]
    assert len(resumed) == len(full) == 2
    for got, want in zip(resumed, full):
        for key in ("loss", "ce", "area", "variation", "fidelity", "steps"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_only_rank_zero_writes_and_ranks_must_resume_alike(ranks: list[dict]) -> None:
    assert [r["own_exists"] for r in ranks] == [True, False]
    for rank in ranks:
        assert rank["err_disagree"] is not None
        assert "checkpoint_path: the ranks disagree" in rank["err_disagree"]


def test_checkpoint_path_is_checked_before_training_on_the_rank_that_writes_it(ranks: list[dict]) -> None:
    rank0, rank1 = ranks
    assert rank0["err_bad_on_rank0"].startswith("ValueError: checkpoint_path: cannot write")
    assert "is a file, not a folder" in rank0["err_bad_on_rank0"]
    assert rank1["err_bad_on_rank0"].startswith("ValueError: fit: the set-up failed on rank(s) [0]")
    assert rank0["err_bad_on_rank1"] is None and rank1["err_bad_on_rank1"] is None
