"""Explain a whole dataset into a store: batched, resumable, sharded across processes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ttame_attr._core.fingerprint import weights_fingerprint
from ttame_attr._version import __version__
from ttame_attr.dataset._columns import batch_columns, require_pyarrow
from ttame_attr.dataset._data import IMAGENET, ShardBatches, make_loader, resolve_source
from ttame_attr.dataset._manifest import (
    FORMAT_VERSION,
    check_identity,
    finished_shards,
    read_manifest,
    write_manifest,
)
from ttame_attr.dataset._reader import ExplanationStore
from ttame_attr.dataset._writer import ShardWriter

__all__ = ["explain_dataset", "explained_module"]

logger = logging.getLogger(__name__)


def explained_module(explainer: Any, top_k: int) -> tuple[nn.Module, Any]:
    """``(module returning (logits, classes, maps) at map size, the model)`` for ``explainer``."""
    from ttame_attr.export import ExplainedModel

    if getattr(explainer, "multi_label", False):
        raise ValueError("explainer: explain_dataset stores the top-k softmax classes of a classifier; this "
                         "explainer is multi-label (multi_label=True), which the store does not hold yet. "
                         "Use explainer.explain on batches, or a softmax explainer.")
    if not isinstance(explainer, nn.Module) and callable(getattr(explainer, "as_module", None)):  # a TTAME
        return explainer.as_module(top_k, upsample=False), explainer.model
    if isinstance(explainer, ExplainedModel):
        if explainer.top_k != top_k or explainer.upsample is not False or explainer.scale != "sigmoid":
            raise ValueError(f"explainer: the store holds top_k={top_k} sigmoid maps at the head's map size, "
                             f"but this module has top_k={explainer.top_k}, scale={explainer.scale!r}, "
                             f"upsample={explainer.upsample!r}. Build it with explainer.as_module({top_k}, "
                             "upsample=False), or pass the TTAME explainer itself.")
        return explainer, explainer.classifier
    raise TypeError(f"explainer: expected a TTAME explainer or the module of explainer.as_module(top_k, "
                    f"upsample=False), got {type(explainer).__name__}.")


def _default_transform(module: nn.Module) -> Any:
    from ttame_attr.cli._data import eval_transform

    norm = module.normalization
    if norm is None:
        logger.info("explain_dataset: the explainer has no normalization; files are normalised with "
                    "ImageNet's mean and std")
        norm = IMAGENET
    return eval_transform(module.input_size, norm[0], norm[1])


def _identity(module: nn.Module, model: Any, source: Any, options: dict[str, Any],
              model_spec: str | None, device: torch.device) -> dict[str, Any]:
    """The manifest's description of the run (checked on resume: see ``IDENTITY_KEYS``)."""
    with torch.no_grad():
        probe = module(torch.zeros(1, *module.input_size, device=device))
    h, w = probe.maps.shape[-2:]
    k = options["top_k"]
    return {
        "format_version": FORMAT_VERSION, "package_version": __version__,
        "model": {"spec": model_spec, "class": type(model).__name__},
        "head_sha256": weights_fingerprint(module.head)["sha256"], "options": options,
        "data": source.fingerprint(),
        "map_size": [int(h), int(w)], "num_classes": int(module.num_classes),
        "input_size": list(module.input_size), "class_names": source.class_names,
        "maps_encoding": {"dtype": "float16", "byteorder": "little", "order": "C",
                          "shape": [k, int(h), int(w)]},
    }


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_workers" else 1):
        kind = "a non-negative int" if name == "num_workers" else "a positive int"
        raise ValueError(f"{name}: expected {kind}, got {value!r}.")
    return value


def _prepare_store(store: Path, identity: dict[str, Any], resume: bool) -> None:
    """Check an existing store against the run (every rank does, so every rank refuses alike)."""
    if store.exists() and not store.is_dir():
        raise ValueError(f"store: {str(store)!r} exists and is not a folder. Give a folder path for the "
                         "store.")
    manifest = read_manifest(store) if store.is_dir() else None
    if manifest is None:
        if store.is_dir() and any(store.iterdir()):
            raise ValueError(f"store: the folder {str(store)!r} is not empty and holds no explanation store. "
                             "Give a new or empty folder.")
        return
    if not resume:
        raise ValueError(f"store: {str(store)!r} already holds a store. Pass resume=True (`ttame explain` "
                         "resumes by default) to finish it, or use a new path.")
    check_identity(manifest, identity, store)


