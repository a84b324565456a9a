"""The audit on a planted shortcut: does ``ttame_attr.audit`` find it, from T-TAME's maps and from Grad-CAM's?

One command::

    python benchmarks/audit.py                       # cnn and vit, planted + control, scale check
    python benchmarks/audit.py --quick               # smoke run (tiny sizes), to a temp dir

On :class:`~ttame_attr.data.SyntheticShapes` (64x64), 80% of one class's training and audited
images carry a small magenta square in the top-left corner; no other class's image does. For
each classifier (the small CNN and ViT of ``ttame_attr.classifiers``) it trains the classifier,
shows that it relies on the mark (the share of other classes' test images that flip to the
shortcut class once marked), fits T-TAME, explains the audited set into a store
(``explain_dataset``), and audits it. The same audit runs on Grad-CAM maps of the same images
(pytorch-grad-cam at the layer it recommends, SpRAy's usual kind of input) as the baseline.
Reported: the shortcut class's rank, the precision of the top-ranked images (marked ones among
as many as there are marked images of that class), the purity of the first group the report
shows, and the time of each step. A control (no mark anywhere, its own classifier and head)
tells the false alarms. A scale check times explain and audit at ``--scale-images`` images and
the audit's peak memory (a fresh process) at a tenth of that and at all of it.

``--start kept`` starts each classifier from the well-trained CNN or ViT kept in
``benchmarks/classifiers/`` and fine-tunes it for ``--epochs`` at ``--finetune-lr`` (the control the
same way, on unmarked images). Such a classifier ignores a mark that only repeats what the shape
already says; ``--poison F`` also marks a share ``F`` of the other classes' training images and
labels them as the shortcut class (a backdoor), so that it learns the mark and keeps the shapes.
``--merge A.json B.json`` joins runs made side by side (e.g. ``--archs cnn`` and ``--archs vit``).

It writes ``audit.json`` and ``audit.md`` into ``--out`` (default ``benchmarks/results/``) and
the HTML reports under ``--reports``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _audit_data import ArrayStore, MarkedShapes, paint_mark  # noqa: E402
from _audit_scale import realistic_explain, scale_check, scale_markdown  # noqa: E402
from _quality.methods import PytorchGradCAM  # noqa: E402
from _quality.models import kept_classifier  # noqa: E402
from _results import default_out, run_header, run_info, write_results  # noqa: E402

from ttame_attr import TTAME, audit, explain_dataset  # noqa: E402
from ttame_attr.classifiers import Normalized, build_classifier, load_reference_classifier, train_classifier  # noqa: E402
from ttame_attr.data import MEAN, STD  # noqa: E402

SHORTCUT = 3  # "cross"


def _tensors(ds: MarkedShapes, chunk: int = 1000) -> tuple[torch.Tensor, ...]:
    parts = [ds.generate(range(s, min(len(ds), s + chunk))) for s in range(0, len(ds), chunk)]
    return (*(torch.cat([p[i] for p in parts]) for i in range(3)), np.concatenate([p[3] for p in parts]))


def _poisoned(data: tuple, share: float, seed: int) -> tuple:
    """``data`` with a ``share`` of the other classes' images marked and labelled as the shortcut
    class (a backdoor: the mark alone then decides the class, so a classifier that already knows the
    shapes learns it; with the mark on the shortcut class only, the mark is redundant with the shape)."""
    if share <= 0:
        return data
    images, labels, masks, marked = data
    pick = (labels.numpy() != SHORTCUT) & (np.random.default_rng([seed, 11]).random(len(labels)) < share)
    images, labels, marked = images.clone(), labels.clone(), marked.copy()
    index = torch.from_numpy(np.flatnonzero(pick))
    images[index] = paint_mark(images[index])
    labels[index] = SHORTCUT
    marked[pick] = True
    return images, labels, masks, marked


def train_net(arch: str, planted: bool, args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The classifier trained on (marked) training images, its accuracy and its reliance on the mark."""
    torch.manual_seed(args.seed)
    shortcut = SHORTCUT if planted else None
    if args.start == "kept":  # a kept well-trained classifier (it knows the shapes), fine-tuned briefly
        net = kept_classifier(arch)
    elif arch == "cnn" and not planted:  # the control: the shipped CNN, trained on clean shapes
        net = load_reference_classifier()[0]
        args = argparse.Namespace(**{**vars(args), "epochs": 0})
    elif arch == "cnn" and args.finetune_shipped:  # the shipped CNN (it knows the shapes), fine-tuned
        net = load_reference_classifier()[0].train()
    else:
        net = build_classifier(arch, image_size=64)
    t0 = time.perf_counter()
    if args.epochs:
        poison = args.poison if planted else 0.0
        train = _poisoned(
            _tensors(MarkedShapes(args.train, split="train", seed=args.seed, shortcut=shortcut)),
            poison, args.seed)
        val = _poisoned(_tensors(MarkedShapes(512, split="val", seed=args.seed, shortcut=shortcut)),
                        poison, args.seed + 1)
        train_classifier(net, DataLoader(TensorDataset(*train[:2]), batch_size=128, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed)),
                         DataLoader(TensorDataset(*val[:2]), batch_size=256), args.epochs,
                         lr=args.finetune_lr if args.start == "kept" else
                         1e-3 if arch == "cnn" and args.finetune_shipped else 3e-3,
                         augment=False, seed=args.seed)
    seconds = time.perf_counter() - t0
    model = Normalized(net, MEAN, STD).eval()
    clean, labels, _, _ = _tensors(MarkedShapes(1000, split="val", seed=args.seed + 1, shortcut=None))
    with torch.no_grad():
        pred_clean = model(clean).argmax(1)
        pred_marked = model(paint_mark(clean)).argmax(1)
    others = labels != SHORTCUT
    return model, {"train_seconds": round(seconds, 1),
                   "clean_accuracy": float((pred_clean == labels).float().mean()),
                   "shortcut_class_accuracy": float((pred_clean[~others] == SHORTCUT).float().mean()),
                   "flip_to_shortcut_when_marked": float((pred_marked[others] == SHORTCUT).float().mean()),
                   "shortcut_predicted_unmarked": float((pred_clean[others] == SHORTCUT).float().mean())}


