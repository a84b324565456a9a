"""The explanation methods compared by ``benchmarks/quality.py``.

Every method is an :class:`Explainer`: ``explain(images, target) -> maps`` with ``images`` in
``[0, 1]`` pixel space ``(N, 3, H, W)``, ``target`` the class per image ``(N,)`` and ``maps``
``(N, 1, H, W)`` (higher = more relevant; the metrics min-max normalise them).

The baselines come from maintained libraries and are configured the way their documentation
recommends:

* Grad-CAM, Grad-CAM++, Score-CAM: ``pytorch-grad-cam``; target layer the last block of the last
  CNN stage (ResNet: ``layer4[-1]``), the ViT's last block norm before attention (torchvision
  ``encoder.layers[-1].ln_1``, the ``blocks[-1].norm1`` of the docs) with a reshape transform
  that drops the prefix tokens and reads the patch grid from the model, and the Swin's last
  block norm ``layers[-1].blocks[-1].norm1`` (channels-last ``(N, h, w, C)`` in timm >= 0.9) with a
  channels-last reshape.
* Integrated Gradients: Captum, black-image baseline in pixel space, 50 steps (Captum's
  default); the map is the sum over colour channels of ``|attribution|``.
* RISE (Petsiuk et al., BMVC 2018): no maintained PyTorch package ships it, so :class:`RISE`
  below implements it, batched: ``N`` random binary ``s x s`` grids (keep probability ``p``),
  bilinearly upsampled to ``(s + 1) * cell`` and randomly shifted crops of the image size; the
  saliency of class ``k`` is ``sum_i P_k(image * mask_i) * mask_i / (N * p)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttame_attr.data import MEAN, STD, normalize

__all__ = [
    "RISE",
    "CaptumIG",
    "Explainer",
    "PixelModel",
    "PytorchGradCAM",
    "TTAMEMethod",
    "cam_target_layer",
    "method_sources",
]


class PixelModel(nn.Module):
    """The classifier seen from ``[0, 1]`` pixel space: normalise, then classify.

    Metrics mask and impute images in the space the model receives them; wrapping the classifier
    makes that space the pixel space for every backbone (the paper's "raw" masking: removed
    pixels are black).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std)


class Explainer:
    """Base class: a named explanation method for one classifier."""

    name = ""
    #: Images per call of :meth:`explain` (memory / speed trade-off).
    batch_size = 50

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def adic_maps(self, images: Tensor, target: Tensor) -> Tensor | None:
        """The maps AD/IC should read when they differ from :meth:`explain`'s (else ``None``)."""
        return None

    def close(self) -> None:
        """Release hooks or other resources."""

    def describe(self) -> dict[str, Any]:
        """Settings of the method, for ``results.json``."""
        return {}


class TTAMEMethod(Explainer):
    """A fitted :class:`ttame_attr.TTAME`: one forward pass per batch."""

    name = "T-TAME"
    batch_size = 100

    def __init__(self, explainer: Any) -> None:
        self.explainer = explainer

    @torch.no_grad()
    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        """The maps ``attribute`` returns by default: the sigmoid of the class map, upsampled.

        The pointing games, ROAD and deletion / insertion read these. All but the energy
        pointing game depend only on the order of the pixels, which the sigmoid keeps; the energy
        pointing game (min-max normalised map mass inside the object) does not: on the ViT's
        seed-0 head, 300 validation images, it is 0.099 for the pre-sigmoid map and 0.309 for
        the sigmoid map (Grad-CAM 0.154), the pre-sigmoid map's background sitting at mid-range.
        """
        return self.explainer.attribute(normalize(images), target=target)

    @torch.no_grad()
    def adic_maps(self, images: Tensor, target: Tensor) -> Tensor:
        """The authors' AD/IC map: pre-sigmoid, at the head's map size (min-max there)."""
        return torch.cat([self.explainer.attribute(normalize(x), target=t, scale="raw", upsample=False)
                          for x, t in zip(images.split(self.batch_size), target.split(self.batch_size))])

    def describe(self) -> dict[str, Any]:
        return {"layers": self.explainer.layers, "map_size": list(self.explainer.map_size),
                "mask_space": self.explainer.mask_space,
                "maps": "attribute()'s default (sigmoid, upsampled); AD/IC: pre-sigmoid at map size"}


# ---------------------------------------------------------------- pytorch-grad-cam baselines
def _token_grid(model: nn.Module) -> tuple[int, int]:
    """Patch grid of a ViT, read from the model (torchvision or timm)."""
    if hasattr(model, "image_size") and hasattr(model, "patch_size"):  # torchvision
        size, patch = int(model.image_size), int(model.patch_size)
        return size // patch, size // patch
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None:
        raise ValueError(f"cannot read the patch grid of {type(model).__name__}")
    return int(grid[0]), int(grid[1])


