"""T-TAME on vision transformers: a torchvision ViT and a timm Swin (tiny, random weights).

The adapters read the token layout from the model: the ViT's class token is dropped and the
patch tokens laid out on the patch grid; Swin's channels-last stages are permuted to NCHW.

The head is fitted briefly (40 steps on synthetic shapes) so that its maps vary over the image.
A new head starts at 0.5 everywhere (``head_init="zeros"``: no pixel preferred before training),
and the models' weights are random, so the maps show the mechanics, not a meaningful explanation:
with a trained classifier, fit on a few thousand of your images (``docs/training.rst``). The
warnings ``fit`` logs here (an under-trained head, class maps given up) are what 40 steps on a
random model give, and say what a real run would need.

    python examples/vit_and_swin.py
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torchvision.models import VisionTransformer

from ttame_attr import TTAME
from ttame_attr.data import SyntheticShapes, normalize


def loader(n: int, size: int, split: str = "train") -> DataLoader:
    data = SyntheticShapes(n, image_size=size, seed=0, split=split, transform=normalize, return_mask=False)
    return DataLoader(data, batch_size=8, shuffle=split == "train",
                      generator=torch.Generator().manual_seed(0))


def explain(name: str, model: torch.nn.Module, size: int) -> None:
    explainer = TTAME(model.eval(), input_size=(3, size, size))
    print(f"{name}: adapter {explainer.adapter.name!r}")
    for info in explainer.layer_info:
        print(f"  {info.name:45s} {info.layout:6s} -> (C, h, w) = "
              f"{(info.channels, info.height, info.width)}, prefix tokens {info.prefix_tokens}")
    before = explainer.attribute(next(iter(loader(8, size, "test")))[0], target=1)
    explainer.fit(loader(64, size), epochs=5, progress=False)  # 40 steps at the largest learning rate
    maps = explainer.attribute(next(iter(loader(8, size, "test")))[0], target=1)
    print(f"  maps {tuple(maps.shape)}, before fit: range [{float(before.min()):.3f}, "
          f"{float(before.max()):.3f}]; after 40 steps: range [{float(maps.min()):.3f}, "
          f"{float(maps.max()):.3f}]")


def main() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=2,
                            hidden_dim=32, mlp_dim=64, num_classes=5)
    # torchvision starts a ViT's classification layer at zero: every image gets the same logits,
    # so there would be nothing to explain. Random weights stand in for a trained classifier.
    torch.nn.init.normal_(vit.heads.head.weight, std=0.5)
    explain("torchvision ViT", vit, 32)
    try:
        from timm.models.swin_transformer import SwinTransformer
    except ImportError:
        print("timm is not installed: skipping Swin (pip install ttame-attr[timm])")
        return
    swin = SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=16,
                           depths=(1, 1, 1), num_heads=(1, 2, 4), num_classes=5)
    explain("timm Swin", swin, 32)


if __name__ == "__main__":
    main()
