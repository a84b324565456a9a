"""Explanations in production: the classifier and its T-TAME head as one exportable graph.

A T-TAME map costs one forward pass and no gradient, so the prediction and its explanation can
ship together:

* :meth:`TTAME.as_module <ttame_attr.TTAME.as_module>` (:class:`ExplainedModel`): one
  ``nn.Module`` returning ``(logits, classes, maps)``, for ``torch.compile`` and serving;
* :meth:`TTAME.export_program <ttame_attr.TTAME.export_program>`: a ``torch.export`` program
  with a dynamic batch (``torch.export.save`` / ``load``);
* :meth:`TTAME.export_onnx <ttame_attr.TTAME.export_onnx>`: one ONNX file that ONNX Runtime runs
  without torch, its input size and normalisation in its metadata.
"""

from ttame_attr.export._clone import structural_clone
from ttame_attr.export._export import (
    MULTILABEL_OUTPUT_NAMES,
    OUTPUT_NAMES,
    export_onnx,
    export_program,
    onnx_metadata,
)
from ttame_attr.export._module import (
    ExplainedModel,
    ExplainedOutput,
    ExportError,
    MultiLabelOutput,
    as_module,
    check_head_matches,
)

__all__ = [
    "MULTILABEL_OUTPUT_NAMES", "OUTPUT_NAMES", "ExplainedModel", "ExplainedOutput", "ExportError",
    "MultiLabelOutput", "as_module", "check_head_matches",
    "export_onnx", "export_program", "onnx_metadata", "structural_clone",
]
