"""torch.export and ONNX export of a classifier with its T-TAME head, with errors that say which
part failed."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ttame_attr._core.maps import Scale
from ttame_attr._core.outputs import extract_logits
from ttame_attr._core.storage import atomic_write
from ttame_attr._version import __version__
from ttame_attr.export._clone import structural_clone
from ttame_attr.export._module import ExplainedModel, ExportError

if TYPE_CHECKING:  # the explainer's public parts; the facade module itself sits above this one
    from ttame_attr._core.parts import ExplainerParts as TTAME

__all__ = ["MULTILABEL_OUTPUT_NAMES", "OUTPUT_NAMES", "export_onnx", "export_program", "onnx_metadata"]

logger = logging.getLogger(__name__)

#: The names of the ONNX graph's input and outputs.
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "classes", "maps")
#: The ONNX outputs of a multi-label explainer's graph.
MULTILABEL_OUTPUT_NAMES = ("logits", "classes", "probabilities", "maps")


class _Logits(nn.Module):
    """The bare classifier returning logits (to tell a backbone failure from ours)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return extract_logits(self.model(x))


class _Plain(nn.Module):
    """:class:`ExplainedModel` returning a plain tuple: the exported program then needs neither
    ``ttame_attr`` nor a registered named tuple to be saved, loaded and run."""

    def __init__(self, explained: ExplainedModel) -> None:
        super().__init__()
        self.explained = explained
        self.train(False)  # exporters warn about (and may trace) training-mode modules

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.explained(images))


def _example(explainer: TTAME, example: Tensor | None) -> Tensor:
    if example is None:
        param = next(explainer.model.parameters(), None)
        return torch.rand(2, *explainer.input_size, generator=torch.Generator().manual_seed(0)).to(
            param.device if param is not None else "cpu")
    if (not isinstance(example, Tensor) or example.dim() != 4
            or tuple(example.shape[1:]) != explainer.input_size):
        got = tuple(example.shape) if isinstance(example, Tensor) else type(example).__name__
        raise ValueError(f"example: expected an image batch (N, *{explainer.input_size}), got {got}. The "
                         "exported graph takes images of this size only (the batch is dynamic).")
    return example


def _dynamic(dynamic_batch: bool) -> tuple[dict[int, Any], ...] | None:
    return ({0: torch.export.Dim("batch")},) if dynamic_batch else None


def _diagnose(module: ExplainedModel, x: Tensor, err: Exception, export: Callable[[nn.Module], Any],
              what: str, tips: str) -> ExportError:
    """Tell which part failed: export the bare classifier the same way (``export``); if that
    fails too the backbone did, else T-TAME's part (the feature capture or the head)."""
    hint = ("; for a transformers model try attn_implementation='eager'" if "transformers" in
            type(module.classifier).__module__ else "")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            export(_Logits(structural_clone(module.classifier)).eval())
    except Exception as bare:  # noqa: BLE001 - any failure of the bare model is the backbone's
        return ExportError("backbone", (
            f"backbone: {what} failed on the classifier itself, without T-TAME's part "
            f"({_first_line(bare)}). Try {tips}{hint}; T-TAME's part adds nothing that could help."))
    try:
        with torch.no_grad():
            features_run = module(x)
        del features_run
    except Exception as ours:  # noqa: BLE001
        return ExportError("feature capture",
                           f"feature capture: the module fails eagerly too ({_first_line(ours)}).")
    part = "feature capture" if "hook" in str(err).lower() else "head"
    return ExportError(part, (
        f"{part}: the classifier exports, T-TAME's part does not ({_first_line(err)}). "
        f"Try {tips}, and please report it with the model's name (the full error is chained)."))


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (exporters' messages run to pages)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def export_program(explainer: TTAME, example: Tensor | None = None, *, top_k: int | None = None,
                   scale: Scale = "sigmoid", upsample: bool | tuple[int, int] = True,
                   dynamic_batch: bool = True, strict: bool = False) -> torch.export.ExportedProgram:
    """``torch.export`` the classifier with this head: a program returning the plain tuple
    ``(logits, classes, maps)`` of :meth:`as_module`, with a dynamic batch dimension.

    Save it with ``torch.export.save(program, "model.pt2")``; ``torch.export.load(...).module()``
    runs it without ``ttame_attr`` (the outputs are a plain tuple, not the named
    :class:`~ttame_attr.export.ExplainedOutput`, so loading needs nothing of this package).

    Args:
        example: an image batch ``(N, *input_size)`` to trace with (default: random, N = 2).
        top_k, scale, upsample: as in :meth:`as_module`.
        dynamic_batch: any batch size (else the example's only).
        strict: ``torch.export``'s strict mode (TorchDynamo tracing).

    Raises:
        ValueError: a bad example, ``top_k`` or ``scale``, a head that does not fit the model.
        ExportError: naming the part that failed (``backbone``, ``feature capture``, ``head``).
    """
    module = ExplainedModel(explainer, top_k, scale, upsample)
    x = _example(explainer, example)

    def export(m: nn.Module) -> torch.export.ExportedProgram:
        return torch.export.export(m, (x,), dynamic_shapes=_dynamic(dynamic_batch), strict=strict)

    try:
        return export(_Plain(module))
    except Exception as err:  # noqa: BLE001 - re-raised with the failing part named
        raise _diagnose(module, x, err, export, "torch.export",
                        f"strict={not strict} or dynamic_batch=False") from err


