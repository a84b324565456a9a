"""Tiny deterministic training setup shared by the reliability tests.

Run as a script it trains with checkpoints and, with ``--hang-after K``, writes a marker file
after ``K`` optimiser steps and then blocks in the next step, so a test can kill it there.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

IMAGES = 32
BATCH = 8
EPOCHS = 3
SIZE = 16
NUM_CLASSES = 5


class TinyCNN(nn.Module):
    """Three stride-2 stages (8x8, 4x4, 2x2 at 16x16 input) and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6),
                                    nn.ReLU())
        self.stage3 = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(self.pool(x).flatten(1))


class NoisyImages(Dataset):
    """Fixed images with random augmentations drawn from torch, numpy and Python RNGs."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(7)
        self.images = torch.randn(IMAGES, 3, SIZE, SIZE, generator=g)

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        x = x + 0.1 * torch.from_numpy(np.random.standard_normal(x.shape).astype(np.float32))
        x = x * random.uniform(0.8, 1.2)
        return x, i


def build(seed: int = 0):
    """A fresh (model, explainer, loader) triple; identical for identical seeds."""
    from ttame_attr import TTAME

    torch.manual_seed(seed)
    model = TinyCNN()
    explainer = TTAME(model, ["stage1", "stage2", "stage3"], input_size=(3, SIZE, SIZE))
    loader = DataLoader(NoisyImages(), batch_size=BATCH, shuffle=True)
    torch.manual_seed(seed + 1)
    np.random.seed(seed + 2)
    random.seed(seed + 3)
    return model, explainer, loader


def train(explainer, loader, **kwargs):
    return explainer.fit(loader, epochs=EPOCHS, lr=0.05, progress=False, **kwargs)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--hang-after", type=int, default=None)
    parser.add_argument("--marker", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from ttame_attr import TrainStep

    original = TrainStep.__call__
    calls = [0]

    def step(self, x):
        if args.hang_after is not None and calls[0] == args.hang_after:
            Path(args.marker).write_text(str(calls[0]))
            time.sleep(600)  # killed here, in the middle of an epoch
        calls[0] += 1
        return original(self, x)

    TrainStep.__call__ = step
    _, explainer, loader = build()
    train(explainer, loader, checkpoint_path=args.checkpoint, checkpoint_every=args.every,
          resume=True)


if __name__ == "__main__":
    main(sys.argv[1:])
