"""explain_dataset across processes: killed with SIGKILL and resumed, and 2 torchrun ranks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from ttame_attr import ExplanationStore

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("store_worker.py")
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
TIMEOUT_S = 240


def _run(*argv: str) -> None:
    done = subprocess.run([sys.executable, *argv], env=ENV, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]


def _same_store(a: ExplanationStore, b: ExplanationStore) -> None:
    assert len(a) == len(b) == 22 and a.complete and b.complete
    assert a.table().equals(b.table())  # same rows, same values, same index order
    assert torch.equal(a.maps(slice(None)), b.maps(slice(None)))


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    _run(str(WORKER), str(tmp_path / "whole"))
    store, marker = tmp_path / "killed", tmp_path / "marker"
    argv = [sys.executable, str(WORKER), str(store), "--hang-at", "13", "--marker", str(marker)]
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run never reached image 13"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    partial = ExplanationStore(store)
    assert not partial.complete and 0 < len(partial) < 22  # shard 0 (and maybe 1) finished
    recorded = {int(p.stem.split("-")[1]) for p in (store / "records").glob("*.json")}
    assert 0 in recorded and 3 not in recorded
    _run(str(WORKER), str(store))
    _same_store(ExplanationStore(tmp_path / "whole"), ExplanationStore(store))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks_equals_one_process(tmp_path):
    _run(str(WORKER), str(tmp_path / "one"))
    _run("-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_addr",
         "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(tmp_path / "two"))
    two = ExplanationStore(tmp_path / "two")
    assert sorted({s["rank"] for s in two.manifest["shards"]}) == [0, 1]
    assert [s["rank"] for s in two.manifest["shards"]] == [0, 1, 0, 1]  # shard s on rank s % 2
    _same_store(ExplanationStore(tmp_path / "one"), two)
