"""Dead class maps and the head's initialisation: ``head_init="pytorch"`` against ``"zeros"``.

One command::

    python benchmarks/head_init.py                         # cnn; seeds 0 1 2; both inits
    python benchmarks/head_init.py --backbones cnn vit --seeds 0 --inits zeros
    python benchmarks/head_init.py --quick                 # smoke run (tiny models), to a temp dir

The clean three-seed quality run (``quality.py``) found that two of the CNN's three T-TAME heads
ended with the maps of some classes zero everywhere (fidelity 0.74 and 0.87 against 0.99),
with PyTorch's default initialisation of the head's fusion convolution. A class whose random
fusion row starts with a weak map is pushed down by the area term before the cross-entropy
shapes it; near ``m = 0`` the area term's gradient on the map's logit (about ``0.3 m^0.3``)
outweighs the cross-entropy's (proportional to ``m``), so the map never comes back. Starting the
fusion at zero (every class map 0.5 everywhere, no class behind the others) is the default since
0.x; this script measures both, side by side, on the quality benchmark's backbones and training
settings (``quality.py``'s :data:`TTAME_CONFIGS`: 8,000 images, lr 1e-2).

Per backbone, seed and initialisation it fits a head (cached under ``--cache`` by
``_quality.models.get_ttame``, keyed on the whole ``ttame_attr`` source and the config, the
initialisation included) and reports, on ``--n-images`` images of the *validation* split:

* ``dead (fit)``: the classes ``fit`` found dead in its last epoch
  (:meth:`ttame_attr.training.TrainingHistory.dead_classes`);
* ``dead (val)``: classes predicted on the validation images whose maps stay below
  :data:`ttame_attr.training.DEAD_MAP_PEAK` on all of them;
* ``fidelity``: the share of images still classified as before when multiplied by their map;
* AD15 / IC15 (the paper's protocol), the pointing game, the energy pointing game and ROAD MoRF;
* the wall time of the fit (``*``: a head from the cache, with the time of the run that fitted it).

It writes ``<name>.json`` (with the run record of ``_results.py``) and ``<name>.md`` into ``--out``
(default ``benchmarks/results/``; ``--name`` default ``head_init``). The committed results are
``head_init`` (the CNN, three seeds) and ``head_init_vit`` (the ViT, one seed: its 16-epoch fits
take twice as long).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from _quality import evaluation as E  # noqa: E402
from _quality import methods as M  # noqa: E402
from _quality.models import TTAMEConfig, get_ttame  # noqa: E402
from _results import add_run_options, finish_run_options, run_header, run_info, write_results  # noqa: E402
from budget import validation_setup  # noqa: E402
from quality import BACKBONES, QUICK_TTAME, TTAME_CONFIGS  # noqa: E402

from ttame_attr.data import CLASS_NAMES  # noqa: E402
from ttame_attr.training import DEAD_MAP_PEAK  # noqa: E402

INITS = ("pytorch", "zeros")
#: The columns of the table: (key, label, format).
COLUMNS = (("fidelity", "fidelity", ".3f"), ("ad_15", "AD15 ↓", ".2f"), ("ic_15", "IC15 ↑", ".2f"),
           ("pointing_game", "PG ↑", ".3f"), ("energy_pointing_game", "energy PG ↑", ".3f"),
           ("road_morf", "ROAD MoRF ↓", ".3f"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=["cnn"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="T-TAME's training seeds")
    p.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS))
    p.add_argument("--name", default="head_init", help="the result files' name (default head_init)")
    add_run_options(p, n_images=400, quick_help="32x32 images, tiny models, one epoch")
    args = p.parse_args(argv)
    finish_run_options(p, args, "head_init", quick_images=16)
    return args


def config(arch: str, init: str, seed: int, quick: bool) -> TTAMEConfig:
    """``quality.py``'s training config of ``arch`` with this initialisation and seed."""
    base = QUICK_TTAME if quick else TTAME_CONFIGS[arch]
    return dataclasses.replace(base, head_init=init, seed=seed)


def score(explainer: Any, pixel_model: torch.nn.Module, evalset: E.EvalSet, seed: int) -> dict[str, Any]:
    """Dead classes, fidelity and the metrics of one head on the validation images (the metrics by
    :func:`_quality.evaluation.evaluate_maps`, as ``quality.py`` and ``budget.py`` compute them)."""
    images, predicted = evalset.images, evalset.predicted
    method = M.TTAMEMethod(explainer)
    maps = E.explain_images(method, images, predicted)  # the sigmoid maps attribute() returns
    with torch.no_grad():
        kept = torch.cat([pixel_model(x * m).argmax(1) for x, m in zip(images.split(100), maps.split(100))])
    peaks = maps.flatten(1).amax(1)
    dead = [int(k) for k in predicted.unique() if peaks[predicted == k].max() < DEAD_MAP_PEAK]
    result = E.evaluate_maps(pixel_model, evalset, maps, deletion_steps=8, seed=seed,
                             adic_maps=method.adic_maps(images, predicted))
    return {"dead_val": dead, "fidelity": float((kept == predicted).float().mean()),
            **{key: result[key] for key, _, _ in COLUMNS if key != "fidelity"}}