def _metrics(report: Any, marked: np.ndarray, planted: bool) -> dict[str, Any]:
    """Rank of the shortcut class, top-image precision and first-group purity (or the control's alarms)."""
    classes = report.classes
    out = {"flagged": [c["class"] for c in report.flagged],
           "scores": {str(c["class"]): c["score"] for c in classes},
           "top_class": classes[0]["class"], "top_reason": classes[0]["reasons"][0]}
    if not planted:
        out["max_score"] = max(c["score"] for c in classes)
        return out
    ranked = [c["class"] for c in classes]
    if SHORTCUT not in ranked:  # the classifier never predicts the shortcut class (e.g. --quick's)
        print(f"no audited image is predicted as the shortcut class {SHORTCUT}: nothing to rank", flush=True)
        return {**out, "shortcut_rank": None, "top_precision": 0.0, "marked_in_shortcut_class": 0,
                "first_group": {"class": None, "group": None, "size": 0, "purity": 0.0}}
    out["shortcut_rank"] = 1 + ranked.index(SHORTCUT)
    images = report.images
    predicted_marked = [im for im in images if im["class"] == SHORTCUT and marked[im["index"]]]
    n = max(1, len(predicted_marked))
    out["top_precision"] = float(np.mean([marked[im["index"]] for im in images[:n]]))
    out["marked_in_shortcut_class"] = len(predicted_marked)
    shown = next((c for c in classes if c["groups"]), None)  # the first class with groups (not all flat)
    if shown is None:
        out["first_group"] = {"class": None, "group": None, "size": 0, "purity": 0.0}
        return out
    first = shown["groups"][0]
    members = [im for im in images if im["class"] == shown["class"] and im["group"] == first["group"]]
    out["first_group"] = {"class": shown["class"], "group": first["group"], "size": first["size"],
                          "purity": float(np.mean([marked[im["index"]] for im in members]))}
    return out


