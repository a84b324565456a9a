"""What explaining costs where the classifier is served: explained over plain inference, per runtime.

For each model (torchvision ``resnet50``, ``vit_b_16``, ``swin_t`` at 224x224, random weights, an
untrained T-TAME head: the cost does not depend on the weights) and each runtime, the *explained*
variant (:meth:`TTAME.as_module <ttame_attr.TTAME.as_module>`: logits, top-1 class and its map
upsampled to the input, sigmoid, in one pass) is timed against the *plain* one (the same backbone,
run or exported the same way):

* ``eager``: PyTorch eager, ``model.eval()`` under ``torch.no_grad()``;
* ``compile``: ``torch.compile`` (inductor by default) of the model and of ``as_module()``;
* ``onnx``: ONNX Runtime (CPU, or CUDA with ``--device cuda`` when its provider is installed) on
  the files written by ``torch.onnx.export(model, dynamo=True)`` and ``explainer.export_onnx``
  (dynamic batch, both), into a temporary folder deleted at the end.

Ratios only, no absolute time: in every round each variant runs once (explained and plain next to
each other, which one first alternating from round to round, and the order of the runtimes
rotating), after ``--warmup`` untimed calls (the first call compiles or builds the session and is
not timed). A ratio is the median time of one variant over the median of the other; min..max are
the ratios of single rounds. ``runtime / eager`` compares the same variant across runtimes.
Clock: wall time (``torch.cuda.synchronize()`` on both ends on CUDA), or ``--clock cpu``.

Goals (the issue's): explained / plain <= 1.15 on resnet50 and <= 1.05 on vit_b_16 and swin_t, in
every runtime; compiled <= eager (compile / eager <= 1.00), plain and explained.

Usage::

    python benchmarks/export.py --threads 2                  # CPU, all models and runtimes
    python benchmarks/export.py --models resnet50 --runtimes eager onnx --reps 9
    python benchmarks/export.py --device cuda
    python benchmarks/export.py --quick                      # resnet18 at 64 px, batch 2, to a temp dir

Writes ``export.json`` (the run: command line, date, machine, versions, git commit; the settings;
every row with its per-round ratios; ``ratios.<model>.<runtime>.<ratio>``) and ``export.md`` (the
table, between ``<!-- table: ratios -->`` and ``<!-- /table -->``) into ``--out``:
``benchmarks/results/`` by default, a temporary folder with ``--quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import default_out, run_header, run_info, write_results  # noqa: E402

from ttame_attr import TTAME  # noqa: E402

MODELS = ("resnet50", "vit_b_16", "swin_t")
#: Also accepted by ``--models``: the smoke-test model of ``--quick`` (no goal).
EXTRA_MODELS = ("resnet18",)
RUNTIMES = ("eager", "compile", "onnx")
#: Input side per model (224 unless listed).
SIZES = {"resnet18": 64}
#: Goals of the issue: explained / plain per model, and compiled / eager.
GOALS = {"resnet50": 1.15, "vit_b_16": 1.05, "swin_t": 1.05}
COMPILE_GOAL = 1.00


# ---------------------------------------------------------------------------------- ratios
@dataclass
class Ratio:
    """``median(a) / median(b)`` and the smallest and largest ratio of single rounds."""

    median: float
    low: float
    high: float
    rounds: list[float]

    def cell(self) -> str:
        spread = f"{self.low:.2f}..{self.high:.2f}" if len(self.rounds) > 1 else ""
        return f"{self.median:.3f}" + (f" ({spread})" if spread else "")


def ratio_of(a: list[float], b: list[float]) -> Ratio:
    """The ratio of the medians of ``a`` and ``b``, timed in the same rounds."""
    rounds = [x / y for x, y in zip(a, b)]
    return Ratio(statistics.median(a) / statistics.median(b), min(rounds), max(rounds), rounds)


def verdict(ratio: Ratio | None, goal: float | None) -> str:
    if ratio is None or goal is None:
        return ""
    return "ok" if ratio.median <= goal else "MISSED"


@dataclass
class Row:
    """One model in one runtime."""

    model: str
    runtime: str
    explained_over_plain: Ratio
    plain_vs_eager: Ratio | None = None
    explained_vs_eager: Ratio | None = None

    @property
    def goal(self) -> float | None:
        return GOALS.get(self.model)

    @property
    def compile_goal(self) -> float | None:
        return COMPILE_GOAL if self.runtime == "compile" and self.plain_vs_eager is not None else None

    @property
    def missed(self) -> list[str]:
        """The goals this row misses."""
        checks = [("explained/plain", self.explained_over_plain, self.goal),
                  ("compile/eager plain", self.plain_vs_eager, self.compile_goal),
                  ("compile/eager explained", self.explained_vs_eager, self.compile_goal)]
        return [name for name, ratio, goal in checks if verdict(ratio, goal) == "MISSED"]

    @property
    def verdict(self) -> str:
        if self.goal is None and self.compile_goal is None:
            return ""
        return "MISSED: " + ", ".join(self.missed) if self.missed else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "runtime": self.runtime, "goal": self.goal,
                "compile_goal": self.compile_goal, "verdict": self.verdict,
                **{k: None if r is None else vars(r) for k, r in self.ratios().items()}}

    def ratios(self) -> dict[str, Ratio | None]:
        return {"explained/plain": self.explained_over_plain, "plain/eager": self.plain_vs_eager,
                "explained/eager": self.explained_vs_eager}


def make_rows(model: str, times: dict[str, dict[str, list[float]]]) -> list[Row]:
    """Rows from ``times[runtime][variant]``, the seconds of each round (variants ``plain`` and
    ``explained``); ``runtime / eager`` where ``eager`` was timed."""
    eager = times.get("eager")
    rows = []
    for runtime, t in times.items():
        row = Row(model, runtime, ratio_of(t["explained"], t["plain"]))
        if eager is not None and runtime != "eager":
            row.plain_vs_eager = ratio_of(t["plain"], eager["plain"])
            row.explained_vs_eager = ratio_of(t["explained"], eager["explained"])
        rows.append(row)
    return rows


def markdown_table(rows: list[Row]) -> str:
    lines = ["| model | runtime | explained / plain (min..max) | goal | plain: runtime / eager | "
             "explained: runtime / eager | goal | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        goal = f"<= {r.goal:.2f}" if r.goal is not None else ""
        cgoal = f"<= {r.compile_goal:.2f}" if r.compile_goal is not None else ""
        vs = [x.cell() if x is not None else "" for x in (r.plain_vs_eager, r.explained_vs_eager)]
        lines.append(f"| {r.model} | {r.runtime} | {r.explained_over_plain.cell()} | {goal} | "
                     f"{vs[0]} | {vs[1]} | {cgoal} | {r.verdict} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- runtimes
def build(name: str, device: torch.device, batch: int) -> tuple[nn.Module, TTAME, torch.Tensor]:
    """The model (random weights, eval mode), an untrained explainer and a batch of images."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    size = SIZES.get(name, 224)
    explainer = TTAME(model, input_size=(3, size, size))
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, explainer, x.to(device)


