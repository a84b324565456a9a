"""The rows of an explanation store: per-map statistics and the Parquet columns of a batch.

Shared by :func:`~ttame_attr.explain_dataset` and the Ray Data integration
(:class:`ttame_attr.integrations.ray.ExplainBatch`), so both write the same columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ttame_attr._core.optional import require

__all__ = ["STAT_COLUMNS", "arrow_fields", "batch_columns", "decode_maps", "map_statistics",
           "require_pyarrow", "to_arrow"]

#: The per-map statistics, one float32 per returned class (see :func:`map_statistics`).
STAT_COLUMNS = ("peak_y", "peak_x", "center_mass", "border_mass", "entropy", "area")


def require_pyarrow() -> Any:
    """``import pyarrow``, or an ImportError naming the extra to install."""
    return require("pyarrow.parquet", "dataset", "the explanation store")


def _region(size: int, low: float, high: float, device: torch.device) -> Tensor:
    """Which of ``size`` pixels have their centre ``(i + 0.5) / size`` in ``[low, high]``."""
    centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    return (centres >= low) & (centres <= high)


def map_statistics(maps: Tensor) -> dict[str, Tensor]:
    """Statistics of each map of ``(N, K, h, w)`` maps in ``[0, 1]``: ``{name: (N, K) float32}``.

    - ``peak_y``, ``peak_x``: the position of the maximum (the first one in row-major order),
      as fractions of the height and width at pixel centres: ``(row + 0.5) / h``.
    - ``center_mass``: the share of the map's sum on the pixels whose centre lies in the middle
      half of both sides (``[0.25, 0.75]``).
    - ``border_mass``: the share on the pixels whose centre lies in the outer 1/8 of either side.
    - ``entropy``: the entropy of the map normalised to sum 1, divided by ``log(h * w)``: 1 for
      a uniform map, 0 for a single pixel (and for a map of zeros, or ``h * w == 1``).
    - ``area``: the fraction of pixels above 0.5.

    A map of zeros has shares 0.

    Example:
        >>> import torch
        >>> from ttame_attr.dataset import map_statistics
        >>> m = torch.zeros(1, 1, 4, 4); m[0, 0, 1, 2] = 1.0
        >>> stats = map_statistics(m)
        >>> [round(float(stats[k]), 4) for k in ("peak_y", "peak_x", "center_mass", "border_mass")]
        [0.375, 0.625, 1.0, 0.0]
        >>> [round(float(stats[k]), 4) for k in ("entropy", "area")]
        [0.0, 0.0625]
    """
    if maps.dim() != 4:
        raise ValueError(f"maps: expected a (N, K, h, w) tensor, got shape {tuple(maps.shape)}.")
    m = maps.float()
    n, k, h, w = m.shape
    flat = m.reshape(n, k, h * w)
    peak = flat.argmax(dim=2)
    mass = flat.sum(dim=2)
    safe = mass.clamp_min(torch.finfo(torch.float32).tiny)
    rows_c, cols_c = _region(h, 0.25, 0.75, m.device), _region(w, 0.25, 0.75, m.device)
    centre = rows_c[:, None] & cols_c[None, :]
    rows_b = ~_region(h, 1 / 8, 7 / 8, m.device)
    cols_b = ~_region(w, 1 / 8, 7 / 8, m.device)
    border = rows_b[:, None] | cols_b[None, :]
    p = flat / safe[..., None]
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-38)), torch.zeros_like(p))
    entropy = -plogp.sum(dim=2) / math.log(h * w) if h * w > 1 else torch.zeros_like(mass)
    return {
        "peak_y": ((peak // w).float() + 0.5) / h,
        "peak_x": ((peak % w).float() + 0.5) / w,
        "center_mass": (m * centre).sum(dim=(2, 3)) / safe,
        "border_mass": (m * border).sum(dim=(2, 3)) / safe,
        "entropy": entropy.clamp(0.0, 1.0) + 0.0,  # + 0.0: no -0.0 for a single pixel
        "area": (flat > 0.5).float().mean(dim=2),
    }


def batch_columns(maps: Tensor, classes: Tensor, probabilities: Tensor,
                  object_masks: Tensor | None = None) -> dict[str, np.ndarray]:
    """The numeric columns of a batch as numpy arrays (computed on the maps' device, then copied).

    Args:
        maps: ``(N, K, h, w)`` maps in ``[0, 1]`` at the head's map size.
        classes: ``(N, K)`` classes, most probable first.
        probabilities: ``(N, K)`` their probabilities.
        object_masks: ``(N, H, W)`` or ``(N, 1, H, W)`` object masks, resized to ``(h, w)``.

    Returns:
        ``maps`` ``(N, K, h, w)`` float16, ``classes`` ``(N, K)`` int32, ``probabilities`` and
        each of :data:`STAT_COLUMNS` ``(N, K)`` float32, and ``object_mask`` ``(N, h * w)`` uint8
        when masks are given.
    """
    stats = map_statistics(maps)
    out = {"maps": maps.to(torch.float16), "classes": classes.to(torch.int32),
           "probabilities": probabilities.float(), **stats}
    if object_masks is not None:
        m = object_masks.float()
        m = m[:, None] if m.dim() == 3 else m[:, :1]
        m = torch.nn.functional.interpolate(m.to(maps.device), size=maps.shape[-2:], mode="area")
        out["object_mask"] = (m[:, 0] > 0.5).to(torch.uint8).reshape(m.shape[0], -1)
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def _list_array(pa: Any, values: np.ndarray, type_: Any) -> Any:
    """A ``list<type_>`` array from an ``(N, K)`` numpy array (one list of K per row)."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=type_))


def arrow_fields(columns: dict[str, Any]) -> dict[str, Any]:
    """The pyarrow arrays of :func:`batch_columns`' output: ``classes``, ``probabilities``,
    ``maps`` (binary, see :func:`to_arrow`), the statistics and ``object_mask`` if present."""
    pa = require_pyarrow()
    maps = np.ascontiguousarray(columns["maps"], dtype="<f2")
    n = maps.shape[0]
    size = maps[0].nbytes if n else 0
    offsets = pa.py_buffer(np.arange(0, n * size + 1, max(size, 1), dtype=np.int32)[:n + 1])
    fields = {
        "classes": _list_array(pa, columns["classes"], pa.int32()),
        "probabilities": _list_array(pa, columns["probabilities"], pa.float32()),
        "maps": pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(maps.tobytes())]),
    }
    for name in STAT_COLUMNS:
        fields[name] = _list_array(pa, columns[name], pa.float32())
    if "object_mask" in columns:
        fields["object_mask"] = _list_array(pa, columns["object_mask"], pa.uint8())
    return fields


