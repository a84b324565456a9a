"""Zero-config coverage of T-TAME over the torchvision, timm and transformers model zoos.

For every torchvision classification model, a sample of timm models across families and every
image-classification architecture of the installed transformers (random weights; transformers
models from the small configs of ``_hf_models.py``, each at its own ``config.image_size``), with
no configuration at all:

1. ``TTAME(model)``: the adapter, the layers and the head are chosen from the model alone;
2. one ``fit`` step on a loader with one batch of 2 random images (``epochs=1``);
3. ``attribute`` on 2 images;

and check that the maps have shape ``(2, 1, H, W)`` and finite values, and that the model is
exactly as it was (parameters and buffers bit-for-bit, ``requires_grad``, ``.training`` flags, no
hooks left behind).

Input size: TTAME reads it from the model (timm ``pretrained_cfg``, torchvision ViT
``image_size``); torchvision CNNs and Swins declare none and get the 224x224 default. The one
exception is torchvision ``inception_v3``, which needs 299x299 (at 224 its last stages shrink to
nothing): it gets ``input_size=(3, 299, 299)``, as its documentation demands.

A transformers architecture that classifies no pixel image (``_hf_models.NOT_PIXEL_CLASSIFIERS``:
token inputs, latents without a spatial layout, missing packages) or whose own forward pass fails
on its small config is listed as ``excluded`` with the reason and left out of the coverage.

Usage::

    python benchmarks/zoo.py                       # everything -> benchmarks/results/zoo.json, zoo.md
    python benchmarks/zoo.py --torchvision-only --filter resnet
    python benchmarks/zoo.py --timm-only --limit 5 --out /tmp/zoo
    python benchmarks/zoo.py --quick               # 2 cheapest torchvision + 2 timm models, to a temp dir

``zoo.json`` holds the run (command line, date, machine, versions, git commit: ``_results.py``),
the coverage per zoo (``coverage.torchvision.fraction`` is e.g. ``"80/80"``) and every model's
outcome; ``zoo.md`` the same as tables (``<!-- table: coverage -->``, ``failures``, ``models``).
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import hashlib
import json
import logging
import math
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import default_out, run_header, run_info, write_results  # noqa: E402

from ttame_attr._core.ttame import TTAME  # noqa: E402

#: Models whose own documentation demands an input size other than the 224x224 default.
TORCHVISION_INPUT_SIZE: dict[str, tuple[int, int, int]] = {"inception_v3": (3, 299, 299)}

#: A sample of timm models, one or more per family (small variants where a family has them).
TIMM_SAMPLE: list[str] = [
    # plain ViT, DeiT, register tokens, relative positions, RoPE
    "vit_tiny_patch16_224",
    "vit_small_patch16_rope_224",
    "vit_medium_patch16_gap_256",
    "vit_tiny_r_s16_p8_224",
    "deit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "deit3_small_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch16_reg4_gap_256",
    "vit_betwixt_patch16_reg1_gap_256",
    "flexivit_small",
    "eva02_tiny_patch14_224",
    "beit_base_patch16_224",
    "cait_xxs24_224",
    "xcit_nano_12_p16_224",
    "pit_ti_224",
    "pit_ti_distilled_224",
    "levit_128s",
    "levit_conv_128s",
    "crossvit_tiny_240",
    "tnt_s_patch16_224",
    "volo_d1_224",
    "mixer_s16_224",
    "resmlp_12_224",
    "gmlp_ti16_224",
    # hierarchical transformers
    "swin_tiny_patch4_window7_224",
    "swinv2_tiny_window8_256",
    "maxvit_tiny_rw_224",
    "coatnet_0_rw_224",
    "twins_pcpvt_small",
    "pvt_v2_b0",
    "mvitv2_tiny",
    "davit_tiny",
    "focalnet_tiny_srf",
    "gcvit_xxtiny",
    "hiera_tiny_224",
    "tiny_vit_5m_224",
    "efficientformer_l1",
    "efficientformerv2_s0",
    "efficientvit_b0",
    "efficientvit_m0",
    "coat_tiny",
    "visformer_tiny",
    "nextvit_small",
    # metaformers and hybrids
    "poolformer_s12",
    "caformer_s18",
    "convformer_s18",
    "edgenext_xx_small",
    "mobilevit_xxs",
    "fastvit_t8",
    "mambaout_femto",
    # CNNs
    "convnext_atto",
    "resnet18",
    "resnet50d",
    "efficientnet_b0",
    "regnetx_002",
    "regnetz_b16",
    "mobilenetv3_small_100",
    "densenet121",
    "inception_v3",
    "vgg11",
    "dla34",
    "hrnet_w18_small",
    "cspresnet50",
    "dpn68",
    "rexnet_100",
    "nf_resnet26",
    "ghostnet_100",
    "repvit_m0_9",
    "hgnetv2_b0",
    "starnet_s1",
    "fasternet_t0",
    "inception_next_atto",
    "botnet26t_256",
]


class Excluded(Exception):
    """A model the zoo cannot hold T-TAME to: its own forward pass fails, or it takes no pixels."""


@dataclass
class Result:
    """One model's outcome."""

    model: str
    source: str
    adapter: str = ""
    layers: list[str] = field(default_factory=list)
    map_size: list[int] = field(default_factory=list)
    input_size: list[int] = field(default_factory=list)
    status: str = "ok"
    error: str = ""
    seconds: float = 0.0


