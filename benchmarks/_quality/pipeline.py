"""One (backbone, seed) piece of the quality benchmark: maps of every method, then their metrics.

The classifier is the same for every seed (:data:`CLASSIFIER_SEED`). The seed ``s`` of a piece
sets T-TAME's training seed (:attr:`TTAMEConfig.seed`: initialisation, shuffling and its
training images), RISE's masks, ROAD's noise and the evaluation images: ``n`` images of the
*test* split of the classifier's dataset seed starting at offset ``s * EVAL_STRIDE``, so that the
seeds' images are disjoint from each other and, as the test split, from every training and
validation image.

Pieces are cached under ``<cache>/pieces/`` keyed by :func:`_quality.cache.piece_key`; a run of
several invocations (one backbone and seed each) is aggregated by a last one that finds every
piece cached and recomputes nothing (only the classifier is loaded and the images rendered, to
check the keys).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _results import run_info
from torch import Tensor, nn

from _quality import evaluation as E
from _quality import methods as M
from _quality.cache import (
    key_digest,
    load_entry,
    maps_key,
    piece_key,
    save_entry,
    source_digest,
    tensor_digest,
)
from _quality.models import TTAMEConfig, fingerprint, get_classifier, get_ttame, head_key
from _quality.vit_methods import VIT_ONLY
from ttame_attr.data import SyntheticShapes

ROOT = Path(__file__).resolve().parents[2]
#: The classifiers are trained with this seed whatever ``--seeds`` says.
CLASSIFIER_SEED = 0
#: Seed ``s`` evaluates test images ``[s * EVAL_STRIDE, s * EVAL_STRIDE + n)``.
EVAL_STRIDE = 100_000
#: Every method, in table order; the last two explain the ViT only (``_quality/vit_methods.py``).
M_NAMES = ("T-TAME", "Grad-CAM", "Grad-CAM++", "Score-CAM", "RISE", "IG", "Chefer-LRP", "LeGrad")


@dataclass
class Backbone:
    """What the seeds of one backbone share: the classifier and facts about it."""

    arch: str
    model: nn.Module
    pixel_model: nn.Module
    fingerprint: str  # model_identity(): weights, class and the source of its module
    info: dict[str, Any]
    image_size: int


def load_backbone(arch: str, args: Namespace, image_size: int) -> Backbone:
    recipe = {"num_train": args.classifier_n_train, "epochs": args.classifier_epochs,
              "lr": args.classifier_lr}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    model, info = get_classifier(arch, args.classifier_cache, image_size, args.quick,
                                 CLASSIFIER_SEED, recipe, retrain=args.retrain_classifiers)
    if "path" in info:  # relative to the repository: the results are committed
        path = Path(info["path"]).resolve()
        info["path"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    info = {**info, "seed": CLASSIFIER_SEED, "fingerprint": fingerprint(model),
            "params": sum(p.numel() for p in model.parameters())}
    return Backbone(arch, model, M.PixelModel(model).eval(), model_identity(model), info,
                    image_size)


def model_identity(model: nn.Module) -> str:
    """What the maps depend on of the classifier: the digest of its weights (:func:`fingerprint`),
    its class and the source of the module that defines the class (its forward pass)."""
    kind = type(model)
    module = inspect.getmodule(kind)
    return key_digest({"weights": fingerprint(model), "class": f"{kind.__module__}.{kind.__qualname__}",
                       "source": source_digest(module) if module is not None else None})


def eval_set(bb: Backbone, seed: int, n: int) -> tuple[E.EvalSet, dict[str, Any]]:
    """The evaluation images of ``seed``, and where they come from (with their digest)."""
    offset = seed * EVAL_STRIDE
    data = SyntheticShapes(n, image_size=bb.image_size, seed=CLASSIFIER_SEED, split="test",
                           offset=offset)
    evalset = E.make_eval_set(bb.pixel_model, data, n)
    digest = tensor_digest(evalset.images, evalset.labels, evalset.masks, evalset.predicted)
    meta = {"split": "test", "dataset_seed": CLASSIFIER_SEED, "offset": offset, "n": n,
            "digest": digest}
    return evalset, meta


def baselines(bb: Backbone, args: Namespace, seed: int) -> list[M.Explainer]:
    """The baselines asked for by ``--methods`` (all by default), seeded with ``seed``."""
    wanted = args.methods or M_NAMES
    made: list[M.Explainer] = []
    for name in M_NAMES[1:]:
        if name not in wanted:
            continue
        if name == "RISE":
            made.append(M.RISE(bb.pixel_model, bb.image_size, n_masks=args.rise_masks,
                               cells=args.rise_cells, seed=seed))
        elif name == "IG":
            made.append(M.CaptumIG(bb.pixel_model, n_steps=args.ig_steps))
        elif name in VIT_ONLY:
            if bb.arch != "vit":
                continue
            try:
                made.append(VIT_ONLY[name][0](bb.model))
            except ImportError as err:  # torchcam (LeGrad) needs Python 3.11
                print(f"[{bb.arch}] {name} skipped: {err} (pip install -e '.[benchmark]')", flush=True)
        else:
            made.append(M.PytorchGradCAM(name, bb.model, bb.arch))
    return made


def _maps_path(cache: Path, method: str, arch: str, seed: int, key: dict[str, Any]) -> Path:
    return cache / "maps" / f"{method}_{arch}_seed{seed}_{key_digest(key)}.pt"


def _identity(bb: Backbone, args: Namespace, seed: int, images: str,
              methods: list[M.Explainer], cfg: TTAMEConfig | None) -> tuple[dict, dict]:
    """The piece key and the maps key of each baseline."""
    keys = {m.name: maps_key(m, (*M.method_sources(m), E.explain_images), bb.arch,
                             bb.fingerprint, images, seed) for m in methods}
    digests = {name: key_digest(k) for name, k in keys.items()}
    if cfg is not None:
        ttame = {"head": head_key(cfg, bb.arch, bb.info["fingerprint"], bb.image_size),
                 "source": source_digest(*M.method_sources(M.TTAMEMethod), E.explain_images)}
        digests = {"T-TAME": key_digest(ttame), **digests}
    metrics = {"deletion_steps": args.deletion_steps, "road_max_iter": args.road_max_iter,
               "road_seed": seed, "n_images": args.n_images, "image_size": bb.image_size,
               "figure_images": args.figure_images}
    this = sys.modules[__name__]
    return piece_key(bb.arch, seed, bb.fingerprint, images, digests, metrics, (E, this)), keys


def _maps(methods: list[M.Explainer], evalset: E.EvalSet, keys: dict, bb: Backbone,
          args: Namespace, seed: int) -> tuple[dict[str, Tensor], dict[str, float], dict[str, str]]:
    """Maps, seconds per image and timing source of every method: baselines from the map cache
    where it holds them, the rest computed in one interleaved pass (and the baselines cached)."""
    maps: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    timing: dict[str, str] = {}
    todo = []
    for m in methods:
        entry = None
        if m.name in keys and args.read_cache:
            entry = load_entry(_maps_path(args.cache, m.name, bb.arch, seed, keys[m.name]),
                               keys[m.name])
        if entry is None:
            todo.append(m)
            continue
        maps[m.name], seconds[m.name] = entry["maps"].float(), float(entry["seconds_per_image"])
        timing[m.name] = "map cache"
    for name, (m_maps, sec) in E.compute_maps_interleaved(todo, evalset, args.timing_chunk).items():
        maps[name], seconds[name], timing[name] = m_maps, sec, "interleaved"
        if name in keys:
            save_entry(_maps_path(args.cache, name, bb.arch, seed, keys[name]), keys[name],
                       {"maps": m_maps.float(), "seconds_per_image": sec})
    return maps, seconds, timing


def _ttame(bb: Backbone, cfg: TTAMEConfig, args: Namespace) -> tuple[M.Explainer, dict[str, Any]]:
    start = time.perf_counter()
    explainer, meta = get_ttame(bb.model, bb.arch, cfg, args.cache, bb.image_size,
                                read_cache=args.read_cache)
    last = meta["history"][-1] if meta.get("history") else {}
    print(f"[{bb.arch} seed {cfg.seed}] T-TAME head ({'cached' if meta['cached'] else 'trained'}, "
          f"{time.perf_counter() - start:.0f} s): layers {explainer.layers}, "
          f"final fidelity {last.get('fidelity', float('nan')):.3f}", flush=True)
    return M.TTAMEMethod(explainer), meta


def run_piece(bb: Backbone, args: Namespace, seed: int, cfg: TTAMEConfig | None
              ) -> tuple[dict[str, Any], dict[str, Tensor], E.EvalSet]:
    """The piece of ``(bb, seed)``: from ``<cache>/pieces/`` when it holds it under the same key,
    else computed (and cached). Returns the piece, the figure's maps and the evaluation set."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    evalset, eval_meta = eval_set(bb, seed, args.n_images)
    cfg = None if cfg is None else dataclasses.replace(cfg, seed=seed)
    methods = baselines(bb, args, seed)
    try:
        key, keys = _identity(bb, args, seed, eval_meta["digest"], methods, cfg)
        path = args.cache / "pieces" / f"{bb.arch}_seed{seed}_{key_digest(key)}.pt"
        entry = load_entry(path, key) if args.read_cache else None
        if entry is not None:
            piece = {**json.loads(entry["result"]), "from_cache": True}
            print(f"[{bb.arch} seed {seed}] piece cached ({path.name}): nothing recomputed",
                  flush=True)
            return piece, dict(entry["figure_maps"]), evalset
        ttame_meta: dict[str, Any] = {"skipped": "T-TAME not in --methods"}
        if cfg is not None:
            ttame, ttame_meta = _ttame(bb, cfg, args)
            methods.insert(0, ttame)
        maps, seconds, timing = _maps(methods, evalset, keys, bb, args, seed)
        results = _evaluate(bb, args, seed, evalset, methods, maps, seconds, timing)
    finally:
        for m in methods:
            m.close()
    acc = float((evalset.predicted == evalset.labels).float().mean())
    piece = {"arch": bb.arch, "seed": seed, "n_images": args.n_images, "image_size": bb.image_size,
             "eval_images": eval_meta, "eval_accuracy": acc, "ttame": ttame_meta,
             "methods": results, "timed_together": [n for n, t in timing.items() if t == "interleaved"],
             "seconds": time.perf_counter() - start, "cache_key": key_digest(key),
             "computed": _provenance(args)}
    figure_maps = {name: maps[name][: args.figure_images].contiguous() for name in results}
    save_entry(path, key, {"result": json.dumps(piece), "figure_maps": figure_maps})
    return {**piece, "from_cache": False}, figure_maps, evalset


