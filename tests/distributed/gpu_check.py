"""Device check (not part of the CPU suite): 2 ranks sharing one GPU, gloo, against 1 process.

Run from the repository root on a machine with a CUDA GPU::

    PYTHONPATH=. python tests/distributed/gpu_check.py            # or --device cpu

NCCL needs one GPU per rank, so on a single GPU the two ranks use gloo with CUDA tensors: this
checks the CUDA code paths (DDP with device_ids, the synchronised BatchNorm on CUDA, bf16
autocast). It prints the largest difference to the single-process run and exits non-zero when
the float32 run differs by more than 1e-4 or the ranks disagree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))

from _ddp_workers import EPOCHS, LR, images, make_explainer, run_all  # noqa: E402
from test_distributed_fit import GlobalBatches  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from ttame_attr import fit  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    failures = 0
    for amp in (False, True):
        out = Path(tempfile.mkdtemp())
        start = time.perf_counter()
        mp.start_processes(
            run_all, args=(2, str(out / "init"), str(out), args.device, amp, True), nprocs=2,
            start_method="spawn",
        )
        seconds = time.perf_counter() - start
        ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
        explainer = make_explainer(device=args.device)
        x = images()
        fit(explainer, DataLoader(TensorDataset(x), batch_sampler=GlobalBatches()), epochs=EPOCHS,
            lr=LR, progress=False, distributed=False, amp=amp,
            val_loader=DataLoader(TensorDataset(x[:8]), batch_size=4))
        ref = {k: v.cpu() for k, v in explainer.head.state_dict().items()}
        same = all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ref)
        diff = max(float((ranks[0]["state"][k].double() - ref[k].double()).abs().max())
                   for k in ref)
        print(f"device={args.device} amp={amp}: ranks identical={same}, max |ddp - single| = "
              f"{diff:.2e}, 2-rank run {seconds:.1f} s, losses "
              f"{[round(e['loss'], 5) for e in ranks[0]['history']]}")
        failures += (not same) + (not amp and diff > 1e-4)
    return int(failures > 0)


if __name__ == "__main__":
    raise SystemExit(main())
