"""Start worker processes for the distributed tests and fail (never hang) if they stall."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import pytest
import torch.multiprocessing as mp

WORLD = 2
TIMEOUT_S = 240  # a hang fails the test instead of blocking the suite


def run_ranks(fn: Callable[..., None], args: tuple) -> None:
    """Spawn ``WORLD`` processes running ``fn(rank, *args)`` and wait for all of them.

    Processes still running after ``TIMEOUT_S`` are killed and the test fails.
    """
    context = mp.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the distributed workers did not finish in {TIMEOUT_S} s (hang?)")


def leave_without_teardown() -> None:
    """End a worker that finished and saved its results, skipping interpreter teardown.

    Objects still holding gloo threads (a DDP reducer, a process group) can be destroyed during
    interpreter shutdown after their group is gone; that rarely aborts the process ("terminate
    called without an active exception") although the work succeeded. Only called on success:
    a worker that raised still exits through ``torch.multiprocessing`` with its traceback.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