def run_backbone(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    model, info, pixel_model, evalset, image_size = validation_setup(arch, args.cache, args.quick,
                                                                     args.n_images)
    rows = []
    for seed in args.seeds:
        for init in args.inits:
            cfg = config(arch, init, seed, args.quick)
            start = time.perf_counter()
            explainer, meta = get_ttame(model, arch, cfg, args.cache, image_size,
                                        read_cache=not args.no_cache)
            history = meta.get("history") or []
            row = {"init": init, "seed": seed, "config": dataclasses.asdict(cfg),
                   "cached": bool(meta["cached"]),
                   "fit_seconds": float(meta.get("train_seconds", time.perf_counter() - start)),
                   "dead_fit": list(history[-1].get("dead_classes", [])) if history else [],
                   **score(explainer, pixel_model, evalset, seed)}
            rows.append(row)
            metrics = ", ".join(f"{label} {row[key]:{fmt}}" for key, label, fmt in COLUMNS)
            print(f"[{arch}] seed {seed} {init:<7}: dead (fit) {names(row['dead_fit'])}, dead (val) "
                  f"{names(row['dead_val'])}; {metrics}; fit {row['fit_seconds']:.0f} s"
                  f"{' (cached)' if row['cached'] else ''}", flush=True)
    facts = {k: info.get(k) for k in ("test_accuracy", "val_accuracy") if k in info}
    return {"classifier": facts, "rows": rows}


def names(classes: list[int]) -> str:
    return ", ".join(CLASS_NAMES[k] if k < len(CLASS_NAMES) else str(k) for k in classes) or "–"


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per initialisation: heads with a dead class, and mean ± sample sd of each column."""
    out: dict[str, dict[str, Any]] = {}
    for init in dict.fromkeys(r["init"] for r in rows):
        mine = [r for r in rows if r["init"] == init]
        dead = sum(bool(r["dead_fit"] or r["dead_val"]) for r in mine)
        entry: dict[str, Any] = {"heads": len(mine), "heads_with_dead_classes": dead}
        for key, _, _ in COLUMNS:
            values = [r[key] for r in mine]
            entry[key] = {"mean": statistics.fmean(values),
                          "sd": statistics.stdev(values) if len(values) > 1 else None}
        out[init] = entry
    return out


def table(result: dict[str, Any]) -> str:
    labels = " | ".join(label for _, label, _ in COLUMNS)
    lines = [f"| init | seed | dead (fit) | dead (val) | {labels} | fit s |",
             "|---|---:|---|---|" + "---:|" * (len(COLUMNS) + 1)]
    for r in result["rows"]:
        cells = " | ".join(f"{r[key]:{fmt}}" for key, _, fmt in COLUMNS)
        lines.append(f"| {r['init']} | {r['seed']} | {names(r['dead_fit'])} | {names(r['dead_val'])} | "
                     f"{cells} | {r['fit_seconds']:.0f}{'*' if r['cached'] else ''} |")
    lines += ["", f"| init | heads with a dead class | {labels} |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for init, s in result["summary"].items():
        cells = " | ".join(f"{s[key]['mean']:{fmt}}"
                           + (f" ± {s[key]['sd']:{fmt}}" if s[key]["sd"] is not None else "")
                           for key, _, fmt in COLUMNS)
        lines.append(f"| {init} | {s['heads_with_dead_classes']} of {s['heads']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    backbones = {arch: run_backbone(arch, args) for arch in args.backbones}
    for result in backbones.values():
        result["summary"] = summary(result["rows"])
    report: dict[str, Any] = {
        "run": run_info("head_init.py", argv),
        "settings": {"seeds": args.seeds, "inits": args.inits, "n_images": args.n_images, "split": "val",
                     "quick": args.quick, "dead_map_peak": DEAD_MAP_PEAK},
        "backbones": backbones,
        "seconds": time.perf_counter() - start,
    }
    text = ("# Dead class maps and the head's initialisation: `benchmarks/head_init.py`\n\n"
            + run_header(report["run"])
            + f"\nScored on {args.n_images} validation images per backbone. A class is dead when its maps "
              f"stay below {DEAD_MAP_PEAK} everywhere: in `fit`'s last epoch (`dead (fit)`) or on the "
              "validation images (`dead (val)`). Means ± sample sd over seeds below each table.\n")
    for arch, result in backbones.items():
        text += f"\n### {arch}\n\n<!-- table: head-init-{arch} -->\n{table(result)}<!-- /table -->\n"
    paths = write_results(args.out, args.name, report, text)
    print(f"\nWrote {', '.join(map(str, paths))} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
