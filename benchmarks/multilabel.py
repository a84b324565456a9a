"""Multi-label benchmark: T-TAME against Grad-CAM, Score-CAM and RISE on MultiShapes (issue 31).

One command::

    python benchmarks/multilabel.py                       # cnn and vit, seeds 0 1 2 (the committed run)
    python benchmarks/multilabel.py --quick               # smoke run: 32x32, tiny training, to a temp dir
    python benchmarks/multilabel.py --methods gradcam rise --seeds 0   # a subset

Per backbone and seed: a classifier of :class:`~ttame_attr.data.MultiShapes` (two or three class
shapes per image) is trained with binary cross-entropy by the small loop below (AdamW, one-cycle,
flips; not the package's classifier trainer, which is a softmax trainer). By default
(``--start kept``) it is the softmax classifier of the same backbone kept in
``benchmarks/classifiers/`` (64x64, trained on one shape per image), fine-tuned for 4 epochs on
6,000 multi-label images, as users fine-tune a pretrained model; the seed changes the
fine-tuning images and order, T-TAME's training and the evaluated images. ``--start scratch``
trains from random weights (at 32x32 the resulting classifiers were weak, see
``results/multilabel_scratch32.md``). Then every method
explains every ``(image, label)`` pair of ``--n-images`` validation images and is scored on

* the pointing game and the energy pointing game per label: each ground-truth object against
  the map of its own class (:func:`ttame_attr.metrics.pointing_game_per_label` and
  :func:`~ttame_attr.metrics.energy_pointing_game_per_label` define them; they are computed here
  on the pairs' maps directly, which is the same);
* AD / IC at 15% (and 100%, 50%) with sigmoid probabilities (``multi_label=True``) over every
  label the classifier predicts positive (sigmoid > 0.5; the top-1 when none is), masking in
  pixel space (removed pixels black) for every method.

Methods: T-TAME (``TTAME(model, multi_label=True)``, fitted on the training images; AD/IC reads
its pre-sigmoid maps at map size as in ``quality.py``), Grad-CAM and Score-CAM from
pytorch-grad-cam with ``ClassifierOutputTarget(k)`` on the label's logit (for ``K > 1`` outputs
this is the per-label binary target; ``BinaryClassifierOutputTarget`` is for one-logit models),
and RISE with the label's sigmoid probability as the mask score. ``--methods objects`` adds a
reference row, "Object masks": each pair explained by the ground-truth mask of its own object,
what a map that finds exactly the object scores (:class:`ObjectMasks`).

It writes ``multilabel.json`` (with the run record of ``_results.py``) and ``multilabel.md`` into
``--out`` (default ``benchmarks/results/``): mean and standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _quality.methods import RISE, Explainer, PixelModel, PytorchGradCAM, TTAMEMethod  # noqa: E402
from _quality.models import kept_classifier  # noqa: E402
from _results import add_run_options, finish_run_options, run_header, run_info, write_results  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ttame_attr import positive_labels  # noqa: E402
from ttame_attr.classifiers import build_classifier  # noqa: E402
from ttame_attr.data import MEAN, STD, MultiShapes, normalize  # noqa: E402
from ttame_attr.metrics import average_drop_increase, energy_pointing_game, pointing_game  # noqa: E402

BACKBONES = ("cnn", "vit")
METHODS = ("ttame", "gradcam", "scorecam", "rise", "objects")
FRACTIONS = (1.0, 0.5, 0.15)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=6000, help="classifier training images")
    p.add_argument("--epochs", type=int, default=4, help="classifier epochs (12 suits --start scratch)")
    p.add_argument("--lr", type=float, default=2e-3, help="classifier peak learning rate (AdamW, one-cycle)")
    p.add_argument("--start", choices=["scratch", "kept"], default="kept",
                   help="scratch: train each classifier from scratch; kept: fine-tune the softmax classifier "
                        "of the same backbone kept in benchmarks/classifiers/ (64 px, it knows the shapes) "
                        "with binary cross-entropy, at --finetune-lr")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="peak learning rate with --start kept")
    p.add_argument("--n-ttame", type=int, default=4000, help="T-TAME training images")
    p.add_argument("--ttame-epochs", type=int, default=8,
                   help="8 (1,000 steps of 32 images, a quarter of fit's recipe or less); 0: fit's recipe")
    p.add_argument("--ttame-layers", nargs="+", default=None, metavar="LAYER",
                   help="T-TAME's layers (default: the adapter's, the paper's); the row is then named "
                        "--ttame-name")
    p.add_argument("--ttame-name", default=None,
                   help="the T-TAME row's name (default 'T-TAME'; 'T-TAME (custom layers)' with "
                        "--ttame-layers)")
    p.add_argument("--mask-space", choices=["auto", "input", "pixel"], default="auto",
                   help="T-TAME's mask_space (auto, the paper's: pixel for the CNN, input for the ViT)")
    p.add_argument("--rise-masks", type=int, default=1000)
    p.add_argument("--fill", choices=["black", "mean"], default="black",
                   help="colour of the pixels AD/IC and RISE remove: black (the paper's protocol) or the "
                        "normalisation's mean colour (0 in the normalised input, where T-TAME masks ViTs)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="instead of running: merge the cells of earlier runs' multilabel.json files "
                        "(e.g. one process per backbone) into one table, listing each run's command")
    add_run_options(p, n_images=100, quick_help="32x32 images, tiny training, RISE with 100 masks")
    args = p.parse_args(argv)
    args = finish_run_options(p, args, "multilabel", quick_images=6)
    if args.quick:
        args.image_size, args.n_train, args.epochs, args.n_ttame, args.start = 32, 128, 1, 64, "scratch"
        args.rise_masks, args.ttame_epochs = 100, 1
    args.ttame_epochs = args.ttame_epochs or None  # 0: fit's recipe
    if args.ttame_name is None:
        args.ttame_name = "T-TAME" if args.ttame_layers is None else "T-TAME (custom layers)"
    if args.start == "kept" and args.image_size != 64:
        p.error(f"--image-size: the kept classifiers are 64x64, got {args.image_size}; "
                "use --start scratch for another size")
    return args


# ---------------------------------------------------------------- the classifier (BCE)
def train_bce_classifier(arch: str, seed: int,
                         args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    """A multi-label classifier of MultiShapes trained with binary cross-entropy, in eval mode."""
    torch.manual_seed(seed)
    size = args.image_size
    images, labels, _ = MultiShapes(args.n_train, image_size=size, seed=seed, split="train").generate(
        range(args.n_train))
    if args.start == "kept":  # the softmax classifier that knows single shapes, fine-tuned with BCE
        model, lr = kept_classifier(arch, size), args.finetune_lr
    else:
        model, lr = build_classifier(arch, num_classes=MultiShapes.num_classes, image_size=size), args.lr
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = max(1, args.epochs * len(loader))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for x, y in loader:
            if torch.rand(()) < 0.5:  # class shapes are mirror-symmetric: flips keep the labels
                x = x.flip(-1)
            loss = F.binary_cross_entropy_with_logits(model(normalize(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    return model, {"train_seconds": time.perf_counter() - start, **label_accuracy(model, seed, args)}


@torch.no_grad()
def label_accuracy(model: nn.Module, seed: int, args: argparse.Namespace) -> dict[str, float]:
    """Per-label accuracy, exact-match rate and micro F1 at 0.5 on 1,000 test images."""
    n = 64 if args.quick else 1000
    data = MultiShapes(n, image_size=args.image_size, seed=seed, split="test")
    images, labels, _ = data.generate(range(n))
    pred = torch.cat([model(normalize(x)).sigmoid() > 0.5 for x in images.split(250)]).float()
    tp = (pred * labels).sum()
    return {"label_accuracy": float((pred == labels).float().mean()),
            "exact_match": float((pred == labels).all(dim=1).float().mean()),
            "micro_f1": float(2 * tp / (pred.sum() + labels.sum()).clamp_min(1))}


# ---------------------------------------------------------------- the methods
class _Shifted(nn.Module):
    """``model(x + fill)``: RISE multiplies ``x - fill`` by its masks, so that removed pixels take
    the colour ``fill`` (``fill + (x - fill) * m``)."""

    def __init__(self, model: nn.Module, fill: Tensor) -> None:
        super().__init__()
        self.model, self.fill = model, fill

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x + self.fill)


class SigmoidRISE(RISE):
    """RISE whose mask score is the label's sigmoid probability (not a softmax); with ``fill``
    (a ``(C, 1, 1)`` colour in ``[0, 1]``) removed pixels take that colour instead of black."""

    def __init__(self, pixel_model: nn.Module, image_size: int, fill: Tensor | None = None,
                 **kwargs: Any) -> None:
        super().__init__(pixel_model if fill is None else _Shifted(pixel_model, fill), image_size, **kwargs)
        self.fill = fill

    def scores(self, logits: Tensor, target: int) -> Tensor:
        return logits[:, target].sigmoid()

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        return super().explain(images if self.fill is None else images - self.fill, target)


def fit_ttame(model: nn.Module, arch: str, seed: int, args: argparse.Namespace) -> Explainer:
    """``TTAME(model, multi_label=True)`` fitted on MultiShapes."""
    from ttame_attr import TTAME

    size = args.image_size
    explainer = TTAME(model, args.ttame_layers, adapter=arch, input_size=(3, size, size),
                      normalization=(MEAN, STD), multi_label=True, mask_space=args.mask_space)
    data = MultiShapes(args.n_ttame, image_size=size, seed=seed, split="train", offset=10**6)
    images, _, _ = data.generate(range(args.n_ttame))
    torch.manual_seed(seed)
    loader = DataLoader(normalize(images), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), drop_last=True)
    explainer.fit(loader, epochs=args.ttame_epochs, progress=False, seed=seed)
    return TTAMEMethod(explainer)


def build_methods(model: nn.Module, arch: str, seed: int, args: argparse.Namespace,
                  masks: Tensor) -> dict[str, Explainer]:
    """The methods asked for, by display name (``masks``: the evaluated images' object masks)."""
    methods: dict[str, Explainer] = {}
    for key in args.methods:
        if key == "objects":
            methods["Object masks"] = ObjectMasks(masks)
        elif key == "ttame":
            methods[args.ttame_name] = fit_ttame(model, arch, seed, args)
        elif key == "gradcam":
            methods["Grad-CAM"] = PytorchGradCAM("Grad-CAM", model, arch)
        elif key == "scorecam":
            methods["Score-CAM"] = PytorchGradCAM("Score-CAM", model, arch, score_batch=64)
        else:
            methods["RISE"] = SigmoidRISE(PixelModel(model), args.image_size, fill=fill_colour(args.fill),
                                          n_masks=args.rise_masks, seed=seed, chunk=250)
    return methods


class ObjectMasks(Explainer):
    """A reference, not an explainer: pair ``(i, k)`` is "explained" by the ground-truth mask of
    class ``k`` in image ``i`` (1 on the object). Pixels outside it are ranked by their distance
    to it at values below 1e-3, so that AD/IC's top 15% holds the object and, where the object
    is smaller, its nearest surroundings at almost 0 (black once the map multiplies the image):
    what a map that finds exactly the object scores. A pair the classifier predicts positive
    without an object of that class (a false positive) gets a blank map.
    """

    name = "Object masks"

    def __init__(self, masks: Tensor) -> None:
        self.masks = masks

    def pair_maps(self, image: Tensor, label: Tensor) -> Tensor:
        """``(P, 1, H, W)`` maps of the pairs ``(image[p], label[p])``."""
        from scipy.ndimage import distance_transform_edt

        maps = []
        for obj in self.masks[image, label].float():
            if not obj.any():
                maps.append(torch.zeros_like(obj))
                continue
            far = torch.from_numpy(distance_transform_edt((obj == 0).numpy())).float()
            maps.append(torch.where(obj > 0, obj, 1e-3 * (1 - far / (far.max() + 1))))
        return torch.stack(maps)[:, None]


# ---------------------------------------------------------------- evaluation
def explain_pairs(method: Explainer, images: Tensor, image: Tensor, label: Tensor,
                  paper: bool = False) -> Tensor:
    """Maps ``(P, 1, h, w)`` of every pair, in batches of the method's size."""
    if isinstance(method, ObjectMasks):
        return method.pair_maps(image, label)
    fn = method.adic_maps if paper else method.explain
    parts = []
    for start in range(0, image.numel(), method.batch_size):
        idx = slice(start, start + method.batch_size)
        parts.append(fn(images[image[idx]], label[idx]).detach().float().cpu())
    return torch.cat(parts)


def fill_colour(fill: str) -> Tensor | None:
    """The colour of removed pixels, ``(3, 1, 1)`` in ``[0, 1]``: ``None`` for black (the
    paper's AD/IC), the normalisation's mean for ``"mean"`` (a removed pixel is 0 in the
    normalised input, the mask space the paper trains ViTs in)."""
    return None if fill == "black" else torch.tensor(MEAN).view(3, 1, 1)


def evaluate_method(method: Explainer, pixel_model: nn.Module, data: dict[str, Tensor],
                    fill: Tensor | None = None) -> dict[str, float]:
    """Pointing game and energy per ground-truth label; AD/IC over the predicted labels, removed
    pixels black or ``fill``."""
    images, masks = data["images"], data["masks"]
    gt_image, gt_label = data["gt_pairs"]
    maps = explain_pairs(method, images, gt_image, gt_label)
    pg = pointing_game(maps, masks[gt_image, gt_label])
    energy = energy_pointing_game(maps, masks[gt_image, gt_label])
    pr_image, pr_label = data["pred_pairs"]
    paper = isinstance(method, TTAMEMethod)
    adic_maps = explain_pairs(method, images, pr_image, pr_label, paper=paper)
    adic = average_drop_increase(pixel_model, images[pr_image], adic_maps, target=pr_label,
                                 fractions=FRACTIONS, multi_label=True,
                                 baseline=0.0 if fill is None else fill)
    row = {"pointing_game": 100 * pg.accuracy, "energy_pointing_game": 100 * energy.energy}
    for f in FRACTIONS:
        row[f"AD{round(100 * f)}"] = adic.average_drop[f]
        row[f"IC{round(100 * f)}"] = adic.increase_in_confidence[f]
    return row


@torch.no_grad()
def eval_data(model: nn.Module, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Validation images, per-class masks, ground-truth pairs and the classifier's positive pairs."""
    n = args.n_images
    data = MultiShapes(n, image_size=args.image_size, seed=seed, split="val")
    images, labels, masks = data.generate(range(n))
    gt = labels.bool().nonzero(as_tuple=True)
    pred = positive_labels(model(normalize(images))).pairs()
    return {"images": images, "masks": masks, "gt_pairs": gt, "pred_pairs": (pred.image, pred.label)}


def run_cell(arch: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One backbone and seed: train, explain, score."""
    print(f"[{arch} seed {seed}] training the BCE classifier", flush=True)
    model, facts = train_bce_classifier(arch, seed, args)
    data = eval_data(model, seed, args)
    pixel_model = PixelModel(model).eval()
    rows = {}
    for name, method in build_methods(model, arch, seed, args, data["masks"]).items():
        start = time.perf_counter()
        rows[name] = evaluate_method(method, pixel_model, data, fill_colour(args.fill))
        rows[name]["seconds"] = time.perf_counter() - start
        method.close()
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[name].items()), flush=True)
    return {"backbone": arch, "seed": seed, "classifier": facts, "methods": rows,
            "pairs": {"ground_truth": int(data["gt_pairs"][0].numel()),
                      "predicted": int(data["pred_pairs"][0].numel())}}


# ---------------------------------------------------------------- report
def aggregate(cells: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{backbone: {method: {metric: [mean, std]}}}`` over the seeds (std 0 for one seed)."""
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for cell in cells:
        for method, row in cell["methods"].items():
            for metric, v in row.items():
                per_method = values.setdefault(cell["backbone"], {}).setdefault(method, {})
                per_method.setdefault(metric, []).append(v)
    return {b: {m: {k: [statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0]
                    for k, v in rows.items()} for m, rows in methods.items()}
            for b, methods in values.items()}


def markdown(run: dict[str, Any], summary: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    columns = ["pointing_game", "energy_pointing_game", "AD15", "IC15", "AD50", "IC50", "AD100", "IC100"]
    parts = [f"Part: `{part['command']}` ({part['date']})  " for part in run.get("parts", [])]
    parts += [f"Replaced: {line}  " for line in run.get("replaced", [])]
    lines = [run_header(run), *parts, "", "# Multi-label benchmark (MultiShapes)", "",
             "Mean ± std over seeds. Pointing game and energy: per ground-truth label, % (higher is "
             "better). AD (lower) / IC (higher) at 15/50/100% with sigmoid probabilities over the "
             "predicted labels.", ""]
    for backbone, methods in summary.items():
        lines += [f"## {backbone}", "", "| method | " + " | ".join(columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for method, row in methods.items():
            cells_md = [f"{row[c][0]:.1f} ± {row[c][1]:.1f}" for c in columns]
            lines.append(f"| {method} | " + " | ".join(cells_md) + " |")
        lines.append("")
    lines += ["## Classifiers", "", "| backbone | seed | label accuracy | exact match | micro F1 |",
              "|---|---|---|---|---|"]
    for c in cells:
        f = c["classifier"]
        lines.append(f"| {c['backbone']} | {c['seed']} | {100 * f['label_accuracy']:.1f} | "
                     f"{100 * f['exact_match']:.1f} | {100 * f['micro_f1']:.1f} |")
    return "\n".join(lines) + "\n"


def merged(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any], list[str]]:
    """The cells, run records and settings of earlier runs' ``multilabel.json`` files, and the
    rows a later file replaced.

    Cells of the same backbone and seed (e.g. one run per method) become one cell, provided
    their classifiers are the same (equal test scores), else ``SystemExit``; where two files
    hold the same method for one cell, the later file's row is kept and the replacement listed.
    A file that is itself a merge contributes the runs it lists.
    """
    payloads = [json.loads(path.read_text()) for path in paths]
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    source: dict[tuple[str, int, str], str] = {}
    replaced: list[str] = []
    for path, payload in zip(paths, payloads):
        command = payload["run"]["command"]
        for cell in payload["cells"]:
            key = (cell["backbone"], cell["seed"])
            if key not in cells:
                cells[key] = {**cell, "methods": {}}
            facts = [{k: v for k, v in c["classifier"].items() if k != "train_seconds"}
                     for c in (cells[key], cell)]
            if facts[0] != facts[1]:
                raise SystemExit(f"--merge: {path} has another classifier for {key[0]} seed {key[1]} "
                                 f"({facts[1]} against {facts[0]}); merge runs of the same classifiers.")
            for method, row in cell["methods"].items():
                if method in cells[key]["methods"]:
                    replaced.append(f"{key[0]} seed {key[1]} {method}: the row of `{source[(*key, method)]}` "
                                    f"replaced by that of `{command}`")
                cells[key]["methods"][method] = row
                source[(*key, method)] = command
    runs = [part for p in payloads for part in p["run"].get("parts", [p["run"]])]
    settings = [s for p in payloads
                for s in (p["settings"] if isinstance(p["settings"], list) else [p["settings"]])]
    return list(cells.values()), runs, settings, replaced


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = run_info("multilabel.py", argv)
    settings: Any = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    if args.merge:
        cells, run["parts"], settings, run["replaced"] = merged(args.merge)
    else:
        cells = [run_cell(arch, seed, args) for arch in args.backbones for seed in args.seeds]
    summary = aggregate(cells)
    payload = {"run": run, "settings": settings, "summary": summary, "cells": cells}
    for path in write_results(args.out, "multilabel", payload, markdown(run, summary, cells)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
