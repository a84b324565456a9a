"""T-TAME on vision transformers: a torchvision ViT and a timm Swin (tiny, random weights).

The adapters read the token layout from the model: the ViT's class token is dropped and the
patch tokens laid out on the patch grid; Swin's channels-last stages are permuted to NCHW.

    python examples/vit_and_swin.py
"""

from __future__ import annotations

import torch
from torchvision.models import VisionTransformer

from ttame_attr import TTAME


def batches(n: int, size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(8, 3, size, size, generator=g) for _ in range(n)]


def explain(name: str, model: torch.nn.Module, size: int) -> None:
    explainer = TTAME(model.eval(), input_size=(3, size, size))
    print(f"{name}: adapter {explainer.adapter.name!r}")
    for info in explainer.layer_info:
        print(f"  {info.name:45s} {info.layout:6s} -> (C, h, w) = "
              f"{(info.channels, info.height, info.width)}, prefix tokens {info.prefix_tokens}")
    explainer.fit(batches(2, size), epochs=1, progress=False)
    maps = explainer.attribute(batches(1, size)[0], target=1)
    print(f"  maps {tuple(maps.shape)}, range [{float(maps.min()):.3f}, {float(maps.max()):.3f}]")


def main() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=2,
                            hidden_dim=32, mlp_dim=64, num_classes=5)
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
