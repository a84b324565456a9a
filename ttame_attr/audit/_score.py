"""Suspicion scores per class, per group and per image, each with its reasons in words.

A class's or group's score is the largest of the signals of :mod:`ttame_attr.audit._signals` that apply:

- a class: its own ``position``, ``border`` and ``off_object`` signals and its groups' scores;
- a group: the same three signals measured on the group alone, and its ``outlier`` signal;
- an image: measured on its class's *main* signal, the one behind the class's score (for a
  class flagged through one of its groups, that group's strongest signal): half the class's score
  (an image of a suspicious class is worth a look) plus half that signal times how much *this*
  image shows it (half for its own peak being where the signal is, half for its evidence share
  there; for ``position``, both weighted by :func:`~ttame_attr.audit._signals.spot_profile`, the
  cells where the class peaks more often than the other classes; for ``outlier``, its likeness to
  its group's mean). Within a class, an image carrying its class's shortcut scores high; an image
  of the same class explained by its object scores half the class's score. Only the main signal
  counts, so a signal that follows from it (a corner mark also lies on the border and off the
  object) does not lift images that show only the consequence (an object on the border).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ttame_attr.audit._collect import ClassData, StoreSummary, border_cells
from ttame_attr.audit._signals import Excess, mean_excess, outlier, position, region_name, spot_profile, tv

__all__ = ["REASON_MIN", "Baselines", "ClassScore", "GroupScore", "ImageScores", "baselines", "image_reasons",
           "score_class", "score_class_with_blanks"]

#: Signals at least this strong are given as reasons (the strongest one always is).
REASON_MIN = 0.25


@dataclass
class GroupScore:
    """One group of a class: its members, signals, score and reasons."""

    group: int
    members: np.ndarray  # positions within the class
    signals: dict[str, dict]
    score: float
    reasons: list[str]
    typical: np.ndarray  # positions within the class, most typical first


@dataclass
class ClassScore:
    """One class: signals, score, reasons and groups (most suspicious first)."""

    cls: int
    size: int
    signals: dict[str, dict]
    score: float
    reasons: list[str]
    groups: list[GroupScore]
    hotspot: int
    groups_of: np.ndarray = field(repr=False)  # (n,) group of each image, -1 for a flat map
    blank: int = 0  # images whose map is flat


@dataclass
class ImageScores:
    """Per-image scores of one class, with the signal behind each and its strength."""

    score: np.ndarray
    parts: dict[str, np.ndarray]
    details: dict[str, np.ndarray]
    main: str = "position"  # the signal behind the class's score, which the images' scores measure


def _cell_text(cell: int, grid: tuple[int, int]) -> str:
    return f"{region_name(cell, grid)}, grid cell {divmod(cell, grid[1])} of {grid[0]}x{grid[1]}"


def _sentences(sig: dict[str, Excess], grid: tuple[int, int], outlier_info: tuple | None = None) -> dict:
    """``{signal: (value, sentence)}`` for the signals of a class or group."""
    out = {}
    if "position" in sig:
        p = sig["position"]
        out["position"] = (p.value, f"{p.share:.0%} of its explanations peak around the same spot "
                           f"({_cell_text(p.cell, grid)}), against {p.baseline:.0%} of other classes': "
                           "evidence at a fixed image position whatever the image (a mark, tag, "
                           "watermark or border)")
    if "border" in sig:
        b = sig["border"]
        out["border"] = (b.value, f"{b.share:.0%} of its explanations peak on the image border, against "
                         f"{b.baseline:.0%} of other classes'")
    if sig.get("off_object") is not None:
        o = sig["off_object"]
        out["off_object"] = (o.value, f"{o.share:.0%} of its explanations peak off the object, against "
                             f"{o.baseline:.0%} of other classes'")
    if outlier_info is not None:
        value, distance, alike = outlier_info
        out["outlier"] = (value, f"its images are explained unlike the class's other images (distance "
                          f"{distance:.2f}) and alike among themselves ({alike:.2f})")
    return out


def _pick(sentences: dict) -> tuple[float, list[str]]:
    """The score (largest signal) and the reasons (strong signals, strongest first)."""
    if not sentences:
        return 0.0, []
    ranked = sorted(sentences.values(), key=lambda vs: -vs[0])
    return float(ranked[0][0]), [s for v, s in ranked if v >= REASON_MIN] or [ranked[0][1]]


def _strongest(sentences: dict) -> str:
    """The key of the strongest sentence (the first one on a tie)."""
    return max(sentences, key=lambda k: sentences[k][0]) if sentences else "position"


def _as_dict(sig: dict[str, Excess], grid: tuple[int, int]) -> dict[str, dict]:
    out = {}
    for name, e in sig.items():
        if e is None:
            continue
        out[name] = {"value": round(e.value, 4), "share": round(e.share, 4), "baseline": round(e.baseline, 4)}
        if e.cell >= 0:
            out[name]["cell"] = list(divmod(e.cell, grid[1]))
            out[name]["region"] = region_name(e.cell, grid)
    return out


@dataclass
class Baselines:
    """What the other classes show, to compare a class with."""

    peak_counts: np.ndarray  # (cells,) peaks of the other classes' images
    border: float  # share of their explanations peaking on the border
    off_object: float | None  # their mean share of the peak cell off the object


def _signals_of(peaks: np.ndarray, border: np.ndarray, off: np.ndarray | None, base: Baselines,
                grid: tuple[int, int], block: bool = True) -> dict[str, Excess]:
    sig = {"position": position(peaks, base.peak_counts, grid, block),
           "border": mean_excess(border, base.border)}
    sig["off_object"] = mean_excess(off, base.off_object) if off is not None and base.off_object is not None \
        else None
    return sig


def _shows(peak_there: np.ndarray, share: np.ndarray) -> np.ndarray:
    """How much an image shows a signal, in [0, 1]: half for its peak being where the signal is
    (the signals count peaks), half for the share of its evidence there (to rank within)."""
    return 0.5 * peak_there.astype(np.float64) + 0.5 * np.asarray(share, dtype=np.float64)


def score_class(data: ClassData, groups_of: np.ndarray, base: Baselines, grid: tuple[int, int],
                examples: int) -> tuple[ClassScore, ImageScores]:
    """Score one class, its groups and its images."""
    peaks = data.peaks
    sig = _signals_of(peaks, data.border_peak, data.off_peak, base, grid)
    sentences = _sentences(sig, grid)
    spot = sig["position"].cell
    weights = spot_profile(peaks, base.peak_counts, grid, spot)  # the cells where the class peaks unusually
    at_spot = data.evidence @ weights  # (n,): each image's evidence there, weighted
    off_shows = (_shows(data.off_peak > 0.5, data.off_object) if data.off_object is not None
                 else np.zeros(len(peaks)))
    parts = {"position": sig["position"].value * _shows(weights[peaks], at_spot),
             "border": sig["border"].value * _shows(data.border_peak > 0, data.border),
             "off_object": (sig["off_object"].value * off_shows if sig["off_object"] is not None
                            else np.zeros(len(peaks))),
             "outlier": np.zeros(len(peaks))}
    details = {"position": at_spot, "border": data.border.copy(),
               "off_object": data.off_object if data.off_object is not None else np.zeros(len(peaks)),
               "outlier": np.zeros(len(peaks)),
               "spot": np.full(len(peaks), int(weights.argmax()) if weights.any() else spot)}
    groups = []
    signal_of = {name: name for name in sentences}  # the signal behind each sentence
    for g in range(int(groups_of.max()) + 1):
        members = np.flatnonzero(groups_of == g)
        ev = data.evidence[members]
        rest = data.evidence[groups_of != g] if len(members) < len(peaks) else None
        off = data.off_peak[members] if data.off_peak is not None else None
        gsig = _signals_of(peaks[members], data.border_peak[members], off, base, grid, block=False)
        value, distance, alike = outlier(ev, rest)
        info = (value, distance, alike) if rest is not None else None
        gsent = _sentences(gsig, grid, info)
        gscore, greasons = _pick(gsent)
        likeness = 1.0 - tv(ev, ev.mean(axis=0))
        g_cell = gsig["position"].cell
        g_pos = gsig["position"].value * _shows(peaks[members] == g_cell, data.evidence[members, g_cell])
        better = g_pos > parts["position"][members]
        parts["position"][members] = np.where(better, g_pos, parts["position"][members])
        details["position"][members] = np.where(better, data.evidence[members, g_cell],
                                                details["position"][members])
        details["spot"][members] = np.where(better, gsig["position"].cell, details["spot"][members])
        parts["outlier"][members] = value * likeness
        details["outlier"][members] = likeness
        gsig_dict = _as_dict(gsig, grid)
        gsig_dict["outlier"] = {"value": round(value, 4), "distance": round(distance, 4),
                                "alike": round(alike, 4)}
        groups.append(GroupScore(group=g, members=members, signals=gsig_dict, score=gscore, reasons=greasons,
                                 typical=members[np.argsort(-likeness, kind="stable")[:examples]]))
        sentences[f"group {g}"] = (gscore, f"group {g} ({len(members)} of {len(peaks)} images): "
                                           f"{greasons[0]}")
        signal_of[f"group {g}"] = _strongest(gsent)
    score, reasons = _pick(sentences)
    groups.sort(key=lambda gs: (-gs.score, gs.group))
    main = signal_of[_strongest(sentences)] if sentences else "position"
    return (ClassScore(cls=data.cls, size=len(peaks), signals=_as_dict(sig, grid), score=score,
                       reasons=reasons, groups=groups, hotspot=sig["position"].cell, groups_of=groups_of),
            ImageScores(score=0.5 * score + 0.5 * parts[main], parts=parts, details=details, main=main))


def score_class_with_blanks(data: ClassData, cluster_fn: Callable[[np.ndarray], np.ndarray], base: Baselines,
                            grid: tuple[int, int], examples: int) -> tuple[ClassScore, ImageScores]:
    """:func:`score_class` on the class's images with evidence; flat maps get group -1 and score 0."""
    n, keep = len(data.rows), ~data.blank
    where = np.flatnonzero(keep)
    signals = ("position", "border", "off_object", "outlier")
    empty = ImageScores(score=np.zeros(n), parts={k: np.zeros(n) for k in signals},
                        details={k: np.zeros(n) for k in (*signals, "spot")})
    if len(where) == 0:
        return ClassScore(cls=data.cls, size=n, signals={}, score=0.0, groups=[], hotspot=0,
                          reasons=[f"all its {n} explanations are flat: no evidence to audit (a class the "
                                   "explainer gave up on?)"], groups_of=np.full(n, -1), blank=n), empty
    cs, im = score_class(data.subset(keep), cluster_fn(data.evidence[keep]), base, grid, examples)
    groups_of = np.full(n, -1, dtype=np.int64)
    groups_of[where] = cs.groups_of
    for g in cs.groups:
        g.members, g.typical = where[g.members], where[g.typical]
    empty.score[where] = im.score
    empty.main = im.main
    for name in empty.parts:
        empty.parts[name][where] = im.parts[name]
    for name in empty.details:
        empty.details[name][where] = im.details[name]
    cs.size, cs.groups_of, cs.blank = n, groups_of, n - len(where)
    if cs.blank:
        cs.reasons.append(f"{cs.blank} of its {n} explanations are flat (no evidence); they are left out")
    return cs, empty


