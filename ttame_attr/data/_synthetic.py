"""A seeded synthetic localisation dataset: one class-defining shape among distractors.

Every image holds exactly one *class object* whose shape is the label, a few *distractor* objects
drawn from a separate family of shapes that never defines a class, and a cluttered background
(smooth colour noise, a colour gradient and thin random lines). Class object and distractors draw
their colours from the same distribution, so colour says nothing about the class; the class
object is the only thing in the image that does. A binary ground-truth mask of the class object
comes with every image, which makes the dataset a localisation benchmark for explanation maps.

Item ``i`` is a pure function of ``(seed, split, offset + i)``: its random parameters come from a
``torch.Generator`` seeded with a hash of those numbers, and the image is rendered with batched
tensor operations, so a batch renders to bit-identical images whatever its size or order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "CLASS_NAMES",
    "DISTRACTOR_NAMES",
    "MEAN",
    "STD",
    "SyntheticShapes",
    "make_loaders",
    "normalize",
]

logger = logging.getLogger(__name__)

#: Shapes that define the classes; the label of an image is the index of its class object here.
CLASS_NAMES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "cross",
    "star",
    "ring",
    "frame",
    "heart",
)

#: Shapes used for distractors only; none of them ever defines a class.
DISTRACTOR_NAMES: tuple[str, ...] = ("ellipse", "crescent", "ell")

#: Per-channel mean of the images (in ``[0, 1]``), measured on 4,096 training images of seed 0 at
#: 64x64. Use with :data:`STD` (e.g. via :func:`normalize`) before feeding a classifier.
MEAN: tuple[float, float, float] = (0.4292, 0.4301, 0.4305)
#: Per-channel standard deviation matching :data:`MEAN`.
STD: tuple[float, float, float] = (0.1178, 0.1173, 0.1177)

_SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

# Geometry of the scene. Sizes are object diameters as a fraction of the image side.
_CLASS_SCALE = (0.15, 0.40)
_DISTRACTOR_SCALE = (0.12, 0.30)
_MIN_DISTRACTORS = 2
_MAX_DISTRACTORS = 4
_MAX_LINES = 6
_POSITION_CANDIDATES = 8
_NOISE_GRID = 4
_PIXEL_NOISE = 0.02

# Layout of the per-item vector of uniform numbers in [0, 1).
_OBJ_FIELDS = 8  # type, scale, angle, hue, sat, val, shade direction, shade strength
_N_OBJ = 1 + _MAX_DISTRACTORS
_P_LABEL = 0
_P_NDIST = 1
_P_OBJ = 2
_P_CLASS_POS = _P_OBJ + _N_OBJ * _OBJ_FIELDS
_P_DIST_POS = _P_CLASS_POS + 2
_P_NOISE = _P_DIST_POS + _MAX_DISTRACTORS * _POSITION_CANDIDATES * 2
_P_GRADIENT = _P_NOISE + 3 * _NOISE_GRID * _NOISE_GRID
_P_NLINES = _P_GRADIENT + 7  # direction + two colours
_P_LINES = _P_NLINES + 1
_N_PARAMS = _P_LINES + _MAX_LINES * 7  # endpoints (4) + colour (3)

_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    """SplitMix64 finaliser: a well-spread 64-bit hash of ``value``."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _item_seed(seed: int, stream: int, index: int) -> int:
    """Seed of the generator of one item; distinct streams never share items."""
    return _mix64(_mix64(_mix64(seed) ^ stream) ^ index) & ((1 << 63) - 1)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """Convert ``(...)`` HSV tensors in ``[0, 1]`` to ``(..., 3)`` RGB."""
    k = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device)
    k = (k + h.unsqueeze(-1) * 6.0) % 6.0
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return v.unsqueeze(-1) - v.unsqueeze(-1) * s.unsqueeze(-1) * ramp


def _inside(kind: str, u: Tensor, v: Tensor) -> Tensor:
    """Boolean occupancy of a shape in its local frame, where the shape fits the unit disc.

    Args:
        kind: a name from :data:`CLASS_NAMES` or :data:`DISTRACTOR_NAMES`.
        u: local x coordinates, any shape.
        v: local y coordinates, same shape as ``u``.

    Returns:
        Boolean tensor of the shape of ``u``.
    """
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
        return ((u >= -0.8) & (u <= -0.3) & (av <= 0.85)) | (
            (v >= 0.35) & (v <= 0.85) & (au <= 0.8)
        )
    raise ValueError(f"unknown shape kind {kind!r}")


