"""A run of ``explain_dataset`` in its own process (the kill and the torchrun tests start it).

``python store_worker.py STORE [--hang-at I --marker FILE]``: explain ``SyntheticShapes`` images
with a seeded tiny CNN and head; with ``--hang-at``, the image ``I`` waits until shard 0 is
recorded, touches ``FILE`` and hangs (the test then kills the process). Under torchrun every
rank runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_IMAGES, SHARD, BATCH = 22, 6, 4


def make_explainer():
    from tiny_models import make_tiny_cnn

    from ttame_attr import TTAME

    torch.manual_seed(0)
    model = make_tiny_cnn(num_classes=5, seed=0)
    explainer = TTAME(model, input_size=(3, 32, 32), head_init="pytorch")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in explainer.head.parameters():
            p.normal_(0, 0.5)
    return explainer


def make_data():
    from ttame_attr.data import SyntheticShapes

    return SyntheticShapes(N_IMAGES, image_size=32, seed=3)


class Hang(Dataset):
    """``data`` whose item ``at`` waits for shard 0's record, touches ``marker``, then hangs."""

    def __init__(self, data, at: int, marker: Path, store: Path) -> None:
        self.data, self.at, self.marker, self.store = data, at, marker, store

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        if index == self.at:
            while not (self.store / "records" / "shard-000000.json").exists():
                time.sleep(0.02)
            self.marker.touch()
            time.sleep(600)
        return self.data[index]


def main() -> None:
    from ttame_attr import explain_dataset

    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--hang-at", type=int, default=None)
    parser.add_argument("--marker", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = make_data()
    if args.hang_at is not None:
        data = Hang(data, args.hang_at, Path(args.marker), Path(args.store))
    explain_dataset(make_explainer(), data, args.store, top_k=2, batch_size=BATCH, shard_size=SHARD,
                    progress=False)
    if "RANK" in os.environ:
        import torch.distributed as dist

        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
