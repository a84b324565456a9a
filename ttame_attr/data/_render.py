"""Rendering of :class:`~ttame_attr.data.SyntheticShapes` scenes from their random parameters.

A scene is a cluttered background (smooth colour noise blended with a colour gradient, thin
random lines), a few distractor objects, and one class object drawn last, on top. Every random
choice comes from one vector of uniform numbers per image, laid out as the ``_P_*`` constants
say, so a batch renders to bit-identical images whatever its size or order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CLASS_NAMES", "DISTRACTOR_NAMES", "N_PARAMS", "render"]

#: Shapes that define the classes; the label of an image is the index of its class object here.
CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "star", "ring", "frame", "heart")
#: Shapes used for distractors only; none of them ever defines a class.
DISTRACTOR_NAMES: tuple[str, ...] = ("ellipse", "crescent", "ell")

# Geometry of the scene. Sizes are object diameters as a fraction of the image side.
_CLASS_SCALE = (0.15, 0.40)
_DISTRACTOR_SCALE = (0.12, 0.30)
_MIN_DISTRACTORS, _MAX_DISTRACTORS = 2, 4
_MAX_LINES = 6
_POSITION_CANDIDATES = 8
_NOISE_GRID = 4
_PIXEL_NOISE = 0.02

# Layout of the per-item vector of uniform numbers in [0, 1).
_OBJ_FIELDS = 8  # type, scale, angle, hue, sat, val, shade direction, shade strength
_N_OBJ = 1 + _MAX_DISTRACTORS
_P_LABEL, _P_NDIST, _P_OBJ = 0, 1, 2
_P_CLASS_POS = _P_OBJ + _N_OBJ * _OBJ_FIELDS
_P_DIST_POS = _P_CLASS_POS + 2
_P_NOISE = _P_DIST_POS + _MAX_DISTRACTORS * _POSITION_CANDIDATES * 2
_P_GRADIENT = _P_NOISE + 3 * _NOISE_GRID * _NOISE_GRID
_P_NLINES = _P_GRADIENT + 7  # direction + two colours
_P_LINES = _P_NLINES + 1
N_PARAMS = _P_LINES + _MAX_LINES * 7  # endpoints (4) + colour (3)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """Convert ``(...)`` HSV tensors in ``[0, 1]`` to ``(..., 3)`` RGB."""
    k = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device)
    k = (k + h.unsqueeze(-1) * 6.0) % 6.0
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return v.unsqueeze(-1) - v.unsqueeze(-1) * s.unsqueeze(-1) * ramp


def _inside(kind: str, u: Tensor, v: Tensor) -> Tensor:
    """Boolean occupancy of shape ``kind`` at local coordinates ``(u, v)``; the shape fits the unit disc."""
    au, av = u.abs(), v.abs()
    rho2 = u * u + v * v
    if kind == "disc":
        return rho2 <= 1.0
    if kind == "square":
        return torch.maximum(au, av) <= 0.78
    if kind == "triangle":
        inside = torch.ones_like(u, dtype=torch.bool)
        for k in range(3):
            angle = math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(angle) + v * math.sin(angle) <= 0.5
        return inside
    if kind == "cross":
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if kind == "star":
        phase = torch.atan2(v, u) * (5.0 / (2.0 * math.pi))
        tip = (phase - torch.floor(phase) - 0.5).abs() * 2.0  # 1 at a tip, 0 between tips
        radius = 0.42 + 0.58 * tip
        return rho2 <= radius * radius
    if kind == "ring":
        return (rho2 <= 1.0) & (rho2 >= 0.55 * 0.55)
    if kind == "frame":
        edge = torch.maximum(au, av)
        return (edge <= 0.85) & (edge >= 0.5)
    if kind == "heart":
        x, y = u * 1.15, -v * 1.15 + 0.12
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    if kind == "ellipse":
        return u * u + (v / 0.32) ** 2 <= 1.0
    if kind == "crescent":
        return (rho2 <= 1.0) & ((u - 0.5) ** 2 + v * v >= 0.8**2)
    if kind == "ell":
        return ((u >= -0.8) & (u <= -0.3) & (av <= 0.85)) | ((v >= 0.35) & (v <= 0.85) & (au <= 0.8))
    raise ValueError(f"unknown shape kind {kind!r}")


def _linear_interpolation_matrix(grid: int, size: int) -> Tensor:
    """``(size, grid)`` weights of linear interpolation from ``grid`` knots spanning the image."""
    pos = torch.linspace(0.0, grid - 1.0, size)
    left = pos.floor().clamp(max=grid - 2)
    frac = pos - left
    weights = torch.zeros(size, grid)
    rows = torch.arange(size)
    weights[rows, left.long()] = 1.0 - frac
    weights[rows, left.long() + 1] = frac
    return weights


def _background(params: Tensor, size: int, xs: Tensor, ys: Tensor) -> Tensor:
    """Smooth colour noise blended with a colour gradient: ``(B, 3, H, W)``."""
    batch = params.shape[0]
    grid = 0.15 + 0.55 * params[:, _P_NOISE:_P_GRADIENT].view(batch, 3, _NOISE_GRID, _NOISE_GRID)
    interp = _linear_interpolation_matrix(_NOISE_GRID, size)  # (H, G)
    smooth = torch.einsum("hg,bcgk,wk->bchw", interp, grid, interp)
    grad_p = params[:, _P_GRADIENT:_P_NLINES]
    direction = grad_p[:, 0] * 2.0 * math.pi
    ramp = ((xs - size / 2) * torch.cos(direction).view(batch, 1, 1)
            + (ys - size / 2) * torch.sin(direction).view(batch, 1, 1)) / size + 0.5  # (B, H, W) ~ [0, 1]
    colour_a = (0.15 + 0.55 * grad_p[:, 1:4]).view(batch, 3, 1, 1)
    colour_b = (0.15 + 0.55 * grad_p[:, 4:7]).view(batch, 3, 1, 1)
    gradient = colour_a + (colour_b - colour_a) * ramp.unsqueeze(1)
    return 0.5 * smooth + 0.5 * gradient


def _lines(params: Tensor, image: Tensor, size: int) -> Tensor:
    """Thin random lines over ``image``, rasterised by sampling points along each segment."""
    batch = params.shape[0]
    n_lines = (params[:, _P_NLINES] * (_MAX_LINES + 1)).long().clamp(max=_MAX_LINES)
    live = torch.arange(_MAX_LINES).view(1, -1, 1) < n_lines.view(-1, 1, 1)  # (B, L, 1)
    line_p = params[:, _P_LINES:].view(batch, _MAX_LINES, 7)
    steps = torch.linspace(0.0, 1.0, 2 * size).view(1, 1, -1)
    n_steps = steps.shape[-1]
    p0, p1 = line_p[..., 0:2] * size, line_p[..., 2:4] * size  # (B, L, 2)
    px = (p0[..., 0:1] + steps * (p1[..., 0:1] - p0[..., 0:1])).long().clamp(0, size - 1)
    py = (p0[..., 1:2] + steps * (p1[..., 1:2] - p0[..., 1:2])).long().clamp(0, size - 1)
    flat = (py * size + px).view(batch, -1)  # (B, L * S) pixel indices
    active = live.expand(batch, _MAX_LINES, n_steps).reshape(batch, -1)
    on_line = torch.zeros(batch, size * size)
    on_line.scatter_reduce_(1, flat, active.to(torch.float32), reduce="amax")
    line_colour = (0.1 + 0.8 * line_p[..., 4:7]) * live
    colour_src = line_colour.unsqueeze(2).expand(batch, _MAX_LINES, n_steps, 3)
    colour_src = colour_src.reshape(batch, -1, 3).transpose(1, 2)  # (B, 3, L * S)
    colour_map = torch.zeros(batch, 3, size * size)
    colour_map.scatter_reduce_(2, flat.unsqueeze(1).expand(batch, 3, flat.shape[1]), colour_src,
                               reduce="amax")
    on_line = on_line.view(batch, 1, size, size) > 0
    return torch.where(on_line, 0.5 * image + 0.5 * colour_map.view(batch, 3, size, size), image)


def _place(params: Tensor, obj: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Centres ``(B, N_OBJ, 2)`` and radii ``(B, N_OBJ)``; distractors where they overlap others least."""
    batch = params.shape[0]
    class_radius = size * (_CLASS_SCALE[0] + (_CLASS_SCALE[1] - _CLASS_SCALE[0]) * obj[:, 0, 1]) / 2
    class_centre = class_radius.unsqueeze(-1) + params[:, _P_CLASS_POS:_P_DIST_POS] * (
        size - 2 * class_radius).unsqueeze(-1)
    dist_scale = _DISTRACTOR_SCALE[0] + (_DISTRACTOR_SCALE[1] - _DISTRACTOR_SCALE[0]) * obj[:, 1:, 1]
    dist_radius = size * dist_scale / 2  # (B, D)
    candidates = params[:, _P_DIST_POS:_P_NOISE].view(batch, _MAX_DISTRACTORS, _POSITION_CANDIDATES, 2)
    centres, radii = [class_centre], [class_radius]
    for d in range(_MAX_DISTRACTORS):
        r = dist_radius[:, d]
        # Centres may leave the image by up to half a radius: distractors can be cut by the edge.
        cand = -0.5 * r.view(batch, 1, 1) + candidates[:, d] * (size + r).view(batch, 1, 1)
        overlap = torch.zeros(batch, _POSITION_CANDIDATES)
        for slot, (c, rr) in enumerate(zip(centres, radii)):
            dist = (cand - c.unsqueeze(1)).norm(dim=-1)
            # Overlap with the class object (slot 0) costs more than overlap between distractors.
            overlap += (3.0 if slot == 0 else 1.0) * (rr.unsqueeze(1) + r.unsqueeze(1) - dist).clamp_min(0.0)
        centres.append(cand[torch.arange(batch), overlap.argmin(dim=1)])
        radii.append(r)
    return torch.stack(centres, dim=1), torch.cat([class_radius.unsqueeze(1), dist_radius], dim=1)