def vit_reshape_transform(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``(N, prefix + h * w, C)`` tokens -> ``(N, C, h, w)``, grid and prefix from the model."""
    h, w = _token_grid(model)

    def transform(tokens: Tensor) -> Tensor:
        n, length, c = tokens.shape
        prefix = length - h * w
        if prefix < 0:
            raise ValueError(f"{length} tokens cannot hold a {h}x{w} patch grid")
        return tokens[:, prefix:].reshape(n, h, w, c).permute(0, 3, 1, 2)

    return transform


def swin_reshape_transform(block: nn.Module) -> Callable[[Tensor], Tensor]:
    """Channels-last ``(N, h, w, C)`` -> ``(N, C, h, w)``; ``(N, h * w, C)`` tokens via the block's
    ``input_resolution``."""

    def transform(x: Tensor) -> Tensor:
        if x.dim() == 4:
            return x.permute(0, 3, 1, 2)
        h, w = (int(v) for v in block.input_resolution)
        return x.reshape(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)

    return transform


def cam_target_layer(
    model: nn.Module, arch: str
) -> tuple[nn.Module, str, Callable[[Tensor], Tensor] | None]:
    """The layer pytorch-grad-cam recommends for ``arch``, its name and reshape transform."""
    if arch == "cnn":
        return model.layer4[-1], "layer4[-1]", None
    if arch == "vit":
        if hasattr(model, "encoder"):  # torchvision
            return model.encoder.layers[-1].ln_1, "encoder.layers[-1].ln_1", vit_reshape_transform(model)
        return model.blocks[-1].norm1, "blocks[-1].norm1", vit_reshape_transform(model)
    if arch == "swin":
        block = model.layers[-1].blocks[-1]
        return block.norm1, "layers[-1].blocks[-1].norm1", swin_reshape_transform(block)
    raise ValueError(f"arch: expected 'cnn', 'vit' or 'swin', got {arch!r}")


def _silence_score_cam_progress() -> None:
    """pytorch-grad-cam's Score-CAM opens a tqdm bar per image; keep the benchmark log readable."""
    import pytorch_grad_cam.score_cam as score_cam

    class _Quiet:
        @staticmethod
        def tqdm(iterable: Any, *args: Any, **kwargs: Any) -> Any:
            return iterable

    score_cam.tqdm = _Quiet


class PytorchGradCAM(Explainer):
    """Grad-CAM, Grad-CAM++ or Score-CAM from pytorch-grad-cam, on the normalised input.

    pytorch-grad-cam's hooks append the target layer's output to a list on *every* forward pass
    of the model, whoever runs it, and empty the list only on the CAM's next call. Kept
    registered between calls they stored every forward pass of the other methods and of the
    metrics (on the ViT, about 3 GB per method evaluated) and made those passes slower. So the
    CAM object, and its hooks, live only for the duration of one :meth:`explain` call.
    """

    def __init__(self, kind: str, model: nn.Module, arch: str, score_batch: int = 128) -> None:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM

        classes = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus, "Score-CAM": ScoreCAM}
        self.name, self.model, self.cam_class = kind, model, classes[kind]
        self.layer, self.layer_name, self.transform = cam_target_layer(model, arch)
        # Score-CAM scores masked copies in batches of score_batch (pytorch-grad-cam's default 16)
        self.score_batch = score_batch if kind == "Score-CAM" else None
        if self.score_batch is not None:
            self.batch_size = 10
            _silence_score_cam_progress()

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(t)) for t in target]
        cam = self.cam_class(model=self.model, target_layers=[self.layer],
                             reshape_transform=self.transform)
        try:
            if self.score_batch is not None:
                cam.batch_size = self.score_batch
            maps = cam(input_tensor=normalize(images), targets=targets)
        finally:  # not `with cam:`, whose __exit__ swallows IndexError
            cam.activations_and_grads.release()
        return torch.from_numpy(np.ascontiguousarray(maps)).float().unsqueeze(1)

    def describe(self) -> dict[str, Any]:
        return {"library": "pytorch-grad-cam", "target_layer": self.layer_name}


