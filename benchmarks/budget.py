"""How many images does a T-TAME head need? Heads fitted on 1k to 16k images, per training setting.

One command::

    python benchmarks/budget.py                      # cnn, vit, swin; 1000..16000 images; every setting
    python benchmarks/budget.py --backbones cnn --sizes 1000 4000 --settings defaults tuned
    python benchmarks/budget.py --quick              # smoke run (tiny models), to a temp dir
    python benchmarks/budget.py --merge runA/ runB/budget.json   # one report from runs made piece by piece

For each backbone (the quality benchmark's classifiers, trained by
:func:`ttame_attr.classifiers.load_or_train` and cached under ``--cache``), each number of
training images and each setting, it fits a T-TAME head (cached there too, by
``_quality.models.get_ttame``: the key holds the whole ``ttame_attr`` source, so a change of
``fit``'s defaults refits the ``defaults`` rows) and scores it on ``--n-images`` images of the
*validation* split, never the test images ``quality.py`` reports, since this study chooses
defaults: AD and IC at 15% (the paper's protocol: T-TAME's pre-sigmoid maps), the strict pointing
game, the energy pointing game (of the sigmoid maps ``attribute`` returns by default, which
``quality.py`` scores, and of the pre-sigmoid maps) and ROAD MoRF (lower is better). It also records
each fit's wall time (a head loaded from the cache keeps the time of the run that fitted it,
marked ``*``).

Settings:

* ``defaults``: ``explainer.fit(loader)`` with nothing but the loader (batch 32): what a user
  gets;
* ``paper``: the paper's values given explicitly (8 epochs, maximum learning rate 1e-3);
* ``tuned``: ``quality.py``'s :data:`TTAME_CONFIGS` (lr 1e-2; 16 epochs for the ViT), chosen on
  the validation split at 8,000 images.

It writes ``budget.json`` (with the run record of ``_results.py``), ``budget.md`` (one table per
backbone) and ``budget.png`` (each metric against the number of images, one line per setting)
into ``--out`` (default ``benchmarks/results/``).

The full study is hours of CPU; it can run piece by piece (a backbone, a setting or a size per
command, side by side on several cores), each piece to its own ``--out``. ``--merge`` then fits and
scores nothing: it combines the rows of those ``budget.json`` files, each as its run scored it, into
one report, after checking that they come from one commit (so every head was fitted by the same
code), one set of library versions and the same scored images (``--n-images``, ``--seed``), and that
no row appears twice. The report lists the runs it was made from. With ``--backbones`` it takes only
those backbones' rows and lists what it left out: to replace one backbone's rows (fitted on a
classifier that is gone, say), merge the others' rows, then merge that report with the new pieces.
With ``--supersede`` a later run's row replaces the same row (backbone, setting, size) of an earlier
run, and the runs may come from several commits: for rows rerun after a change of code that alters
only them (a default of one backbone, say). Every row then records the commit that fitted it, the
report lists the replaced rows under ``left_out``, and ``budget.md`` gives each row's commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
from _quality.models import TTAMEConfig, get_classifier, get_ttame  # noqa: E402
from _results import add_run_options, default_out, finish_run_options, run_header, run_info, write_results  # noqa: E402
from quality import BACKBONES, IMAGE_SIZE, TTAME_CONFIGS  # noqa: E402

from ttame_attr.data import SyntheticShapes, normalize  # noqa: E402
from ttame_attr.metrics import EnergyPointingGame  # noqa: E402

SIZES = (1000, 2000, 4000, 8000, 16000)
SETTINGS = ("defaults", "paper", "tuned")
#: The columns of the tables and panels of the figure: (key, label, higher is better).
COLUMNS = (("ad_15", "AD15", False), ("ic_15", "IC15", True), ("pointing_game", "PG", True),
           ("energy_pointing_game", "energy PG", True),
           ("energy_pg_presigmoid", "energy PG (pre-sigmoid)", True),
           ("road_morf", "ROAD MoRF", False))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=None,
                   help=f"default {' '.join(BACKBONES)}")
    p.add_argument("--sizes", nargs="+", type=int, default=None, help=f"training images (default {SIZES})")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=None,
                   help=f"default {' '.join(SETTINGS)}")
    p.add_argument("--seed", type=int, default=None, help="T-TAME's training seed (default 0)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="RUN",
                   help="fit nothing: combine earlier runs' budget.json files (or the folders holding "
                        "them) into one report in --out; with --backbones, only those backbones' rows")
    p.add_argument("--supersede", action="store_true",
                   help="with --merge: a later run's row replaces the same row of an earlier run, and the "
                        "runs may come from several commits (each row records its own)")
    add_run_options(p, n_images=300, quick_help="32x32 images, tiny models and sizes")
    args = p.parse_args(argv)
    if args.merge is not None:
        given = [f"--{name.replace('_', '-')}" for name in ("sizes", "settings", "seed", "quick", "no_cache")
                 if getattr(args, name)]
        if given:
            p.error(f"--merge takes its rows from the runs it merges, so {', '.join(given)} would be "
                    "ignored; drop them (to merge fewer rows, pass fewer runs, or --backbones to take "
                    "only some backbones' rows)")
        args.out = args.out or default_out(False, "budget")
        return args
    if args.supersede:
        p.error("--supersede only applies to --merge (a later run's rows replace an earlier run's); "
                "add --merge RUN ... or drop --supersede")
    args.backbones = args.backbones or list(BACKBONES)
    args.settings = args.settings or list(SETTINGS)
    args.seed = 0 if args.seed is None else args.seed
    args.sizes = args.sizes or ([64, 128] if args.quick else list(SIZES))
    if min(args.sizes) < 32:
        p.error(f"--sizes: expected at least 32 images (one batch), got {min(args.sizes)}")
    finish_run_options(p, args, "budget", quick_images=8)
    return args


def config(setting: str, arch: str, n_train: int, seed: int, quick: bool) -> TTAMEConfig:
    """The T-TAME training config of one row (``--quick`` keeps every setting to one epoch)."""
    if setting == "defaults":
        cfg = TTAMEConfig(n_train=n_train, epochs=None, lr=None, seed=seed)
    elif setting == "paper":
        cfg = TTAMEConfig(n_train=n_train, epochs=8, lr=1e-3, seed=seed)
    else:
        cfg = dataclasses.replace(TTAME_CONFIGS[arch], n_train=n_train, seed=seed)
    return dataclasses.replace(cfg, epochs=1) if quick and setting != "defaults" else cfg


def score(explainer: Any, pixel_model: torch.nn.Module, evalset: E.EvalSet, seed: int) -> dict[str, Any]:
    """The metrics of one head on the validation images (:func:`_quality.evaluation.evaluate_maps`)."""
    method = M.TTAMEMethod(explainer)
    maps = E.explain_images(method, evalset.images, evalset.predicted)
    adic_maps = method.adic_maps(evalset.images, evalset.predicted)
    result = E.evaluate_maps(pixel_model, evalset, maps, deletion_steps=8, seed=seed, adic_maps=adic_maps)
    # Besides the sigmoid maps attribute() returns (and quality.py scores), the energy pointing game
    # of the pre-sigmoid maps: does the output scale make the maps look diffuse?
    with torch.no_grad():
        raw = torch.cat([explainer.attribute(normalize(x), target=t, scale="raw") for x, t in
                         zip(evalset.images.split(100), evalset.predicted.split(100))])
    result["energy_pg_presigmoid"] = EnergyPointingGame().update(raw, evalset.masks).energy
    return {**{key: result[key] for key, _, _ in COLUMNS}, "ad_15_per_class": result["ad_15_per_class"]}


def worst_class(row: dict[str, Any]) -> str:
    """``"name AD"`` of the row's class with the largest AD 15% (empty for rows scored before it
    was recorded)."""
    per_class = row.get("ad_15_per_class")
    if not per_class:
        return ""
    name = max(per_class, key=lambda k: per_class[k]["ad"])
    return f"{name} {per_class[name]['ad']:.1f}"


def validation_setup(arch: str, cache: Path, quick: bool, n_images: int) -> tuple[Any, ...]:
    """The quality benchmark's classifier of ``arch`` and ``n_images`` images of the validation split:
    ``(model, facts about it, pixel-space model, EvalSet, image size)``."""
    image_size = 32 if quick else IMAGE_SIZE
    model, info = get_classifier(arch, cache, image_size, quick, 0, {})
    pixel_model = M.PixelModel(model).eval()
    data = SyntheticShapes(n_images, image_size=image_size, seed=0, split="val")
    return model, info, pixel_model, E.make_eval_set(pixel_model, data, n_images), image_size


def run_backbone(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    model, info, pixel_model, evalset, image_size = validation_setup(arch, args.cache, args.quick,
                                                                     args.n_images)
    rows = []
    for setting in args.settings:
        for n in args.sizes:
            cfg = config(setting, arch, n, args.seed, args.quick)
            start = time.perf_counter()
            explainer, meta = get_ttame(model, arch, cfg, args.cache, image_size,
                                        read_cache=not args.no_cache)
            wall = time.perf_counter() - start
            history = meta.get("history") or []
            row = {"setting": setting, "n_train": n, "config": dataclasses.asdict(cfg),
                   "cached": bool(meta["cached"]), "fit_seconds": float(meta.get("train_seconds", wall)),
                   "epochs_run": len(history), "schedule": meta.get("schedule"),
                   "final": history[-1] if history else None,
                   **score(explainer, pixel_model, evalset, args.seed)}
            rows.append(row)
            print(f"[{arch}] {setting:<8} {n:>6} images: fit {row['fit_seconds']:6.0f} s"
                  f"{' (cached)' if row['cached'] else ''}; "
                  + ", ".join(f"{label} {row[key]:.3f}" for key, label, _ in COLUMNS), flush=True)
    return {"classifier": {k: info.get(k) for k in ("test_accuracy", "val_accuracy") if k in info},
            "rows": rows}


def table(result: dict[str, Any], commits: bool = False) -> str:
    """One backbone's rows as a markdown table; ``commits``: with a column of each row's commit."""
    head = ("| setting | images | " + " | ".join(label for _, label, _ in COLUMNS)
            + " | fit s | worst class AD15 |" + (" commit |" if commits else ""))
    lines = [head, "|---|---:|" + "---:|" * (len(COLUMNS) + 1) + "---|" + ("---|" if commits else "")]
    for r in result["rows"]:
        cells = " | ".join(f"{r[key]:.3f}" if key != "ad_15" and key != "ic_15" else f"{r[key]:.2f}"
                           for key, _, _ in COLUMNS)
        lines.append(f"| {r['setting']} | {r['n_train']} | {cells} | "
                     f"{r['fit_seconds']:.0f}{'*' if r['cached'] else ''} | {worst_class(r)} |"
                     + (f" {(r.get('commit') or 'unknown')[:12]} |" if commits else ""))
    return "\n".join(lines) + "\n"


def figure(path: Path, backbones: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(backbones), len(COLUMNS), figsize=(3.2 * len(COLUMNS), 2.6 * len(backbones)),
                             squeeze=False)
    for r, (arch, result) in enumerate(backbones.items()):
        for c, (key, label, higher) in enumerate(COLUMNS):
            ax = axes[r, c]
            for setting in dict.fromkeys(row["setting"] for row in result["rows"]):
                pts = sorted((row["n_train"], row[key]) for row in result["rows"]
                             if row["setting"] == setting)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=setting)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{arch}: {label} ({'higher' if higher else 'lower'} is better)", fontsize=8)
            ax.set_xlabel("training images", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load_run(path: Path) -> tuple[Path, dict[str, Any]]:
    file = path / "budget.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"--merge: expected a budget.json file or a folder holding one, got {path} "
                         f"(no file {file}); pass the --out folder of a budget.py run")
    try:
        report = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--merge: {file} is not valid JSON ({err}); pass a budget.json that budget.py "
                         "wrote") from None
    missing = [key for key in ("run", "settings", "backbones") if key not in report]
    if missing:
        raise ValueError(f"--merge: {file} has no {', '.join(missing)}: expected a budget.json that "
                         "budget.py wrote")
    return file, report


def _fitted(report: dict[str, Any]) -> dict[str, Any]:
    """The commit and library versions that fitted a report's heads: its run's, or for a merged
    report its pieces', kept as ``fitted`` (the merge itself may run elsewhere)."""
    return report.get("fitted") or {"commit": report["run"]["git"]["commit"],
                                    "versions": report["run"]["versions"]}