def _no_grad(module: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Callable[[], Any]:
    def call() -> Any:
        with torch.no_grad():
            return module(x)
    return call


def export_plain(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["images"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False)


def ort_session(path: Path, device: torch.device, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    return ort.InferenceSession(str(path), options, providers=[provider])


def onnx_unavailable(device: torch.device) -> str | None:
    """Why the ``onnx`` runtime cannot run here, or None."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        return f"onnxruntime is not installed ({err})"
    if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return None


def variants(runtime: str, model: nn.Module, explainer: TTAME, x: torch.Tensor, workdir: Path,
             threads: int, backend: str) -> dict[str, Callable[[], Any]]:
    """``plain`` and ``explained`` calls of one runtime, built (and called once) here."""
    explained = explainer.as_module()
    if runtime == "eager":
        calls = {"plain": _no_grad(model, x), "explained": _no_grad(explained, x)}
    elif runtime == "compile":
        calls = {"plain": _no_grad(torch.compile(model, backend=backend), x),
                 "explained": _no_grad(torch.compile(explained, backend=backend), x)}
    else:
        plain_path, explained_path = workdir / "plain.onnx", workdir / "explained.onnx"
        export_plain(model, x, plain_path)
        explainer.export_onnx(explained_path, example=x)
        feed = {"images": x.detach().cpu().numpy()}
        sessions = {k: ort_session(p, x.device, threads)
                    for k, p in (("plain", plain_path), ("explained", explained_path))}
        calls = {k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}
    for call in calls.values():  # compiles, builds the sessions' kernels
        call()
    return calls


# ---------------------------------------------------------------------------------- timing
@dataclass
class Clock:
    device: torch.device
    kind: str = "wall"
    clock: Callable[[], float] = field(init=False)

    def __post_init__(self) -> None:
        self.clock = time.process_time if self.kind == "cpu" else time.perf_counter

    def time(self, fn: Callable[[], Any]) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = self.clock()
        fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock() - start


def round_order(runtimes: list[str], rnd: int) -> list[tuple[str, str]]:
    """Round ``rnd``'s order: the runtimes rotated by ``rnd``, plain first on even rounds."""
    shift = rnd % len(runtimes) if runtimes else 0
    pair = ("plain", "explained") if rnd % 2 == 0 else ("explained", "plain")
    return [(rt, v) for rt in runtimes[shift:] + runtimes[:shift] for v in pair]


def time_rounds(calls: dict[str, dict[str, Callable[[], Any]]], reps: int, warmup: int,
                clock: Clock) -> dict[str, dict[str, list[float]]]:
    """Seconds of every call in ``reps`` rounds, after ``warmup`` untimed rounds."""
    runtimes = list(calls)
    times: dict[str, dict[str, list[float]]] = {rt: {"plain": [], "explained": []} for rt in runtimes}
    for rnd in range(warmup + reps):
        for runtime, variant in round_order(runtimes, rnd):
            seconds = clock.time(calls[runtime][variant])
            if rnd >= warmup:
                times[runtime][variant].append(seconds)
    return times


def bench_model(name: str, args: argparse.Namespace, workdir: Path,
                skipped: list[dict[str, str]]) -> list[Row]:
    device = torch.device(args.device)
    model, explainer, x = build(name, device, args.batch)
    calls: dict[str, dict[str, Callable[[], Any]]] = {}
    for runtime in args.runtimes:
        reason = onnx_unavailable(device) if runtime == "onnx" else None
        start = time.perf_counter()
        if reason is None:
            try:
                calls[runtime] = variants(runtime, model, explainer, x, workdir, args.threads,
                                          args.compile_backend)
            except Exception as err:  # noqa: BLE001 - reported, the other runtimes still run
                traceback.print_exc()
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if reason is not None:
            print(f"  {name} {runtime}: skipped ({reason})", flush=True)
            skipped.append({"model": name, "runtime": runtime, "reason": reason})
        else:
            print(f"  {name} {runtime}: ready in {time.perf_counter() - start:.0f} s", flush=True)
    times = time_rounds(calls, args.reps, args.warmup, Clock(device, args.clock))
    del calls
    torch._dynamo.reset()
    return make_rows(name, times) if times else []


# ---------------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=None, choices=MODELS + EXTRA_MODELS,
                   help="default: resnet50 vit_b_16 swin_t (quick: resnet18 at 64 px)")
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    p.add_argument("--batch", type=int, default=None, help="images per call (8; quick: 2)")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (11; quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (2; quick: 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads and ONNX Runtime's intra_op_num_threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="elapsed time, or this process's CPU time (all threads; CPU only)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (inductor; 'eager' traces only, for smoke tests)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: resnet18 at 64 px, batch 2, 2 rounds, to a temp dir")
    p.add_argument("--out", type=Path, default=None,
                   help="folder of export.json and export.md (default benchmarks/results/; "
                        "--quick: a temp dir)")
    args = p.parse_args(argv)
    args.models = args.models or (list(EXTRA_MODELS) if args.quick else list(MODELS))
    args.batch = args.batch or (2 if args.quick else 8)
    args.reps = args.reps or (2 if args.quick else 11)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.out = args.out or default_out(args.quick, "export")
    return args


def write_export_results(args: argparse.Namespace, run: dict[str, Any], header: str,
                         rows: list[Row], skipped: list[dict[str, str]]) -> list[Path]:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        ratios.setdefault(r.model, {})[r.runtime] = {
            k: v.median for k, v in r.ratios().items() if v is not None}
    payload = {"run": run, "header": header, "settings": settings, "goals": {
        "explained/plain": GOALS, "compile/eager": COMPILE_GOAL}, "rows": [r.as_dict() for r in rows],
        "ratios": ratios, "skipped": skipped}
    notes = "".join(f"\nSkipped: {s['model']} {s['runtime']}: {s['reason']}" for s in skipped)
    text = (
        "# Explained over plain inference per runtime: `benchmarks/export.py`\n\n" + run_header(run)
        + f"\n{header}\n\nRatios of median times; in brackets the min..max of the ratios of single "
        "rounds (each variant once per round, explained and plain side by side, alternating which "
        "runs first, the runtimes' order rotating). *explained / plain*: `as_module()` (logits, "
        "top-1, its map upsampled to the input, sigmoid) over the bare classifier, run or exported "
        "the same way. *runtime / eager*: the same variant in this runtime over eager PyTorch. "
        "Goals: explained / plain <= 1.15 (resnet50), <= 1.05 (vit_b_16, swin_t); compile / eager "
        f"<= 1.00.\n{notes}\n\n<!-- table: ratios -->\n{markdown_table(rows)}<!-- /table -->\n"
    )
    return write_results(args.out, "export", payload, text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    if args.clock == "cpu" and args.device == "cuda":
        print("--clock cpu: CPU time does not see GPU work; use --clock wall", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    run = run_info("export.py", argv)
    header = (f"device={args.device}, threads={args.threads} (torch and ONNX Runtime), "
              f"batch={args.batch}, rounds={args.reps}, warmup={args.warmup}, clock={args.clock}, "
              f"compile backend={args.compile_backend}, torch={torch.__version__}")
    print(header, flush=True)
    rows: list[Row] = []
    skipped: list[dict[str, str]] = []
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ttame_export_bench_") as tmp:
        for name in args.models:
            start = time.perf_counter()
            workdir = Path(tmp) / name
            workdir.mkdir()
            new = bench_model(name, args, workdir, skipped)
            rows.extend(new)
            print(markdown_table(new), end="", flush=True)
            print(f"  [{name} took {time.perf_counter() - start:.0f} s]", flush=True)
    print(f"\nAll rows ({time.perf_counter() - begin:.0f} s):\n{markdown_table(rows)}", end="")
    paths = write_export_results(args, run, header, rows, skipped)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
