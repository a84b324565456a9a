"""Quickstart: build T-TAME for a classifier, train its head, explain, save and load.

Runs in seconds on a CPU with an untrained ResNet-18 on the synthetic shapes data; with your
own model, pass pretrained weights and a loader of your images (see docs/training.rst).

    python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

from ttame_attr import TTAME
from ttame_attr.data import SyntheticShapes, normalize


def main() -> None:
    torch.manual_seed(0)
    # 1. A classifier (here untrained; use weights="DEFAULT" for ImageNet weights).
    model = torchvision.models.resnet18(weights=None, num_classes=8).eval()

    # 2. The explainer: the adapter picks layer2, layer3, layer4 of the ResNet.
    explainer = TTAME(model, input_size=(3, 64, 64))
    print(explainer)

    # 3. Train the attention head on unlabelled images (labels are ignored).
    data = SyntheticShapes(32, image_size=64, seed=0, transform=normalize, return_mask=False)
    loader = DataLoader(data, batch_size=16, shuffle=True)
    history = explainer.fit(loader, epochs=1, progress=False)
    print(f"loss after one epoch: {history[-1].loss:.3f}")

    # 4. Explain: one forward pass gives the maps of the predicted classes.
    images = torch.stack([data[i][0] for i in range(4)])
    maps = explainer.attribute(images)  # (4, 1, 64, 64) in [0, 1]
    print("maps", tuple(maps.shape))
    result = explainer.explain(images, top_k=3)  # logits, top-3 classes and their maps
    print("top-3 classes of image 0:", result.classes[0].tolist(), tuple(result.maps.shape))

    # 5. Save the head (tensors and plain values only) and load it for the same model.
    with tempfile.TemporaryDirectory() as tmp:
        path = explainer.save(Path(tmp) / "head.pt")
        again = TTAME.load(path, model)
        torch.testing.assert_close(again.attribute(images), maps)
    print("saved and reloaded: same maps")


if __name__ == "__main__":
    main()