def to_arrow(columns: dict[str, Any]) -> Any:
    """A ``pyarrow.Table`` of the store's schema from concatenated columns.

    ``columns`` holds ``index`` (N,), ``path`` (list of str or None), ``label`` (N,) int64 with
    -1 for unknown, and the arrays of :func:`batch_columns`. ``maps`` become one ``binary``
    value per row: the ``(K, h, w)`` float16 array, C order, little-endian.
    """
    pa = require_pyarrow()
    labels = np.asarray(columns["label"], dtype=np.int64)
    fields = {
        "index": pa.array(np.asarray(columns["index"], dtype=np.int64)),
        "path": pa.array(columns["path"], type=pa.string()),
        "label": pa.array(labels, mask=labels < 0, type=pa.int64()),
        **arrow_fields(columns),
    }
    return pa.table(fields)


def decode_maps(column: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """``(N, K, h, w)`` float16 from a ``maps`` column (a pyarrow binary array or chunked array)."""
    pa = require_pyarrow()
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if n == 0:
        return np.zeros((0, *shape), dtype=np.float16)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    if data.size != n * int(np.prod(shape)) * 2:
        raise ValueError(f"maps: expected {n} maps of shape {shape} in float16, got {data.size} bytes.")
    return data.view("<f2").reshape(n, *shape)