def _fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything the explainer must leave untouched, in a form that is cheap to keep."""
    tensors = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        data = t.detach().cpu().contiguous()
        digest = hashlib.blake2b(data.view(-1).view(torch.uint8).numpy().tobytes(), digest_size=16)
        tensors[name] = (tuple(t.shape), str(t.dtype), digest.hexdigest())
    return {
        "tensors": tensors,
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})))
            for n, m in model.named_modules()
        },
        "grads": sum(p.grad is not None for p in model.parameters()),
    }


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    for key in ("tensors", "requires_grad", "training", "hooks"):
        changed = [k for k in before[key] if before[key][k] != after[key].get(k)]
        changed += [k for k in after[key] if k not in before[key]]
        if changed:
            return f"model changed: {key} of {changed[:3]}"
    if before["grads"] != after["grads"]:
        return "model changed: parameters got .grad"
    return ""


def check_model(
    name: str, source: str, build, input_size: tuple[int, int, int] | None, device: str = "cpu"
) -> Result:
    """Build one model and run the zero-config T-TAME round trip on it (on ``device``)."""
    result = Result(model=name, source=source)
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build().to(device)
        before = _fingerprint(model)
        kwargs = {} if input_size is None else {"input_size": input_size}
        explainer = TTAME(model, **kwargs)
        result.adapter = explainer.adapter.name
        result.layers = explainer.layers
        result.map_size = list(explainer.map_size)
        result.input_size = list(explainer.input_size)
        c, h, w = explainer.input_size
        loader = [torch.randn(2, c, h, w, device=device)]
        explainer.fit(loader, epochs=1, progress=False)
        maps = explainer.attribute(torch.randn(2, c, h, w, device=device))
        problems = []
        if tuple(maps.shape) != (2, 1, h, w):
            problems.append(f"map shape {tuple(maps.shape)} != {(2, 1, h, w)}")
        if not torch.isfinite(maps).all():
            problems.append("non-finite map values")
        if not math.isfinite(explainer.history[0].loss):
            problems.append("non-finite training loss")
        changed = _diff(before, _fingerprint(model))
        if changed:
            problems.append(changed)
        if problems:
            result.status = "fail"
            result.error = "; ".join(problems)
    except Excluded as why:
        result.status = "excluded"
        result.error = str(why)
    except Exception as err:  # noqa: BLE001 - the benchmark records every failure
        result.status = "error"
        result.error = f"{type(err).__name__}: {err}".replace("\n", " ")[:400]
        logging.getLogger("zoo").debug("%s", traceback.format_exc())
    finally:
        result.seconds = round(time.perf_counter() - start, 2)
        model = explainer = None
        gc.collect()
        if device != "cpu" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return result


def _torchvision_gflops(name: str) -> float:
    """GFLOPs per image from the weights' metadata (no download), for ordering runs by cost."""
    import torchvision

    try:
        return float(torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"])
    except (KeyError, AttributeError, ValueError):
        return float("inf")


def torchvision_jobs(pattern: str | None, cheap_first: bool = False) -> list[tuple[str, str, Any, Any]]:
    import torchvision

    jobs = []
    names = torchvision.models.list_models(module=torchvision.models)
    if cheap_first:
        names = sorted(names, key=_torchvision_gflops)
    for name in names:
        if pattern and not fnmatch.fnmatch(name, pattern) and pattern not in name:
            continue

        def build(name: str = name) -> nn.Module:
            return torchvision.models.get_model(name, weights=None)

        jobs.append((name, "torchvision", build, TORCHVISION_INPUT_SIZE.get(name)))
    return jobs


def timm_jobs(pattern: str | None) -> list[tuple[str, str, Any, Any]]:
    import timm

    jobs = []
    for name in TIMM_SAMPLE:
        if pattern and not fnmatch.fnmatch(name, pattern) and pattern not in name:
            continue

        def build(name: str = name) -> nn.Module:
            return timm.create_model(name, pretrained=False)

        jobs.append((name, "timm", build, None))
    return jobs


def transformers_jobs(pattern: str | None) -> list[tuple[str, str, Any, Any]]:
    """Every image-classification class of the installed transformers, at its small config."""
    import _hf_models as hf

    jobs = []
    for model_type, class_name in hf.classifier_classes():
        label = f"{model_type}/{class_name}"
        if pattern and not fnmatch.fnmatch(label, pattern) and pattern not in label:
            continue

        def build(model_type: str = model_type, class_name: str = class_name) -> nn.Module:
            if model_type in hf.NOT_PIXEL_CLASSIFIERS:
                raise Excluded(hf.NOT_PIXEL_CLASSIFIERS[model_type])
            try:
                model = hf.build(model_type, class_name)
            except Exception as err:  # noqa: BLE001 - the architecture's own failure
                raise Excluded(f"does not build from a small config ({type(err).__name__}: {err})") from err
            return _own_forward_runs(model)

        jobs.append((label, "transformers", build, None))
    return jobs


def _own_forward_runs(model: nn.Module) -> nn.Module:
    """``model``, after checking that its own forward pass runs at its declared input size."""
    from ttame_attr.adapters import HFAdapter

    size = HFAdapter(model).input_size() or (3, 224, 224)
    try:
        with torch.no_grad():
            model(torch.zeros(2, *size))
    except Exception as err:  # noqa: BLE001
        raise Excluded(f"its own forward fails at {size} ({type(err).__name__}: {err})") from err
    return model


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--torchvision-only", action="store_true")
    group.add_argument("--timm-only", action="store_true")
    group.add_argument("--transformers-only", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="at most this many models per zoo")
    parser.add_argument("--filter", default=None, help="substring or glob on model names")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of zoo.json and zoo.md (default benchmarks/results/; "
                             "--quick: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write zoo.json's content here")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: the 2 cheapest torchvision models, 2 timm and 2 transformers models")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    parser.add_argument("--cheap-first", action="store_true",
                        help="run torchvision models by increasing GFLOPs (from their metadata)")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="run only every N-th model starting at the K-th (0-based)")
    parser.add_argument("--device", default="cpu", help="where the models run (cpu, cuda)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log tracebacks")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = min(args.limit or 2, 2)
        args.cheap_first = True
    args.out = args.out or default_out(args.quick, "zoo")
    return args


