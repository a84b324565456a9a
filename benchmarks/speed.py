"""Side-by-side speed and memory ratios of T-TAME against the forward pass it explains.

Every figure is a *ratio* of two computations measured in the same process, on the same batch,
with their repetitions interleaved (A, B, B, A, A, B, ...) and summarised by medians, so that
load from other processes hits both sides alike. No absolute time is claimed.

Clocks: on CUDA, wall time around each sample with ``torch.cuda.synchronize()`` on both ends; a
sample is several back-to-back calls (as in a loop over batches) lasting about
``--min-sample`` seconds, divided by the number of calls. On the CPU, by default the CPU time of
this process (``time.process_time``, all its threads), which other processes competing for the
cores do not inflate; with more than one thread it also counts the threads' spin-waits, so on a
busy machine use ``--threads 1``. ``--clock wall`` measures elapsed time instead.

Rows (for each model: torchvision ``resnet50``, ``vit_b_16``, ``swin_t`` at 224x224, random
weights):

* ``attribute/forward``: ``explainer.attribute(x)`` (predicted class, needs the logits, so the
  whole forward runs) over ``model(x)``, both under ``torch.no_grad()``.
* ``attribute(target)/forward``: the same with the target given (the forward may stop after the
  last captured layer).
* ``explain/forward``: ``explainer.explain(x)`` (logits, top-1, map) over ``model(x)``.
* ``gradcam/forward``: Captum ``LayerGradCam`` on the last stage (resnet50 ``layer4``, vit_b_16 the
  last block's ``ln_1``, swin_t ``features.7``; token and channels-last outputs are laid out as
  ``(N, C, h, w)`` by a probe module inserted in a copy of the model), upsampled bilinearly to the
  input, target = the predicted class, over ``model(x)`` (no_grad).
* ``full head/forward``: what the authors' code does: features and logits, the head's fusion of
  *all* classes (``AttentionHead.forward_full``), then the map of the predicted class, upsampled
  and passed through the sigmoid, over ``model(x)``.
* ``5 targets/1 target``: ``attribute(x, target=(N, 5))`` over ``attribute(x, target=(N,))``.
* ``fit step/floor``: one :class:`ttame_attr.TrainStep` step over its floor: a
  no-grad forward (labels), the forward of the batch masked by a ``(N, 1, h, w)`` mask that
  requires grad, the cross-entropy on it and the backward to the mask (same batch, same
  precision, the backbone's parameters as the user left them).
* ``fit peak mem/floor``: peak memory allocated *during* one fit step over that of one floor step
  (memory already live before the call, such as the model and the optimiser state, is not
  counted). CUDA: ``torch.cuda.max_memory_allocated``. CPU: the PyTorch profiler's allocator
  events (``profile_memory=True``): every allocation and free of a tensor is a timed event, the
  running sum of their sizes is the memory held by tensors, and its maximum is the peak. This
  counts what PyTorch's allocator hands out (as on CUDA) and not what the C library keeps
  cached, which a resident-set measurement would mix in.

Usage::

    python benchmarks/speed.py                       # CPU, all models, batch 8
    python benchmarks/speed.py --threads 1           # CPU, on a machine shared with others
    python benchmarks/speed.py --device cuda         # fp32 and bf16 autocast tables
    python benchmarks/speed.py --quick               # smoke test (batch 2, 1 repetition; CUDA 2)
    python benchmarks/speed.py --models resnet50 --reps 5 --out /tmp/speed

Writes ``speed.json`` (the run: command line, date, machine, versions, git commit; the settings;
every row; ``ratios.<model>.<precision>.<row>``) and ``speed.md`` (the table, between
``<!-- table: ratios -->`` and ``<!-- /table -->``) into ``--out``: ``benchmarks/results/`` by
default, a temporary folder with ``--quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The package measured: this checkout, or another source tree named by TTAME_BENCH_SRC (to
# measure an older version side by side with the same script).
sys.path.insert(0, os.environ.get("TTAME_BENCH_SRC") or str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import default_out, run_header, run_info, write_results  # noqa: E402

from ttame_attr._core.modes import eval_mode  # noqa: E402
from ttame_attr._core.outputs import extract_logits  # noqa: E402
from ttame_attr._core.ttame import TTAME  # noqa: E402
from ttame_attr.adapters import capture_features  # noqa: E402
from ttame_attr.training import TrainStep  # noqa: E402

MODELS = ("resnet50", "vit_b_16", "swin_t")
#: Also accepted by ``--models``, for smoke tests of the script itself (not in the default set).
EXTRA_MODELS = ("resnet18",)

#: Goals of issue 5 (ratio upper bounds), per row and model (None: no goal, reported only).
GOALS: dict[str, dict[str, float] | float] = {
    "attribute/forward": {"resnet50": 1.20, "vit_b_16": 1.08, "swin_t": 1.08},
    "5 targets/1 target": 1.10,
    "fit step/floor": 1.15,
    "fit peak mem/floor": 1.25,
}

#: The last stage read by Grad-CAM, and how its output is laid out.
GRADCAM_LAYERS = {
    "resnet50": ("layer4", "nchw"),
    "resnet18": ("layer4", "nchw"),
    "vit_b_16": ("encoder.layers.encoder_layer_11.ln_1", "tokens"),
    "swin_t": ("features.7", "nhwc"),
}


def goal_for(row: str, model: str) -> float | None:
    goal = GOALS.get(row)
    if isinstance(goal, dict):
        return goal.get(model)
    return goal


# ---------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: ``"wall"``: elapsed time; ``"cpu"``: CPU time of this process (all its threads), which other
#: processes competing for the cores do not inflate (use it with ``--threads 1`` on a busy CPU).
CLOCK = {"clock": time.perf_counter}


def _timed(fn: Callable[[], Any], device: torch.device, inner: int = 1) -> float:
    """Time of one call of ``fn``: ``inner`` calls back to back (no synchronisation between
    them, as in a loop over batches), averaged."""
    clock = CLOCK["clock"]
    _sync(device)
    start = clock()
    for _ in range(inner):
        fn()
    _sync(device)
    return (clock() - start) / inner


@dataclass
class Pair:
    """Two computations to compare: the ratio reported is ``a / b``."""

    row: str
    a: Callable[[], Any]
    b: Callable[[], Any]
    times_a: list[float] = field(default_factory=list)
    times_b: list[float] = field(default_factory=list)
    inner: int = 1

    def ratio(self) -> float:
        return statistics.median(self.times_a) / statistics.median(self.times_b)

    def paired_spread(self) -> tuple[float, float]:
        """Smallest and largest ratio of the repetitions (each A against its neighbour B)."""
        ratios = [a / b for a, b in zip(self.times_a, self.times_b)]
        return min(ratios), max(ratios)


def run_interleaved(
    pairs: list[Pair], reps: int, warmup: int, device: torch.device, min_sample: float = 0.0
) -> None:
    """Time every pair ``reps`` times, alternating which side runs first, after ``warmup`` runs.

    A sample of one side is ``inner`` back-to-back calls, with ``inner`` chosen once per pair so
    that a sample of its slower side lasts about ``min_sample`` seconds (short GPU calls are
    otherwise dominated by timer and launch jitter); both sides use the same ``inner``.
    """
    for pair in pairs:
        for _ in range(warmup):
            pair.a()
            pair.b()
        if min_sample > 0:
            once = max(_timed(pair.a, device), _timed(pair.b, device), 1e-6)
            pair.inner = max(1, min(50, round(min_sample / once)))
    for rep in range(reps):
        for pair in pairs:
            if rep % 2 == 0:
                pair.times_a.append(_timed(pair.a, device, pair.inner))
                pair.times_b.append(_timed(pair.b, device, pair.inner))
            else:
                pair.times_b.append(_timed(pair.b, device, pair.inner))
                pair.times_a.append(_timed(pair.a, device, pair.inner))


# ---------------------------------------------------------------------------------- memory
def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak of the memory allocated by tensors during ``fn()``, above what was live before."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
    ]
    events.sort()
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


# ---------------------------------------------------------------------------------- models
def build_model(name: str, device: torch.device) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    return model.eval().to(device)


class _GridProbe(nn.Module):
    """Wraps a module whose output is tokens or channels-last so that an ``(N, C, h, w)`` view of
    it passes through ``self.probe`` (an identity Captum can hook), then restores the layout."""

    def __init__(self, inner: nn.Module, layout: str, grid: tuple[int, int]) -> None:
        super().__init__()
        self.inner, self.layout, self.grid = inner, layout, grid
        self.probe = nn.Identity()

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        out = self.inner(*args, **kwargs)
        h, w = self.grid
        if self.layout == "nhwc":
            return self.probe(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        n, length, c = out.shape
        prefix = out[:, : length - h * w]
        grid = out[:, length - h * w :].reshape(n, h, w, c).permute(0, 3, 1, 2)
        patches = self.probe(grid).permute(0, 2, 3, 1).reshape(n, h * w, c)
        return torch.cat([prefix, patches], dim=1)


def gradcam_setup(name: str, model: nn.Module, explainer: TTAME) -> tuple[nn.Module, nn.Module]:
    """A model (a copy with a probe for non-NCHW layers) and the layer Grad-CAM reads."""
    layer_name, layout = GRADCAM_LAYERS[name]
    if layout == "nchw":
        return model, model.get_submodule(layer_name)
    info = {i.name: i for i in explainer.layer_info}
    grid = (info[layer_name].height, info[layer_name].width) if layer_name in info else None
    if grid is None:
        with torch.no_grad(), capture_features(model, [layer_name]) as store:
            model(torch.zeros(1, *explainer.input_size, device=explainer.device))
        out = store[layer_name]
        grid = tuple(out.shape[1:3]) if layout == "nhwc" else explainer.adapter.token_grid(
            layer_name, out.shape[1], explainer.input_size[1:]
        )
    wrapped = copy.deepcopy(model)
    parent_name, _, child = layer_name.rpartition(".")
    parent = wrapped.get_submodule(parent_name) if parent_name else wrapped
    probe = _GridProbe(getattr(parent, child), layout, grid)  # type: ignore[arg-type]
    setattr(parent, child, probe)
    return wrapped, probe.probe


# ---------------------------------------------------------------------------------- rows
def full_head_maps(explainer: TTAME, x: Tensor) -> Tensor:
    """The authors' inference: all class maps, then the predicted class's, upsampled."""
    with torch.no_grad(), eval_mode(explainer.head):
        features, logits = explainer.extractor(x, need_logits=True)
        assert logits is not None
        maps = explainer.head.forward_full(features)  # (N, K, h, w)
        own = maps[torch.arange(x.shape[0], device=x.device), logits.argmax(dim=1)][:, None]
        own = F.interpolate(own, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(own)


def floor_step(explainer: TTAME, x: Tensor, autocast: Callable[[], Any], map_size: tuple[int, int]) -> None:
    """The least a training step must do: labels, a masked forward, the backward to the mask."""
    model = explainer.model
    with torch.no_grad(), autocast():
        labels = extract_logits(model(x)).argmax(dim=1)
    mask = torch.full((x.shape[0], 1, *map_size), 0.5, device=x.device, dtype=x.dtype,
                      requires_grad=True)
    with autocast():
        up = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=False)
        logits = extract_logits(model(x * up.to(x.dtype)))
    loss = F.cross_entropy(logits.float(), labels)
    loss.backward(inputs=[mask])


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def wrapped() -> Any:
        with torch.no_grad():
            return fn()
    return wrapped


def _with(ctx: Callable[[], Any], fn: Callable[[], Any]) -> Callable[[], Any]:
    def wrapped() -> Any:
        with ctx():
            return fn()
    return wrapped


def make_pairs(
    name: str, model: nn.Module, x: Tensor, device: torch.device, amp: bool, skip: set[str]
) -> tuple[list[Pair], dict[str, Any]]:
    """The rows for one model; also returns the things kept alive for them (explainer...)."""
    explainer = TTAME(model, normalization="imagenet")
    amp_dtype = torch.bfloat16
    if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        amp_dtype = torch.float16

    def autocast() -> Any:
        if not amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    n = x.shape[0]
    with torch.no_grad(), autocast():
        labels = extract_logits(model(x)).argmax(dim=1)
    g = torch.Generator().manual_seed(0)
    five = torch.randint(0, explainer.num_classes, (n, 5), generator=g).to(device)
    five[:, 0] = labels

    def forward() -> Any:
        return model(x)

    pairs: list[Pair] = []

    def add(row: str, a: Callable[[], Any], b: Callable[[], Any]) -> None:
        if row not in skip:
            pairs.append(Pair(row, _with(autocast, a), _with(autocast, b)))

    add("attribute/forward", _no_grad(lambda: explainer.attribute(x)), _no_grad(forward))
    add("attribute(target)/forward", _no_grad(lambda: explainer.attribute(x, target=labels)),
        _no_grad(forward))
    add("explain/forward", lambda: explainer.explain(x), _no_grad(forward))

    keep: dict[str, Any] = {"explainer": explainer}
    if "gradcam/forward" not in skip:
        from captum.attr import LayerAttribution, LayerGradCam

        cam_model, cam_layer = gradcam_setup(name, model, explainer)
        gradcam = LayerGradCam(cam_model, cam_layer)
        keep["gradcam"] = (cam_model, gradcam)

        def run_gradcam() -> Tensor:
            attr = gradcam.attribute(x, target=labels, relu_attributions=True)
            return LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")

        add("gradcam/forward", run_gradcam, _no_grad(forward))
    add("full head/forward", lambda: full_head_maps(explainer, x), _no_grad(forward))
    add("5 targets/1 target", _no_grad(lambda: explainer.attribute(x, target=five)),
        _no_grad(lambda: explainer.attribute(x, target=labels)))

    trainer = TrainStep(explainer, total_steps=10_000, amp=amp)
    keep["trainer"] = trainer

    def fit_step() -> None:
        with eval_mode(model):
            trainer(x)

    def floor() -> None:
        floor_step(explainer, x, autocast, explainer.map_size)

    if "fit step/floor" not in skip:
        # The trainer manages its own autocast; the floor uses the same precision.
        pairs.append(Pair("fit step/floor", fit_step, floor))
    keep["fit_step"], keep["floor"] = fit_step, floor
    return pairs, keep


# ---------------------------------------------------------------------------------- driver
@dataclass
class Row:
    model: str
    precision: str
    row: str
    ratio: float
    low: float
    high: float
    reps: int
    goal: float | None
    extra: dict[str, float] | None = None

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "ok" if self.ratio <= self.goal else "MISSED"


def bench_model(
    name: str, device: torch.device, batch: int, reps: int, warmup: int, amp: bool,
    channels_last: bool, skip: set[str], memory: bool, min_sample: float = 0.0,
) -> list[Row]:
    model = build_model(name, device)
    torch.manual_seed(1)
    x = torch.randn(batch, 3, 224, 224, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    precision = "bf16-autocast" if amp else "fp32"
    pairs, keep = make_pairs(name, model, x, device, amp, skip)
    run_interleaved(pairs, reps, warmup, device, min_sample)
    rows = []
    for pair in pairs:
        low, high = pair.paired_spread()
        rows.append(Row(name, precision, pair.row, pair.ratio(), low, high, reps,
                        goal_for(pair.row, name)))
    if memory and "fit peak mem/floor" not in skip:
        # Run each once more first so that lazily created state (optimiser buffers) is live.
        keep["fit_step"]()
        keep["floor"]()
        # Gradients of the last step would otherwise count as memory held before the step.
        keep["trainer"].optimizer.zero_grad(set_to_none=True)
        fit_peak = peak_bytes(keep["fit_step"], device)
        floor_peak = peak_bytes(keep["floor"], device)
        ratio = fit_peak / max(floor_peak, 1)
        rows.append(Row(name, precision, "fit peak mem/floor", ratio, ratio, ratio, 1,
                        goal_for("fit peak mem/floor", name),
                        {"fit_peak_mib": fit_peak / 2**20, "floor_peak_mib": floor_peak / 2**20}))
    del keep, pairs, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [
        f"{'model':<10} {'precision':<13} {'ratio (A/B)':<27} {'median':>7} "
        f"{'min..max':>13} {'goal':>6}  ",
        "-" * 84,
    ]
    for r in rows:
        spread = f"{r.low:.2f}..{r.high:.2f}" if r.reps > 1 else ""
        goal = f"<={r.goal:.2f}" if r.goal is not None else ""
        extra = r.extra
        note = f"  ({extra['fit_peak_mib']:.0f} / {extra['floor_peak_mib']:.0f} MiB)" if extra else ""
        lines.append(
            f"{r.model:<10} {r.precision:<13} {r.row:<27} {r.ratio:>7.3f} {spread:>13} "
            f"{goal:>6}  {r.verdict}{note}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS + EXTRA_MODELS)
    parser.add_argument("--batch", type=int, default=None, help="batch size (8; quick: 2)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions per side (CPU 3, CUDA 12; quick: 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per side first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=("fp32", "amp", "both"), default=None,
                        help="fp32, bf16 autocast (CUDA) or both (default: CPU fp32, CUDA both)")
    parser.add_argument("--channels-last", action="store_true",
                        help="model and input in channels-last memory format (both sides)")
    parser.add_argument("--min-sample", type=float, default=None,
                        help="seconds a timed sample should last; short calls are repeated back "
                             "to back within a sample (default: CUDA 0.05, CPU 0 = one call)")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory row")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default=None,
                        help="wall time, or this process's CPU time (default: CUDA wall, CPU cpu)")
    parser.add_argument("--quick", action="store_true", help="smoke test: batch 2, 1 repetition")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of speed.json and speed.md (default benchmarks/results/; "
                             "--quick: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args.quick, "speed")
    return args


def markdown_rows(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| model | precision | row (A / B) | median | min..max | reps | goal | verdict |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        spread = f"{r.low:.2f}..{r.high:.2f}" if r.reps > 1 else ""
        goal = f"<= {r.goal:.2f}" if r.goal is not None else ""
        note = ""
        if r.extra:
            note = f" ({r.extra['fit_peak_mib']:.0f} / {r.extra['floor_peak_mib']:.0f} MiB)"
        lines.append(f"| {r.model} | {r.precision} | {r.row} | {r.ratio:.3f}{note} | {spread} | "
                     f"{r.reps} | {goal} | {r.verdict} |")
    return "\n".join(lines) + "\n"


def write_speed_results(args: argparse.Namespace, run: dict[str, Any], header: str,
                        settings: dict[str, Any], rows: list[Row]) -> list[Path]:
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        ratios.setdefault(r.model, {}).setdefault(r.precision, {})[r.row] = r.ratio
    payload = {"run": run, "header": header, "settings": settings,
               "rows": [dict(vars(r), verdict=r.verdict) for r in rows], "ratios": ratios}
    text = (
        "# Speed and memory ratios: `benchmarks/speed.py`\n\n" + run_header(run)
        + f"\n{header}\n\nRatio of medians, A over B, repetitions interleaved (A B, B A, ...); "
        "min..max: the ratios of single repetitions.\n\n"
        + f"<!-- table: ratios -->\n{markdown_rows(rows)}<!-- /table -->\n"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2))
    return write_results(args.out, "speed", payload, text)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    import logging

    logger = logging.getLogger("ttame_attr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    run = run_info("speed.py", argv)
    cuda = device.type == "cuda"
    clock = args.clock or ("wall" if cuda else "cpu")
    if clock == "cpu" and cuda:
        print("--clock cpu: CPU time does not see GPU work; use --clock wall on CUDA",
              file=sys.stderr)
        return 2
    CLOCK["clock"] = time.process_time if clock == "cpu" else time.perf_counter
    batch = args.batch or (2 if args.quick else 8)
    reps = args.reps or ((2 if cuda else 1) if args.quick else (12 if cuda else 3))
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or not cuda else 3)
    precision = args.precision or ("both" if cuda else "fp32")
    min_sample = args.min_sample if args.min_sample is not None else (
        (0.02 if args.quick else 0.05) if cuda else 0.0
    )
    if precision != "fp32" and not cuda:
        print("note: bf16 autocast on CPU is measured as asked", file=sys.stderr)
    amps = {"fp32": [False], "amp": [True], "both": [False, True]}[precision]
    if cuda:
        torch.backends.cudnn.benchmark = True
    header = (
        f"device={device} ({torch.cuda.get_device_name(device) if cuda else 'cpu'}), "
        f"threads={torch.get_num_threads()}, batch={batch}, reps={reps}, warmup={warmup}, "
        f"min_sample={min_sample}s, clock={clock}, torch={torch.__version__}, "
        f"channels_last={args.channels_last}"
    )
    print(header, flush=True)
    rows: list[Row] = []
    with _quiet_logs():
        for name in args.models:
            for amp in amps:
                start = time.perf_counter()
                new = bench_model(name, device, batch, reps, warmup, amp, args.channels_last,
                                  set(args.skip), not args.no_memory, min_sample)
                rows.extend(new)
                print(format_table(new), flush=True)
                print(f"  [{name} {'amp' if amp else 'fp32'} took {time.perf_counter() - start:.0f} s]",
                      flush=True)
    print("\nAll rows (ratio of medians, A over B, interleaved repetitions):")
    print(format_table(rows))
    settings = {"device": str(device), "batch": batch, "reps": reps, "warmup": warmup,
                "min_sample": min_sample, "clock": clock, "precision": precision,
                "channels_last": args.channels_last, "models": args.models, "skip": args.skip,
                "memory": not args.no_memory, "quick": args.quick,
                "package_measured": os.environ.get("TTAME_BENCH_SRC") or "this checkout"}
    paths = write_speed_results(args, run, header, settings, rows)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
