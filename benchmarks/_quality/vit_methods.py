"""The ViT-only baselines of the quality benchmark: Chefer et al.'s transformer attribution and LeGrad.

* ``Chefer-LRP``: the transformer attribution of Chefer, Gur and Wolf (CVPR 2021), the ViT
  baseline of the T-TAME paper; no maintained library ships it, so ``_quality/chefer.py``
  implements it from the paper (LRP-alpha1-beta0, gradient-weighted attention relevance,
  rollout with the identity; the class token's row).
* ``LeGrad`` (Bousselham et al., 2024): torchcam 0.5's ``LeGrad``, which supports torchvision's
  ``VisionTransformer``; configured as torchcam's documentation shows for ViT-B-16, the last four
  encoder blocks (the benchmark's ViT has three: all of them) and the class token as the one
  prefix token.

Both explain the normalised image, as the pytorch-grad-cam baselines do, and return maps on the
patch grid upsampled bilinearly to the image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _quality import chefer
from _quality.methods import Explainer
from ttame_attr.data import normalize

__all__ = ["VIT_ONLY", "CheferLRPMethod", "LeGradMethod"]


class CheferLRPMethod(Explainer):
    """Chefer et al.'s transformer attribution (``_quality/chefer.py``)."""

    name = "Chefer-LRP"
    batch_size = 50

    def __init__(self, model: nn.Module) -> None:
        self.lrp = chefer.CheferLRP(model)

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        return self.lrp(normalize(images), target).detach()

    def describe(self) -> dict[str, Any]:
        return {"implementation": "benchmarks/_quality/chefer.py, from the paper", "rule": "LRP alpha1-beta0",
                "rollout": "I + mean_heads((grad A * R_A)^+), all blocks, class-token row"}


class LeGradMethod(Explainer):
    """torchcam's ``LeGrad`` on the last (up to) four encoder blocks."""

    name = "LeGrad"
    batch_size = 50

    def __init__(self, model: nn.Module, blocks: int = 4) -> None:
        import torchcam.methods  # noqa: F401  (fail here, not in the middle of the timing pass)

        self.model = model
        self.layers = list(model.encoder.layers)[-blocks:]
        self.block_names = [n for n, m in model.named_modules() if any(m is layer for layer in self.layers)]

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        from torchcam.methods import LeGrad

        x = normalize(images)
        # Its hooks refuse forward passes without gradients: registered for this call only, so
        # that the other methods (and T-TAME's no-grad passes) never meet them.
        with torch.enable_grad(), LeGrad(self.model, self.layers) as cam:
            scores = self.model(x)
            (maps,) = cam([int(t) for t in target], scores)
        return F.interpolate(maps.detach().float().unsqueeze(1), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)

    def describe(self) -> dict[str, Any]:
        import torchcam

        return {"library": f"torchcam {torchcam.__version__}", "target_blocks": self.block_names}


#: The ViT-only methods, by name, with the objects whose source enters their map-cache key.
VIT_ONLY: dict[str, tuple[type[Explainer], tuple[Any, ...]]] = {
    CheferLRPMethod.name: (CheferLRPMethod, (CheferLRPMethod, chefer)),
    LeGradMethod.name: (LeGradMethod, (LeGradMethod,)),
}
