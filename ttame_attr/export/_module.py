"""The classifier and its T-TAME head as one module: ``forward(images) -> (logits, classes, maps)``.

Built for tracing: the layers are read by forward hooks registered once, on a structural clone of
the classifier (never on the user's model), that write into a plain sink object; the layers'
layouts and sizes are constants from the explainer's dry run; the forward pass has no Python
branch on values, no ``data_ptr`` and no host synchronisation. So ``torch.export``, the ONNX
exporter and ``torch.compile`` see one graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from ttame_attr._core.labels import fixed_width_labels
from ttame_attr._core.maps import Scale, check_map_options, resize_maps, scale_maps, target_size
from ttame_attr._core.outputs import extract_logits
from ttame_attr.adapters._hooks import as_tensor_output
from ttame_attr.export._clone import structural_clone

if TYPE_CHECKING:
    from ttame_attr._core.parts import ExplainerParts

__all__ = ["ExplainedModel", "ExplainedOutput", "ExportError", "MultiLabelOutput", "as_module",
           "check_head_matches"]


class ExportError(RuntimeError):
    """A model and head that cannot be exported; ``part`` names what failed: ``"backbone"``,
    ``"feature capture"`` or ``"head"``."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


class ExplainedOutput(NamedTuple):
    """What :class:`ExplainedModel` returns: a tuple (exporters and ONNX give its three tensors,
    in this order: ``logits``, ``classes``, ``maps``) whose fields also have names.

    Attributes:
        logits: ``(N, num_classes)`` the classifier's logits.
        classes: ``(N, k)`` int64, the top-``k`` classes, most probable first.
        maps: ``(N, k, H, W)`` their maps (sigmoid values in ``[0, 1]`` by default).
    """

    logits: Tensor
    classes: Tensor
    maps: Tensor


class MultiLabelOutput(NamedTuple):
    """What :class:`ExplainedModel` of a multi-label explainer returns (ONNX outputs ``logits``,
    ``classes``, ``probabilities``, ``maps``, in this order).

    Attributes:
        logits: ``(N, num_classes)`` the classifier's logits.
        classes: ``(N, L)`` int64, each image's positive labels, most probable first (the top-1
            when none is positive), ``-1`` in the columns left over.
        probabilities: ``(N, L)`` their sigmoid probabilities (0 where ``classes`` is -1).
        maps: ``(N, L, H, W)`` their maps (zeros where ``classes`` is -1).
    """

    logits: Tensor
    classes: Tensor
    probabilities: Tensor
    maps: Tensor


class _Sink:
    """Where the clone's hooks put the layers' outputs during one call.

    A plain object, not a dict attribute: non-strict ``torch.export`` snapshots and restores the
    dict and list attributes of modules, which would leave the hooks writing into a stale copy.
    """

    def __init__(self) -> None:
        self.items: dict[str, Tensor] = {}


class _Tap:
    """Attached to one hooked module of the clone: its layer name and whether to copy."""

    def __init__(self, sink: _Sink, name: str, clone: bool) -> None:
        self.sink, self.name, self.clone = sink, name, clone


def _tap_hook(module: nn.Module, args: Any, output: Any) -> None:
    # A module-level function (not a closure): the module can be pickled and deep-copied.
    tap = module.__dict__["_ttame_tap"]
    tensor = as_tensor_output(output)
    if tensor is not None:
        tap.sink.items[tap.name] = tensor.clone() if tap.clone else tensor


def check_head_matches(explainer: ExplainerParts) -> None:
    """Refuse a head whose branches or classes do not fit the explainer's layers and model.

    Raises:
        ValueError: naming what differs.
    """
    head, infos = explainer.head, explainer.layer_info
    channels = [info.channels for info in infos]
    problems = []
    if list(head.channels) != channels:
        problems.append(f"its branches take {list(head.channels)} channels, the layers {explainer.layers} "
                        f"give {channels}")
    if head.num_classes != explainer.num_classes:
        problems.append(f"it has {head.num_classes} classes, the model {explainer.num_classes}")
    if problems:
        raise ValueError("head: it does not fit the model (" + "; ".join(problems) + "). Load the head "
                         "written for this model with TTAME.load(path, model), or train one.")


