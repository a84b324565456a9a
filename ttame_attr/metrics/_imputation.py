"""Noisy linear imputation (ROAD, Rong et al., ICML 2022), batched and solved on the device.

Every removed pixel is set to the weighted average of its in-bounds 8 neighbours (weight 1/6 for
the four direct neighbours, 1/12 for the diagonals; weights of neighbours that fall outside the
image are dropped and the rest renormalised), known pixels stay fixed. This gives one sparse,
symmetric positive definite linear system per image and channel. It is solved here with a
Jacobi-preconditioned conjugate gradient written with 3x3 convolutions, so that a whole batch is
solved at once on the GPU, without scipy or a round trip to the CPU.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["noisy_linear_impute"]

logger = logging.getLogger(__name__)

_DIRECT = 1.0 / 6.0
_DIAGONAL = 1.0 / 12.0


def _neighbour_kernel(dtype: torch.dtype, device: torch.device) -> Tensor:
    kernel = torch.tensor(
        [[_DIAGONAL, _DIRECT, _DIAGONAL], [_DIRECT, 0.0, _DIRECT], [_DIAGONAL, _DIRECT, _DIAGONAL]],
        dtype=dtype,
        device=device,
    )
    return kernel.view(1, 1, 3, 3)


def _initial_guess(values: Tensor, known: Tensor) -> Tensor:
    """Smooth fill of the unknown pixels by a push-pull pyramid (a cheap multigrid start).

    ``values`` and ``known`` are ``(B, 1, H, W)``; returns ``(B, 1, H, W)``.
    """
    levels: list[tuple[Tensor, Tensor]] = []
    num, den = values * known, known
    while min(num.shape[-2:]) > 1:
        levels.append((num, den))
        num = F.avg_pool2d(num, 2, ceil_mode=True)
        den = F.avg_pool2d(den, 2, ceil_mode=True)
    fill = num / den.clamp_min(1e-12)
    # Coarsest level may still be empty (no known pixel at all in the image): fill with zero.
    fill = torch.where(den > 0, fill, torch.zeros_like(fill))
    for num_l, den_l in reversed(levels):
        up = F.interpolate(fill, size=num_l.shape[-2:], mode="bilinear", align_corners=False)
        own = num_l / den_l.clamp_min(1e-12)
        weight = den_l.clamp(max=1.0)
        fill = weight * own + (1.0 - weight) * up
    return fill


def noisy_linear_impute(
    images: Tensor,
    removed: Tensor,
    noise_std: float = 0.01,
    generator: torch.Generator | None = None,
    tol: float = 1e-5,
    max_iter: int = 2000,
) -> Tensor:
    """Impute removed pixels with ROAD's noisy linear imputer.

    Args:
        images: images of shape ``(N, C, H, W)``, any value range (imputation is done in the
            space the tensor is given in).
        removed: boolean mask of shape ``(N, H, W)`` or ``(N, 1, H, W)``; ``True`` marks a pixel
            to impute (all channels of that pixel).
        noise_std: standard deviation of the Gaussian noise added to the imputed pixels
            (ROAD uses 0.01). ``0`` gives the plain linear imputation.
        generator: optional ``torch.Generator`` on the images' device, for reproducible noise.
        tol: relative residual ``||r|| / max(||b||, ||r_0||)`` at which the conjugate gradient
            stops, per image and channel.
        max_iter: maximum number of conjugate gradient iterations.

    Returns:
        A new tensor of shape ``(N, C, H, W)``: known pixels copied from ``images``, removed
        pixels imputed. ``images`` is not modified. Images whose every pixel is removed get 0
        (plus noise) there, as there is nothing to interpolate from.

    Raises:
        TypeError: if ``images`` or ``removed`` is not a tensor.
        ValueError: if the shapes do not match, or ``generator`` is on another device.

    Example:
        >>> img = torch.arange(9.0).view(1, 1, 3, 3)
        >>> hole = torch.zeros(1, 3, 3, dtype=torch.bool)
        >>> hole[0, 1, 1] = True
        >>> round(noisy_linear_impute(img, hole, noise_std=0.0)[0, 0, 1, 1].item(), 4)
        4.0
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images: expected a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}. "
            "Convert it with torch.as_tensor."
        )
    if not isinstance(removed, Tensor):
        raise TypeError(
            f"removed: expected a boolean torch.Tensor of shape (N, H, W), got "
            f"{type(removed).__name__}. Convert it with torch.as_tensor(..., dtype=torch.bool)."
        )
    if images.dim() != 4:
        raise ValueError(
            f"images: expected shape (N, C, H, W), got {tuple(images.shape)}. Add a batch "
            "dimension with images.unsqueeze(0) for a single image."
        )
    if removed.dim() == 4 and removed.shape[1] == 1:
        removed = removed[:, 0]
    n, c, h, w = images.shape
    if tuple(removed.shape) != (n, h, w):
        raise ValueError(
            f"removed: expected shape (N, H, W) = {(n, h, w)} matching images, got "
            f"{tuple(removed.shape)}. Pass one mask per image at the images' resolution."
        )
    if generator is not None and generator.device.type != images.device.type:
        raise ValueError(
            f"generator: it lives on {generator.device}, but the images are on {images.device}. "
            "Create it there: torch.Generator(device=images.device).manual_seed(seed)."
        )
    out_dtype = images.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    device = images.device
    values = images.detach().to(dtype).reshape(n * c, 1, h, w)
    rem = removed.to(device=device, dtype=torch.bool)
    rem = rem[:, None].expand(n, c, h, w).reshape(n * c, 1, h, w).to(dtype)
    known = 1.0 - rem

    kernel = _neighbour_kernel(dtype, device)

    def neighbours(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, padding=1)

    # Sum of the weights of in-bounds neighbours (1 inside, less on the border).
    diag = neighbours(torch.ones(1, 1, h, w, dtype=dtype, device=device))
    inv_diag = torch.where(diag > 0, 1.0 / diag.clamp_min(1e-12), torch.zeros_like(diag)) * rem

    def apply_a(x: Tensor) -> Tensor:
        return (diag * x - neighbours(x)) * rem

    b = neighbours(values * known) * rem
    x = _initial_guess(values, known) * rem
    r = b - apply_a(x)
    z = r * inv_diag
    p = z.clone()
    rz = (r * z).sum(dim=(1, 2, 3), keepdim=True)
    b_norm = b.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    r_norm = r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    # Relative to ||b||, or to the first residual where b == 0 (all known neighbours are 0).
    threshold = tol * torch.maximum(b_norm, r_norm)
    active = r_norm > threshold
    iterations = 0
    while bool(active.any()) and iterations < max_iter:
        ap = apply_a(p)
        pap = (p * ap).sum(dim=(1, 2, 3), keepdim=True)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp_min(1e-30), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        z = r * inv_diag
        rz_new = (r * z).sum(dim=(1, 2, 3), keepdim=True)
        beta = torch.where(active & (rz > 0), rz_new / rz.clamp_min(1e-30), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
        active = active & (r.flatten(1).norm(dim=1).view(-1, 1, 1, 1) > threshold)
        iterations += 1
    if bool(active.any()):
        logger.warning(
            "noisy_linear_impute: conjugate gradient stopped after %d iterations with %d of %d "
            "systems above the relative tolerance %g; raise max_iter for an exact solution.",
            iterations,
            int(active.sum()),
            active.numel(),
            tol,
        )
    logger.debug("noisy_linear_impute: %d conjugate gradient iterations", iterations)
    if noise_std:
        noise = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        x = x + noise_std * noise * rem
    filled = values * known + x * rem
    return filled.reshape(n, c, h, w).to(out_dtype)
