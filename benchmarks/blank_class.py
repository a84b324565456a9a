"""The classifiers' default class: what each one predicts for a fully masked or faded image.

One command::

    python benchmarks/blank_class.py                 # cnn, vit, swin (the quality benchmark's classifiers)
    python benchmarks/blank_class.py --quick         # smoke run (tiny classifiers), to a temp dir

T-TAME's loss keeps a class's masked image classified as that class. If the classifier already
gives class ``k`` to a fully masked image, an empty mask keeps ``k`` at no area cost, and ``k``'s
map has no reason to light up: the ``blank_class`` that ``fit``'s dead-class warning names. This
study measures that property of the classifiers; no head is fitted. Each backbone is masked in
the space its T-TAME head trains in (``mask_space="auto"``, as ``quality.py``): ``pixel``
multiplies the pixels (a fully masked image is black), ``input`` the normalised input (a fully
masked image has the mean colour). It reports the class probabilities of the fully masked image,
and, for each class, the fraction of its validation images (those the classifier gets right)
still given their class under a uniform mask of each value. ``fit_blank_class`` is what
``fit`` itself would name (:func:`ttame_attr.training._fit.blank_class`), as a check.

It writes ``blank_class.json`` (with the run record of ``_results.py``) and ``blank_class.md``
into ``--out`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from _quality.models import get_classifier  # noqa: E402
from _results import add_run_options, finish_run_options, run_header, run_info, write_results  # noqa: E402
from quality import BACKBONES, IMAGE_SIZE  # noqa: E402

from ttame_attr import TTAME  # noqa: E402
from ttame_attr.data import CLASS_NAMES, MEAN, STD, SyntheticShapes, normalize  # noqa: E402
from ttame_attr.training._fit import blank_class  # noqa: E402

#: The values of a uniform mask.
LEVELS = (1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    add_run_options(p, n_images=400, quick_help="32x32 images, tiny classifiers")
    args = p.parse_args(argv)
    return finish_run_options(p, args, "blank_class", quick_images=32)


def masked(images: torch.Tensor, level: float, space: str) -> torch.Tensor:
    """``images`` in ``[0, 1]`` under a uniform mask of ``level``, as the model receives them."""
    return normalize(images * level) if space == "pixel" else normalize(images) * level


@torch.no_grad()
def measure(model: torch.nn.Module, images: torch.Tensor, space: str) -> dict[str, Any]:
    """Probabilities of the fully masked image and, per mask value, the fraction of each class's
    correctly classified images that keep their class, and the fraction given the blank class."""
    model.eval()
    black = model(masked(images[:1], 0.0, space)).softmax(dim=1)[0]
    blank = int(black.argmax())
    pred = model(normalize(images)).argmax(dim=1)
    levels = []
    for level in LEVELS:
        dimmed = model(masked(images, level, space)).argmax(dim=1)
        kept = {CLASS_NAMES[k]: float((dimmed[pred == k] == k).float().mean())
                for k in range(len(CLASS_NAMES)) if bool((pred == k).any())}
        levels.append({"level": level, "kept": kept, "to_blank": float((dimmed == blank).float().mean())})
    return {"mask_space": space, "blank_class": CLASS_NAMES[blank], "blank_index": blank,
            "blank_probabilities": {CLASS_NAMES[k]: float(p) for k, p in enumerate(black)},
            "images_per_class": {CLASS_NAMES[k]: int((pred == k).sum()) for k in range(len(CLASS_NAMES))},
            "levels": levels}


def table(result: dict[str, Any]) -> str:
    """One row per mask value: the share of each class's images that keep their class."""
    names = list(result["images_per_class"])
    lines = ["| mask value | " + " | ".join(names) + " | to the blank class |",
             "|---:|" + "---:|" * (len(names) + 1)]
    for row in result["levels"]:
        cells = " | ".join(f"{row['kept'][n]:.2f}" if n in row["kept"] else "–" for n in names)
        lines.append(f"| {row['level']:.1f} | {cells} | {row['to_blank']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    image_size = 32 if args.quick else IMAGE_SIZE
    images, _, _ = SyntheticShapes(args.n_images, image_size=image_size, seed=0,
                                   split="val").generate(range(args.n_images))
    backbones = {}
    for arch in args.backbones:
        model, _ = get_classifier(arch, args.cache, image_size, args.quick, 0, {})
        explainer = TTAME(model, adapter=arch, input_size=(3, image_size, image_size),
                          normalization=(MEAN, STD))
        backbones[arch] = measure(model, images, explainer.mask_space)
        backbones[arch]["fit_blank_class"] = CLASS_NAMES[blank_class(explainer)]
    report: dict[str, Any] = {
        "run": run_info("blank_class.py", argv),
        "settings": {"n_images": args.n_images, "split": "val", "levels": list(LEVELS), "quick": args.quick},
        "backbones": backbones,
        "seconds": time.perf_counter() - start,
    }
    text = ("# The classifiers' default class: `benchmarks/blank_class.py`\n\n" + run_header(report["run"])
            + f"\n{args.n_images} validation images, masked in the space of each backbone's T-TAME head "
              "(`pixel`: pixels multiplied, black when fully masked; `input`: the normalised input "
              "multiplied, the mean colour when fully masked). Each cell: the share of a class's "
              "correctly classified images that keep their class under a uniform mask of that value; the "
              "last column, the share of all images then given the class of the fully masked image.\n")
    for arch, result in backbones.items():
        probs = result["blank_probabilities"]
        what = "a black image" if result["mask_space"] == "pixel" else "an image of the mean colour"
        text += (f"\n### {arch}\n\nMasked in `{result['mask_space']}` space: the fully masked image, "
                 f"{what}, is classified as **{result['blank_class']}** (probability "
                 f"{probs[result['blank_class']]:.2f}).\n\n"
                 f"<!-- table: blank-class-{arch} -->\n{table(result)}<!-- /table -->\n")
    paths = write_results(args.out, "blank_class", report, text)
    print(text)
    print(f"Wrote {', '.join(map(str, paths))} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