class ExplainedModel(nn.Module):
    """A classifier and its T-TAME head as one module, for export and serving.

    ``forward(images)`` returns an :class:`ExplainedOutput` ``(logits, classes, maps)`` equal to
    ``explainer.explain(images, top_k)``, in one forward pass of the classifier. Use
    :meth:`TTAME.as_module <ttame_attr.TTAME.as_module>` to build it.

    The module *shares* the classifier's and the head's parameters and buffers (nothing is copied):
    its ``classifier`` is a structural clone of ``explainer.model`` (new Module objects, the same
    tensors), so building it registers no hook on your model and changes none of its flags, and
    weights you load into the model or the head later show here too. ``.to(device)`` moves those
    shared tensors, hence your model as well; ``copy.deepcopy`` gives an independent copy. The
    module is in eval mode and meant for inference.

    A multi-label explainer's module returns a :class:`MultiLabelOutput` ``(logits, classes,
    probabilities, maps)`` instead: the positive labels of each image (sigmoid above the
    explainer's ``threshold``) in ``top_k`` fixed columns, padded with class -1, equal to
    ``explainer.explain(images)`` in its columns (see :doc:`/multilabel`).

    Args:
        explainer: a (trained) :class:`~ttame_attr.TTAME` explainer.
        top_k: how many of the most probable classes to explain per image (``None``: 1); with
            ``multi_label``, the number of label columns ``L`` (``None``: ``num_classes``).
        scale: ``"sigmoid"`` (default), ``"raw"`` or ``"minmax"``, as in ``attribute``.
        upsample: ``True`` for maps at the input size, ``False`` for the head's ``map_size``,
            or an explicit ``(H, W)``.

    Raises:
        ValueError: a bad ``top_k`` or ``scale``, a head that does not fit the model.
        ExportError: the layers cannot be read from the clone (``part="feature capture"``).
    """

    def __init__(self, explainer: ExplainerParts, top_k: int | None = None, scale: Scale = "sigmoid",
                 upsample: bool | tuple[int, int] = True) -> None:
        super().__init__()
        self.multi_label = bool(getattr(explainer, "multi_label", False))
        self.threshold = float(getattr(explainer, "threshold", 0.5))
        if top_k is None:
            top_k = explainer.num_classes if self.multi_label else 1
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= explainer.num_classes:
            raise ValueError(f"top_k: expected an int in [1, {explainer.num_classes}], got {top_k!r}.")
        check_map_options(scale, "bilinear")
        check_head_matches(explainer)
        self.top_k, self.scale, self.upsample = top_k, scale, upsample
        self.input_size = explainer.input_size
        self.normalization = explainer.normalization
        self.num_classes = explainer.num_classes
        self.classifier = structural_clone(explainer.model).eval()
        self.head = structural_clone(explainer.head).eval()
        self._adapter = explainer.adapter
        self._infos = list(explainer.layer_info)
        self._dtype = next((p.dtype for p in explainer.model.parameters() if p.is_floating_point()),
                           torch.float32)
        self._sink = _Sink()
        for info in self._infos:
            module = self.classifier.get_submodule(info.name)
            module.__dict__["_ttame_tap"] = _Tap(self._sink, info.name, info.inplace_modified)
            module.register_forward_hook(_tap_hook)
        self.eval()
        self._check_capture(explainer)

    def _check_capture(self, explainer: ExplainerParts) -> None:
        param = next(explainer.model.parameters(), None)
        x = torch.zeros(2, *self.input_size, device=param.device if param is not None else None)
        try:
            with torch.no_grad():
                self(x)
        except KeyError as err:
            raise ExportError("feature capture", (
                f"feature capture: layer {err} of {type(explainer.model).__name__} did not run in the "
                "clone of the model. Its forward probably calls modules through references the "
                "clone cannot see (e.g. a forward replaced by an accelerate / device-map hook); "
                "export the plain model (without dispatch hooks) instead.")) from None

    def forward(self, images: Tensor) -> ExplainedOutput | MultiLabelOutput:
        """``(logits, classes, maps)`` of ``images`` ``(N, C, H, W)`` (multi-label: ``(logits,
        classes, probabilities, maps)``)."""
        with torch.no_grad():  # inference only: no autograd graph, whoever calls it
            x = images.to(self._dtype)
            items = self._sink.items
            try:
                logits = extract_logits(self.classifier(x))
                raw = [items[info.name] for info in self._infos]
            finally:
                items.clear()  # no activation (or tracer value) kept between calls
            hw = (x.shape[-2], x.shape[-1])
            features = [self._adapter.convert(info.name, t, info.layout, hw)
                        for info, t in zip(self._infos, raw)]
            if self.multi_label:
                classes, probs, valid = fixed_width_labels(logits, self.top_k, self.threshold)
                maps = self.head(features, classes.clamp_min(0))
                maps = scale_maps(resize_maps(maps, target_size(self.upsample, hw)), self.scale)
                return MultiLabelOutput(logits, classes, probs, maps * valid[:, :, None, None].to(maps.dtype))
            classes = logits.float().softmax(dim=1).topk(self.top_k, dim=1).indices
            maps = self.head(features, classes)
            maps = scale_maps(resize_maps(maps, target_size(self.upsample, hw)), self.scale)
        return ExplainedOutput(logits, classes, maps)

    def extra_repr(self) -> str:
        multi = f", multi_label=True, threshold={self.threshold}" if self.multi_label else ""
        return f"top_k={self.top_k}, scale={self.scale!r}, input_size={self.input_size}{multi}"


def as_module(explainer: ExplainerParts, top_k: int | None = None, *, scale: Scale = "sigmoid",
              upsample: bool | tuple[int, int] = True) -> ExplainedModel:
    """The classifier and this head as one ``nn.Module`` returning ``(logits, classes, maps)``.

    Equal to :meth:`explain` with ``top_k``, in one forward pass, and traceable:
    ``torch.export.export``, :meth:`export_onnx` and ``torch.compile`` take it. It shares the
    model's and the head's weights and leaves the model untouched (see
    :class:`~ttame_attr.export.ExplainedModel`).

    With ``multi_label`` it returns ``(logits, classes, probabilities, maps)`` of each image's
    positive labels in ``top_k`` fixed columns (:class:`~ttame_attr.export.MultiLabelOutput`).

    Args:
        top_k: how many of the most probable classes to explain per image (``None``: 1); with
            ``multi_label``, the number of label columns (``None``: ``num_classes``).
        scale: ``"sigmoid"`` (default), ``"raw"`` or ``"minmax"``.
        upsample: ``True`` (input size), ``False`` (``map_size``) or ``(H, W)``.

    Example:
        >>> import torch, torchvision
        >>> from ttame_attr import TTAME
        >>> explainer = TTAME(torchvision.models.resnet18(num_classes=5), input_size=(3, 64, 64))
        >>> logits, classes, maps = explainer.as_module(top_k=2)(torch.rand(3, 3, 64, 64))
        >>> tuple(logits.shape), tuple(classes.shape), tuple(maps.shape)
        ((3, 5), (3, 2), (3, 2, 64, 64))
    """
    return ExplainedModel(explainer, top_k, scale, upsample)