def _piece_backbones(piece: dict[str, Any]) -> set[str] | None:
    """The backbones a piece of a merged report scored: its record, else the ``--backbones`` of its
    command; ``None`` when neither says (a run of every backbone)."""
    if piece.get("backbones") is not None:
        return set(piece["backbones"])
    words = piece.get("command", "").split()
    if "--backbones" not in words:
        return None
    named = set()
    for word in words[words.index("--backbones") + 1:]:
        if word.startswith("--"):
            break
        named.add(word)
    return named


def merge_runs(paths: list[Path], argv: list[str] | None, only: list[str] | None = None,
               supersede: bool = False) -> dict[str, Any]:
    """One report from the ``budget.json`` of several runs (see the module's docstring): every row
    as its run scored it, with the commit that fitted it, in the order setting, then size; raises
    :class:`ValueError` when the runs cannot be compared (commit, library versions, scored images)
    or share a row. A merged report can be merged again: its pieces are listed in its place.
    ``only``: take only these backbones' rows (the others are listed under ``left_out``, and pieces
    that scored none of ``only`` are dropped from ``merged_from``). ``supersede``: a later run's
    row replaces an earlier run's (listed under ``left_out``), and the commits may differ."""
    runs = [_load_run(path) for path in paths]
    first_file, first = runs[0]

    def same(what: str, get: Any) -> None:
        for file, report in runs[1:]:
            if get(report) != get(first):
                raise ValueError(f"--merge: {file} and {first_file} differ in {what} ({get(report)!r} vs "
                                 f"{get(first)!r}); merge only runs of one commit on the same images")

    if not supersede:
        same("commit", lambda r: _fitted(r)["commit"])
    same("library versions", lambda r: _fitted(r)["versions"])
    for key in ("n_images", "split", "seed", "quick", "tuned"):
        same(f"settings[{key!r}]", lambda r, key=key: r["settings"].get(key))
    dirty = [str(file) for file, report in runs
             if "fitted" not in report and report["run"]["git"].get("dirty")]
    if dirty:
        raise ValueError(f"--merge: {', '.join(dirty)} came from a dirty working tree, so its heads were "
                         "not fitted by a known commit; rerun those pieces from a clean checkout")
    backbones: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str, int], Path] = {}
    left_out: list[dict[str, Any]] = [entry for _, report in runs for entry in report.get("left_out") or []]
    replaced: dict[str, list[str]] = {}
    for file, report in runs:
        dropped = sorted(arch for arch in report["backbones"] if only is not None and arch not in only)
        if dropped:
            left_out.append({"file": str(file), "backbones": dropped})
        commit = _fitted(report)["commit"]
        for arch, result in report["backbones"].items():
            if arch in dropped:
                continue
            merged = backbones.setdefault(arch, {"classifier": result["classifier"], "rows": []})
            if merged["classifier"] != result["classifier"]:
                raise ValueError(f"--merge: {file} has another {arch} classifier ({result['classifier']}) "
                                 f"than the runs before it ({merged['classifier']})")
            for row in result["rows"]:
                key = (arch, row["setting"], row["n_train"])
                row = {**row, "commit": row.get("commit") or commit}
                if key in seen:
                    if not supersede:
                        raise ValueError(f"--merge: {file} and {seen[key]} both hold the {arch} row "
                                         f"{row['setting']} / {row['n_train']} images; pass only one of "
                                         "them, or --supersede to let the later run's row replace it")
                    label = f"{arch} {row['setting']} {row['n_train']}"
                    replaced.setdefault(str(seen[key]), []).append(label)
                    merged["rows"] = [r for r in merged["rows"]
                                      if (r["setting"], r["n_train"]) != key[1:]]
                seen[key] = file
                merged["rows"].append(row)
    if not backbones:
        raise ValueError(f"--merge: no rows of --backbones {' '.join(only or [])} in these runs")
    for result in backbones.values():
        result["rows"].sort(key=lambda r: (SETTINGS.index(r["setting"]), r["n_train"]))
    order = [a for a in BACKBONES if a in backbones] + [a for a in backbones if a not in BACKBONES]
    settings = dict(first["settings"])
    settings["sizes"] = sorted({row["n_train"] for r in backbones.values() for row in r["rows"]})
    settings["settings"] = [s for s in SETTINGS if any(row["setting"] == s for r in backbones.values()
                                                       for row in r["rows"])]
    pieces = [piece for file, report in runs for piece in report.get("merged_from") or [
        {"file": str(file), "command": report["run"]["command"], "date": report["run"]["date"],
         "commit": report["run"]["git"]["commit"], "seconds": report.get("seconds"),
         "backbones": list(report["backbones"])}]]
    pieces = [piece for piece in pieces
              if (named := _piece_backbones(piece)) is None or named & set(backbones)]
    left_out += [{"file": file, "rows": rows} for file, rows in replaced.items()]
    commits = list(dict.fromkeys(row["commit"] for r in backbones.values() for row in r["rows"]))
    return {
        "run": run_info("budget.py", argv),
        "settings": settings,
        "fitted": {"commit": commits[0] if len(commits) == 1 else None, "commits": commits,
                   "versions": _fitted(first)["versions"]},
        "merged_from": pieces,
        **({"left_out": left_out} if left_out else {}),
        "backbones": {arch: backbones[arch] for arch in order},
    }


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """``budget.json``, ``budget.md`` and ``budget.png`` of ``report`` into ``out``."""
    settings = report["settings"]
    text = ("# How many images does a T-TAME head need: `benchmarks/budget.py`\n\n"
            + run_header(report["run"]))
    commits = (report.get("fitted") or {}).get("commits") or []
    if report.get("merged_from"):
        pieces = report["merged_from"]
        of = (f"commit {(pieces[0]['commit'] or 'unknown')[:12]}" if len(commits) < 2 else
              f"commits {', '.join(c[:12] for c in commits)} (each row's in its table)")
        text += (f"\nMerged from {len(pieces)} runs of {of}, every row as its run scored it:\n\n"
                 + "".join(f"- `{piece['command']}` ({piece['date']})\n" for piece in pieces))
    for entry in report.get("left_out") or []:
        if "rows" in entry:
            text += (f"\nLeft out, replaced by a later run's: the rows {', '.join(entry['rows'])} of "
                     f"`{entry['file']}`.\n")
        else:
            text += f"\nLeft out: the {', '.join(entry['backbones'])} rows of `{entry['file']}`.\n"
    text += (f"\nScored on {settings['n_images']} validation images per backbone; AD15 and ROAD MoRF: lower "
             "is better. `fit s`: wall time of the fit (`*`: head from the cache, time of the run that "
             "fitted it).\n")
    for arch, result in report["backbones"].items():
        text += (f"\n### {arch}\n\n<!-- table: budget-{arch} -->\n{table(result, len(commits) > 1)}"
                 "<!-- /table -->\n")
    paths = write_results(out, "budget", report, text)
    figure(out / "budget.png", report["backbones"])
    return [*paths, out / "budget.png"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.merge is not None:
        try:
            report = merge_runs(args.merge, argv, args.backbones, args.supersede)
        except ValueError as err:
            print(f"budget.py: error: {err}", file=sys.stderr)
            return 2
    else:
        report = {
            "run": run_info("budget.py", argv),
            "settings": {"sizes": args.sizes, "settings": args.settings, "n_images": args.n_images,
                         "split": "val", "seed": args.seed, "quick": args.quick,
                         "tuned": {a: dataclasses.asdict(c) for a, c in TTAME_CONFIGS.items()}},
            "backbones": {arch: run_backbone(arch, args) for arch in args.backbones},
        }
    report["seconds"] = time.perf_counter() - start
    paths = write_report(report, args.out)
    print(f"\nWrote {', '.join(map(str, paths))} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
