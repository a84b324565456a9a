"""What the audit groups and how it ranks images, on evidence grids written by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ttame_attr.audit._cluster import cluster
from ttame_attr.audit._collect import ClassData, border_cells
from ttame_attr.audit._score import Baselines, image_reasons, score_class
from ttame_attr.audit._signals import spot_profile

GRID = (5, 5)


def _one(cells: dict[int, float]) -> np.ndarray:
    row = np.zeros(GRID[0] * GRID[1])
    for cell, value in cells.items():
        row[cell] = value
    return row


def _class(evidence: np.ndarray) -> ClassData:
    ring = border_cells(GRID)
    n = len(evidence)
    return ClassData(cls=3, rows=np.arange(n), evidence=evidence.astype(np.float32),
                     border=(evidence[:, ring].sum(1)).astype(np.float32), off_object=None, off_peak=None,
                     mean_map=np.zeros(GRID, dtype=np.float32), ring=ring, blank=np.zeros(n, dtype=bool))


def test_spot_profile_weighs_the_cells_where_the_class_peaks_more_than_others() -> None:
    # 3x3 grid, spot cell 0 (block {0, 1, 3, 4}). The class peaks 3 times in cell 0 and once in cell 1;
    # the other classes half in cell 1, half in cell 8: cell 0: 3/4 - 0, cell 1: 1/4 - 1/2 < 0.
    other = np.bincount([1, 1, 8, 8], minlength=9).astype(float)
    assert spot_profile(np.array([0, 0, 0, 1]), other, (3, 3), 0).tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]
    # Peaks split between cells 0 and 1 (both unusual) and one in cell 8, outside the block: weight 0.
    w = spot_profile(np.array([0, 0, 1, 1, 8]), np.bincount([4, 4], minlength=9).astype(float), (3, 3), 0)
    assert w.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0]
    # The class peaks nowhere more often than the others: all zeros (no division by zero).
    assert not spot_profile(np.array([4]), np.bincount([4], minlength=9).astype(float), (3, 3), 0).any()


def test_images_are_ranked_by_the_signal_that_flagged_their_class() -> None:
    # 8 "marked" images: 60% of their evidence in cell 6 (their peak), 40% in the centre; one image whose
    # object lies next to the mark: 70% in cell 1 (its peak, on the top edge), 30% in the centre; one
    # image explained elsewhere: all its evidence in cell 18. The other classes all peak in cell 24.
    evidence = np.stack([_one({6: 0.6, 12: 0.4})] * 8 + [_one({1: 0.7, 12: 0.3}), _one({18: 1.0})])
    base = Baselines(peak_counts=np.bincount([24] * 50, minlength=25).astype(float), border=1.0,
                     off_object=None)
    cs, im = score_class(_class(evidence), np.zeros(10, dtype=np.int64), base, GRID, examples=3)
    # position: 9 of 10 peaks in the block of cell 0 ({0, 1, 5, 6}); Wilson's lower bound (z = 2) of 0.9
    # on 10 images: (0.9 + 0.2 - 2 * sqrt(0.009 + 0.01)) / 1.4 = 0.588799; the other classes: 0 there.
    signal = (1.1 - 2 * np.sqrt(0.019)) / 1.4
    assert cs.signals["position"]["cell"] == [0, 0] and cs.score == pytest.approx(signal, abs=1e-4)
    assert im.main == "position"
    # Spot weights: cell 6 (8/10 of the peaks) 1, cell 1 (1/10) 0.125. The marked images show the signal
    # 0.5 * 1 (peak) + 0.5 * 0.6 (evidence there) = 0.8; the one beside the mark 0.5 * 0.125 + 0.5 * 0.7 *
    # 0.125 = 0.10625; the last one 0. An image's score: half its class's score, half signal * shows.
    assert im.score[0] == pytest.approx(0.5 * signal + 0.5 * signal * 0.8, abs=1e-4)
    assert im.score[8] == pytest.approx(0.5 * signal + 0.5 * signal * 0.10625, abs=1e-4)
    assert im.score[9] == pytest.approx(0.5 * signal, abs=1e-4)
    # The image beside the mark peaks on the border (the border part is not its score) and in the
    # mark's 3x3 block, yet ranks below every marked image.
    assert im.parts["border"][8] == 0.0 and im.score[8] < im.score[:8].min()
    assert image_reasons(im, 0, 0, GRID)[0] == ("60% of its evidence sits at its class's fixed spot "
                                                "(top-left area)")
    assert image_reasons(im, 9, 0, GRID) == ["nothing unusual in its explanation"]


def test_groups_follow_where_most_evidence_lies_not_the_faint_rest() -> None:
    # 20 images: 40% of the evidence in cell 0 (10 images) or in the centre cell 12 (10 images), the
    # other 60% spread faintly over the left columns (half of each) or the right columns (the other
    # half). Grouped in two, the groups are the two peaks; the faint spread does not split them.
    left = [c for c in range(25) if c % 5 < 2 and c not in (0, 12)]
    right = [c for c in range(25) if c % 5 > 2]
    rows = []
    for peak in (0, 12):
        for side in (left, right) * 5:
            rows.append(_one({peak: 0.4, **{c: 0.6 / len(side) for c in side}}))
    groups = cluster(np.stack(rows), max_groups=2, min_group_size=5, seed=0)
    assert (groups[:10] == groups[0]).all() and (groups[10:] == groups[10]).all()
    assert groups[0] != groups[10]
