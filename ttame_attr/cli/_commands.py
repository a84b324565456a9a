"""The subcommands of ``ttame``: fit, explain, evaluate, export, layers, demo."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ttame_attr import TTAME, extract_logits
from ttame_attr._core.storage import atomic_export_save
from ttame_attr.cli._audit import cmd_audit
from ttame_attr.cli._convert import cmd_convert
from ttame_attr.cli._data import eval_transform, find_images, image_loader, load_batch, train_transform
from ttame_attr.cli._errors import CLIError
from ttame_attr.cli._models import load_model, model_preprocessing
from ttame_attr.cli._outputs import check_out_dir, check_out_file, rescue_write, same_file, write_output
from ttame_attr.training import advice_shown_by_caller

__all__ = ["cmd_audit", "cmd_convert", "cmd_demo", "cmd_evaluate", "cmd_explain", "cmd_export", "cmd_fit",
           "cmd_layers"]


@contextmanager
def _user_errors(*errors: type[Exception]) -> Iterator[None]:
    """Re-raise ``errors`` (default: TypeError, ValueError) as a :class:`CLIError`."""
    caught = errors or (TypeError, ValueError)
    try:
        yield
    except caught as err:
        raise CLIError(str(err)) from None


def _device(name: str | None) -> torch.device:
    """``--device``, checked (default: cuda if available)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CLIError(f"--device: {name!r} is not a device (use cpu, cuda, cuda:1, mps).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device: CUDA was requested but is not available on this machine.")
    return device


def _check_counts(args: argparse.Namespace, *names: str) -> None:
    """Integer options that must be positive (``workers``: non-negative); ``None``: not given."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < (0 if name == "workers" else 1):
            kind = "a non-negative integer" if name == "workers" else "a positive integer"
            raise CLIError(f"--{name.replace('_', '-')}: expected {kind}, got {value}.")


def _report_skipped(skipped: dict[Path, str], listing: Path | None, shown: int = 10) -> None:
    """Print how many unreadable images were skipped, the first ``shown``, and write them all
    (one absolute path a line, a list file ``ttame`` reads) to ``listing``."""
    print(f"skipped {len(skipped)} unreadable image{'' if len(skipped) == 1 else 's'}"
          + (":" if skipped else ""))
    for path, reason in list(skipped.items())[:shown]:
        print(f"  {path} ({reason})")
    if len(skipped) > shown:
        print(f"  ... and {len(skipped) - shown} more" + (f", all listed in {listing}" if listing else ""))
    if listing is not None:
        lines = [f"# {len(skipped)} unreadable images skipped by ttame", *(str(p.resolve()) for p in skipped)]
        write_output(listing, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8"))
        print(f"wrote the list of skipped images to {listing}")


def _model(args: argparse.Namespace) -> tuple[Any, tuple[int, int, int], Any, Any]:
    """``(model, input size, mean, std)`` of the model options."""
    _check_counts(args, "input_size")
    model, processor = load_model(args.model, pretrained=args.pretrained, num_classes=args.num_classes,
                                  weights=args.weights)
    size, mean, std = model_preprocessing(model, processor)
    if args.input_size is not None:
        size = (size[0], args.input_size, args.input_size)
    return model, size, mean, std


def _label_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The constructor's ``multi_label`` / ``threshold`` of ``--multi-label`` / ``--threshold``."""
    if args.threshold is not None and not args.multi_label and args.command == "fit":
        raise CLIError("--threshold: only with --multi-label (a softmax model's label is its arg-max).")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise CLIError(f"--threshold: expected a probability in (0, 1), got {args.threshold}.")
    kwargs: dict[str, Any] = {"multi_label": True} if args.multi_label else {}
    if args.threshold is not None:
        kwargs["threshold"] = args.threshold
    return kwargs


def _trained_head(args: argparse.Namespace) -> tuple[TTAME, torch.device, Any, Any]:
    """``(explainer, device, mean, std)``: the model on ``--device`` with the head of ``--head``
    (multi-label when the head was saved so, or with ``--multi-label``)."""
    labels = _label_kwargs(args)
    device = _device(args.device)
    model, _, mean, std = _model(args)
    model.to(device)
    hub = args.head.startswith("hub:")
    if not hub and not Path(args.head).exists():
        raise CLIError(f"--head: no such file or folder {args.head!r} (train one with `ttame fit`, or "
                       "give hub:ORG/NAME).")
    with _user_errors(TypeError, ValueError, FileNotFoundError, ImportError):
        if hub:
            explainer = TTAME.from_pretrained(args.head[4:], model, map_location=device, **labels)
        else:
            explainer = TTAME.load(args.head, model, map_location=device, **labels)
    if args.threshold is not None and not explainer.multi_label:
        raise CLIError(f"--threshold: the head {args.head!r} is a softmax head; add --multi-label if the "
                       "model is multi-label.")
    if args.input_size is not None and explainer.input_size[1:] != (args.input_size, args.input_size):
        raise CLIError(f"--input-size: the head {args.head!r} was trained for {explainer.input_size[1]}x"
                       f"{explainer.input_size[2]} inputs, not {args.input_size}; drop --input-size (the "
                       "head's size is used) or fit a head at that size.")
    top_k = getattr(args, "top_k", None) or 1
    if top_k > explainer.num_classes:
        raise CLIError(f"--top-k: expected at most the model's {explainer.num_classes} classes, got {top_k}.")
    return explainer, device, mean, std