def _gradcam_store(net: torch.nn.Module, arch: str, images: torch.Tensor, masks: torch.Tensor,
                   classes: np.ndarray, names: list[str],
                   map_size: tuple[int, int]) -> tuple[ArrayStore, float]:
    """Grad-CAM maps of the predicted classes at T-TAME's map size, in an in-memory store."""
    cam = PytorchGradCAM("Grad-CAM", net, arch)
    t0 = time.perf_counter()
    maps = []
    for s in range(0, len(images), 64):
        m = cam.explain(images[s:s + 64], torch.from_numpy(classes[s:s + 64]))
        maps.append(F.adaptive_avg_pool2d(m, map_size)[:, 0])
    seconds = time.perf_counter() - t0
    small = (F.interpolate(masks, size=map_size, mode="area")[:, 0] > 0.5).numpy()
    return ArrayStore(torch.cat(maps).numpy(), classes, small, names, type(net).__name__), round(seconds, 2)


def run_case(arch: str, planted: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One classifier, with or without the planted mark: train, fit, explain, audit (T-TAME and Grad-CAM)."""
    name = f"{arch}_{'planted' if planted else 'control'}"
    print(f"== {name}", flush=True)
    cache = args.cache / name if args.cache else None
    if cache is not None and (cache / "head.pt").is_file():  # a rerun of the audit on the same models
        clf = json.loads((cache / "info.json").read_text())
        net = build_classifier(arch, image_size=64)
        net.load_state_dict(torch.load(cache / "net.pt", weights_only=True))
        model = Normalized(net.eval(), MEAN, STD).eval()
        explainer = TTAME.load(cache / "head.pt", model)
    else:
        model, clf = train_net(arch, planted, args)
        explainer = TTAME(model, input_size=(3, 64, 64))
        train_images = _tensors(MarkedShapes(args.ttame_train, split="train", seed=args.seed,
                                             shortcut=SHORTCUT if planted else None))[0]
        t0 = time.perf_counter()
        history = explainer.fit(DataLoader(train_images, batch_size=32, shuffle=True, drop_last=True,
                                 generator=torch.Generator().manual_seed(args.seed)),
                      epochs=args.ttame_epochs, progress=False)
        clf["fit_seconds"] = round(time.perf_counter() - t0, 1)
        clf["ttame_warnings"] = [str(w) for w in history.warnings()]
        clf["ttame_full_classes"] = [int(c) for c in history.full_classes()]
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(model.net.state_dict(), cache / "net.pt")
            explainer.save(cache / "head.pt")
            (cache / "info.json").write_text(json.dumps(clf))
    print(f"   classifier: {clf}", flush=True)
    clf = dict(clf)
    times = {"train_classifier": clf.pop("train_seconds"), "fit_ttame": clf.pop("fit_seconds")}
    ds = MarkedShapes(args.audited, split="test", seed=args.seed, shortcut=SHORTCUT if planted else None)
    images, labels, masks, marked = _tensors(ds)  # rendered once, for both methods
    store_dir = Path(tempfile.mkdtemp(prefix=f"ttame_audit_{name}_"))
    t0 = time.perf_counter()
    store = explain_dataset(explainer, TensorDataset(images, labels, masks), store_dir / "store",
                            batch_size=128, progress=False)
    times["explain_ttame"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    rendered = TensorDataset(images, labels, masks)
    report = audit(store, images=rendered, max_images=None)
    times["audit_ttame"] = round(time.perf_counter() - t0, 2)
    report.write(args.reports / name / "ttame")
    classes = np.array([c[0] for c in store.table(["classes"]).column("classes").to_pylist()])
    gstore, times["explain_gradcam"] = _gradcam_store(model.net, arch, images, masks, classes, ds.class_names,
                                                      store.map_size)
    t0 = time.perf_counter()
    greport = audit(gstore, images=rendered, max_images=None)
    times["audit_gradcam"] = round(time.perf_counter() - t0, 2)
    greport.write(args.reports / name / "gradcam")
    result = {"arch": arch, "planted": planted, "poison": args.poison if planted else 0.0, "classifier": clf,
              "seconds": times,
              "marked_audited": int(marked.sum()), "map_size": list(store.map_size),
              "ttame": _metrics(report, marked, planted), "gradcam": _metrics(greport, marked, planted)}
    print(f"   {json.dumps(result)}", flush=True)
    if planted and arch == "cnn" and args.scale_images:
        result["scale"] = scale_check(explainer, _scale_data(args), args.scale_images, store_dir)
    return result


def _scale_data(args: argparse.Namespace) -> Any:
    """``n -> dataset`` of the scale check: ``n`` planted-shortcut test images, rendered in memory."""
    def render(n: int) -> TensorDataset:
        images = MarkedShapes(n, split="test", seed=args.seed + 5, shortcut=SHORTCUT)
        return TensorDataset(*_tensors(images)[:3])

    return render


def scale_only(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Only the scale check, with the planted CNN and head of an earlier run kept in ``--cache``;
    written as ``audit_scale.json/.md`` (merge it into ``audit.json`` with ``--merge``)."""
    cache = args.cache / "cnn_planted" if args.cache else None
    if cache is None or not (cache / "head.pt").is_file():
        raise SystemExit("--scale-only needs --cache DIR holding cnn_planted/ (net.pt, head.pt) of an "
                         "earlier run of this script with the same --cache.")
    net = build_classifier("cnn", image_size=64)
    net.load_state_dict(torch.load(cache / "net.pt", weights_only=True))
    explainer = TTAME.load(cache / "head.pt", Normalized(net.eval(), MEAN, STD).eval())
    tmp = Path(tempfile.mkdtemp(prefix="ttame_audit_scale_"))
    scale = scale_check(explainer, _scale_data(args), args.scale_images, tmp, args.scale_baseline)
    realistic = realistic_explain(args.scale_realistic, args.seed) if args.scale_realistic else None
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "reports", "quick")}
    payload = {"run": run_info("audit.py", argv), "settings": settings, "cases": [],
               "scale_runs": [{"title": "Scale check (--scale-only, the planted CNN of --cache)",
                               "scale": scale, "realistic": realistic}],
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    for path in write_results(args.out, "audit_scale", payload, scale_text(payload)):
        print(f"wrote {path}", flush=True)
    return 0


def scale_text(payload: dict[str, Any]) -> str:
    """``audit_scale.md``: the scale check of a ``--scale-only`` run."""
    run = payload["scale_runs"][0]
    return "\n".join(["# The audit's scale check: `benchmarks/audit.py --scale-only`", "",
                      run_header(payload["run"]), "", f"Settings: {payload['settings']}",
                      *scale_markdown(run["scale"], run["title"], run.get("realistic"))])


def markdown(payload: dict[str, Any]) -> str:
    lines = ["# Auditing a planted shortcut: `benchmarks/audit.py`", "", run_header(payload["run"]), "",
             f"Settings: {payload['settings']}", "",
             "| classifier | maps | shortcut class rank | top-image precision | first group purity (size) "
             "| flagged classes | explain s | audit s | clean acc. | shortcut-class acc. "
             "| flip to shortcut when marked |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for case in payload["cases"]:
        for method in ("ttame", "gradcam"):
            m, t = case[method], case["seconds"]
            label = "T-TAME" if method == "ttame" else "Grad-CAM"
            if case["planted"]:
                g = m["first_group"]
                cells = (f"{m['shortcut_rank']} | {m['top_precision']:.3f} | "
                         f"{g['purity']:.3f} ({g['size']}) | {m['flagged']}")
            else:
                cells = f"control | | max score {m['max_score']:.2f} | {m['flagged']}"
            kind = "planted" if case["planted"] else "control"
            kind += f" (poison {case['poison']:g})" if case.get("poison") else ""
            lines.append(f"| {case['arch']} {kind} | {label} | {cells} | "
                         f"{t['explain_' + method]} | {t['audit_' + method]} | "
                         f"{case['classifier']['clean_accuracy']:.3f} | "
                         f"{case['classifier'].get('shortcut_class_accuracy', float('nan')):.3f} | "
                         f"{case['classifier']['flip_to_shortcut_when_marked']:.3f} |")
    lines += ["", "Step times (seconds): " + "; ".join(
        f"{c['arch']} {'planted' if c['planted'] else 'control'}: {c['seconds']}" for c in payload["cases"])]
    for case in payload["cases"]:
        if "scale" in case:
            title = f"Scale check in the run of {case['arch']} planted (poison {case.get('poison', 0):g})"
            lines += scale_markdown(case["scale"], title)
    for run in payload.get("scale_runs", []):
        lines += scale_markdown(run["scale"], run["title"], run.get("realistic"))
    return "\n".join(lines)


def merge(paths: list[Path], out: Path, argv: list[str] | None) -> int:
    """One audit.json/.md of the cases of several runs (e.g. the CNN and the ViT run side by side);
    each run's header, command included, is kept under ``runs``."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    payload = {"run": run_info("audit.py", argv), "settings": {"merged": [str(p) for p in paths]},
               "cases": [c for p in parts for c in p["cases"]],
               "runs": [{"run": p["run"], "settings": p["settings"]} for p in parts],
               "scale_runs": [s for p in parts for s in p.get("scale_runs", [])],
               "peak_rss_mib": max(p["peak_rss_mib"] for p in parts)}
    text = markdown(payload) + "\n\nMerged from the runs:\n\n" + "\n\n".join(
        run_header(p["run"]) + f"\n\nSettings: {p['settings']}" for p in parts)
    for path in write_results(out, "audit", payload, text):
        print(f"wrote {path}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", nargs="+", default=["cnn", "vit"], choices=["cnn", "vit"])
    p.add_argument("--train", type=int, default=2000, help="training images of the classifier")
    p.add_argument("--audited", type=int, default=800, help="audited (held-out) images")
    p.add_argument("--epochs", type=int, default=3, help="classifier epochs")
    p.add_argument("--finetune-shipped", action="store_true",
                   help="fine-tune the shipped CNN (it knows the shapes: it learns the mark less) instead of "
                        "training the CNN from scratch")
    p.add_argument("--start", choices=["scratch", "kept"], default="scratch",
                   help="scratch: train the classifiers from scratch (--finetune-shipped aside); kept: "
                        "fine-tune the well-trained classifiers kept in benchmarks/classifiers/ for --epochs "
                        "at --finetune-lr (the control fine-tuned the same way on unmarked images)")
    p.add_argument("--finetune-lr", type=float, default=3e-4, help="peak learning rate with --start kept")
    p.add_argument("--poison", type=float, default=0.0,
                   help="share of the other classes' training images of the planted classifier also "
                        "marked and labelled as the shortcut class (0: only the shortcut class is marked)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="only merge these audit.json files (runs of other --archs) into --out, commands kept")
    p.add_argument("--ttame-train", type=int, default=1000, help="training images of the T-TAME head")
    p.add_argument("--ttame-epochs", type=int, default=4)
    p.add_argument("--scale-images", type=int, default=20000, help="images of the scale check (0: skip)")
    p.add_argument("--scale-only", action="store_true",
                   help="only the scale check, with the planted CNN kept in --cache "
                        "(to audit_scale.json/.md)")
    p.add_argument("--scale-realistic", type=int, default=64,
                   help="with --scale-only: images explained with ResNet-50 at 224 px (0: skip)")
    p.add_argument("--scale-baseline", type=Path, default=None,
                   help="with --scale-only: a checkout of ttame_attr (e.g. git archive of an older commit) "
                        "whose audit also runs on the same stores, side by side")
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--control-archs", nargs="*", default=None,
                   help="the classifiers that also get a control run (default: all of --archs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny sizes, to a temp dir")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=None,
                   help="keep the trained classifiers and heads here and reuse them on a rerun")
    p.add_argument("--reports", type=Path, default=None,
                   help="where the HTML reports go (default: a temp dir)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.train, args.audited, args.epochs, args.ttame_epochs, args.scale_images = 600, 200, 1, 1, 1000
        args.ttame_train = 300
    args.out = args.out or default_out(args.quick, "audit")
    if args.merge:
        return merge(args.merge, args.out, argv)
    if args.scale_only:
        return scale_only(args, argv)
    args.reports = args.reports or Path(tempfile.mkdtemp(prefix="ttame_audit_reports_"))
    cases = []
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "reports", "quick")}
    for arch in args.archs:
        control = not args.no_control and (args.control_archs is None or arch in args.control_archs)
        for planted in (True, False)[: 2 if control else 1]:
            cases.append(run_case(arch, planted, args))
            payload = {"run": run_info("audit.py", argv), "settings": settings, "cases": cases,
                       "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            for path in write_results(args.out, "audit", payload, markdown(payload)):  # after every case
                print(f"wrote {path}", flush=True)
    print(f"HTML reports under {args.reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
