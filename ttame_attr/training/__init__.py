"""Training the T-TAME head: :func:`fit` and the pieces it is assembled from.

- :func:`fit` (also :meth:`TTAME.fit <ttame_attr.TTAME.fit>`): the paper's recipe, with
  checkpoints, exact resumption, a non-finite guard and data-parallel training under torchrun.
- :class:`TrainStep`: one optimiser step, for users who write their own loop.
- :class:`TrainingHistory` / :class:`EpochStats`: what ``fit`` reports; :class:`Convergence`: whether
  the head was still improving when it ended.
- :func:`local_device`: the GPU of this process under torchrun.

Private modules: the epoch loop (``_loop.py``) and the pieces that listen to it (progress, the
non-finite guard, validation, checkpoints, the data order).
"""

from ttame_attr.training._fit import fit
from ttame_attr.training._history import (
    DEAD_MAP_PEAK,
    FULL_MAP_FLOOR,
    ClassPeaks,
    Convergence,
    EpochStats,
    TrainingHistory,
)
from ttame_attr.training._nonfinite import TrainingDivergedError
from ttame_attr.training._step import StepResult, TrainStep, param_groups
from ttame_attr.training.distributed import local_device

__all__ = ["DEAD_MAP_PEAK", "FULL_MAP_FLOOR", "ClassPeaks", "Convergence", "EpochStats", "StepResult",
           "TrainStep", "TrainingDivergedError", "TrainingHistory", "fit", "local_device", "param_groups"]