def cmd_layers(args: argparse.Namespace) -> int:
    """Print the adapter, the chosen layers and their shapes."""
    model, size, _, _ = _model(args)
    with _user_errors():
        explainer = TTAME(model, args.layers, input_size=size, adapter=args.adapter)
    print(f"model      {args.model} ({type(model).__name__}), input {size}, "
          f"{explainer.num_classes} classes")
    print(f"adapter    {explainer.adapter.name}")
    print(f"map size   {explainer.map_size}")
    reasons = explainer.adapter.reasons
    rows = [("layer", "layout", "(C, h, w)", "prefix tokens", "why")]
    for info in explainer.layer_info:
        why = ("given by --layers" if args.layers else
               reasons.get(info.name, f"a default of the {explainer.adapter.name} adapter (no reason given)"))
        rows.append((info.name, info.layout, str((info.channels, info.height, info.width)),
                     str(info.prefix_tokens), why))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if not args.layers:
        for name, why in explainer.adapter.suggestions.items():
            print(f"suggested  {name}: {why}; e.g. --layers {' '.join([name, *explainer.layers])}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Train a T-TAME head for a model on a folder / list of images and save it."""
    _check_counts(args, "epochs", "batch_size", "workers")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise CLIError(f"--lr: expected a positive learning rate, got {args.lr}.")
    files = find_images(args.data)
    val_files = find_images(args.val) if args.val else None
    checkpoint = args.checkpoint or (str(Path(args.out).with_suffix(".ckpt")) if args.resume else None)
    check_out_file("--out", args.out)
    if checkpoint is not None:
        check_out_file("--checkpoint", checkpoint)
        if same_file(checkpoint, args.out):
            raise CLIError(f"--checkpoint and --out: both name {args.out!r}, so the head would overwrite the "
                           "training checkpoint; give them different files (--checkpoint FILE).")
    labels = _label_kwargs(args)
    device = _device(args.device)
    torch.manual_seed(args.seed)
    model, size, mean, std = _model(args)
    model.to(device)
    with _user_errors():
        explainer = TTAME(model, args.layers, input_size=size, normalization=(mean, std),
                          head_init=args.head_init, **labels)
    print(f"T-TAME for {args.model}: adapter {explainer.adapter.name!r}, layers "
          f"{explainer.layers}, {len(files)} images, batch {args.batch_size}")
    loader = image_loader(files, train_transform(size, mean, std), skip=args.skip_unreadable,
                          batch_size=args.batch_size, shuffle=True, drop_last=len(files) > args.batch_size,
                          num_workers=args.workers, generator=torch.Generator().manual_seed(args.seed))
    val_loader = None
    if val_files:
        val_loader = image_loader(val_files, eval_transform(size, mean, std), skip=args.skip_unreadable,
                                  option="--val", batch_size=args.batch_size, num_workers=args.workers)
    with _user_errors(), advice_shown_by_caller():  # the notes below give fit's advice, once
        history = explainer.fit(loader, epochs=args.epochs, lr=args.lr, recipe=args.recipe,
                                val_loader=val_loader, progress=not args.quiet, checkpoint_path=checkpoint,
                                resume=args.resume)
    out = rescue_write("--out", Path(args.out), explainer.save)
    sched = history.schedule
    origin = ", ".join(f"{name} {how}" for name, how in sched["source"].items())
    print(f"schedule: {sched['epochs']} epochs x {sched['steps_per_epoch']} steps, max lr {sched['lr']:.3g} "
          f"({origin}; --recipe {args.recipe})")
    print(f"epoch {history[-1].epoch}: loss {history[-1].loss:.4f}, fidelity {history[-1].fidelity:.3f}")
    print(f"saved the head to {out}")
    report = history.convergence()
    if report.done is False:
        print(f"note: {report.advice} (ttame fit: --epochs, --lr)")
    if history.flat_map_advice():
        print(f"note: {history.flat_map_advice()} (ttame fit: --epochs, --lr, --seed)")
    if history.dead_classes():
        refit = any(k != history.blank_class for k in history.dead_classes())
        hint = " (ttame fit: --head-init, --lr, --seed)" if refit else ""
        print(f"note: {history.dead_class_advice()}{hint}")
    if history.full_classes():
        print(f"note: {history.full_class_advice()} (ttame fit: --recipe paper, --lr, --seed)")
    if args.skip_unreadable:
        unread = loader.check_unread()
        if unread:
            print(f"checked the {unread} images training never loaded (the last, partial batch of each "
                  "epoch is dropped)")
        skipped = {**loader.skipped, **(val_loader.skipped if val_loader is not None else {})}
        _report_skipped(skipped, out.with_suffix(".skipped.txt"))
    return 0


def _maps_of(explainer: TTAME, x: Tensor, target: int | None,
             top_k: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(maps, classes, probabilities)`` of ``target``, else of the ``top_k`` predicted classes (multi-label:
    the positive labels; class -1 marks padding)."""
    if target is None:
        result = explainer.explain(x, top_k=top_k)
        return result.maps, result.classes, result.probabilities
    maps = explainer.attribute(x, target=target)
    logits = extract_logits(explainer.model(x)).float()
    probs = logits.sigmoid() if explainer.multi_label else logits.softmax(1)
    return maps, torch.full((x.shape[0], 1), target), probs[:, target:target + 1]


def _write_maps(args: argparse.Namespace, out: Path, stem: str, x: Tensor, maps: Tensor, classes: Tensor,
                probs: Tensor, mean: Any, std: Any) -> None:
    """The map file and the overlays of one image (``x``: ``(1, C, H, W)``, ``maps``: ``(K, H, W)``)."""
    import numpy as np

    from ttame_attr.viz import save_overlays

    if args.format == "npy":
        write_output(out / f"{stem}.npy", lambda tmp: np.save(tmp, maps.numpy()))
    else:
        payload = {"maps": maps.clone(), "classes": classes.cpu().clone(),
                   "probabilities": probs.float().cpu().clone()}
        write_output(out / f"{stem}.pt", lambda tmp: torch.save(payload, tmp))
    for k in range(maps.shape[0] if not args.no_overlay else 0):
        suffix = "" if maps.shape[0] == 1 else f"_top{k + 1}"
        write_output(out / f"{stem}{suffix}_class{int(classes[k])}.png", lambda tmp, k=k: save_overlays(
            x.cpu(), maps[None, k:k + 1], [Path(tmp)], mean=mean, std=std))


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain images with a trained head: overlays (PNG) and maps (.npy or .pt)."""
    if args.top_k is not None and args.top_k < 1:
        raise CLIError(f"--top-k: expected a positive integer, got {args.top_k}.")
    if args.target is not None and args.top_k not in (None, 1):
        raise CLIError("--target and --top-k: give one or the other.")
    _check_counts(args, "batch_size")
    if args.store is not None:
        from ttame_attr.cli._store import check_store_args

        check_store_args(args)
    files = find_images(args.images)
    out = check_out_dir("--out", args.out) if args.store is None else None
    explainer, device, mean, std = _trained_head(args)
    if args.target is not None and not 0 <= args.target < explainer.num_classes:
        raise CLIError(f"--target: expected a class in [0, {explainer.num_classes - 1}], got {args.target}.")
    if args.store is not None:
        from ttame_attr.cli._store import explain_to_store

        store, skipped = explain_to_store(args, explainer, mean, std)
        if args.skip_unreadable and int(os.environ.get("RANK", "0")) == 0:
            _report_skipped(skipped, store.path / "skipped.txt")
        return 0
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    transform = eval_transform(explainer.input_size, mean, std)
    unique_stems = len(files) == len({f.stem for f in files})
    skipped: dict[Path, str] = {}
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        x, kept, unreadable = load_batch(chunk, transform, skip=args.skip_unreadable)
        skipped.update(unreadable)
        if x is None:
            continue
        x = x.to(device)
        with torch.no_grad():
            maps, classes, probs = _maps_of(explainer, x, args.target, args.top_k)
        maps = maps.float().cpu()
        for i, position in enumerate(kept):
            path = chunk[position]
            stem = path.stem if unique_stems else f"{start + position:05d}_{path.stem}"
            own = classes[i] >= 0  # multi-label: this image's labels (the rest is padding)
            _write_maps(args, out, stem, x[i:i + 1], maps[i][own], classes[i][own], probs[i][own], mean, std)
            labels = ", ".join(f"{int(c)} ({float(p):.2f})" for c, p in zip(classes[i][own], probs[i][own]))
            print(f"{path}: {labels}")
    print(f"wrote the maps of {len(files) - len(skipped)} images to {out}")
    if args.skip_unreadable:
        _report_skipped(skipped, out / "skipped.txt")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """AD/IC (100/50/15%) and ROAD of a trained head on a folder of images, as a table."""
    import json

    from ttame_attr.metrics import ROAD, AverageDropIncrease, evaluate

    _check_counts(args, "batch_size", "workers")
    files = find_images(args.data)
    if args.limit is not None:
        if args.limit < 1:
            raise CLIError(f"--limit: expected a positive integer, got {args.limit}.")
        files = files[:args.limit]
    if args.json:
        check_out_file("--json", args.json)
    explainer, _, mean, std = _trained_head(args)
    model = explainer.model
    loader = image_loader(files, eval_transform(explainer.input_size, mean, std), skip=args.skip_unreadable,
                          batch_size=args.batch_size, num_workers=args.workers)
    multi = explainer.multi_label
    metrics: dict[str, Any] = {"ad_ic": AverageDropIncrease(model, fractions=(1.0, 0.5, 0.15),
                                                            multi_label=multi)}
    if not args.no_road:
        metrics["road"] = ROAD(model, generator=torch.Generator().manual_seed(args.seed), multi_label=multi)
    with _user_errors(ValueError):  # e.g. maps holding NaN or inf, named by image
        results = evaluate(model, loader, lambda x, target: explainer.attribute(x, target=target),
                           metrics=metrics, progress=not args.quiet, multi_label=multi,
                           threshold=explainer.threshold)
    adic = results["ad_ic"]
    table = {f"AD {int(f * 100)}%": adic.average_drop[f] for f in adic.fractions}
    table.update({f"IC {int(f * 100)}%": adic.increase_in_confidence[f] for f in adic.fractions})
    if "road" in results:
        table["ROAD MoRF"] = 100.0 * results["road"].morf_average
        table["ROAD LeRF"] = 100.0 * results["road"].lerf_average
    width = max(len(k) for k in table)
    images = len(files) - len(loader.skipped)
    print(f"{images} images, head {args.head}" + (" (multi-label: every positive label, sigmoid "
                                                   "probabilities)" if multi else ""))
    print(f"{'metric'.ljust(width)}  value (%)")
    for key, value in table.items():
        print(f"{key.ljust(width)}  {value:8.2f}")
    if args.skip_unreadable:
        _report_skipped(loader.skipped, None)
    if args.json:
        report = {"images": images, "metrics": table, "skipped": [str(p) for p in loader.skipped]}
        write_output(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the model with its head as one ONNX file or torch.export program."""
    import json

    from ttame_attr.export import ExportError

    out = Path(args.out)
    fmt = args.format or {".onnx": "onnx", ".pt2": "pt2"}.get(out.suffix.lower())
    if fmt is None:
        raise CLIError(f"--out: cannot tell the format from {str(out)!r}; name it .onnx or .pt2, or pass "
                       "--format onnx|pt2.")
    _check_counts(args, "top_k")
    check_out_file("--out", out)
    explainer, device, mean, std = _trained_head(args)
    example = torch.rand(1 if args.static_batch else 2, *explainer.input_size, device=device)
    options = {"top_k": args.top_k, "scale": args.scale, "upsample": not args.map_size,
               "dynamic_batch": not args.static_batch}
    with _user_errors(ValueError, ImportError, ExportError, OSError):  # OSError: e.g. a full disk
        if fmt == "onnx":
            meta = {"ttame_attr.normalization": json.dumps([list(mean), list(std)]),
                    "ttame_attr.model_spec": args.model}
            explainer.export_onnx(out, example, metadata=meta, **options)
        else:
            program = explainer.export_program(example, **options)
            atomic_export_save(program, out)
    batch = "1" if args.static_batch else "any"
    size = "x".join(map(str, explainer.map_size if args.map_size else explainer.input_size[1:]))
    print(f"wrote {out} ({fmt}, {out.stat().st_size / 2**20:.1f} MB)")
    print(f"input   images ({batch}, {', '.join(map(str, explainer.input_size))}) float32, normalised with "
          f"mean {tuple(round(m, 4) for m in mean)} std {tuple(round(s, 4) for s in std)}")
    k = args.top_k or (explainer.num_classes if explainer.multi_label else 1)
    probs = f"probabilities ({batch}, {k}) sigmoid, " if explainer.multi_label else ""
    pad = " (-1: no label)" if explainer.multi_label else ""
    print(f"outputs logits ({batch}, {explainer.num_classes}), classes ({batch}, {k}) int64{pad}, "
          f"{probs}maps ({batch}, {k}, {size}) {args.scale}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the end-to-end demo and print where the report is."""
    from ttame_attr.demo import run_from_args

    check_out_dir("--out", args.out)
    with _user_errors(ValueError):
        return run_from_args(args)
