"""explain_dataset: images/s beside the bare explained module and plain prediction, flat memory, resume.

Three parts, each measured side by side in one run:

1. **Throughput** (resnet50 at 224 by default, JPEG files decoded in DataLoader workers): the same
   images, batch size and DataLoader settings for three loops, interleaved (the order rotates
   each round, one warm-up batch each): ``explain_dataset`` into a fresh store (Parquet files,
   manifest, everything), a bare loop calling ``explainer.as_module(upsample=False)`` writing
   nothing, and a plain ``model(x)`` prediction loop. Ratios of images/s, and the FLOP floor of
   the explained/plain ratio (the head's own arithmetic, counted with ``FlopCounterMode``).
2. **Peak RSS** of ``explain_dataset`` on a small CNN at 64 px for two dataset sizes (default
   2,000 and 20,000 images), each in its own process (``ru_maxrss``).
3. **Resume**: the small CNN run killed with SIGKILL once half its shards are recorded, then
   resumed: the resume's time beside the uninterrupted run's, and whether the stores are equal.

Run: ``python benchmarks/explain_dataset.py`` (``--images`` for fewer images, ``--device cuda``
on a GPU). Writes ``benchmarks/results/explain_dataset.json`` and ``.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import run_header, run_info, write_results  # noqa: E402

from ttame_attr import TTAME, ExplanationStore, explain_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class SmallCNN(nn.Module):
    """Three stages (32, 16, 8 at 64 px) and a linear classifier: the memory and resume runs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU())
        self.stage3 = nn.Sequential(nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage3(self.stage2(self.stage1(self.stem(x)))).mean((2, 3)))


