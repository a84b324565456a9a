"""The stateful form of every metric: ``update()`` per batch, ``compute()`` over all of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ttame_attr.metrics._common import MapsOrExplain, TargetArg

__all__ = ["Accumulator", "PerSampleResult"]


class PerSampleResult:
    """A metric result built from per-sample tensors (the fields named in ``SAMPLES``) and
    settings (``SETTINGS``) by ``from_per_sample(*settings, *samples)``, so that the results
    of several batches concatenate into the result of all of them."""

    SETTINGS: ClassVar[tuple[str, ...]] = ()
    SAMPLES: ClassVar[tuple[str, ...]] = ()

    def on_cpu(self) -> Any:
        """The same result with its per-sample tensors on the CPU."""
        return dataclasses.replace(self, **{n: getattr(self, n).detach().cpu() for n in self.SAMPLES})

    @classmethod
    def concatenate(cls, results: Sequence[Any]) -> Any:
        """One result for every sample of ``results`` (which share their settings)."""
        first = results[0]
        return cls.from_per_sample(  # type: ignore[attr-defined]
            *(getattr(first, name) for name in cls.SETTINGS),
            *(torch.cat([getattr(r, name) for r in results]) for name in cls.SAMPLES),
        )


def _same(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(a, Tensor) else a == b


class Accumulator:
    """Base of the stateful metrics: ``update()`` evaluates a batch with the functional metric
    and keeps its per-sample values (on the CPU); ``compute()`` gives the result over every
    kept sample, which equals the functional metric on the concatenated batches.

    Args:
        metric: the functional metric, called as ``metric(model, inputs, maps, target,
            **options)``.
        model: the classifier.
        **options: the metric's other arguments, the same for every batch.
    """

    def __init__(self, metric: Callable[..., Any], model: Any, **options: Any) -> None:
        self._metric, self.model, self._options = metric, model, options
        self._results: list[Any] = []

    def reset(self) -> None:
        """Forget every accumulated sample."""
        self._results = []

    @property
    def num_samples(self) -> int:
        """Number of images accumulated so far."""
        return sum(int(getattr(r, r.SAMPLES[0]).shape[0]) for r in self._results)

    def update(self, inputs: Tensor, maps: MapsOrExplain, target: TargetArg = None) -> Any:
        """Evaluate one batch (the functional metric's arguments), keep it, return its result."""
        return self._keep(self._metric(self.model, inputs, maps, target, **self._options))

    def _keep(self, result: Any) -> Any:
        if self._results:
            first = self._results[0]
            changed = [n for n in result.SETTINGS if not _same(getattr(result, n), getattr(first, n))]
            if changed:
                raise ValueError(f"inputs: this batch's {changed} differ from the earlier batches'. Use "
                                 "images of one size (or fix `steps`) so that every batch is evaluated "
                                 "alike.")
        self._results.append(result.on_cpu())
        return result

    def compute(self) -> Any:
        """The result over every sample since construction or the last ``reset()``."""
        if not self._results:
            raise RuntimeError(f"{type(self).__name__}.compute(): no samples yet. Call update() with at "
                               "least one batch first (or reset() was called).")
        return type(self._results[0]).concatenate(self._results)
