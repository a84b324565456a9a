"""``ttame explain --store``: a whole dataset into an explanation store (see :doc:`/dataset`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from ttame_attr.cli._data import eval_transform, find_images
from ttame_attr.cli._errors import CLIError

__all__ = ["add_store_arguments", "check_store_args", "explain_to_store"]


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` and the options of ``ttame explain`` for the store."""
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="write an explanation store (sharded Parquet: classes, probabilities, float16 maps "
                        "at the head's map size, per-map statistics) instead of one file per image; "
                        "resumes a store of the same run, runs sharded under torchrun")
    p.add_argument("--overlays", action="store_true",
                   help="with --store: also write overlay PNGs to --out (none by default)")
    p.add_argument("--workers", type=int, default=None,
                   help="with --store: DataLoader worker processes decoding images (default: min(4, CPUs))")
    p.add_argument("--shard-size", type=int, default=1024, help="with --store: images per Parquet shard")
    p.add_argument("--no-resume", action="store_true",
                   help="with --store: refuse an existing store instead of resuming it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _data(sources: list[str]) -> Any:
    """One folder or list file as it is (labels from its layout), else the list of files."""
    if len(sources) == 1 and (Path(sources[0]).is_dir() or Path(sources[0]).suffix.lower() in (".txt", ".lst",
                                                                                              ".csv")):
        find_images(sources)  # the CLI's errors for a missing path or an empty folder
        return sources[0]
    return [str(f) for f in find_images(sources)]


def check_store_args(args: argparse.Namespace) -> Path:
    if args.target is not None:
        raise CLIError("--target: not available with --store (the store holds the --top-k most probable "
                       "classes); drop --target or --store.")
    for name in ("workers", "shard_size"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "workers" else 1):
            kind = "a non-negative integer" if name == "workers" else "a positive integer"
            raise CLIError(f"--{name.replace('_', '-')}: expected {kind}, got {value}.")
    if args.device is None and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"  # torchrun: each rank on its own GPU
    store = Path(args.store)
    if store.exists() and not store.is_dir():
        raise CLIError(f"--store: {args.store!r} is a file; give a folder (new, empty, or a store to "
                       "resume).")
    if store.is_dir() and any(store.iterdir()) and not (store / "manifest.json").is_file():
        raise CLIError(f"--store: the folder {args.store!r} is not empty and holds no explanation store; "
                       "give a new or empty folder.")
    return store


def _overlays(args: argparse.Namespace, store: Any, transform: Any, mean: Any, std: Any) -> None:
    """Overlay PNGs of the store's rows (images read again from their paths) in ``--out``."""
    from ttame_attr.cli._data import load_batch
    from ttame_attr.viz import save_overlays

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = store.table(["index", "path", "classes"])
    paths = table.column("path").to_pylist()
    classes = table.column("classes").to_pylist()
    for start in range(0, len(paths), 64):
        chunk = [Path(p) for p in paths[start:start + 64]]
        x, _, _ = load_batch(chunk, transform)
        maps = store.maps(slice(start, start + len(chunk)))
        maps = torch.nn.functional.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
        for i, path in enumerate(chunk):
            row = start + i
            for k, cls in enumerate(classes[row]):
                suffix = "" if len(classes[row]) == 1 else f"_top{k + 1}"
                name = f"{int(table.column('index')[row].as_py()):06d}_{path.stem}{suffix}_class{cls}.png"
                save_overlays(x[i:i + 1], maps[i:i + 1, k:k + 1], [out / name], mean=mean, std=std)
    print(f"wrote the overlays to {out}")


def explain_to_store(args: argparse.Namespace, explainer: Any, mean: Any, std: Any) -> tuple[Any, dict]:
    """Run :func:`~ttame_attr.explain_dataset` for ``ttame explain --store``; returns ``(store, skipped)``."""
    import hashlib

    from ttame_attr.dataset import explain_dataset

    store_path = check_store_args(args)
    data = _data(args.images)
    transform = eval_transform(explainer.input_size, mean, std)
    head = Path(args.head)
    digest = hashlib.sha256(head.read_bytes()).hexdigest()
    extra = {"head_file": {"path": str(head.resolve()), "sha256": digest}}
    workers = args.workers if args.workers is not None else min(4, os.cpu_count() or 1)
    try:
        store = explain_dataset(explainer, data, store_path, top_k=args.top_k or 1,
                                batch_size=args.batch_size,
                                num_workers=workers, shard_size=args.shard_size, resume=not args.no_resume,
                                skip_unreadable=args.skip_unreadable, transform=transform,
                                progress=not args.quiet, model_spec=args.model, extra=extra)
    except ValueError as err:
        raise CLIError(str(err)) from None
    skipped = {Path(path): reason for record in store.manifest["shards"]
               for _, path, reason in record.get("skipped", [])}
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(f"wrote the explanations of {len(store)} images to the store {store_path} "
              f"({len(store.manifest['shards'])} shards)")
        if args.overlays:
            _overlays(args, store, transform, mean, std)
    return store, skipped