def onnx_metadata(explainer: TTAME, top_k: int, scale: str) -> dict[str, str]:
    """What an ONNX file written by :meth:`export_onnx` says about itself (string values; JSON
    for the structured ones): read it with ``session.get_modelmeta().custom_metadata_map``."""
    norm = explainer.normalization
    return {
        "ttame_attr.version": __version__,
        "ttame_attr.model_class": type(explainer.model).__name__,
        "ttame_attr.input_size": json.dumps(list(explainer.input_size)),
        "ttame_attr.normalization": json.dumps(None if norm is None else [list(norm[0]), list(norm[1])]),
        "ttame_attr.num_classes": str(explainer.num_classes),
        "ttame_attr.top_k": str(top_k),
        "ttame_attr.scale": scale,
        "ttame_attr.outputs": json.dumps(list(_output_names(explainer))),
        "ttame_attr.multi_label": json.dumps(bool(getattr(explainer, "multi_label", False))),
    }


def _output_names(explainer: Any) -> tuple[str, ...]:
    return MULTILABEL_OUTPUT_NAMES if getattr(explainer, "multi_label", False) else OUTPUT_NAMES


def export_onnx(explainer: TTAME, path: str | os.PathLike, example: Tensor | None = None, *,
                top_k: int | None = None, scale: Scale = "sigmoid", upsample: bool | tuple[int, int] = True,
                dynamic_batch: bool = True, opset: int | None = None,
                metadata: dict[str, str] | None = None) -> Path:
    """Write the classifier with this head as one ONNX file (torch's exporter, ``dynamo=True``).

    The graph takes ``images`` ``(batch, *input_size)`` float32 and returns ``logits``,
    ``classes`` (int64) and ``maps``, as :meth:`as_module`. ONNX Runtime runs it without torch
    or ``ttame_attr``; the file's metadata (:func:`~ttame_attr.export.onnx_metadata`) holds the
    input size and normalisation the images need. Written atomically (a temporary file, then a
    rename), weights inside the file.

    Args:
        path: the ``.onnx`` file to write.
        example, top_k, scale, upsample, dynamic_batch: as in :meth:`export_program`.
        opset: the ONNX opset (default: the exporter's). Torch's exporter writes opset 18 or
            later; an opset it cannot convert the graph to is refused (nothing is written).
        metadata: more string entries for the file's metadata (they win over the defaults).

    Returns:
        The path written.

    Raises:
        ImportError: without ``onnx`` and ``onnxscript`` (``pip install "ttame-attr[export]"``).
        ExportError: naming the part that failed.
        ValueError: an ``opset`` that is not a positive integer, or one the exporter cannot write.
        OSError: a full disk (the previous file is kept).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(f"export_onnx needs onnx and onnxscript ({err}); install them with "
                          "`pip install \"ttame-attr[export]\"`.") from None
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 1):
        raise ValueError(f"opset: expected a positive integer ONNX opset or None, got {opset!r}.")
    module = ExplainedModel(explainer, top_k, scale, upsample)
    names = _output_names(explainer)
    x = _example(explainer, example)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()  # the exporter prints its progress; the library logs instead

    def export(m: nn.Module) -> Any:
        return torch.onnx.export(m, (x,), None, dynamo=True, dynamic_shapes=_dynamic(dynamic_batch),
                                 input_names=[INPUT_NAME],
                                 output_names=list(names)[:len(names) if isinstance(m, _Plain) else 1],
                                 opset_version=opset, external_data=False)

    try:
        with contextlib.redirect_stdout(chatter):
            program = export(_Plain(module))
    except Exception as err:  # noqa: BLE001 - re-raised with the failing part named
        raise _diagnose(module, x, err, export, "ONNX export",
                        "dynamic_batch=False, or export_program() (torch.export alone)") from err
    finally:
        logger.debug("torch.onnx.export: %s", chatter.getvalue().strip())
    _check_opset(program, opset)
    program.model.metadata_props.update({**onnx_metadata(explainer, module.top_k, scale), **(metadata or {})})

    def save(tmp: str) -> None:
        with contextlib.redirect_stdout(chatter):
            program.save(tmp, external_data=False)

    atomic_write(target, save)
    logger.info("export_onnx: wrote %s (%.1f MB)", target, target.stat().st_size / 2**20)
    return target


def _check_opset(program: Any, opset: int | None) -> None:
    """Refuse an ONNX program whose default-domain opset is not the ``opset`` asked for (the
    exporter falls back to its own, 18, when it cannot convert, and only logs it)."""
    if opset is None:
        return
    written = dict(program.model.opset_imports).get("")
    if written is not None and written != opset:
        raise ValueError(f"opset: {opset} was asked for, but torch's ONNX exporter could only write opset "
                         f"{written} for this model (it cannot convert it down); nothing was written. Pass "
                         f"opset={written} or later, or leave opset out.")
