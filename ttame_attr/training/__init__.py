"""Training the T-TAME head: :func:`fit` and the parts it is made of.

- :func:`fit` (also :meth:`TTAME.fit <ttame_attr.TTAME.fit>`): the paper's recipe, with
  checkpoints, exact resumption, a non-finite guard and data-parallel training under torchrun.
- :class:`TrainStep`: one optimiser step, for users who write their own loop.
- :class:`TrainingHistory` / :class:`EpochStats`: what ``fit`` reports; :class:`Convergence`: whether
  the head was still improving when it ended.
- :func:`local_device`: the GPU of this process under torchrun.

The modules, in the order a batch meets them: ``_fit.py`` (settings, the ranks' agreement),
``_trainer.py`` (the loop: epochs, batches, validation, checkpoints), ``_step.py`` (one step);
beside them ``_history.py`` (the records), ``_recipe.py`` (the schedule and the advice),
``_checkpoint.py`` (the checkpoint file and RNG replay) and ``distributed.py`` (DDP).
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
from ttame_attr.training._step import StepResult, TrainingDivergedError, TrainStep, param_groups
from ttame_attr.training.distributed import local_device

__all__ = ["DEAD_MAP_PEAK", "FULL_MAP_FLOOR", "ClassPeaks", "Convergence", "EpochStats", "StepResult",
           "TrainStep", "TrainingDivergedError", "TrainingHistory", "fit", "local_device",
           "param_groups"]