def _occupancy(labels: Tensor, dist_kind: Tensor, present: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Which pixels each object covers: ``(B, N_OBJ, H, W)`` bool."""
    batch, _, size, _ = u.shape
    occupancy = torch.zeros(batch, _N_OBJ, size, size, dtype=torch.bool)
    for k, name in enumerate(CLASS_NAMES):
        rows = (labels == k).nonzero(as_tuple=True)[0]
        if rows.numel():
            occupancy[rows, 0] = _inside(name, u[rows, 0], v[rows, 0])
    for k, name in enumerate(DISTRACTOR_NAMES):
        rows, slots = ((dist_kind == k) & present[:, 1:]).nonzero(as_tuple=True)
        if rows.numel():
            occupancy[rows, slots + 1] = _inside(name, u[rows, slots + 1], v[rows, slots + 1])
    return occupancy


def render(params: Tensor, pixel_noise: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Draw a batch of scenes from their uniform parameters.

    Args:
        params: ``(B, N_PARAMS)`` uniform numbers in ``[0, 1)``, laid out as the ``_P_*``
            constants say.
        pixel_noise: ``(B, 3, H, W)`` standard normal numbers.
        size: image side ``H = W``.

    Returns:
        ``(images (B, 3, H, W), labels (B,), masks (B, 1, H, W))``.
    """
    batch, num_classes, n_kinds_d = params.shape[0], len(CLASS_NAMES), len(DISTRACTOR_NAMES)
    labels = torch.clamp((params[:, _P_LABEL] * num_classes).long(), max=num_classes - 1)
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres, in pixels
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)
    image = _lines(params, _background(params, size, xs, ys), size)

    obj = params[:, _P_OBJ:_P_CLASS_POS].view(batch, _N_OBJ, _OBJ_FIELDS)
    spread = _MAX_DISTRACTORS - _MIN_DISTRACTORS
    n_dist = _MIN_DISTRACTORS + (params[:, _P_NDIST] * (spread + 1)).long().clamp(max=spread)
    centres, radii = _place(params, obj, size)
    angles = obj[:, :, 2] * 2.0 * math.pi
    colours = _hsv_to_rgb(obj[:, :, 3], 0.55 + 0.45 * obj[:, :, 4], 0.55 + 0.45 * obj[:, :, 5])
    dist_kind = (obj[:, 1:, 0] * n_kinds_d).long().clamp(max=n_kinds_d - 1)
    present = torch.cat([torch.ones(batch, 1, dtype=torch.bool),
                         torch.arange(_MAX_DISTRACTORS).view(1, -1) < n_dist.view(-1, 1)], dim=1)

    # Local (rotated, radius-normalised) frame of every object: (B, N_OBJ, H, W).
    def per_object(t: Tensor) -> Tensor:
        return t.view(batch, _N_OBJ, 1, 1)

    cos_a, sin_a = per_object(torch.cos(angles)), per_object(torch.sin(angles))
    rel_x = xs.unsqueeze(0) - per_object(centres[:, :, 0])
    rel_y = ys.unsqueeze(0) - per_object(centres[:, :, 1])
    inv_r = 1.0 / per_object(radii)
    u = (rel_x * cos_a + rel_y * sin_a) * inv_r
    v = (-rel_x * sin_a + rel_y * cos_a) * inv_r
    occupancy = _occupancy(labels, dist_kind, present, u, v)

    # Soft shading across each object so that fills are not flat.
    shade_dir = obj[:, :, 6] * 2.0 * math.pi
    shade = 1.0 + 0.25 * per_object(obj[:, :, 7]) * (
        u * per_object(torch.cos(shade_dir)) + v * per_object(torch.sin(shade_dir)))
    # Distractors first (last slot lowest), the class object last, on top of everything.
    for slot in [*range(_N_OBJ - 1, 0, -1), 0]:
        fill = colours[:, slot].view(batch, 3, 1, 1) * shade[:, slot].unsqueeze(1)
        image = torch.where(occupancy[:, slot].unsqueeze(1), fill, image)
    image = (image + _PIXEL_NOISE * pixel_noise).clamp(0.0, 1.0)
    return image.contiguous(), labels, occupancy[:, :1].to(torch.float32)