class SyntheticShapes(Dataset):
    """Seeded synthetic dataset of one class-defining shape among distractors and clutter.

    Item ``i`` is the tuple ``(image, label, mask)``:

    * ``image``: float32 tensor ``(3, H, W)`` with values in ``[0, 1]`` (not normalised; see
      :data:`MEAN`, :data:`STD` and :func:`normalize`), or whatever ``transform`` returns;
    * ``label``: ``int`` in ``[0, num_classes)``, the index in :attr:`class_names` of the shape of
      the class object;
    * ``mask``: float32 tensor ``(1, H, W)`` holding 1.0 on the pixels of the class object and 0.0
      elsewhere (returned only when ``return_mask=True``; otherwise the item is
      ``(image, label)``).

    The class object is a rotated shape from :data:`CLASS_NAMES` (disc, square, triangle, cross,
    star, ring, frame, heart) with diameter 0.15-0.4 of the image side, placed fully inside the
    image and drawn on top. Two to four distractors from :data:`DISTRACTOR_NAMES` (elongated
    ellipse, crescent, L shape; diameter 0.12-0.3) are placed to avoid it where possible, so they
    overlap it at most partially. All objects take colours from the same distribution. Every
    class shape has a mirror symmetry and all objects are rotated uniformly, so flips and
    90-degree rotations of an image never change its label.

    Item ``i`` depends only on ``(seed, split, offset + i)``. ``__getitems__`` renders a whole
    batch at once (PyTorch's ``DataLoader`` uses it automatically), which gives the same tensors
    as rendering the items one by one; thousands of images per second on one CPU core.

    Args:
        num_samples: number of items (``len(dataset)``), >= 1.
        image_size: side ``H = W`` of the square images in pixels, >= 16.
        seed: base seed; different seeds give different datasets.
        split: ``"train"``, ``"val"`` or ``"test"``; the three splits are disjoint streams, so a
            held-out split never repeats a training image.
        offset: index of the first item within the split's stream, >= 0. Datasets with the same
            seed and split and non-overlapping ``[offset, offset + num_samples)`` ranges hold
            different images (e.g. a fresh training set per epoch).
        transform: optional callable applied to each image tensor ``(3, H, W)``. It sees the
            image only, not the mask, so use it for photometric changes or normalisation, not
            for geometric ones.
        return_mask: when ``True`` (default) items are ``(image, label, mask)``, otherwise
            ``(image, label)``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument is out of range or ``split`` is unknown.

    Example:
        >>> ds = SyntheticShapes(8, image_size=32, seed=0, split="val")
        >>> image, label, mask = ds[0]
        >>> tuple(image.shape), tuple(mask.shape), 0 <= label < ds.num_classes
        ((3, 32, 32), (1, 32, 32), True)
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    num_classes: int = len(CLASS_NAMES)
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __init__(
        self,
        num_samples: int,
        image_size: int = 64,
        seed: int = 0,
        split: str = "train",
        offset: int = 0,
        transform: Callable[[Tensor], Tensor] | None = None,
        return_mask: bool = True,
    ) -> None:
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.image_size = check_int("image_size", image_size, minimum=16)
        self.seed = check_int("seed", seed, minimum=None)
        self.offset = check_int("offset", offset, minimum=0)
        if not isinstance(split, str) or split not in _SPLITS:
            raise ValueError(
                f"split: expected one of {sorted(_SPLITS)}, got {split!r}. Use `offset` to take "
                "different items from the same split."
            )
        self.split = split
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform: expected a callable taking a (3, H, W) tensor or None, got "
                f"{type(transform).__name__}."
            )
        self.transform = transform
        if not isinstance(return_mask, bool):
            raise TypeError(f"return_mask: expected a bool, got {type(return_mask).__name__}.")
        self.return_mask = return_mask

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, image_size={self.image_size}, "
            f"seed={self.seed}, split={self.split!r}, offset={self.offset})"
        )

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            try:
                index = int(index)  # numpy / 0-d tensor indices
            except (TypeError, ValueError):
                raise TypeError(f"index: expected an int, got {type(index).__name__}.") from None
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(
                f"index {index} out of range for a dataset of {self.num_samples} items."
            )
        return index

    def generate(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Render several items at once, as batched tensors.

        ``transform`` is not applied here.

        Args:
            indices: item indices in ``[-len(self), len(self))``.

        Returns:
            ``(images, labels, masks)`` with shapes ``(B, 3, H, W)`` (float32 in ``[0, 1]``),
            ``(B,)`` (int64) and ``(B, 1, H, W)`` (float32, 0 or 1).

        Raises:
            IndexError: if an index is out of range.
            ValueError: if ``indices`` is empty.
        """
        checked = [self._check_index(i) for i in indices]
        if not checked:
            raise ValueError("indices: expected at least one index, got an empty sequence.")
        stream = _SPLITS[self.split]
        params = torch.empty(len(checked), _N_PARAMS)
        noise = torch.empty(len(checked), 3, self.image_size, self.image_size)
        generator = torch.Generator()
        for row, index in enumerate(checked):
            generator.manual_seed(_item_seed(self.seed, stream, self.offset + index))
            params[row] = torch.rand(_N_PARAMS, generator=generator)
            noise[row] = torch.randn(3, self.image_size, self.image_size, generator=generator)
        return _render(params, noise, self.image_size)

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor] | tuple[Tensor, int]:
        images, labels, masks = self.generate([index])
        return self._pack(images[0], labels[0], masks[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple]:
        images, labels, masks = self.generate(indices)
        return [self._pack(im, lab, m) for im, lab, m in zip(images, labels, masks)]

    def _pack(self, image: Tensor, label: Tensor, mask: Tensor) -> tuple:
        if self.transform is not None:
            image = self.transform(image)
        if self.return_mask:
            return image, int(label), mask
        return image, int(label)


def _render(params: Tensor, pixel_noise: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Draw a batch of scenes from their uniform parameters.

    Args:
        params: ``(B, P)`` uniform numbers in ``[0, 1)``, laid out as the ``_P_*`` constants say.
        pixel_noise: ``(B, 3, H, W)`` standard normal numbers.
        size: image side ``H = W``.

    Returns:
        ``(images (B, 3, H, W), labels (B,), masks (B, 1, H, W))``.
    """
    batch = params.shape[0]
    num_classes = len(CLASS_NAMES)
    labels = torch.clamp((params[:, _P_LABEL] * num_classes).long(), max=num_classes - 1)

    # Pixel-centre coordinates, in pixels.
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys = coords.view(1, size, 1)
    xs = coords.view(1, 1, size)

    # --- background: smooth colour noise blended with a colour gradient -----------------------
    grid = 0.15 + 0.55 * params[:, _P_NOISE:_P_GRADIENT].view(batch, 3, _NOISE_GRID, _NOISE_GRID)
    interp = _linear_interpolation_matrix(_NOISE_GRID, size)  # (H, G)
    smooth = torch.einsum("hg,bcgk,wk->bchw", interp, grid, interp)
    grad_p = params[:, _P_GRADIENT:_P_NLINES]
    direction = grad_p[:, 0] * 2.0 * math.pi
    ramp = (
        (xs - size / 2) * torch.cos(direction).view(batch, 1, 1)
        + (ys - size / 2) * torch.sin(direction).view(batch, 1, 1)
    ) / size + 0.5  # (B, H, W), roughly in [0, 1]
    colour_a = (0.15 + 0.55 * grad_p[:, 1:4]).view(batch, 3, 1, 1)
    colour_b = (0.15 + 0.55 * grad_p[:, 4:7]).view(batch, 3, 1, 1)
    gradient = colour_a + (colour_b - colour_a) * ramp.unsqueeze(1)
    image = 0.5 * smooth + 0.5 * gradient

    # --- thin random lines, rasterised by sampling points along each segment -------------------
    n_lines = (params[:, _P_NLINES] * (_MAX_LINES + 1)).long().clamp(max=_MAX_LINES)
    line_p = params[:, _P_LINES:].view(batch, _MAX_LINES, 7)
    steps = torch.linspace(0.0, 1.0, 2 * size).view(1, 1, -1)
    p0, p1 = line_p[..., 0:2] * size, line_p[..., 2:4] * size  # (B, L, 2)
    px = (p0[..., 0:1] + steps * (p1[..., 0:1] - p0[..., 0:1])).long().clamp(0, size - 1)
    py = (p0[..., 1:2] + steps * (p1[..., 1:2] - p0[..., 1:2])).long().clamp(0, size - 1)
    flat = (py * size + px).view(batch, -1)  # (B, L * S) pixel indices
    active = (
        (torch.arange(_MAX_LINES).view(1, -1, 1) < n_lines.view(-1, 1, 1))
        .expand(batch, _MAX_LINES, steps.shape[-1])
        .reshape(batch, -1)
    )
    on_line = torch.zeros(batch, size * size)
    on_line.scatter_reduce_(1, flat, active.to(torch.float32), reduce="amax")
    line_colour = (0.1 + 0.8 * line_p[..., 4:7]) * (
        torch.arange(_MAX_LINES).view(1, -1, 1) < n_lines.view(-1, 1, 1)
    )
    colour_src = line_colour.unsqueeze(2).expand(batch, _MAX_LINES, steps.shape[-1], 3)
    colour_src = colour_src.reshape(batch, -1, 3).transpose(1, 2)  # (B, 3, L * S)
    colour_map = torch.zeros(batch, 3, size * size)
    colour_map.scatter_reduce_(
        2, flat.unsqueeze(1).expand(batch, 3, flat.shape[1]), colour_src, reduce="amax"
    )
    on_line = on_line.view(batch, 1, size, size) > 0
    image = torch.where(on_line, 0.5 * image + 0.5 * colour_map.view(batch, 3, size, size), image)

    # --- objects: slot 0 is the class object, slots 1.. are distractors ------------------------
    obj = params[:, _P_OBJ:_P_CLASS_POS].view(batch, _N_OBJ, _OBJ_FIELDS)
    n_dist = _MIN_DISTRACTORS + (
        params[:, _P_NDIST] * (_MAX_DISTRACTORS - _MIN_DISTRACTORS + 1)
    ).long().clamp(max=_MAX_DISTRACTORS - _MIN_DISTRACTORS)

    class_radius = size * (_CLASS_SCALE[0] + (_CLASS_SCALE[1] - _CLASS_SCALE[0]) * obj[:, 0, 1]) / 2
    class_centre = class_radius.unsqueeze(-1) + params[:, _P_CLASS_POS:_P_DIST_POS] * (
        size - 2 * class_radius
    ).unsqueeze(-1)

    dist_radius = (
        size
        * (_DISTRACTOR_SCALE[0] + (_DISTRACTOR_SCALE[1] - _DISTRACTOR_SCALE[0]) * obj[:, 1:, 1])
        / 2
    )  # (B, D)
    candidates = params[:, _P_DIST_POS:_P_NOISE].view(
        batch, _MAX_DISTRACTORS, _POSITION_CANDIDATES, 2
    )
    placed_centres = [class_centre]
    placed_radii = [class_radius]
    dist_centres = []
    for d in range(_MAX_DISTRACTORS):
        r = dist_radius[:, d]
        # Centres may leave the image by up to half a radius: distractors can be cut by the edge.
        cand = -0.5 * r.view(batch, 1, 1) + candidates[:, d] * (size + r).view(batch, 1, 1)
        overlap = torch.zeros(batch, _POSITION_CANDIDATES)
        for weight, (c, rr) in enumerate(zip(placed_centres, placed_radii)):
            dist = (cand - c.unsqueeze(1)).norm(dim=-1)
            # Overlap with the class object (slot 0) costs more than overlap between distractors.
            scale = 3.0 if weight == 0 else 1.0
            overlap += scale * (rr.unsqueeze(1) + r.unsqueeze(1) - dist).clamp_min(0.0)
        best = overlap.argmin(dim=1)
        centre = cand[torch.arange(batch), best]
        dist_centres.append(centre)
        placed_centres.append(centre)
        placed_radii.append(r)

    centres = torch.stack([class_centre, *dist_centres], dim=1)  # (B, N_OBJ, 2)
    radii = torch.cat([class_radius.unsqueeze(1), dist_radius], dim=1)  # (B, N_OBJ)
    angles = obj[:, :, 2] * 2.0 * math.pi
    colours = _hsv_to_rgb(obj[:, :, 3], 0.55 + 0.45 * obj[:, :, 4], 0.55 + 0.45 * obj[:, :, 5])
    n_kinds_d = len(DISTRACTOR_NAMES)
    dist_kind = (obj[:, 1:, 0] * n_kinds_d).long().clamp(max=n_kinds_d - 1)
    present = torch.cat(
        [
            torch.ones(batch, 1, dtype=torch.bool),
            torch.arange(_MAX_DISTRACTORS).view(1, -1) < n_dist.view(-1, 1),
        ],
        dim=1,
    )

    # Local (rotated, radius-normalised) frame of every object: (B, N_OBJ, H, W).
    cos_a = torch.cos(angles).view(batch, _N_OBJ, 1, 1)
    sin_a = torch.sin(angles).view(batch, _N_OBJ, 1, 1)
    rel_x = xs.unsqueeze(0) - centres[:, :, 0].view(batch, _N_OBJ, 1, 1)
    rel_y = ys.unsqueeze(0) - centres[:, :, 1].view(batch, _N_OBJ, 1, 1)
    inv_r = 1.0 / radii.view(batch, _N_OBJ, 1, 1)
    u = (rel_x * cos_a + rel_y * sin_a) * inv_r
    v = (-rel_x * sin_a + rel_y * cos_a) * inv_r

    occupancy = torch.zeros(batch, _N_OBJ, size, size, dtype=torch.bool)
    for k, name in enumerate(CLASS_NAMES):
        rows = (labels == k).nonzero(as_tuple=True)[0]
        if rows.numel():
            occupancy[rows, 0] = _inside(name, u[rows, 0], v[rows, 0])
    for k, name in enumerate(DISTRACTOR_NAMES):
        rows, slots = ((dist_kind == k) & present[:, 1:]).nonzero(as_tuple=True)
        if rows.numel():
            occupancy[rows, slots + 1] = _inside(name, u[rows, slots + 1], v[rows, slots + 1])

    # Soft shading across each object so that fills are not flat.
    shade_dir = obj[:, :, 6] * 2.0 * math.pi
    shade = 1.0 + 0.25 * obj[:, :, 7].view(batch, _N_OBJ, 1, 1) * (
        u * torch.cos(shade_dir).view(batch, _N_OBJ, 1, 1)
        + v * torch.sin(shade_dir).view(batch, _N_OBJ, 1, 1)
    )

    # Distractors first (last slot lowest), the class object last, on top of everything.
    for slot in list(range(_N_OBJ - 1, 0, -1)) + [0]:
        fill = colours[:, slot].view(batch, 3, 1, 1) * shade[:, slot].unsqueeze(1)
        image = torch.where(occupancy[:, slot].unsqueeze(1), fill, image)

    image = (image + _PIXEL_NOISE * pixel_noise).clamp(0.0, 1.0)
    masks = occupancy[:, :1].to(torch.float32)
    return image.contiguous(), labels, masks


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


def normalize(
    images: Tensor,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> Tensor:
    """Normalise images in ``[0, 1]`` channel-wise: ``(x - mean) / std``. Returns a new tensor.

    Args:
        images: tensor ``(3, H, W)`` or ``(N, 3, H, W)``.
        mean: three per-channel means (default :data:`MEAN`).
        std: three per-channel standard deviations (default :data:`STD`).

    Returns:
        Tensor of the same shape as ``images``.

    Raises:
        ValueError: if ``images`` does not have 3 channels in dimension -3.
    """
    if not isinstance(images, Tensor) or images.dim() not in (3, 4) or images.shape[-3] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"images: expected a tensor of shape (3, H, W) or (N, 3, H, W), got {shape}."
        )
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - m) / s


def make_loaders(
    num_train: int = 20000,
    num_val: int = 2000,
    num_test: int = 2000,
    *,
    image_size: int = 64,
    seed: int = 0,
    batch_size: int = 128,
    return_mask: bool = False,
    num_workers: int = 0,
    shuffle_train: bool = True,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, validation and test loaders over disjoint :class:`SyntheticShapes` splits.

    Images come out in ``[0, 1]``; normalise them with :func:`normalize` before a classifier
    (``train_classifier`` does so itself).

    Args:
        num_train: training items.
        num_val: validation items.
        num_test: test items.
        image_size: image side in pixels.
        seed: dataset seed; the training order is shuffled with a generator seeded from it.
        batch_size: batch size of all three loaders.
        return_mask: also yield the ``(B, 1, H, W)`` masks.
        num_workers: ``DataLoader`` worker processes.
        shuffle_train: shuffle the training loader.

    Returns:
        ``(train_loader, val_loader, test_loader)``; batches are ``(images (B, 3, H, W),
        labels (B,))`` or, with ``return_mask``, ``(images, labels, masks (B, 1, H, W))``.

    Raises:
        ValueError: if a size or ``batch_size`` is not a positive int.
    """
    check_int("batch_size", batch_size, minimum=1)
    datasets = [
        SyntheticShapes(n, image_size=image_size, seed=seed, split=split, return_mask=return_mask)
        for n, split in ((num_train, "train"), (num_val, "val"), (num_test, "test"))
    ]
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(
        datasets[0],
        batch_size=batch_size,
        shuffle=shuffle_train,
        generator=generator,
        num_workers=num_workers,
    )
    val = DataLoader(datasets[1], batch_size=batch_size, num_workers=num_workers)
    test = DataLoader(datasets[2], batch_size=batch_size, num_workers=num_workers)
    return train, val, test


def check_int(name: str, value: object, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}.")
    return value