def _group(distributed: bool | None, device: torch.device) -> Any:
    from ttame_attr.training.distributed import resolve_distributed

    return resolve_distributed(distributed, device)


def _barrier(ctx: Any) -> None:
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()


def _explain_loop(module: nn.Module, loader: Any, batches: ShardBatches, writer: ShardWriter,
                  device: torch.device, source: Any, progress: bool, skip: bool) -> None:
    """Run the module over the pending shards' batches, handing each finished shard to ``writer``."""
    from tqdm.auto import tqdm

    current, parts, skipped = None, [], []
    bar = tqdm(total=batches.images(), unit="img", disable=not progress, desc="explain", smoothing=0.1)
    try:
        for batch in loader:
            shard = batch.indices[0] // batches.shard_size
            if current is not None and shard != current:
                writer.put(current, batches.shard_range(current).start, parts, skipped)
                parts, skipped = [], []
            current = shard
            for index, reason in batch.bad:
                path = source.paths[index] if source.paths else None
                if not skip:
                    raise ValueError(f"data: cannot read the image {path!r} ({reason}). Remove it, or pass "
                                     "skip_unreadable=True (--skip-unreadable) to skip unreadable images.")
                logger.warning("data: skipping the unreadable image %s (%s)", path, reason)
                skipped.append([index, path, reason])
            if batch.images is not None:
                x = batch.images.to(device, non_blocking=True)
                with torch.inference_mode():
                    logits, classes, maps = module(x)
                    probs = logits.float().softmax(dim=1).gather(1, classes)
                    masks = batch.masks.to(device, non_blocking=True) if batch.masks is not None else None
                    cols = batch_columns(maps, classes, probs, masks)
                cols["index"] = batch.kept
                cols["label"] = batch.labels.numpy()
                paths = source.paths
                cols["path"] = [paths[i] for i in batch.kept] if paths else [None] * len(batch.kept)
                parts.append(cols)
            bar.update(len(batch.indices))
        if current is not None:
            writer.put(current, batches.shard_range(current).start, parts, skipped)
    finally:
        bar.close()


def _finish(store: Path, identity: dict[str, Any], num_shards: int, ctx: Any) -> None:
    """Rank 0: the final manifest and ``skipped.txt``."""
    _barrier(ctx)
    if ctx is None or ctx.rank == 0:
        manifest = write_manifest(store, identity, num_shards, verify=False)
        skipped = [s for record in manifest["shards"] for s in record.get("skipped", [])]
        if skipped:
            lines = [f"# {len(skipped)} unreadable images skipped by ttame_attr.explain_dataset",
                     *(f"{path if path is not None else index}\t{reason}" for index, path, reason in skipped)]
            (store / "skipped.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            logger.warning("explain_dataset: skipped %d unreadable images (listed in %s)", len(skipped),
                           store / "skipped.txt")
    _barrier(ctx)


