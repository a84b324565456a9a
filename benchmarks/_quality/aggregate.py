"""Mean and spread over seeds of the quality benchmark's pieces, and the "first" claims.

A piece is one (backbone, seed): every method's metrics on that seed's evaluation images. The
seeds of a backbone share the classifier; they differ in T-TAME's training seed, RISE's masks,
ROAD's noise and the evaluation images.
"""

from __future__ import annotations

import statistics
from typing import Any

from _quality.report import COLUMNS, goal_status

#: How the spread is computed, recorded in ``quality.json``.
STD_RULE = "sample standard deviation over seeds (n - 1 denominator, statistics.stdev); null for one seed"
#: When a column names a method first, recorded in ``quality.json`` and the tables' footnotes.
FIRST_RULE = (
    "a method is claimed first on a metric only when its mean over the seeds beats the second "
    "best mean by more than the sum of the two methods' standard deviations (and there are at "
    "least 2 seeds); a lead within that spread is reported as best mean, not as first. This is "
    "a separation rule of thumb, not a significance test"
)


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    mean = float(statistics.fmean(values))
    return mean, (float(statistics.stdev(values)) if len(values) > 1 else None)


def _timing(pieces: list[dict[str, Any]], name: str) -> str:
    kinds = {p["methods"][name]["timing"] for p in pieces}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def aggregate_method(pieces: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Mean of every scalar metric and curve of ``name`` over ``pieces``; ``std`` per scalar,
    ``per_seed`` the values of each seed."""
    runs = [p["methods"][name] for p in pieces]
    first = runs[0]
    out: dict[str, Any] = {}
    std: dict[str, float | None] = {}
    for key, value in first.items():
        if isinstance(value, float):
            out[key], std[key] = mean_std([float(r[key]) for r in runs])
        elif key.endswith("_curve"):
            out[key] = [statistics.fmean(v) for v in zip(*(r[key] for r in runs))]
    out["road_fractions"] = first.get("road_fractions", [])
    out["metric_seconds"] = {
        k: statistics.fmean(r["metric_seconds"][k] for r in runs) for k in first["metric_seconds"]
    }
    out["settings"] = first["settings"]
    out["timing"] = _timing(pieces, name)
    out["std"] = std
    out["per_seed"] = {
        str(p["seed"]): {k: v for k, v in r.items() if isinstance(v, float)}
        for p, r in zip(pieces, runs)
    }
    return out


def first_claims(methods: dict[str, dict[str, Any]], n_seeds: int) -> dict[str, dict[str, Any]]:
    """Per column of :data:`_quality.report.COLUMNS`: the best and second best mean, the lead,
    the spread (sum of their standard deviations) and whether the rule claims the best first."""
    claims = {}
    for key, _, higher in COLUMNS:
        order = sorted(methods, key=lambda m: methods[m][key], reverse=higher)
        best = order[0]
        second = order[1] if len(order) > 1 else None
        lead = spread = None
        claimed = False
        if second is not None:
            lead = abs(methods[best][key] - methods[second][key])
            s1, s2 = methods[best]["std"].get(key), methods[second]["std"].get(key)
            if n_seeds >= 2 and s1 is not None and s2 is not None:
                spread = s1 + s2
                claimed = lead > spread
        tied = [m for m in order if methods[m][key] == methods[best][key]]
        claims[key] = {"best": best, "tied_best": tied, "second": second, "lead": lead,
                       "spread": spread, "claimed": claimed, "first": best if claimed else None}
    return claims


def aggregate_backbone(pieces: list[dict[str, Any]], classifier: dict[str, Any]) -> dict[str, Any]:
    """The backbone's entry of ``quality.json``: means, spreads and claims over its pieces."""
    first = pieces[0]
    names = list(first["methods"])
    methods = {name: aggregate_method(pieces, name) for name in names}
    acc_mean, acc_std = mean_std([p["eval_accuracy"] for p in pieces])
    ttame = {k: first["ttame"][k] for k in ("layers", "map_size", "mask_space", "config")
             if k in first["ttame"]}
    ttame["per_seed"] = {
        str(p["seed"]): {"cached": p["ttame"].get("cached"),
                         "train_seconds": p["ttame"].get("train_seconds"),
                         "final_epoch": (p["ttame"].get("history") or [None])[-1]}
        for p in pieces
    }
    return {
        "backbone": first["arch"],
        "n_images": first["n_images"],
        "image_size": first["image_size"],
        "seeds": [p["seed"] for p in pieces],
        "classifier": classifier,
        "eval_images": {str(p["seed"]): p["eval_images"] for p in pieces},
        "eval_accuracy": {"mean": acc_mean, "std": acc_std,
                          "per_seed": {str(p["seed"]): p["eval_accuracy"] for p in pieces}},
        "ttame": ttame,
        "methods": methods,
        "goal_ranks": goal_status(methods),
        "first": first_claims(methods, len(pieces)),
        "first_rule": FIRST_RULE,
        "std_rule": STD_RULE,
        "pieces": {str(p["seed"]): {"from_cache": p.get("from_cache", False),
                                    "computed": p.get("computed"),
                                    "seconds": p["seconds"], "timed_together": p["timed_together"]}
                   for p in pieces},
        "clean": all(p.get("computed", {}).get("read_cache") is False for p in pieces),
        "seconds": sum(p["seconds"] for p in pieces),
    }
