"""The ``ttame`` command line: fit, explain, evaluate, export, layers, convert, audit, demo.

Run ``ttame --help`` or ``ttame COMMAND --help``. User errors (unknown model specs, missing
paths, bad options) exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ttame_attr.cli import _convert
from ttame_attr.cli._audit import add_audit_parser
from ttame_attr.cli._errors import CLIError
from ttame_attr.cli._models import SPEC_HELP
from ttame_attr.cli._store import add_store_arguments

__all__ = ["CLIError", "build_parser", "main"]

_HEAD_HELP = ("the head: a file written by `ttame fit`, a folder written by `ttame convert` or "
              "save_pretrained, hub:ORG/NAME (a Hugging Face Hub repository), or an authors' checkpoint")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``ttame fit: error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _model_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str | None = None,
                  images: tuple[str, str] | None = None, skip_list: str = "") -> argparse.ArgumentParser:
    """A subcommand reading a model (and, if ``images`` = ``(name, help)``, image paths that
    ``--skip-unreadable`` may skip; ``skip_list`` tells where the skipped ones are listed)."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("model", help=f"the classifier: {SPEC_HELP}")
    p.add_argument("--pretrained", action="store_true",
                   help="load pretrained weights (downloaded by torchvision / timm; passed as "
                        "pretrained=True to a module:callable; hf: models always load their weights, so "
                        "it changes nothing there)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="number of classes of the model (a fresh classifier head; num_labels for hf:)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="load this state dict into the model, e.g. a fine-tuned one: .pt/.pth (read without "
                        "running code) or .safetensors; nested under 'state_dict'/'model_state_dict'/'model' "
                        "and 'module.'/'model.' prefixes are handled; keys and shapes must match "
                        "(--num-classes N for a fine-tuned head)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="square input side (default: the model's own, else 224)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    if images:
        p.add_argument(images[0], nargs="+", help=images[1])
        p.add_argument("--skip-unreadable", action="store_true",
                       help="skip images that cannot be read instead of stopping at the first one "
                            f"(counted and listed at the end{skip_list})")
    p.set_defaults(func=f"cmd_{name}")
    return p


def _label_options(p: argparse.ArgumentParser, saved: bool) -> None:
    """``--multi-label`` and ``--threshold`` (``saved``: a head file that may already say so)."""
    told = " (a head saved multi-label is read as such without it)" if saved else ""
    p.add_argument("--multi-label", action="store_true",
                   help="the model is multi-label (one sigmoid per class) or single-logit (N, 1): an image's "
                        "labels are the classes whose sigmoid probability exceeds --threshold" + told)
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help="with --multi-label, the probability above which a label is positive (default 0.5"
                        + (", or the head's" if saved else "") + ")")


def _add_export(sub: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand's options."""
    p = _model_parser(sub, "export", "the model and its head as one graph: prediction and explanation",
                      "Write the classifier with a trained head as one ONNX file (ONNX Runtime runs it "
                      "without torch) or torch.export program (.pt2) returning logits, the top-k classes "
                      "and their maps, for any batch size.")
    p.add_argument("--head", required=True, help=_HEAD_HELP)
    p.add_argument("--out", required=True, help="the file to write (.onnx or .pt2)")
    p.add_argument("--format", choices=("onnx", "pt2"), default=None,
                   help="default: from the suffix of --out (.onnx or .pt2)")
    p.add_argument("--top-k", type=int, default=None,
                   help="explain the K most probable classes (default 1); multi-label: K label columns "
                        "(default: the number of classes), padded with class -1")
    p.add_argument("--scale", choices=("sigmoid", "raw", "minmax"), default="sigmoid",
                   help="map values: sigmoid masks in [0, 1] (default), raw scores, or per-map min-max")
    p.add_argument("--map-size", action="store_true",
                   help="maps at the head's map size instead of the input size (smaller outputs)")
    p.add_argument("--static-batch", action="store_true",
                   help="fix the batch size at 1 (default: any batch size)")
    _label_options(p, saved=True)


def build_parser() -> argparse.ArgumentParser:
    """The ``ttame`` argument parser (all subcommands)."""
    from ttame_attr._version import __version__
    from ttame_attr.demo import add_arguments as add_demo_arguments

    parser = _Parser(prog="ttame", description="T-TAME explanations for image classifiers.")
    parser.add_argument("--version", action="version", version=f"ttame_attr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)

    p = _model_parser(sub, "fit", "train a T-TAME head on images (no labels needed)",
                      "Train a T-TAME head with the paper's recipe (SGD Nesterov, OneCycleLR, "
                      "Resize/RandomCrop/flip augmentation), its epochs and learning rate scaled to the "
                      "run's length unless --recipe paper, and save it.",
                      ("data", "image folder(s) (ImageFolder or flat), image files, or .txt list "
                       "files of image paths"),
                      " and in --out with the suffix .skipped.txt, e.g. head.skipped.txt")
    p.add_argument("--val", nargs="+", default=None,
                   help="validation images (loss per epoch; --skip-unreadable applies to them too)")
    p.add_argument("--layers", nargs="+", default=None, help="module names to read (default: the adapter's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's; paper: 8)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (paper: 32)")
    p.add_argument("--lr", type=float, default=None,
                   help="OneCycleLR max learning rate (default: the recipe's; paper: 1e-3)")
    p.add_argument("--recipe", choices=("auto", "paper"), default="auto",
                   help="what sets --epochs and --lr when not given: 'auto' (default) the paper's values "
                        "scaled to the run's length (more epochs and a larger lr for a few thousand images), "
                        "'paper' exactly 8 epochs at 1e-3")
    p.add_argument("--head-init", choices=("zeros", "pytorch"), default="zeros",
                   help="how the head's fusion starts: 'zeros' (default) every class map at 0.5, 'pytorch' "
                        "PyTorch's default initialisation (can leave some class maps dead)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--out", default="head.safetensors", help="where to save the head (safetensors)")
    p.add_argument("--checkpoint", default=None, help="training checkpoint file (every epoch)")
    p.add_argument("--resume", action="store_true", help="resume from the checkpoint if present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _label_options(p, saved=False)

    p = _model_parser(sub, "explain", "explain images with a trained head",
                      "Write one overlay PNG per image and class, and the maps (.npy array "
                      "(K, H, W) or .pt dict with maps, classes, probabilities).",
                      ("images", "image files, folders or .txt list files"), " and in OUT/skipped.txt")
    p.add_argument("--head", required=True, help=_HEAD_HELP)
    p.add_argument("--out", default="ttame_explanations", help="output folder")
    p.add_argument("--target", type=int, default=None, help="class to explain (default: predicted)")
    p.add_argument("--top-k", type=int, default=None,
                   help="explain the K most probable classes (default 1; multi-label: the positive labels)")
    p.add_argument("--format", choices=("npy", "pt"), default="npy", help="map file format")
    p.add_argument("--no-overlay", action="store_true", help="write the maps only")
    add_store_arguments(p)
    _label_options(p, saved=True)

    p = _model_parser(sub, "evaluate", "AD/IC and ROAD of a trained head on images",
                      "Average Drop / Increase in Confidence at 100/50/15%% kept pixels and ROAD "
                      "(MoRF/LeRF), for the predicted class (multi-label: every positive label, with "
                      "sigmoid probabilities), as a table.",
                      ("data", "image folders, files or .txt list files"), " and under 'skipped' in --json")
    p.add_argument("--head", required=True, help=_HEAD_HELP)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use the first N images only")
    p.add_argument("--no-road", action="store_true", help="skip ROAD (the slowest metric)")
    p.add_argument("--json", default=None, help="also write the table to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _label_options(p, saved=True)

    _add_export(sub)

    p = _model_parser(sub, "layers", "the adapter and layers T-TAME would use for a model")
    p.add_argument("--layers", nargs="+", default=None, help="check these module names instead")
    p.add_argument("--adapter", default=None, help="force an adapter (cnn, vit, swin, ...)")

    _convert.add_arguments(sub)
    add_audit_parser(sub)

    p = sub.add_parser("demo", help="the end-to-end demo on synthetic data, with an HTML report")
    add_demo_arguments(p).set_defaults(func="cmd_demo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ttame`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Example:
        >>> main(["layers", "torchvision:resnet18", "--num-classes", "10", "--input-size", "64"])
        ... # doctest: +ELLIPSIS
        model      torchvision:resnet18 (ResNet), input (3, 64, 64), 10 classes
        ...
        0
    """
    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, --version, or a usage error (status 2, one line)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ttame_attr.cli import _commands

    try:
        return int(getattr(_commands, args.func)(args) or 0)
    except CLIError as err:
        print(f"ttame {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ttame {args.command}: interrupted", file=sys.stderr)
        return 130
