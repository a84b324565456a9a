"""Train a T-TAME head on ImageNet with 8 GPUs: the paper's recipe under torchrun.

One process per GPU, 32 images per GPU and step, 8 epochs, SGD with Nesterov momentum and
OneCycleLR (max lr 1e-3), mixed precision, Resize 256 / RandomCrop 224 / horizontal flip. The
backbone (torchvision's ResNet-50 or VGG-16 with ImageNet weights) is frozen; only the attention
head is trained, data-parallel.

Run on one machine with 8 GPUs::

    torchrun --nproc_per_node=8 examples/imagenet_ddp.py --data /datasets/imagenet \\
        --arch resnet50 --out ttame_resnet50.pt

On two machines (run on each, ``--node_rank`` 0 and 1)::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=node0 \\
        --master_port=29500 examples/imagenet_ddp.py --data /datasets/imagenet

``--data`` is an ImageNet folder in torchvision's ``ImageFolder`` layout: ``train/<wnid>/*.JPEG``
and ``val/<wnid>/*.JPEG``. With 8 GPUs a step sees 8 x 32 = 256 images: it is the step one
process would take on those 256 images together (see the distributed docs page).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, models, transforms

from ttame_attr import IMAGENET_MEAN, IMAGENET_STD, TTAME, fit

#: The layers the paper reads (VGG-16: the last three max-pools; ResNet-50: the last three stages).
ARCHS = {
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1,
                 ["layer2", "layer3", "layer4"]),
    "vgg16": (models.vgg16, models.VGG16_Weights.IMAGENET1K_V1,
              ["features.16", "features.23", "features.30"]),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ImageNet root (train/, val/)")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="resnet50")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32, help="images per GPU and step")
    parser.add_argument("--lr", type=float, default=1e-3, help="OneCycleLR's maximum")
    parser.add_argument("--workers", type=int, default=8, help="data-loading workers per GPU")
    parser.add_argument("--val-images", type=int, default=2000,
                        help="validation images scored after each epoch (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="the shuffling seed")
    parser.add_argument("--out", type=Path, default=Path("ttame_head.pt"))
    parser.add_argument("--cpu", action="store_true",
                        help="dry run on CPUs with gloo (e.g. torchrun --nproc_per_node=2)")
    parser.add_argument("--no-weights", action="store_true",
                        help="random backbone weights (dry runs without the weight download)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT. fit() would
    # initialise the group from them by itself; doing it here makes the backend explicit.
    if args.cpu:
        device = torch.device("cpu")
        dist.init_process_group(backend="gloo")
    else:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    rank = dist.get_rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[rank {rank}] %(asctime)s %(name)s: %(message)s",
    )
    try:
        build, weights, layers = ARCHS[args.arch]
        # Every rank builds the same backbone on its own GPU, before the explainer, so the head
        # is created there too. (Rank 0 downloads the weights first; the others then read them.)
        if rank != 0:
            dist.barrier()
        model = build(weights=None if args.no_weights else weights)
        if rank == 0:
            dist.barrier()
        model = model.to(device).eval()
        explainer = TTAME(model, layers, input_size=(3, 224, 224), normalization="imagenet")

        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_set = datasets.ImageFolder(
            args.data / "train",
            transforms.Compose([
                transforms.Resize(256),
                transforms.RandomCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]),
        )
        # A plain shuffling DataLoader: fit() rebuilds it with a DistributedSampler (same batch
        # size, workers, pinning, drop_last) so each GPU gets its 1/8 of the images, and
        # re-seeds the sampler every epoch.
        loader = DataLoader(
            train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
            pin_memory=True, drop_last=True, persistent_workers=args.workers > 0,
        )
        val_loader = None
        if args.val_images > 0:
            val_set = datasets.ImageFolder(
                args.data / "val",
                transforms.Compose([
                    transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                    normalize,
                ]),
            )
            # A fixed subset of the validation set (every k-th image), scored after each epoch.
            step = max(len(val_set) // args.val_images, 1)
            val_subset = Subset(val_set, list(range(0, len(val_set), step))[: args.val_images])
            val_loader = DataLoader(
                val_subset, batch_size=args.batch_size, num_workers=args.workers,
                pin_memory=True,
            )

        history = fit(
            explainer, loader, epochs=args.epochs, lr=args.lr, val_loader=val_loader,
            seed=args.seed, distributed=True,
        )
        # Every rank ends with the same head and the same (rank-averaged) history; one writes.
        if rank == 0:
            explainer.save(args.out)
            for stats in history:
                print(
                    f"epoch {stats.epoch}: loss {stats.loss:.4f} (ce {stats.ce:.4f}, area "
                    f"{stats.area:.4f}, var {stats.variation:.4f}), fidelity {stats.fidelity:.3f}"
                    + (f", val loss {stats.val_loss:.4f}" if stats.val_loss is not None else "")
                )
            print(f"saved the head to {args.out}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
