"""Ray Data: explain a ``ray.data.Dataset`` with ``map_batches(ExplainBatch, ...)``.

Needs ``pip install "ttame-attr[ray]"``. Each actor runs the explained module
(:meth:`TTAME.as_module <ttame_attr.TTAME.as_module>`) on its batches and returns the columns of
the explanation store (:doc:`/dataset`): ``classes``, ``probabilities``, ``maps`` (float16 bytes
at the head's map size, read with :func:`ttame_attr.dataset.decode_maps`) and the per-map
statistics, next to the batch's other columns (e.g. ``path``).

Example:
    >>> import ray
    >>> from ttame_attr.integrations.ray import ExplainBatch
    >>> ds = ray.data.read_images("images/", include_paths=True, mode="RGB")  # doctest: +SKIP
    >>> out = ds.map_batches(ExplainBatch, fn_constructor_kwargs={"explainer": explainer, "top_k": 3},
    ...                      batch_size=64, concurrency=2, batch_format="numpy")  # doctest: +SKIP
    >>> out.write_parquet("explanations/")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ttame_attr.dataset._columns import arrow_fields, batch_columns, require_pyarrow
from ttame_attr.dataset._data import IMAGENET

__all__ = ["ExplainBatch", "preprocess_images"]

logger = logging.getLogger(__name__)


def preprocess_images(images: Any, input_size: tuple[int, int, int],
                      normalization: tuple[Any, Any] | None) -> Tensor:
    """``(N, C, H, W)`` model inputs from ``N`` HWC uint8 images (an array or a list of arrays of
    any sizes): resize the shorter side to 256/224 of the input side, centre crop, normalise
    (the evaluation transform of the command line, on tensors)."""
    import torchvision.transforms.v2.functional as F

    mean, std = normalization if normalization is not None else IMAGENET
    hw = list(input_size[1:])
    out = []
    for image in images:
        t = torch.from_numpy(np.ascontiguousarray(image))
        t = t[..., None] if t.dim() == 2 else t
        t = t.permute(2, 0, 1).float().div_(255.0)
        if t.shape[0] == 1 and input_size[0] == 3:
            t = t.expand(3, -1, -1)
        t = F.resize(t, [round(min(hw) * 256 / 224)], antialias=True)
        out.append(F.center_crop(t, hw))
    return F.normalize(torch.stack(out), list(mean), list(std))


class ExplainBatch:
    """A callable class for ``ray.data.Dataset.map_batches``: predict and explain each batch.

    Args:
        explainer: a trained :class:`~ttame_attr.TTAME`, its ``as_module(top_k, upsample=False)``,
            or a function of no arguments returning either (called once in each actor: load
            a large model there instead of shipping it).
        top_k: how many of the most probable classes to explain per image.
        image_column: the batch's column of images (``read_images`` calls it ``"image"``).
        preprocessed: ``True`` when the column already holds ``(C, H, W)`` float model inputs;
            ``False`` (default) for HWC uint8 images, resized, cropped and normalised here.
        device: where to run (default: the module's device).

    Returns (``__call__``):
        A ``pyarrow.Table``: the batch's columns but ``image_column``, then the store's
        ``classes``, ``probabilities``, ``maps`` and statistics.
    """

    def __init__(self, explainer: Any, *, top_k: int = 1, image_column: str = "image",
                 preprocessed: bool = False, device: str | torch.device | None = None) -> None:
        require_pyarrow()
        factory = callable(explainer) and not isinstance(explainer, nn.Module)
        if factory and not hasattr(explainer, "as_module"):
            explainer = explainer()
        from ttame_attr.dataset._run import explained_module

        self.module, _ = explained_module(explainer, top_k)
        if device is not None:
            self.module.to(torch.device(device))
        param = next(self.module.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.image_column, self.preprocessed = image_column, preprocessed

    def __call__(self, batch: dict[str, Any]) -> Any:
        pa = require_pyarrow()
        if not isinstance(batch, dict) or self.image_column not in batch:
            raise ValueError(f"batch: expected a dict of columns with {self.image_column!r} "
                             f"(map_batches(..., batch_format='numpy')), got {type(batch).__name__} "
                             f"{list(batch) if isinstance(batch, dict) else ''}.")
        images = batch[self.image_column]
        if self.preprocessed:
            x = torch.as_tensor(np.stack(list(images)) if images.dtype == object else images).float()
        else:
            x = preprocess_images(images, self.module.input_size, self.module.normalization)
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            logits, classes, maps = self.module(x)
            probs = logits.float().softmax(dim=1).gather(1, classes)
            columns = batch_columns(maps, classes, probs)
        passed = {name: _arrow(pa, value) for name, value in batch.items() if name != self.image_column}
        return pa.table({**passed, **arrow_fields(columns)})


def _arrow(pa: Any, value: Any) -> Any:
    """A column of the input batch as a pyarrow array (strings, numbers, or lists of numbers)."""
    if isinstance(value, np.ndarray) and value.ndim > 1:
        return pa.array(list(value.reshape(value.shape[0], -1)))
    return pa.array(list(value) if isinstance(value, np.ndarray) and value.dtype == object else value)

