"""The :class:`TTAME` attribution method."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from ttame_attr._core.features import FeatureExtractor
from ttame_attr._core.head import AttentionHead, check_head_init
from ttame_attr._core.head_file import head_config
from ttame_attr._core.hub import from_pretrained, load_any, push_to_hub, save_any, save_pretrained
from ttame_attr._core.images import check_images
from ttame_attr._core.labels import DEFAULT_THRESHOLD, check_multi_label_options
from ttame_attr._core.loss import MultiLabelTTAMELoss, TTAMELoss
from ttame_attr._core.maps import Scale, check_map_options, resize_maps, scale_maps, target_size
from ttame_attr._core.masking import Masker
from ttame_attr._core.modes import eval_mode
from ttame_attr._core.multilabel import (
    Explanation,
    MultiLabelExplanation,
    explain_multilabel,
    explain_softmax,
)
from ttame_attr._core.setup import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    model_device_dtype,
    resolve_input_size,
    resolve_mask_space,
    resolve_normalization,
)
from ttame_attr._core.targets import parse_target
from ttame_attr._typing import TargetType
from ttame_attr.adapters._base import BackboneAdapter, LayerInfo
from ttame_attr.adapters._registry import resolve_adapter
from ttame_attr.export import as_module, export_onnx, export_program
from ttame_attr.training import fit

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TTAME", "Explanation"]

logger = logging.getLogger(__name__)


class TTAME(Attribution):
    r"""T-TAME: a trained attention head that explains a frozen image classifier.

    ``TTAME(model)`` picks a backbone adapter, chooses the feature layers (the last three
    resolution stages of a CNN or Swin, the last three blocks of a ViT), learns their channel
    counts and sizes from one dry run, and builds the attention head. :meth:`fit` trains the head
    with the paper's recipe; :meth:`attribute` then gives class saliency maps in one forward pass.
    The model is never modified: its weights, ``requires_grad`` and ``.training`` flags and its
    hooks are the same after every call, also after an error.

    Args:
        model: a classifier returning ``(N, num_classes)`` logits (or a tuple / dict / object
            with ``.logits`` holding them).
        layers: names of the modules to read (``model.named_modules()``), earliest first.
            ``None`` lets the adapter choose (logged).
        num_classes: checked against the model's output; inferred when ``None``.
        input_size: ``(C, H, W)`` of the model's input; from the model when it declares one
            (timm ``pretrained_cfg``, torchvision ViT ``image_size``), else ``(3, 224, 224)``.
        adapter: ``None`` (automatic), a registered name (``"cnn"``, ``"vit"``, ``"swin"``), or a
            :class:`~ttame_attr.BackboneAdapter` subclass.
        max_map_size: the maps have the size of the largest feature map, its longer side capped
            at this (56 in the paper) and the aspect ratio kept.
        normalization: ``(mean, std)`` of the model's input normalisation, or ``"imagenet"``;
            read from timm's ``pretrained_cfg`` when ``None``. Used to mask images in pixel space.
        mask_space: where :meth:`fit` multiplies images by the mask: ``"input"`` (the tensor the
            model receives), ``"pixel"`` (un-normalise, multiply, normalise again; needs
            ``normalization``) or ``"auto"``: pixel space for CNNs and Swin when the normalisation
            is known, input space otherwise (as the paper does for ViT).
        loss: the training loss; the paper's :class:`~ttame_attr.TTAMELoss` by default.
        head_init: how the head's fusion starts: ``"zeros"`` (default; every class map starts
            at 0.5) or ``"pytorch"`` (PyTorch's default initialisation, the paper's code's; the
            paper does not specify one). With ``"pytorch"`` some class maps can die during
            training (zero everywhere for good); see :class:`~ttame_attr.AttentionHead` and
            :doc:`/training`.
        multi_label: the model is a multi-label (one sigmoid per class) or single-logit
            ``(N, 1)`` classifier: an image's labels are the classes whose sigmoid probability
            exceeds ``threshold`` (the top-1 when none does); :meth:`fit` trains the maps of
            those labels with :class:`~ttame_attr.MultiLabelTTAMELoss` (unless ``loss`` is
            given), :meth:`explain` returns them with their sigmoid probabilities. See
            :doc:`/multilabel`.
        threshold: with ``multi_label``, the probability above which a label is positive.
        max_masked: with ``multi_label``, the most ``(image, label)`` pairs masked and
            classified again per training step (``None``: twice the batch size); a batch with
            more positive labels keeps every image's top label and a random sample of the rest.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or an argument has the wrong type.
        ValueError: for unknown layer names, an output that is not logits, bad sizes.

    Example:
        >>> import torch, torchvision
        >>> from ttame_attr import TTAME
        >>> model = torchvision.models.resnet18(weights=None, num_classes=10)
        >>> explainer = TTAME(model, input_size=(3, 64, 64))
        >>> explainer.layers
        ['layer2', 'layer3', 'layer4']
        >>> maps = explainer.attribute(torch.rand(2, 3, 64, 64), target=3)
        >>> tuple(maps.shape)
        (2, 1, 64, 64)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | None = None,
        *,
        num_classes: int | None = None,
        input_size: Sequence[int] | None = None,
        adapter: str | type[BackboneAdapter] | BackboneAdapter | None = None,
        max_map_size: int = 56,
        normalization: str | tuple[Sequence[float], Sequence[float]] | None = None,
        mask_space: Literal["auto", "input", "pixel"] = "auto",
        loss: nn.Module | None = None,
        head_init: Literal["zeros", "pytorch"] = "zeros",
        multi_label: bool = False,
        threshold: float = DEFAULT_THRESHOLD,
        max_masked: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model: expected a torch.nn.Module, got {type(model).__name__}. Wrap a plain "
                "function in an nn.Module whose forward returns the logits."
            )
        check_head_init(head_init)
        self.threshold = check_multi_label_options(multi_label, threshold, max_masked)
        self.multi_label, self.max_masked = multi_label, max_masked
        super().__init__(model)
        self.model = model
        self._adapter = resolve_adapter(model, adapter)
        self._input_size = resolve_input_size(input_size, self._adapter, model)
        if not isinstance(max_map_size, int) or max_map_size < 1:
            raise ValueError(f"max_map_size: expected a positive int, got {max_map_size!r}.")
        self.normalization = resolve_normalization(normalization, self._adapter, self._input_size)
        self.mask_space = resolve_mask_space(mask_space, self.normalization, self._adapter)
        device, dtype = model_device_dtype(model)
        self.extractor, logits = FeatureExtractor.build(
            model, self._adapter, layers, self._input_size, device, dtype
        )
        self._layer_infos = self.extractor.infos
        out_classes = logits.shape[1]
        if num_classes is not None and num_classes != out_classes:
            raise ValueError(
                f"num_classes: given {num_classes}, but the model outputs {out_classes} logits. "
                "Leave num_classes=None to use the model's."
            )
        self._num_classes = out_classes
        largest = max(self._layer_infos, key=lambda i: i.height * i.width)
        shrink = min(1.0, max_map_size / max(largest.height, largest.width))  # keep the ratio
        self._map_size = (max(1, round(largest.height * shrink)), max(1, round(largest.width * shrink)))
        self._dtype = dtype
        # float32 weights whatever the model's dtype: float16 gradients cannot be unscaled and
        # bfloat16 SGD steps lose small updates (autocast runs the head in low precision).
        self.head = AttentionHead(
            [info.channels for info in self._layer_infos], self._num_classes, self._map_size, init=head_init
        ).to(device=device)
        self.head.eval()
        if loss is None:
            loss = MultiLabelTTAMELoss() if multi_label else TTAMELoss()
        self.loss_fn = loss
        self.history: Any = None

    # ------------------------------------------------------------------ properties
    @property
    def layers(self) -> list[str]:
        """Names of the layers the head reads, earliest first."""
        return [info.name for info in self._layer_infos]

    @property
    def layer_info(self) -> list[LayerInfo]:
        """Layout, channels and size of each layer, as found by the dry run."""
        return list(self._layer_infos)

    @property
    def adapter(self) -> BackboneAdapter:
        """The backbone adapter in use."""
        return self._adapter

    @property
    def num_classes(self) -> int:
        """Number of classes of the model (and of maps the head can produce)."""
        return self._num_classes

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` the explainer was built for."""
        return self._input_size

    @property
    def map_size(self) -> tuple[int, int]:
        """``(h, w)`` of the maps before upsampling to the input."""
        return self._map_size

    @property
    def device(self) -> torch.device:
        """Device of the head (the model's)."""
        return self.head.fusion.weight.device

    def __repr__(self) -> str:
        return (f"TTAME(model={type(self.model).__name__}, adapter={self._adapter.name!r}, "
                f"layers={self.layers}, num_classes={self._num_classes}, map_size={self._map_size})")

    # ------------------------------------------------------------------ forward machinery
    def _check_inputs(self, inputs: Any) -> tuple[Tensor, bool]:
        """The checked image batch, and whether it came as a (Captum-style) 1-tuple."""
        is_tuple = isinstance(inputs, tuple)
        if is_tuple and len(inputs) != 1:
            raise ValueError(f"inputs: T-TAME explains single-input image models; got a tuple of "
                             f"{len(inputs)} tensors. Pass one (N, C, H, W) tensor (or a 1-tuple).")
        return check_images(inputs[0] if is_tuple else inputs, channels=self._input_size[0]), is_tuple

    def _to_model(self, x: Tensor, non_blocking: bool = False) -> Tensor:
        """Images on the model's device and in its floating-point dtype (e.g. float64 -> float32)."""
        return x.to(device=self.device, dtype=self._dtype, non_blocking=non_blocking)

    # ------------------------------------------------------------------ public API
    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor],
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        scale: Scale = "sigmoid",
        upsample: bool | tuple[int, int] = True,
        interpolate_mode: str = "bilinear",
    ) -> Tensor | tuple[Tensor]:
        r"""Saliency maps of the target classes, in one forward pass of the model.

        Args:
            inputs: ``(N, C, H, W)`` images as the model takes them, or a 1-tuple of it. Any
                floating-point dtype; moved to the model's device and dtype.
            target: ``None`` for each image's predicted class; an int (or 1-tuple, 0-d or
                one-element tensor) for one class for all images; a list or ``(N,)`` tensor for
                one class per image; a ``(N, K)`` tensor (or list of lists) for ``K`` classes per
                image, all computed in the same pass.
            additional_forward_args: extra positional arguments for ``model(inputs, *args)``.
            scale: what the values are. ``"sigmoid"`` (default): the head's mask in [0, 1], the
                quantity it was trained to make (comparable across images and classes);
                ``"raw"``: the map before the sigmoid (the paper's ``c``); ``"minmax"``: each map
                min-max normalised to [0, 1] (the paper's evaluation).
            upsample: ``True`` to resize to the input's ``(H, W)``; ``False`` for the head's
                ``map_size``; or an explicit ``(H, W)``.
            interpolate_mode: resizing mode (``"bilinear"``, ``"nearest"``, ``"bicubic"``,
                ``"area"``).

        Returns:
            ``(N, 1, H, W)`` maps, or ``(N, K, H, W)`` for a 2-D target; a 1-tuple when ``inputs``
            is a tuple. On the model's device. With ``"minmax"``, min-max is taken after
            resizing.

        Raises:
            TypeError, ValueError: for malformed inputs or targets, with the expected form.
        """
        check_map_options(scale, interpolate_mode)
        x, is_tuple = self._check_inputs(inputs)
        x = self._to_model(x)
        classes = parse_target(target, x.shape[0], self._num_classes, x.device)
        track = torch.is_grad_enabled() and x.requires_grad
        with torch.set_grad_enabled(track), eval_mode(self.head):
            features, logits = self.extractor(x, classes is None, additional_forward_args)
            if classes is None:
                assert logits is not None
                classes = logits.argmax(dim=1)
            if classes.dim() == 1 and classes.numel() == x.shape[0] and x.shape[0] > 1:
                classes = classes[:, None]
            maps = self.head(features, classes)
            maps = resize_maps(maps, target_size(upsample, x.shape[-2:]), interpolate_mode)
            maps = scale_maps(maps, scale)
        return (maps,) if is_tuple else maps

    def explain(self, inputs: Tensor, top_k: int | None = None, *, scale: Scale = "sigmoid",
                upsample: bool | tuple[int, int] = True) -> Explanation | MultiLabelExplanation:
        """Predict and explain in one forward pass: logits, classes and their maps.

        Args:
            inputs: ``(N, C, H, W)`` images.
            top_k: how many of the most probable classes to explain per image. ``None``: 1
                (softmax), or each image's positive labels (``multi_label``).
            scale: as in :meth:`attribute`.
            upsample: as in :meth:`attribute`.

        Returns:
            An :class:`Explanation` with ``maps`` of shape ``(N, top_k, H, W)`` and softmax
            probabilities; with ``multi_label``, a :class:`~ttame_attr.MultiLabelExplanation`:
            each image's positive labels (sigmoid above ``threshold``; the top-1 when none is),
            padded to the largest count ``L`` (``classes`` -1 and ``valid`` False at padding),
            their sigmoid probabilities and ``(N, L, H, W)`` maps; or the ``top_k`` labels by
            sigmoid probability. A single-logit ``(N, 1)`` model has the one label 0, the
            positive evidence.

        Raises:
            ValueError: ``top_k`` outside ``[1, num_classes]``, a bad ``scale``.
        """
        x, _ = self._check_inputs(inputs)
        x = self._to_model(x)
        if self.multi_label:
            return explain_multilabel(self, x, threshold=self.threshold, top_k=top_k, scale=scale,
                                      upsample=upsample)
        return explain_softmax(self, x, top_k, scale=scale, upsample=upsample)

    def class_maps(self, inputs: Tensor) -> Tensor:
        """All ``num_classes`` raw maps at ``map_size``: ``(N, num_classes, h, w)``.

        Mostly for analysis; :meth:`attribute` computes only the maps it needs.
        """
        x, _ = self._check_inputs(inputs)
        with torch.no_grad(), eval_mode(self.head):
            features, _ = self.extractor(self._to_model(x), need_logits=False)
            return self.head(features, None)

    #: ``explainer.fit(loader, ...)`` is :func:`ttame_attr.fit` (one definition of the options).
    fit = fit

    # ------------------------------------------------------------------ production (ttame_attr.export)
    as_module = as_module
    export_program = export_program
    export_onnx = export_onnx

    # ------------------------------------------------------------------ masking (training)
    def mask_images(self, x: Tensor, masks: Tensor) -> Tensor:
        """Multiply images by masks in the configured :attr:`mask_space`.

        Args:
            x: ``(N, C, H, W)`` model inputs.
            masks: ``(N, 1, h, w)`` masks in [0, 1]; resized bilinearly to ``(H, W)``.
        """
        masker = self.__dict__.get("_masker")
        if masker is None or (masker.space, masker.normalization) != (
            self.mask_space, self.normalization
        ):
            masker = self.__dict__["_masker"] = Masker(self.mask_space, self.normalization)
        return masker(x, masks)

    # ------------------------------------------------------------------ persistence
    #: What :meth:`save` stores besides the weights (:func:`~ttame_attr._core.head_file.head_config`).
    config = head_config

    def state_dict(self) -> dict[str, Tensor]:
        """The head's weights (``AttentionHead.state_dict()``)."""
        return self.head.state_dict()

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True) -> Any:
        """Load head weights, with an error naming every mismatched entry."""
        own = self.head.state_dict()
        wrong = [
            f"{k}: expected {tuple(own[k].shape)}, got {tuple(v.shape)}"
            for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if wrong:
            raise ValueError(
                "state_dict: the weights do not fit this head (were they trained for other layers "
                "or another model?): " + "; ".join(wrong)
            )
        return self.head.load_state_dict(state_dict, strict=strict)

    def save(self, path: str | Path) -> Path:
        """Write the head and its configuration to ``path`` (atomically), as safetensors.

        One safetensors file (weights, and the configuration as JSON metadata), or the Hub format
        of :meth:`save_pretrained` when ``path`` is an existing folder. Nothing is pickled. The
        configuration records the model's class and weights' fingerprint, which :meth:`load` checks.
        """
        return save_any(self, path)

    @classmethod
    def load(
        cls, path: str | Path, model: nn.Module, *, map_location: Any = None, strict: bool = False,
        **kwargs: Any,
    ) -> TTAME:
        """Rebuild a saved explainer for ``model``.

        Checks that the model gives the saved layers with the saved shapes and class count, and
        says exactly what differs otherwise; warns (refuses with ``strict=True``) when the model's
        class or weights differ from those the head was trained with, naming the first difference.
        The saved configuration is checked before the model runs (types; at most 16 channels and
        1024x1024 pixels: pass ``input_size=`` to load a larger head).

        Args:
            path: a file written by :meth:`save` (also the ``torch.save`` files of earlier
                versions), a folder written by :meth:`save_pretrained`, or a checkpoint of the
                paper's authors' code (converted; see :doc:`/sharing`).
            model: the classifier the head was trained for.
            map_location: where the head goes; by default the model's device.
            strict: refuse, instead of warning, a model whose class or weights differ.
            **kwargs: overrides for the constructor (e.g. ``mask_space``).
        """
        return load_any(cls, path, model, map_location=map_location, strict=strict, **kwargs)

    # The Hugging Face Hub format (ttame_attr._core.hub; docs/sharing.rst)
    save_pretrained, push_to_hub, from_pretrained = save_pretrained, push_to_hub, classmethod(from_pretrained)