def select_jobs(args: argparse.Namespace) -> list[tuple[str, str, Any, Any]]:
    jobs = []
    only = args.torchvision_only or args.timm_only or args.transformers_only
    if args.torchvision_only or not only:
        jobs += torchvision_jobs(args.filter, args.cheap_first)[: args.limit]
    if args.timm_only or not only:
        jobs += timm_jobs(args.filter)[: args.limit]
    if args.transformers_only or not only:
        jobs += transformers_jobs(args.filter)[: args.limit]
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        jobs = jobs[k::n]
    return jobs


def coverage(results: list[Result]) -> dict[str, dict[str, Any]]:
    """Per zoo: models ok, models run (the excluded left out), ``"ok/total"``, the percentage
    and how many were excluded."""
    out = {}
    for source in ("torchvision", "timm", "transformers"):
        mine = [r for r in results if r.source == source and r.status != "excluded"]
        excluded = sum(r.source == source and r.status == "excluded" for r in results)
        if mine:
            ok = sum(r.status == "ok" for r in mine)
            out[source] = {"ok": ok, "total": len(mine), "fraction": f"{ok}/{len(mine)}",
                           "percent": round(100 * ok / len(mine), 1), "excluded": excluded}
    return out


def zoo_markdown(payload: dict[str, Any]) -> str:
    """``zoo.md``: how it was run, the coverage, the failures and every model."""
    cov = "| zoo | ok | models | coverage | excluded |\n|---|---:|---:|---:|---:|\n" + "".join(
        f"| {zoo} | {c['ok']} | {c['total']} | {c['percent']:.1f}% | {c['excluded']} |\n"
        for zoo, c in payload["coverage"].items())
    fails = "| zoo | model | status | error |\n|---|---|---|---|\n" + "".join(
        f"| {r['source']} | {r['model']} | {r['status']} | {r['error'].replace('|', '/')} |\n"
        for r in payload["results"] if r["status"] not in ("ok", "excluded"))
    excluded = "| zoo | model | why |\n|---|---|---|\n" + "".join(
        f"| {r['source']} | {r['model']} | {r['error'].replace('|', '/')} |\n"
        for r in payload["results"] if r["status"] == "excluded")
    models = ("| zoo | model | adapter | layers | map | input | status | s |\n"
              "|---|---|---|---|---|---|---|---:|\n") + "".join(
        f"| {r['source']} | {r['model']} | {r['adapter']} | {', '.join(r['layers'])} | "
        f"{'x'.join(map(str, r['map_size']))} | {'x'.join(map(str, r['input_size']))} | "
        f"{r['status']} | {r['seconds']:.1f} |\n" for r in payload["results"])
    return (
        "# Zero-config coverage: `benchmarks/zoo.py`\n\n" + run_header(payload["run"])
        + f"\nDevice {payload['device']}, {payload['threads']} threads, "
        f"{payload['total_seconds']:.0f} s.\n\n"
        + f"<!-- table: coverage -->\n{cov}<!-- /table -->\n\nFailures:\n\n"
        + f"<!-- table: failures -->\n{fails}<!-- /table -->\n\n"
        + "Excluded (no pixel classifier, or the model's own forward fails; not counted):\n\n"
        + f"<!-- table: excluded -->\n{excluded}<!-- /table -->\n\nEvery model:\n\n"
        + f"<!-- table: models -->\n{models}<!-- /table -->\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    run = run_info("zoo.py", argv)
    jobs = select_jobs(args)
    widths = [34, 11, 5, 58, 7, 48, 7]
    header = ["model", "source", "adap", "layers", "map", "status", "sec"]
    print(_row(header, widths), flush=True)
    results: list[Result] = []
    start = time.perf_counter()
    for name, source, build, input_size in jobs:
        r = check_model(name, source, build, input_size, args.device)
        results.append(r)
        layers = ",".join(r.layers)
        if len(layers) > widths[3]:
            layers = "..." + layers[-(widths[3] - 3):]
        size = "x".join(map(str, r.map_size))
        status = r.status if r.status == "ok" else f"{r.status}: {r.error}"
        print(_row([name, source, r.adapter[:5], layers, size, status, f"{r.seconds:.1f}"], widths),
              flush=True)
    total = time.perf_counter() - start

    print()
    cov = coverage(results)
    for source, c in cov.items():
        print(f"coverage {source}: {c['fraction']} = {c['percent']:.1f}% ({c['excluded']} excluded)")
    failures = [r for r in results if r.status not in ("ok", "excluded")]
    for r in failures:
        print(f"FAILED {r.source}/{r.model}: {r.error}")
    for r in results:
        if r.status == "excluded":
            print(f"excluded {r.source}/{r.model}: {r.error}")
    print(f"total time: {total:.0f} s ({len(results)} models, device {args.device}, "
          f"{args.threads} threads, torch {torch.__version__})")
    payload = {"run": run, "coverage": cov, "total_seconds": round(total, 1),
               "threads": args.threads, "device": args.device,
               "results": [asdict(r) for r in results]}
    paths = write_results(args.out, "zoo", payload, zoo_markdown(payload))
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=1))
    print(f"wrote {', '.join(map(str, paths))}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
