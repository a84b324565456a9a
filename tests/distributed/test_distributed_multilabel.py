"""Multi-label fit on 2 CPU processes (gloo) against a single-process run on the same global batches.

A multi-label step masks one image per ``(image, label)`` pair, so the two ranks of a step mask
different numbers of pairs: the step is the global batch's only if every rank computes the maps
of all the global batch's pair labels and its loss terms are weighted by its share of the
global batch (:func:`~ttame_attr.training.distributed.gather_labels`).
"""

from __future__ import annotations

import pytest
import torch
from _ddp_multilabel_workers import (
    CRAFTED,
    LABEL_COUNTS,
    make_multilabel_explainer,
    run_multilabel,
    tagged_images,
)
from _ddp_workers import EPOCHS, LR, PER_RANK_BATCH, GlobalBatches
from ddp_spawn import WORLD, run_ranks
from torch.utils.data import DataLoader, TensorDataset

from ttame_attr import fit

# Tolerance of the head's weights, DDP against one process. Both runs do the same float32
# arithmetic except the order of some sums (each rank's partial sums of the loss terms and of the
# BatchNorm statistics, then the all-reduce of the gradients): each reordering changes a result by
# a few float32 ulps (1.2e-7 relative), and 8 SGD steps at lr 0.5 with momentum carry them to
# the few 1e-6 measured (2.9e-6 at most, on weights up to 2). assert_close allows
# ATOL + RTOL * |w|, 1e-5 to 2e-4 here: 3x to 70x that. Dropping the share weighting moves the
# weights by 0.4, weighting the whole loss by the pairs' share alone by 0.017 (both
# fail; the first is checked below).
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp_ml")
    run_ranks(run_multilabel, (WORLD, str(out / "init"), str(out)))
    return [torch.load(out / f"ml_rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def reference() -> tuple[dict, list[dict]]:
    """One process on the 4-image global batches of the 2-rank run."""
    explainer = make_multilabel_explainer(head_seed=0)
    loader = DataLoader(TensorDataset(tagged_images()), batch_sampler=GlobalBatches())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = fit(explainer, loader, epochs=EPOCHS, lr=LR, progress=False, distributed=False)
    finally:
        torch.set_num_threads(before)
    return explainer.head.state_dict(), history.as_dicts()


def test_the_tagger_has_the_planted_labels() -> None:
    from ttame_attr import positive_labels

    labels = positive_labels(make_multilabel_explainer().model(tagged_images()))
    assert labels.counts.tolist() == LABEL_COUNTS
    assert not labels.fallback.any()


def test_the_ranks_mask_different_numbers_of_pairs() -> None:
    # Each global batch: rank 0's 2 images then rank 1's; count the pairs of each rank's half.
    sampler = GlobalBatches()
    per_step = [
        [sum(LABEL_COUNTS[i] for i in batch[r * PER_RANK_BATCH: (r + 1) * PER_RANK_BATCH])
         for r in range(WORLD)]
        for _ in range(EPOCHS) for batch in sampler
    ]
    assert len(per_step) == 8
    assert sum(a != b for a, b in per_step) >= 3, per_step  # the share weighting is exercised


def test_no_rank_crashed(ranks: list[dict]) -> None:
    assert [r.get("crash") for r in ranks] == [None, None]


def test_gather_labels_gives_each_rank_its_share_of_the_pairs(ranks: list[dict]) -> None:
    # Rank 0 has 3 pairs, rank 1 has 1: 4 in all. DDP averages the two ranks' gradients, so rank
    # r's mean over its P_r pairs is weighted by W * P_r / P: (1.5 * m0 + 0.5 * m1) / 2 =
    # (3 * m0 + 1 * m1) / 4, the mean over the 4 pairs.
    everything = CRAFTED[0] + CRAFTED[1]
    assert ranks[0]["gathered"] == (everything, 0, 2 * 3 / 4)
    assert ranks[1]["gathered"] == (everything, 3, 2 * 1 / 4)


def test_ranks_end_with_identical_head(ranks: list[dict]) -> None:
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_multilabel_fit_matches_single_process_on_global_batches(ranks: list[dict], reference) -> None:
    reference, _ = reference
    state = ranks[0]["state"]
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=RTOL, atol=ATOL, msg=key)
    init = make_multilabel_explainer(head_seed=0).head.state_dict()
    moved = max(float((reference[k].float() - init[k].float()).abs().max()) for k in init)
    assert moved > 1e-2  # the comparison is not between two untrained heads
    assert int(state["branches.0.bn.num_batches_tracked"]) == EPOCHS * 4


def test_logged_area_and_variation_are_the_global_batch_means(ranks: list[dict], reference) -> None:
    # Every rank's maps cover the global batch's pair labels, so these image means add up to the
    # global batch's. (ce and fidelity, means over each rank's pairs, are logged per image: the
    # epoch's means weight each rank's pair mean by its images, as one process weights batches.)
    _, ref_history = reference
    assert ranks[0]["history"] == ranks[1]["history"]
    for got, want in zip(ranks[0]["history"], ref_history, strict=True):
        assert (got["steps"], got["skipped_steps"]) == (want["steps"], 0)
        for key in ("area", "variation"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_without_the_share_weighting_the_head_differs(ranks: list[dict], reference) -> None:
    reference, _ = reference
    plain = ranks[0]["unweighted_state"]
    gap = max(float((plain[k].float() - reference[k].float()).abs().max()) for k in reference
              if reference[k].is_floating_point())
    assert gap > 100 * ATOL  # so the comparison above would catch a missing weight
