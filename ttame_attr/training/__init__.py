"""Training the T-TAME head: :func:`fit` and the pieces it is assembled from.

- :func:`fit` (also :meth:`TTAME.fit <ttame_attr.TTAME.fit>`): the paper's recipe, with
  checkpoints, exact resumption, a non-finite guard and data-parallel training under torchrun.
- :class:`TrainStep`: one optimiser step (SGD Nesterov, OneCycleLR, mixed precision), for
  users who write their own loop; it returns a :class:`StepResult`.
- :class:`TrainingHistory` / :class:`EpochStats`: what ``fit`` reports.
- :func:`local_device`: the GPU of this process under torchrun.

The loop itself (``_loop.py``) only iterates and announces events; progress, the non-finite
guard, validation, checkpointing and the replay of the data order are small pieces that listen
(``_progress.py``, ``_nonfinite.py``, ``_validation.py``, ``_checkpoint.py``, ``_data.py``).
"""

from ttame_attr.training._fit import fit
from ttame_attr.training._history import EpochStats, TrainingHistory
from ttame_attr.training._nonfinite import TrainingDivergedError
from ttame_attr.training._step import StepResult, TrainStep, param_groups
from ttame_attr.training.distributed import local_device

__all__ = [
    "EpochStats",
    "StepResult",
    "TrainStep",
    "TrainingDivergedError",
    "TrainingHistory",
    "fit",
    "local_device",
    "param_groups",
]
