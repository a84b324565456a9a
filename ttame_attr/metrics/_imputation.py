"""Noisy linear imputation (ROAD, Rong et al., ICML 2022), batched and solved on the device.

Every removed pixel is set to the weighted average of its in-bounds 8 neighbours (weight 1/6 for
the four direct neighbours, 1/12 for the diagonals; weights of neighbours that fall outside the
image are dropped and the rest renormalised), known pixels stay fixed. This gives one sparse,
symmetric positive definite linear system per image (shared by its channels). Two solvers:

- ``"direct"``: a sparse LU factorisation per image (``scipy.sparse.linalg.splu`` with a
  symmetric minimum-degree ordering), exact to rounding, one factorisation for all channels. On
  the CPU it is about 15x faster than the conjugate gradient on 64x64 images with contiguous
  holes (``benchmarks/imputation.py``). Needs scipy.
- ``"cg"``: a Jacobi-preconditioned conjugate gradient written with 3x3 convolutions, so that a
  whole batch is solved at once on the GPU, without scipy or a round trip to the CPU.

``solver="auto"`` uses ``"direct"`` for CPU tensors when scipy is installed, else ``"cg"``.
"""

from __future__ import annotations

import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["noisy_linear_impute"]

logger = logging.getLogger(__name__)

_DIRECT = 1.0 / 6.0
_DIAGONAL = 1.0 / 12.0
_SOLVERS = ("auto", "direct", "cg")
_OFFSETS = (
    (-1, 0, _DIRECT), (1, 0, _DIRECT), (0, -1, _DIRECT), (0, 1, _DIRECT),
    (-1, -1, _DIAGONAL), (-1, 1, _DIAGONAL), (1, -1, _DIAGONAL), (1, 1, _DIAGONAL),
)


def check_solver(solver: object) -> str:
    """``solver`` if it names an imputation solver, else a ``ValueError`` naming the argument."""
    if solver not in _SOLVERS:
        raise ValueError(f"solver: expected one of {list(_SOLVERS)}, got {solver!r}. Use 'auto' unless you "
                         "need a specific solver.")
    return str(solver)


def _scipy_available() -> bool:
    return importlib.util.find_spec("scipy") is not None


#: The ``(solver, device type)`` pairs already announced in this process (:func:`_announce`).
_ANNOUNCED: set[tuple[str, str]] = set()


def _announce(solver: str, device_type: str) -> None:
    """Log, once per process and pair, which solver the imputation runs on which device.

    The conjugate gradient on the CPU, chosen because scipy is missing, is about 10x slower than
    the exact sparse solver over a whole ROAD evaluation: that is a warning naming the extra.
    """
    if (solver, device_type) in _ANNOUNCED:
        return
    _ANNOUNCED.add((solver, device_type))
    if solver == "cg" and device_type == "cpu" and not _scipy_available():
        logger.warning(
            "ROAD imputation: scipy is not installed, so the noisy linear imputer solves its systems by "
            "the batched conjugate gradient on the CPU, about 10x slower than the exact sparse solver "
            "over a ROAD evaluation. Install scipy (`pip install \"ttame-attr[metrics]\"`) to make it "
            "faster (logged once).")
    else:
        logger.info("ROAD imputation: the noisy linear imputer uses the %s solver on the %s (logged once).",
                    "sparse LU (scipy)" if solver == "direct" else "conjugate gradient", device_type)


