"""Does the output scale make T-TAME's maps look diffuse? The energy pointing game per map scale.

One command::

    python benchmarks/energy_scale.py                 # cnn, vit, swin; 300 validation images
    python benchmarks/energy_scale.py --backbones vit

The energy pointing game (the share of the min-max normalised map's mass inside the object)
is the one metric of ``quality.py`` that reads a map's values and not only the order of its
pixels, so it depends on the scale T-TAME's map is given in. For each backbone this scores the
seed-0 T-TAME head of ``quality.py`` (its tuned settings; loaded from ``--cache`` when the
quality benchmark fitted it with the same package source, else fitted) on ``--n-images``
images of the *validation* split, with the map as

* ``pre-sigmoid``: the raw class map, upsampled (what ``quality.py`` scored before);
* ``sigmoid``: what ``attribute`` returns by default (what ``quality.py`` scores now);
* ``relu``: the raw map's positive part (for reference: zero wherever the head votes "out");

and Grad-CAM's map (pytorch-grad-cam, configured as in ``quality.py``) for comparison. It also
reports the mean sigmoid value outside and inside the objects. Writes ``energy_scale.json`` and
``energy_scale.md`` into ``--out`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from _quality.models import get_classifier, get_ttame  # noqa: E402
from _results import run_header, run_info, write_results  # noqa: E402
from quality import BACKBONES, IMAGE_SIZE, QUICK_TTAME, TTAME_CONFIGS  # noqa: E402

from ttame_attr.data import SyntheticShapes, normalize  # noqa: E402
from ttame_attr.metrics import EnergyPointingGame  # noqa: E402

SCALES = ("pre-sigmoid", "sigmoid", "relu", "Grad-CAM")


def run_backbone(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    size = 32 if args.quick else IMAGE_SIZE
    model, _ = get_classifier(arch, args.cache, size, args.quick, 0, {})
    cfg = dataclasses.replace(QUICK_TTAME if args.quick else TTAME_CONFIGS[arch], seed=0)
    explainer, meta = get_ttame(model, arch, cfg, args.cache, size)
    pixel_model = M.PixelModel(model).eval()
    evalset = E.make_eval_set(pixel_model, SyntheticShapes(args.n_images, size, seed=0, split="val"),
                              args.n_images)
    x, target, masks = normalize(evalset.images), evalset.predicted, evalset.masks
    with torch.no_grad():
        raw = torch.cat([explainer.attribute(xb, target=tb, scale="raw")
                         for xb, tb in zip(x.split(100), target.split(100))])
    gradcam = M.PytorchGradCAM("Grad-CAM", model, arch)
    try:
        cam = E.explain_images(gradcam, evalset.images, target)
    finally:
        gradcam.close()
    maps = {"pre-sigmoid": raw, "sigmoid": torch.sigmoid(raw), "relu": raw.clamp(min=0), "Grad-CAM": cam}
    energy = {name: EnergyPointingGame().update(m, masks).energy for name, m in maps.items()}
    obj = masks.reshape(raw.shape).float()
    sig = torch.sigmoid(raw)
    return {"head_cached": bool(meta["cached"]), "energy_pointing_game": energy,
            "sigmoid_inside": float((sig * obj).sum() / obj.sum()),
            "sigmoid_outside": float((sig * (1 - obj)).sum() / (1 - obj).sum()),
            "object_area": float(obj.mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--n-images", type=int, default=300, help="validation images")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "_cache")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny models, 8 images (needs --out)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_images = min(args.n_images, 8)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    report = {"run": run_info("energy_scale.py", argv), "n_images": args.n_images, "split": "val",
              "backbones": {arch: run_backbone(arch, args) for arch in args.backbones}}
    report["seconds"] = time.perf_counter() - start
    lines = ["| backbone | " + " | ".join(SCALES) + " | sigmoid outside / inside the object |",
             "|---|" + "---:|" * (len(SCALES) + 1)]
    for arch, res in report["backbones"].items():
        cells = " | ".join(f"{res['energy_pointing_game'][s]:.3f}" for s in SCALES)
        lines.append(f"| {arch} | {cells} | {res['sigmoid_outside']:.3f} / {res['sigmoid_inside']:.3f} |")
    intro = f"Seed-0 T-TAME heads of `quality.py`, {args.n_images} validation images; higher is better."
    title = "# Energy pointing game per map scale: `benchmarks/energy_scale.py`\n\n"
    table = "<!-- table: energy -->\n" + "\n".join(lines) + "\n<!-- /table -->\n"
    text = title + run_header(report["run"]) + f"\n{intro}\n\n" + table
    paths = write_results(args.out, "energy_scale", report, text)
    print(text)
    print(f"Wrote {', '.join(map(str, paths))} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