def explain_dataset(explainer: Any, data: Any, store: str | Path, *, top_k: int = 1,
                    batch_size: int | None = None, num_workers: int | None = None, shard_size: int = 1024,
                    resume: bool = True, skip_unreadable: bool = False, transform: Any = None,
                    distributed: bool | None = None, progress: bool = True,
                    model_spec: str | None = None, extra: dict[str, Any] | None = None) -> ExplanationStore:
    """Explain every image of a dataset into a store of sharded Parquet files.

    Each row holds an image's ``index`` (its position in the data), ``path`` and ``label`` when
    known, its ``top_k`` classes and probabilities, their maps at the head's map size (float16)
    and per-map statistics (:func:`~ttame_attr.dataset.map_statistics`). Images are decoded in
    ``num_workers`` DataLoader workers, inference runs without autograd, shards are written by a
    background thread; memory stays flat however large the data.

    Shard ``s`` holds images ``s * shard_size`` to ``(s + 1) * shard_size - 1``. Each is written
    atomically and recorded; a rerun of the same call skips finished shards (after checking their
    hashes), so a killed run resumes where it stopped and gives the same store. Under
    ``torchrun`` (any number of processes and nodes) rank ``r`` of ``W`` computes shards ``r, r +
    W, ...``, and the store equals a one-process run's.

    Args:
        explainer: a trained :class:`~ttame_attr.TTAME`, or its ``as_module(top_k, upsample=False)``.
        data: a ``DataLoader`` over a map-style dataset (its dataset, batch size, workers and
            ``pin_memory`` are used; its sampler and ``collate_fn`` are not, the store follows the
            dataset's order), a ``Dataset`` (items: an image tensor, ``(image, label)``,
            ``(image, label, mask)``), an image folder (ImageFolder layout gives labels), or a
            ``.txt`` list file of paths (an integer second field gives labels), or a list of image
            file paths.
        store: the store's folder (created).
        top_k: how many of the most probable classes to explain per image.
        batch_size: images per forward pass (default: the DataLoader's, else 64).
        num_workers: decoding processes (default: the DataLoader's, else 0).
        shard_size: images per Parquet file.
        resume: finish an existing store of the same run (``False``: refuse an existing store).
        skip_unreadable: skip image files that cannot be read (logged, recorded in the manifest
            and listed in ``STORE/skipped.txt``) instead of raising.
        transform: PIL image -> tensor for file data (default: resize 256/224, centre crop to the
            explainer's input size, its normalisation).
        distributed: ``None`` shards across ranks under torchrun or an initialised process
            group; ``False`` never.
        progress: show a progress bar (images/s, ETA) on rank 0.
        model_spec: how the model was named (the CLI's spec), recorded in the manifest.
        extra: more keys for the manifest (not checked on resume).

    Returns:
        The :class:`~ttame_attr.ExplanationStore`.

    Raises:
        TypeError: for an explainer or data of the wrong kind.
        ValueError: for bad options, an unreadable image without ``skip_unreadable``, or a store
            written by another run (other model, head, package version or options).
        ImportError: without pyarrow (``pip install "ttame-attr[dataset]"``).

    Example:
        >>> store = explain_dataset(explainer, "images/", "explanations", top_k=3)  # doctest: +SKIP
        >>> store.table(["path", "classes"]).to_pandas()  # doctest: +SKIP
    """
    require_pyarrow()
    module, model = explained_module(explainer, _check_positive("top_k", top_k))
    source = resolve_source(data, transform if transform is not None else _default_transform(module))
    if batch_size is None:
        batch_size = source.loader.get("batch_size") or 64
    _check_positive("batch_size", batch_size)
    num_workers = _check_positive("num_workers", num_workers if num_workers is not None
                                  else source.loader.get("num_workers", 0))
    _check_positive("shard_size", shard_size)
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    options = {"top_k": top_k, "batch_size": batch_size, "shard_size": shard_size, "scale": "sigmoid"}
    identity = _identity(module, model, source, options, model_spec, device)
    identity.update(extra or {})
    store = Path(store)
    ctx = _group(distributed, device)
    rank, world = (0, 1) if ctx is None else (ctx.rank, ctx.world_size)
    _prepare_store(store, identity, resume)
    _barrier(ctx)
    n = len(source.dataset)
    num_shards = -(-n // shard_size)
    done = finished_shards(store) if store.is_dir() else {}
    if rank == 0:
        (store / "shards").mkdir(parents=True, exist_ok=True)
        write_manifest(store, identity, num_shards)
    _barrier(ctx)
    pending = [s for s in range(rank, num_shards, world) if s not in done]
    if done and rank == 0:
        logger.info("explain_dataset: resuming %s: %d of %d shards done", store, len(done), num_shards)
    batches = ShardBatches(pending, shard_size, batch_size, n)
    pin = source.loader.get("pin_memory", False) or device.type == "cuda"
    writer = ShardWriter(store, identity, num_shards, rank, manifest=rank == 0)
    try:
        if pending:
            loader = make_loader(source, batches, num_workers, pin)
            _explain_loop(module, loader, batches, writer, device, source, progress and rank == 0,
                          skip_unreadable)
    finally:
        writer.close()
    _finish(store, identity, num_shards, ctx)
    return ExplanationStore(store)