class RandomImages(torch.utils.data.Dataset):
    """``(image, label)`` of seeded random 64 px images, made on the fly (no memory of its own)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.rand(3, 64, 64, generator=g), i % 10


def small_explainer() -> TTAME:
    torch.manual_seed(0)
    return TTAME(SmallCNN().eval(), input_size=(3, 64, 64))


def write_jpegs(folder: Path, n: int) -> None:
    """``n`` smooth random JPEGs of 320x280 (decoded and resized like photos)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (14, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((320, 280), Image.BILINEAR).save(folder / f"{i:05d}.jpg", quality=90)


def flops(module: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(x)
    return counter.get_total_flops()


def _loop(fn, loader, device) -> float:
    """Seconds to run ``fn`` on every batch (after the loader's workers start)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            fn(x.to(device, non_blocking=True))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def throughput(args: argparse.Namespace, work: Path) -> dict:
    """Part 1: images/s of explain_dataset, the bare explained module and plain prediction."""
    import torchvision

    from ttame_attr.cli._data import eval_transform, find_images, image_loader

    device = torch.device(args.device)
    model = getattr(torchvision.models, args.model)(weights=None).eval().to(device)
    explainer = TTAME(model, input_size=(3, args.size, args.size), normalization="imagenet")
    module = explainer.as_module(1, upsample=False)
    folder = work / "jpegs"
    write_jpegs(folder, args.images)
    transform = eval_transform(explainer.input_size, *explainer.normalization)
    files = find_images([str(folder)])
    extra = {"prefetch_factor": 4} if args.workers else {}  # as explain_dataset's loader
    loader = image_loader(files, transform, skip=False, batch_size=args.batch_size, num_workers=args.workers,
                          pin_memory=device.type == "cuda", **extra)
    x1 = torch.zeros(1, *explainer.input_size, device=device)
    counts = {"plain": flops(model, x1), "bare": flops(module, x1)}

    def store_run() -> float:
        store = work / "store"
        shutil.rmtree(store, ignore_errors=True)
        start = time.perf_counter()
        explain_dataset(explainer, str(folder), store, batch_size=args.batch_size, num_workers=args.workers,
                        transform=transform, progress=False)
        return time.perf_counter() - start

    methods = {"explain_dataset": store_run, "bare": lambda: _loop(module, loader, device),
               "plain": lambda: _loop(model, loader, device)}
    with torch.inference_mode():  # warm-up: one batch each
        x = next(iter(loader))[0].to(device)
        model(x), module(x)
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(args.rounds):
        for name in names[r % 3:] + names[:r % 3]:
            times[name].append(methods[name]())
            print(f"round {r + 1}: {name} {args.images / times[name][-1]:.2f} images/s", flush=True)
    ips = {name: args.images / float(np.median(t)) for name, t in times.items()}
    return {"model": args.model, "size": args.size, "images": args.images, "batch_size": args.batch_size,
            "workers": args.workers, "rounds": args.rounds, "device": str(device), "seconds": times,
            "images_per_s": ips, "flops_per_image": counts,
            "ratios": {"explain_dataset/bare": ips["explain_dataset"] / ips["bare"],
                       "explain_dataset/plain": ips["explain_dataset"] / ips["plain"],
                       "bare/plain": ips["bare"] / ips["plain"],
                       "flop_floor_bare/plain": counts["plain"] / counts["bare"]}}


def _status_mb(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def child(args: argparse.Namespace) -> None:
    """One small-CNN run in this process: prints seconds and peak RSS as JSON.

    The peak is the run's own: the high-water mark is reset (``/proc/self/clear_refs``) after the
    imports and the model are loaded, so that their transient peak does not hide the run's.
    """
    torch.set_num_threads(1)
    explainer, data = small_explainer(), RandomImages(args.child_images)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    explain_dataset(explainer, data, args.child, batch_size=64, num_workers=0, shard_size=args.shard_size,
                    progress=False)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "peak_rss_mb": _status_mb("VmHWM"), "rss_before_mb": before,
              "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(result), flush=True)


def _child_cmd(args: argparse.Namespace, store: Path, n: int) -> list[str]:
    return [sys.executable, __file__, "--child", str(store), "--child-images", str(n),
            "--shard-size", str(args.shard_size)]


def _spawn(args: argparse.Namespace, store: Path, n: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(_child_cmd(args, store, n), capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": time.perf_counter() - start}


def memory_and_resume(args: argparse.Namespace, work: Path) -> dict:
    """Parts 2 and 3: peak RSS at two sizes; a run killed at half, resumed."""
    rss = {n: _spawn(args, work / f"rss{n}", n) for n in args.rss_images}
    n = args.resume_images
    whole = rss.get(n) or _spawn(args, work / f"rss{n}", n)
    store = work / "killed"
    proc = subprocess.Popen(_child_cmd(args, store, n), env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    half = -(-n // args.shard_size) // 2
    while len(list((store / "records").glob("*.json"))) < half and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(list((store / "records").glob("*.json")))
    resumed = _spawn(args, store, n)
    a, b = ExplanationStore(work / f"rss{n}"), ExplanationStore(store)
    return {"peak_rss": {str(k): v for k, v in rss.items()},
            "rss_ratio": rss[max(rss)]["peak_rss_mb"] / rss[min(rss)]["peak_rss_mb"],
            "rss_growth_mb": {str(k): v["peak_rss_mb"] - v["rss_before_mb"] for k, v in rss.items()},
            "resume": {"images": n, "shards": -(-n // args.shard_size), "shards_done_when_killed": killed_at,
                       "uninterrupted": whole, "resumed": resumed, "identical": a.table().equals(b.table())}}


def markdown(result: dict) -> str:
    t, m = result["throughput"], result["memory"]
    ips, r = t["images_per_s"], t["ratios"]
    lines = [f"# explain_dataset\n\n{run_header(result['run'])}",
             f"## Throughput: {t['model']} at {t['size']} px, {t['images']} JPEGs, batch {t['batch_size']}, "
             f"{t['workers']} workers, {t['device']}, median of {t['rounds']} interleaved rounds\n",
             "| loop | images/s |", "|---|---|"]
    lines += [f"| {name} | {v:.2f} |" for name, v in ips.items()]
    lines += ["", f"- explain_dataset / bare explained module: **{r['explain_dataset/bare']:.3f}** "
              "(goal >= 0.90)",
              f"- explain_dataset / plain prediction: {r['explain_dataset/plain']:.3f}; bare / plain: "
              f"{r['bare/plain']:.3f}; FLOP floor of explained / plain: {r['flop_floor_bare/plain']:.3f} "
              f"(the head adds {1 / r['flop_floor_bare/plain'] - 1:.1%} to the model's FLOPs)", "",
              "## Peak RSS of explain_dataset (small CNN, 64 px, one process each)\n",
              "| images | peak RSS during the run (MiB) | RSS before it (imports, model) | seconds |",
              "|---|---|---|---|"]
    lines += [f"| {n} | {v['peak_rss_mb']:.1f} | {v['rss_before_mb']:.1f} | {v['seconds']:.1f} |"
              for n, v in m["peak_rss"].items()]
    res = m["resume"]
    lines += ["", f"- ratio largest / smallest: **{m['rss_ratio']:.3f}** (goal <= 1.10)", "",
              f"## Killed at half and resumed ({res['images']} images, {res['shards']} shards)\n",
              f"- killed (SIGKILL) with {res['shards_done_when_killed']} shards recorded; the resume took "
              f"{res['resumed']['seconds']:.1f} s in explain_dataset ({res['resumed']['wall_s']:.1f} s with "
              f"process start) against {res['uninterrupted']['seconds']:.1f} s "
              f"({res['uninterrupted']['wall_s']:.1f} s) uninterrupted",
              f"- resumed store identical to the uninterrupted one: **{res['identical']}**"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50", help="torchvision model for the throughput part")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=1000, help="JPEGs for the throughput part")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rss-images", type=int, nargs=2, default=[2000, 20000])
    p.add_argument("--resume-images", type=int, default=8000)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-images", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="ttame_explain_dataset_"))
    try:
        result = {"run": run_info("explain_dataset.py", argv), "throughput": throughput(args, work),
                  "memory": memory_and_resume(args, work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(result)
    write_results(args.out, "explain_dataset", result, text)
    print(text)


if __name__ == "__main__":
    main()
