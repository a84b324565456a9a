"""``ttame convert``: a head file or a checkpoint of the paper's authors as a Hugging Face Hub folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ttame_attr.cli._errors import CLIError
from ttame_attr.cli._models import SPEC_HELP, load_model

__all__ = ["add_arguments", "cmd_convert"]


def add_arguments(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to ``sub``."""
    p = sub.add_parser(
        "convert", help="a head file or an authors' checkpoint as a Hugging Face Hub folder",
        description="Load a head (a checkpoint of the paper's authors' code, e.g. from "
                    "IDT-ITI/T-TAME-models, or a head file) for a model, check that the model has the "
                    "weights the head was trained on, and write it in the Hub format (model.safetensors, "
                    "config.json, README.md).")
    p.add_argument("checkpoint", help="the file to convert (.ckpt of the authors' code, or a head file)")
    p.add_argument("--model", required=True, help=f"the classifier the head explains: {SPEC_HELP}")
    p.add_argument("--pretrained", action="store_true",
                   help="load the model's pretrained weights (torchvision: its DEFAULT weights)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="load this state dict into the model (e.g. torchvision's IMAGENET1K_V1 weights file)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="number of classes of the model")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="square input side (default: the checkpoint's)")
    p.add_argument("--out", required=True, help="the folder to write (created if missing)")
    p.add_argument("--strict", action="store_true",
                   help="refuse (instead of warning) when the model's weights differ from the checkpoint's")
    p.set_defaults(func="cmd_convert")
    return p


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert ``args.checkpoint`` for ``args.model`` and write the Hub folder ``args.out``."""
    from ttame_attr import TTAME

    if not Path(args.checkpoint).is_file():
        raise CLIError(f"checkpoint: no such file {args.checkpoint!r}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: {args.out!r} is a file; give a folder.")
    model, _ = load_model(args.model, pretrained=args.pretrained, num_classes=args.num_classes,
                                  weights=args.weights)
    options = {"input_size": (3, args.input_size, args.input_size)} if args.input_size else {}
    try:
        explainer = TTAME.load(args.checkpoint, model, strict=args.strict, **options)
        explainer.save_pretrained(out, backbone=args.model)
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    print(f"head for {args.model}: layers {explainer.layers}, {explainer.num_classes} classes, "
          f"map size {explainer.map_size}, {explainer.mask_space}-space masking")
    print(f"wrote {out / 'model.safetensors'}, {out / 'config.json'} and {out / 'README.md'}")
    return 0
