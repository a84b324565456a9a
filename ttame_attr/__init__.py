"""ttame_attr: T-TAME explanations for image classifiers (CNNs, ViTs, Swin), Captum-style.

Example:
    >>> import torch, torchvision
    >>> from ttame_attr import TTAME
    >>> model = torchvision.models.resnet18(weights=None, num_classes=5)
    >>> explainer = TTAME(model, input_size=(3, 64, 64))
    >>> explainer.attribute(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
"""

from ttame_attr._core.head import AttentionHead, FeatureBranch
from ttame_attr._core.labels import LabelPairs, PositiveLabels, positive_labels, sample_pairs
from ttame_attr._core.loss import LossTerms, MultiLabelTTAMELoss, TTAMELoss, area_loss, variation_loss
from ttame_attr._core.multilabel import MultiLabelExplanation
from ttame_attr._core.outputs import extract_logits
from ttame_attr._core.ttame import IMAGENET_MEAN, IMAGENET_STD, TTAME, Explanation
from ttame_attr._version import __version__
from ttame_attr.adapters import (
    BackboneAdapter,
    get_adapter,
    list_adapters,
    register_adapter,
)
from ttame_attr.audit import AuditReport, audit
from ttame_attr.dataset import ExplanationStore, explain_dataset
from ttame_attr.training import (
    EpochStats,
    StepResult,
    TrainingDivergedError,
    TrainingHistory,
    TrainStep,
    fit,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TTAME",
    "AttentionHead",
    "AuditReport",
    "BackboneAdapter",
    "EpochStats",
    "Explanation",
    "ExplanationStore",
    "FeatureBranch",
    "LabelPairs",
    "LossTerms",
    "MultiLabelExplanation",
    "MultiLabelTTAMELoss",
    "PositiveLabels",
    "StepResult",
    "TTAMELoss",
    "TrainStep",
    "TrainingDivergedError",
    "TrainingHistory",
    "__version__",
    "area_loss",
    "audit",
    "explain_dataset",
    "extract_logits",
    "fit",
    "get_adapter",
    "list_adapters",
    "positive_labels",
    "register_adapter",
    "sample_pairs",
    "variation_loss",
]