def _direct_one(values: np.ndarray, removed: np.ndarray) -> np.ndarray | None:
    """Exact imputation of one image: ``values`` ``(C, H, W)`` float64, ``removed`` ``(H, W)``.

    Returns the imputed values ``(C, U)`` of the ``U`` removed pixels (row-major order), or
    ``None`` when nothing is removed. Every pixel removed gives zeros (nothing to interpolate).
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    c, h, w = values.shape
    flat_removed = removed.ravel()
    unknown = np.flatnonzero(flat_removed)
    u = unknown.size
    if u == 0:
        return None
    if u == h * w:
        return np.zeros((c, u))
    index = np.full(h * w, -1, dtype=np.int64)
    index[unknown] = np.arange(u)
    ys, xs = np.divmod(unknown, w)
    flat_values = values.reshape(c, h * w)
    diag = np.zeros(u)
    rhs = np.zeros((u, c))
    rows, cols, vals = [np.arange(u)], [], []
    for dy, dx, weight in _OFFSETS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        src = np.flatnonzero(inside)
        nb = ny[inside] * w + nx[inside]
        diag[src] += weight
        is_unknown = flat_removed[nb]
        rows.append(src[is_unknown])
        cols.append(index[nb[is_unknown]])
        vals.append(np.full(int(is_unknown.sum()), -weight))
        np.add.at(rhs, src[~is_unknown], weight * flat_values[:, nb[~is_unknown]].T)
    matrix = csc_matrix(
        (np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate([rows[0], *cols]))),
        shape=(u, u),
    )
    lu = splu(matrix, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    return lu.solve(rhs).T


def _direct_solve(values: Tensor, removed: Tensor) -> Tensor:
    """Imputed images ``(N, C, H, W)`` float64 (removed pixels solved, others copied)."""
    vals = values.detach().cpu().to(torch.float64).numpy()
    rem = removed.detach().cpu().numpy()
    n, c, h, w = vals.shape
    out = vals.copy().reshape(n, c, h * w)
    workers = max(1, min(torch.get_num_threads(), n))

    def one(i: int) -> None:
        solved = _direct_one(vals[i], rem[i])
        if solved is not None:
            out[i][:, rem[i].ravel()] = solved

    if workers == 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(n)))
    return torch.from_numpy(out.reshape(n, c, h, w))


def _initial_guess(values: Tensor, known: Tensor) -> Tensor:
    """Smooth ``(B, 1, H, W)`` fill of the unknown pixels by a push-pull pyramid (a cheap multigrid start)."""
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
    images: Tensor, removed: Tensor, noise_std: float = 0.01, generator: torch.Generator | None = None,
    tol: float = 1e-5, max_iter: int = 2000, solver: str = "auto",
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
            stops, per image and channel (``"cg"`` only).
        max_iter: maximum number of conjugate gradient iterations (``"cg"`` only).
        solver: ``"direct"`` (sparse LU with scipy, exact, CPU), ``"cg"`` (batched conjugate
            gradient on the images' device) or ``"auto"`` (``"direct"`` for CPU tensors when
            scipy is installed, else ``"cg"``). Both give the same values up to ``tol``.

    Returns:
        A new tensor of shape ``(N, C, H, W)``: known pixels copied from ``images``, removed
        pixels imputed. ``images`` is not modified. Images whose every pixel is removed get 0
        (plus noise) there, as there is nothing to interpolate from.

    Raises:
        TypeError: if ``images`` or ``removed`` is not a tensor.
        ValueError: if the shapes do not match, ``generator`` is on another device, or
            ``solver`` is unknown.
        ImportError: if ``solver="direct"`` and scipy is not installed.

    Example:
        >>> img = torch.arange(9.0).view(1, 1, 3, 3)
        >>> hole = torch.zeros(1, 3, 3, dtype=torch.bool)
        >>> hole[0, 1, 1] = True
        >>> round(noisy_linear_impute(img, hole, noise_std=0.0)[0, 0, 1, 1].item(), 4)
        4.0
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}."
                        " Convert it with torch.as_tensor.")
    if not isinstance(removed, Tensor):
        raise TypeError(f"removed: expected a boolean torch.Tensor of shape (N, H, W), got "
                        f"{type(removed).__name__}. Convert it with torch.as_tensor(..., dtype=torch.bool).")
    if images.dim() != 4:
        raise ValueError(f"images: expected shape (N, C, H, W), got {tuple(images.shape)}. Add a batch "
                         "dimension with images.unsqueeze(0) for a single image.")
    if removed.dim() == 4 and removed.shape[1] == 1:
        removed = removed[:, 0]
    n, c, h, w = images.shape
    if tuple(removed.shape) != (n, h, w):
        raise ValueError(f"removed: expected shape (N, H, W) = {(n, h, w)} matching images, got "
                         f"{tuple(removed.shape)}. Pass one mask per image at the images' resolution.")
    if generator is not None and generator.device.type != images.device.type:
        raise ValueError(f"generator: it lives on {generator.device}, but the images are on {images.device}. "
                         "Create it there: torch.Generator(device=images.device).manual_seed(seed).")
    check_solver(solver)
    if solver == "direct" and not _scipy_available():
        raise ImportError("noisy_linear_impute(solver='direct') needs scipy; install it with "
                          "`pip install scipy`, or use solver='cg'.")
    if solver == "auto":
        solver = "direct" if images.device.type == "cpu" and _scipy_available() else "cg"
    _announce(solver, images.device.type)
    out_dtype = images.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    removed = removed.to(device=images.device, dtype=torch.bool)
    rem = removed[:, None].expand(n, c, h, w).reshape(n * c, 1, h, w)
    if solver == "direct":
        solved = _direct_solve(images, removed).to(device=images.device, dtype=dtype)
        solved = solved.reshape(n * c, 1, h, w)
    else:
        solved = _cg_solve(images.detach().to(dtype).reshape(n * c, 1, h, w), rem, tol, max_iter)
    if noise_std:
        noise = torch.randn(solved.shape, generator=generator, dtype=dtype, device=images.device)
        solved = torch.where(rem, solved + noise_std * noise, solved)
    return solved.reshape(n, c, h, w).to(out_dtype)


def _cg_solve(values: Tensor, removed: Tensor, tol: float, max_iter: int) -> Tensor:
    """Imputed ``(B, 1, H, W)`` images by a Jacobi-preconditioned conjugate gradient, batched."""
    dtype, device = values.dtype, values.device
    h, w = values.shape[-2:]
    rem = removed.to(dtype)
    known = 1.0 - rem
    ring = [[_DIAGONAL, _DIRECT, _DIAGONAL], [_DIRECT, 0.0, _DIRECT], [_DIAGONAL, _DIRECT, _DIAGONAL]]
    kernel = torch.tensor(ring, dtype=dtype, device=device).view(1, 1, 3, 3)

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
        logger.warning("noisy_linear_impute: conjugate gradient stopped after %d iterations with %d of %d "
                       "systems above the relative tolerance %g; raise max_iter for an exact solution.",
                       iterations, int(active.sum()), active.numel(), tol)
    logger.debug("noisy_linear_impute: %d conjugate gradient iterations", iterations)
    return values * known + x * rem