def _provenance(args: Namespace) -> dict[str, Any]:
    """How a piece was computed: whether caches were read (False in a ``--no-cache`` run), when,
    by which command and at which commit; kept with the piece when a later run loads it."""
    run = run_info("quality.py", sys.argv[1:])
    return {"read_cache": bool(args.read_cache), "date": run["date"], "command": run["command"],
            "git": run["git"]}


def _evaluate(bb: Backbone, args: Namespace, seed: int, evalset: E.EvalSet,
              methods: list[M.Explainer], maps: dict[str, Tensor], seconds: dict[str, float],
              timing: dict[str, str]) -> dict[str, dict[str, Any]]:
    results = {}
    for m in methods:
        start = time.perf_counter()
        res = E.evaluate_maps(bb.pixel_model, evalset, maps[m.name],
                              deletion_steps=args.deletion_steps, seed=seed,
                              road_max_iter=args.road_max_iter,
                              adic_maps=m.adic_maps(evalset.images, evalset.predicted))
        res.update(seconds_per_image=seconds[m.name], timing=timing[m.name],
                   settings=m.describe())
        results[m.name] = res
        cached = " (maps from the map cache)" if timing[m.name] != "interleaved" else ""
        print(f"[{bb.arch} seed {seed}] {m.name:<10} {seconds[m.name]:8.4f} s/image{cached}; "
              f"metrics {time.perf_counter() - start:.0f} s; AD15 {res['ad_15']:.2f} "
              f"IC15 {res['ic_15']:.2f} MoRF {res['road_morf']:.3f} "
              f"PG {res['pointing_game']:.3f}", flush=True)
    return results
