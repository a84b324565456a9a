"""The audit's signals, each a number in [0, 1] (0: nothing unusual).

Every signal compares a class (or a group of it) with the images predicted as *other* classes
(the signal is the difference of the two shares, 0 when the class shows less),
so what all classes share (objects photographed in the centre, a frame around every image)
raises no alarm; only what sets one class apart does. Shares measured on few images are taken
at a lower confidence bound (Wilson's, two standard errors), so a class of ten images does not
look consistent by chance. Flat maps (no evidence) take no part.

- ``position``: the share of explanations that peak in the same small region (a 3x3 block of
  grid cells), beyond the share of other classes' explanations that peak there.
- ``border``: the share of explanations that peak on the outer ring of grid cells, beyond the
  other classes' share.
- ``off_object``: the share of explanations that peak off the object mask (the pointing game's
  miss rate), beyond the other classes' (only when the store has masks).
- ``outlier``: for a group, its distance from the class's other explanations (total variation
  between mean evidence) beyond how much those differ among themselves, times how alike its own
  explanations are (one minus their mean distance to the group's mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Excess", "block_sums", "excess", "mean_excess", "outlier", "position", "region_name",
           "spot_profile", "tv"]


@dataclass(frozen=True)
class Excess:
    """A signal: ``value`` in [0, 1], from ``share`` against the other classes' ``baseline``."""

    value: float
    share: float
    baseline: float
    cell: int = -1


def excess(share: float, baseline: float) -> float:
    """How far ``share`` exceeds ``baseline`` (a difference of shares, 0 when below)."""
    return float(max(0.0, share - baseline))


def block_sums(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(..., cells)`` -> the sum over each cell's 3x3 block (clipped at the grid's edges)."""
    gh, gw = grid
    v = values.reshape(*values.shape[:-1], gh, gw)
    padded = np.pad(v, [(0, 0)] * (v.ndim - 2) + [(1, 1), (1, 1)])
    out = sum(padded[..., dy:dy + gh, dx:dx + gw] for dy in range(3) for dx in range(3))
    return out.reshape(values.shape)


def _lower(share: float, n: int, z: float = 2.0) -> float:
    """The Wilson lower bound (``z`` standard errors) of a share measured on ``n`` images."""
    if n <= 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * np.sqrt(max(share * (1.0 - share), 0.0) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - spread) / (1.0 + z * z / n)))


def position(peaks: np.ndarray, other_peak_counts: np.ndarray, grid: tuple[int, int],
             block: bool = True) -> Excess:
    """The ``position`` signal of images whose explanations peak at ``peaks``.

    Args:
        peaks: ``(n,)`` grid cell of each image's largest evidence.
        other_peak_counts: ``(cells,)`` how many of the other classes' images peak in each cell
            (all zeros when there are no other classes: the baseline is then a uniform spread).
        grid: ``(gh, gw)``.
        block: count peaks in each cell's 3x3 block (a class: a mark may straddle cells), or in
            the cell alone (a group: its members were grouped *because* their evidence lies
            close together, so only one exact spot shared by nearly all of them is unusual).
    """
    cells = grid[0] * grid[1]

    def spread(counts: np.ndarray) -> np.ndarray:
        return block_sums(counts, grid) if block else counts

    counts = spread(np.bincount(peaks, minlength=cells).astype(np.float64))
    cell = int(counts.argmax())
    share = _lower(float(counts[cell]) / len(peaks), len(peaks))
    total_other = float(other_peak_counts.sum())
    if total_other > 0:
        baseline = float(spread(other_peak_counts.astype(np.float64))[cell]) / total_other
    else:
        baseline = float(spread(np.ones(cells))[cell]) / cells
    return Excess(excess(share, baseline), share, baseline, cell)


def spot_profile(peaks: np.ndarray, other_peak_counts: np.ndarray, grid: tuple[int, int],
                 cell: int) -> np.ndarray:
    """``(cells,)`` weights in [0, 1]: where, in the 3x3 block around ``cell`` (the ``position``
    signal's spot), the class's explanations peak more often than the other classes' do.

    Each cell's weight is the class's share of peaks there minus the other classes' share (0 when
    below, 0 outside the block), scaled so that the largest weight is 1 (all zeros when the class
    peaks nowhere more often). An image shows the ``position`` signal as much as its evidence lies
    on these cells: a mark's cell counts fully, a neighbouring cell where the class peaks no more
    often than the other classes (an object that happens to lie near the mark) not at all.
    """
    cells = grid[0] * grid[1]
    own = np.bincount(peaks, minlength=cells).astype(np.float64) / max(1, len(peaks))
    total_other = float(other_peak_counts.sum())
    other = other_peak_counts / total_other if total_other > 0 else np.full(cells, 1.0 / cells)
    ys, xs = np.divmod(np.arange(cells), grid[1])
    cy, cx = divmod(int(cell), grid[1])
    block = (np.abs(ys - cy) <= 1) & (np.abs(xs - cx) <= 1)
    weights = np.where(block, np.clip(own - other, 0.0, None), 0.0)
    top = float(weights.max())
    return weights / top if top > 0 else weights


def mean_excess(values: np.ndarray, baseline: float) -> Excess:
    """A mean share (lower confidence bound) against the other classes' mean share."""
    share = _lower(float(values.mean()), len(values))  # values in [0, 1]: at most a share's variance
    return Excess(excess(share, baseline), share, baseline)


def tv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Total variation distance between distributions along the last axis, in [0, 1]."""
    return 0.5 * np.abs(a - b).sum(axis=-1)


def outlier(group: np.ndarray, rest: np.ndarray | None) -> tuple[float, float, float]:
    """``(signal, distance, alikeness)`` of a group's evidence ``(m, cells)`` against the rest of its class.

    ``distance`` is the total variation between the group's mean evidence and the rest's mean,
    counted beyond the rest's own spread (their mean distance to their mean), so that groups cut
    out of a class whose explanations vary anyway (objects anywhere in the image) are not
    outliers; ``alikeness`` is one minus the group's mean distance to its own mean. The signal
    is their product; 0 without a rest (a single group).
    """
    centre = group.mean(axis=0)
    alike = float(1.0 - tv(group, centre).mean())
    if rest is None or len(rest) == 0:
        return 0.0, 0.0, alike
    rest_mean = rest.mean(axis=0)
    distance = float(tv(centre, rest_mean))
    spread = float(tv(rest, rest_mean).mean())
    return max(0.0, distance - spread) / max(1e-9, 1.0 - spread) * alike, distance, alike


def region_name(cell: int, grid: tuple[int, int]) -> str:
    """Where a grid cell lies, in words ("top-left corner", "bottom edge", "centre", ...)."""
    gh, gw = grid
    y, x = divmod(int(cell), gw)

    def third(v: int, n: int, words: tuple[str, str, str]) -> str:
        return words[0] if v < n / 3 else words[2] if v >= 2 * n / 3 else words[1]

    vertical = third(y, gh, ("top", "middle", "bottom"))
    horizontal = third(x, gw, ("left", "centre", "right"))
    on_edge_y, on_edge_x = y in (0, gh - 1), x in (0, gw - 1)
    if vertical == "middle" and horizontal == "centre":
        return "centre"
    if vertical != "middle" and horizontal != "centre":
        return f"{vertical}-{horizontal} {'corner' if on_edge_y and on_edge_x else 'area'}"
    side = vertical if vertical != "middle" else horizontal
    return f"{side} {'edge' if (on_edge_y or on_edge_x) else 'area'}"