# ---------------------------------------------------------------- Captum Integrated Gradients
class CaptumIG(Explainer):
    """Captum ``IntegratedGradients`` in pixel space; map = sum over channels of ``|attr|``."""

    name = "IG"
    batch_size = 25

    def __init__(self, pixel_model: nn.Module, n_steps: int = 50) -> None:
        from captum.attr import IntegratedGradients

        self.ig = IntegratedGradients(pixel_model)
        self.n_steps = n_steps

    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        attr = self.ig.attribute(
            images, baselines=0.0, target=target, n_steps=self.n_steps,
            internal_batch_size=max(self.n_steps, 256),
        )
        return attr.abs().sum(dim=1, keepdim=True).detach()

    def describe(self) -> dict[str, Any]:
        return {"library": "captum", "n_steps": self.n_steps, "baseline": "black (0 in pixel space)",
                "map": "sum over channels of |attribution|"}


# ---------------------------------------------------------------- RISE
class RISE(Explainer):
    """Batched RISE (Petsiuk et al., 2018) in pixel space, removed pixels black.

    Args:
        pixel_model: classifier taking ``[0, 1]`` images.
        image_size: side of the square images.
        n_masks: number of random masks ``N``.
        cells: grid side ``s`` of the random binary masks.
        p: probability of keeping a cell.
        seed: seed of the masks.
        chunk: masked images per forward pass.
    """

    name = "RISE"
    batch_size = 10

    def __init__(
        self,
        pixel_model: nn.Module,
        image_size: int,
        n_masks: int = 2000,
        cells: int = 8,
        p: float = 0.5,
        seed: int = 0,
        chunk: int = 500,
    ) -> None:
        self.model = pixel_model
        self.n_masks, self.cells, self.p, self.chunk = n_masks, cells, p, chunk
        self.masks = self.make_masks(n_masks, image_size, cells, p, seed)

    @staticmethod
    def make_masks(n: int, size: int, cells: int, p: float, seed: int) -> Tensor:
        """``(n, 1, size, size)`` smooth random masks: upsampled binary grids, randomly shifted."""
        g = torch.Generator().manual_seed(seed)
        cell = math.ceil(size / cells)
        grid = (torch.rand(n, 1, cells, cells, generator=g) < p).float()
        up = F.interpolate(grid, size=((cells + 1) * cell,) * 2, mode="bilinear",
                           align_corners=False)
        shift = torch.randint(0, cell, (n, 2), generator=g)
        rows = shift[:, 0, None] + torch.arange(size)  # (n, size)
        cols = shift[:, 1, None] + torch.arange(size)
        idx = torch.arange(n)[:, None, None]
        return up[:, 0][idx, rows[:, :, None], cols[:, None, :]].unsqueeze(1).contiguous()

    def scores(self, logits: Tensor, target: int) -> Tensor:
        """The score of each masked image: the target's softmax probability."""
        return logits.softmax(dim=1)[:, target]

    @torch.no_grad()
    def explain(self, images: Tensor, target: Tensor) -> Tensor:
        masks = self.masks.to(images.device)
        out = torch.zeros(images.shape[0], 1, *images.shape[-2:], device=images.device)
        for i, (image, t) in enumerate(zip(images, target)):
            for start in range(0, self.n_masks, self.chunk):
                m = masks[start:start + self.chunk]
                probs = self.scores(self.model(image.unsqueeze(0) * m), int(t))
                out[i] += torch.einsum("n,nchw->chw", probs, m)
        return out / (self.n_masks * self.p)

    def describe(self) -> dict[str, Any]:
        return {"n_masks": self.n_masks, "cells": self.cells, "p": self.p,
                "removed_pixels": "black (0 in pixel space)"}


# ---------------------------------------------------------------- what the map cache hashes
def method_sources(method: Explainer | type[Explainer]) -> tuple[Any, ...]:
    """The objects whose source (``inspect.getsource``) is hashed into the cache key of
    ``method`` (an instance or its class).

    Every method: :class:`Explainer`, :class:`PixelModel` and :func:`ttame_attr.data.normalize`
    (the loop that batches images, ``_quality.evaluation.explain_images``, is added by the
    caller). Then its own class, and for the pytorch-grad-cam methods the functions that choose
    and reshape the target layer. The libraries' own code enters the key through their versions.
    """
    own: dict[type, tuple[Any, ...]] = {
        TTAMEMethod: (TTAMEMethod,),
        PytorchGradCAM: (PytorchGradCAM, cam_target_layer, _token_grid, vit_reshape_transform,
                         swin_reshape_transform, _silence_score_cam_progress),
        CaptumIG: (CaptumIG,),
        RISE: (RISE,),
    }
    kind = method if isinstance(method, type) else type(method)
    if kind not in own:  # the ViT-only methods (_quality/vit_methods.py) name their own sources
        from _quality.vit_methods import VIT_ONLY

        return (Explainer, PixelModel, normalize, *VIT_ONLY[kind.name][1])
    return (Explainer, PixelModel, normalize, *own[kind])
