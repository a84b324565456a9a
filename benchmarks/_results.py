"""What every benchmark records next to its numbers, and where it writes them.

Each of ``quality.py``, ``zoo.py``, ``speed.py`` and ``imputation.py`` writes
``benchmarks/results/<name>.json`` and ``benchmarks/results/<name>.md`` (committed), or into
``--out``. The JSON holds the run's numbers under its own keys and, under ``"run"``
(:func:`run_info`): the command line, the date (UTC), the machine (platform, CPU count, torch
threads), the library versions and the git commit of the working tree with a dirty flag.

``--quick`` (smoke) runs write into a temporary folder unless ``--out`` is given, so that they
never replace the committed results.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"

#: Distributions whose versions are recorded (``"missing"`` when not installed).
DISTRIBUTIONS = ("torch", "torchvision", "timm", "captum", "grad-cam", "transformers", "numpy",
                 "scipy")


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`DISTRIBUTIONS` and of ``ttame_attr`` (its ``__version__``)."""
    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    try:
        from ttame_attr import __version__
    except ImportError:  # pragma: no cover - the package is what the benchmarks measure
        __version__ = "missing"
    versions["ttame_attr"] = __version__
    return versions


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """``git rev-parse HEAD`` and whether the working tree differs from it.

    Dirty means a tracked file is modified or an untracked, not ignored file exists, anywhere
    but ``benchmarks/results/`` (the results themselves, rewritten by every run, do not count).
    ``changed`` lists the first 20 such paths.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
    if commit is None or status is None:
        return {"commit": None, "dirty": None, "changed": []}
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:20]}


def machine_info() -> dict[str, Any]:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def run_info(script: str, argv: list[str] | None) -> dict[str, Any]:
    """The command line, date, machine, library versions and git state of this run."""
    args = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": " ".join([f"python benchmarks/{script}", shlex.join(args)]).strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": library_versions(),
        "git": git_state(),
    }


def default_out(quick: bool, name: str) -> Path:
    """Where results go without ``--out``: ``benchmarks/results``, or a temporary folder for
    ``--quick`` runs."""
    if quick:
        return Path(tempfile.gettempdir()) / f"ttame_{name}_quick"
    return RESULTS_DIR


def add_run_options(p: argparse.ArgumentParser, n_images: int, quick_help: str) -> None:
    """The options every head-fitting study shares (``budget.py``, ``head_init.py``): the scored
    images, the output and cache folders, ``--no-cache``, ``--quick`` and ``--threads``."""
    p.add_argument("--n-images", type=int, default=n_images,
                   help=f"validation images scored per head (default {n_images})")
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results/ (--quick: a temp dir)")
    p.add_argument("--cache", type=Path, default=None,
                   help="default benchmarks/_cache (--quick: <out>/_cache_quick)")
    p.add_argument("--no-cache", action="store_true", help="fit every head again (and cache it)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {quick_help}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")


def finish_run_options(p: argparse.ArgumentParser, args: argparse.Namespace, name: str,
                       quick_images: int) -> argparse.Namespace:
    """Check and complete the options of :func:`add_run_options`: ``--n-images`` must be positive
    (``--quick`` caps it at ``quick_images``); ``--out`` and ``--cache`` get their defaults;
    ``--threads`` (positive) is applied with ``torch.set_num_threads``."""
    if args.n_images < 1:
        p.error(f"--n-images: expected a positive number of images, got {args.n_images}")
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads: expected a positive number of threads, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.quick:
        args.n_images = min(args.n_images, quick_images)
    args.out = args.out or default_out(args.quick, name)
    args.cache = args.cache or (args.out / "_cache_quick" if args.quick else ROOT / "benchmarks" / "_cache")
    return args


def run_header(run: dict[str, Any]) -> str:
    """Markdown lines saying how the results were made (for the top of ``<name>.md``)."""
    git = run["git"]
    commit = (git["commit"] or "unknown")[:12] + (" (dirty working tree)" if git["dirty"] else "")
    m, v = run["machine"], run["versions"]
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val != "missing")
    return (
        f"Command: `{run['command']}`  \n"
        f"Date: {run['date']}; commit {commit}  \n"
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['cpus_usable']} usable), "
        f"{m['torch_threads']} torch threads  \n"
        f"Versions: {libs}\n"
    )


def write_results(out: Path, name: str, payload: dict[str, Any], markdown: str) -> list[Path]:
    """Write ``out/<name>.json`` and ``out/<name>.md``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
    paths[1].write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