def image_reasons(scores: ImageScores, i: int, group: int, grid: tuple[int, int]) -> list[str]:
    """The reasons of image ``i`` (position within its class), strongest first."""
    if group < 0:
        return ["its map is flat: no evidence to audit"]
    d = scores.details
    words = {
        "position": f"{d['position'][i]:.0%} of its evidence sits at its class's fixed spot "
                    f"({region_name(int(d['spot'][i]), grid)})",
        "border": f"{d['border'][i]:.0%} of its evidence is on the image border",
        "off_object": f"{d['off_object'][i]:.0%} of its evidence is off the object",
        "outlier": f"explained like group {group} ({d['outlier'][i]:.2f} alike), a group unlike the rest "
                   "of its class",
    }
    main = float(scores.parts[scores.main][i])
    if main <= 0:
        return ["nothing unusual in its explanation"]
    others = sorted(((float(p[i]), name) for name, p in scores.parts.items() if name != scores.main),
                    reverse=True)
    return [words[scores.main]] + [words[name] for v, name in others[:1] if v >= REASON_MIN * main]


def baselines(summary: StoreSummary) -> list[Baselines]:
    """For each class of ``summary``, what the images of all the *other* classes show."""
    cells = summary.grid[0] * summary.grid[1]
    valid = [d.subset(~d.blank) for d in summary.classes]  # flat maps take no part
    counts = [np.bincount(d.peaks, minlength=cells).astype(np.float64) for d in valid]
    borders = [float(d.border_peak.sum()) for d in valid]
    offs = [float(d.off_peak.sum()) if d.off_peak is not None else 0.0 for d in valid]
    sizes = [len(d.rows) for d in valid]
    total_counts, total_border, total_off, total = sum(counts), sum(borders), sum(offs), sum(sizes)
    ring = float(np.mean(border_cells(summary.grid)))
    out = []
    for j in range(len(summary.classes)):
        n = total - sizes[j]
        border = (total_border - borders[j]) / n if n else ring
        off = ((total_off - offs[j]) / n if n else 0.5) if summary.has_masks else None
        out.append(Baselines(peak_counts=total_counts - counts[j], border=border, off_object=off))
    return out
