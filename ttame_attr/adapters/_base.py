"""The adapter interface: which layers of a backbone to read and how to make them NCHW."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

__all__ = ["BackboneAdapter", "LayerInfo", "Layout", "Normalization"]

#: How a captured feature tensor is laid out.
Layout = Literal["nchw", "nhwc", "tokens"]

_FORMS = {"nchw": "(N, C, h, w)", "nhwc": "(N, h, w, C)", "tokens": "(N, L, C)"}


@dataclass(frozen=True)
class LayerInfo:
    """What a dry run found out about one selected layer.

    Attributes:
        name: the module's name in ``model.named_modules()``.
        layout: ``"nchw"``, ``"nhwc"`` (channels-last) or ``"tokens"`` (``(N, L, C)``).
        channels: ``C`` after conversion to ``(N, C, h, w)``.
        height: ``h`` at the construction input size.
        width: ``w`` at the construction input size.
        prefix_tokens: tokens dropped before the patch tokens (``"tokens"`` layout only).
        inplace_modified: the model changes this output in place after the hook returns, so
            the captured tensor must be cloned (e.g. DenseNet's ``norm5``).
    """

    name: str
    layout: Layout
    channels: int
    height: int
    width: int
    prefix_tokens: int = 0
    inplace_modified: bool = False


class BackboneAdapter(ABC):
    """Knows which layers of one family of backbones to read and how to make them ``(N, C, h, w)``.

    An adapter is bound to one model. Subclasses implement :meth:`matches` (used to pick an
    adapter automatically), :meth:`default_layers` and, when their layers are not NCHW,
    :meth:`layout` and :meth:`grid`. Register a subclass with
    :func:`ttame_attr.register_adapter` to make it selectable by name.

    Args:
        model: the classifier the adapter reads from.
    """

    #: Registry name, set by :func:`ttame_attr.register_adapter`.
    name: ClassVar[str] = ""
    #: ``"cnn"``, ``"vit"`` or ``"swin"``: the paper's family of the model, which decides the
    #: default masking space (ViT inputs are masked as the model takes them, others in pixels).
    family: str = "cnn"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        #: Why each default layer was chosen (``{name: reason}``), filled by :meth:`default_layers`
        #: where the adapter says (``ttame layers`` shows it).
        self.reasons: dict[str, str] = {}
        #: Layers worth adding to the defaults (``{name: why}``), found by :meth:`default_layers`
        #: where the adapter knows one (a ViT's convolutional stem); logged and shown by ``ttame layers``.
        self.suggestions: dict[str, str] = {}

    @classmethod
    @abstractmethod
    def matches(cls, model: nn.Module) -> bool:
        """Whether this adapter is the right one for ``model``."""

    @abstractmethod
    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        """Names of the modules to read when the user gives none, earliest first.

        Args:
            input_size: ``(C, H, W)`` of the model's input.
        """

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        """Layout of the output of layer ``name`` (NCHW unless a subclass says otherwise)."""
        return "nchw"

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int] | None:
        """Patch grid ``(h, w)`` for an input of size ``input_hw`` (token layouts), if known."""
        return None

    def token_grid(self, name: str, length: int, input_hw: tuple[int, int]) -> tuple[int, int]:
        """The patch grid ``(h, w)`` of a ``length``-token output of layer ``name``.

        Uses :meth:`grid` when the model declares one, else the grid of the image's aspect ratio
        that leaves the fewest prefix tokens.

        Raises:
            ValueError: if the tokens cannot be laid out on a grid.
        """
        grid = self.grid(input_hw)
        if grid is not None and grid[0] * grid[1] <= length:
            return grid
        guess = infer_token_grid(length, input_hw)
        if guess is None:
            raise ValueError(
                f"layers: cannot lay the {length} tokens of {name!r} out on a patch grid for an "
                f"input of size {input_hw}. Choose a layer whose tokens are the patch tokens.")
        return guess[1]

    def input_size(self) -> tuple[int, int, int] | None:
        """The ``(C, H, W)`` input size the model declares, if it declares one."""
        return _declared_input_size(self.model)

    def normalization(self, input_size: tuple[int, int, int] | None = None) -> Normalization | None:
        """The ``(mean, std)`` the model's inputs are normalised with, when the model tells.

        ``input_size`` is the ``(C, H, W)`` the explainer runs at (adapters that probe the model
        need it). timm models: their ``pretrained_cfg``; torchvision classifiers: ImageNet's (every one of
        their weights is trained on ImageNet-normalised images).
        """
        return declared_normalization(self.model)

    def convert(self, name: str, output: Tensor, layout: Layout, input_hw: tuple[int, int]) -> Tensor:
        """The captured ``output`` of layer ``name`` as ``(N, C, h, w)`` (a view where possible).

        The default lays tokens out on :meth:`token_grid` and permutes channels-last maps;
        adapters whose models store tokens in another order override it.
        """
        grid = self.token_grid(name, output.shape[1], input_hw) if layout == "tokens" else None
        return to_nchw(output, layout, grid)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


#: ``(mean, std)``, one value per channel.
Normalization = tuple[tuple[float, ...], tuple[float, ...]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_torchvision_classifier(model: nn.Module) -> bool:
    """Whether ``model`` is one of torchvision's classifier classes (``torchvision.models.ResNet``,
    ``VisionTransformer``, ...), not one of their building blocks."""
    import torchvision.models

    cls = getattr(torchvision.models, type(model).__name__, None)
    return isinstance(cls, type) and type(model) is cls and type(model).__module__.startswith(
        "torchvision.models")


def is_timm_model(model: nn.Module) -> bool:
    """Whether ``model`` is a timm model (a classifier with ``forward_features``, not a block)."""
    return type(model).__module__.startswith("timm.") and callable(
        getattr(model, "forward_features", None)) and hasattr(model, "num_classes")


def declared_normalization(model: nn.Module) -> Normalization | None:
    """timm's ``pretrained_cfg`` mean and std; ImageNet's for torchvision classifiers; else ``None``."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "mean" in cfg and "std" in cfg:
        return tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"]))
    if is_torchvision_classifier(model):
        return IMAGENET_MEAN, IMAGENET_STD
    return None


def is_torchvision_model(model: nn.Module, class_name: str) -> bool:
    """Whether ``model`` is an instance of ``torchvision.models.<class_name>``."""
    try:
        import torchvision.models
    except ImportError:  # pragma: no cover - torchvision is a core dependency
        return False
    return isinstance(model, getattr(torchvision.models, class_name))


def _pair(value: object) -> tuple[int, int] | None:
    """``value`` as ``(h, w)`` when it is an int or a pair of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _declared_input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` the model was built for: ``patch_embed``, else timm config, else ``image_size``."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    cfg_size = cfg.get("input_size") if isinstance(cfg, dict) else None
    embed = getattr(model, "patch_embed", None)
    embed_hw = _pair(getattr(embed, "img_size", None)) if isinstance(embed, nn.Module) else None
    if embed_hw is not None:  # what the model was built for, also when `img_size=` overrode its config
        if cfg_size is not None:
            channels = int(cfg_size[0])
        else:  # the first convolution reads the image (also in hybrid CNN + ViT models)
            first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
            channels = first.in_channels if first is not None else 3
        return (channels, *embed_hw)
    if cfg_size is not None:
        c, h, w = (int(v) for v in cfg_size)
        return (c, h, w)
    image_hw = _pair(getattr(model, "image_size", None))
    return None if image_hw is None else (3, *image_hw)


def to_nchw(feature: Tensor, layout: Layout, grid: tuple[int, int] | None = None) -> Tensor:
    """Convert one captured feature tensor to ``(N, C, h, w)`` (a view, no copy).

    Args:
        feature: the captured output: ``(N, C, h, w)``, ``(N, h, w, C)`` or ``(N, L, C)``.
        layout: how ``feature`` is laid out.
        grid: ``(h, w)`` patch grid, required for ``"tokens"``; the patch tokens are the last
            ``h * w`` tokens (class, distillation and register tokens come first and are dropped).

    Returns:
        The ``(N, C, h, w)`` view of ``feature``.

    Raises:
        ValueError: for an unknown layout, a shape that does not fit it, or a missing or bad grid.
    """
    if layout not in ("nchw", "nhwc", "tokens"):
        raise ValueError(f"layout: expected 'nchw', 'nhwc' or 'tokens', got {layout!r}.")
    expected = 3 if layout == "tokens" else 4
    if feature.dim() != expected:
        raise ValueError(f"feature: a {layout!r} feature must be {expected}-D {_FORMS[layout]}, got shape "
                         f"{tuple(feature.shape)}.")
    if layout == "nchw":
        return feature
    if layout == "nhwc":
        return feature.permute(0, 3, 1, 2)
    if grid is None:
        raise ValueError("grid: a token layout needs the patch grid `grid=(h, w)`.")
    n, length, c = feature.shape
    if not isinstance(grid, (tuple, list)) or len(grid) != 2:
        raise ValueError(f"grid: expected a patch grid (h, w) of two positive ints, got {grid!r}.")
    h, w = grid
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and h * w <= length):
        raise ValueError(f"grid: expected a patch grid (h, w) of positive ints with h * w <= {length} "
                         f"tokens, got {grid!r}.")
    return feature[:, length - h * w :, :].reshape(n, h, w, c).permute(0, 3, 1, 2)


def guess_layout(shape: tuple[int, ...], input_hw: tuple[int, int], prefer: Layout = "nchw") -> Layout | None:
    """Whether a 4-D output ``shape`` looks NCHW or channels-last.

    A spatial size must fit in the input and have the input's aspect ratio as closely as the
    other reading.

    Args:
        shape: the output's shape.
        input_hw: ``(H, W)`` of the model's input.
        prefer: ``"nchw"`` or ``"nhwc"``, the answer when both readings fit equally well
            (e.g. ``(N, 7, 7, 7)``).

    Returns:
        ``"nchw"``, ``"nhwc"``, or ``None`` if neither reading fits.

    Raises:
        ValueError: if ``input_hw`` or ``prefer`` is invalid.
    """
    _check_hw(input_hw)
    if prefer not in ("nchw", "nhwc"):
        raise ValueError(f"prefer: expected 'nchw' or 'nhwc', got {prefer!r}.")
    if len(shape) != 4:
        return None
    _, a, b, c = shape
    H, W = input_hw
    candidates: dict[Layout, float] = {}
    for layout, (h, w) in (("nchw", (b, c)), ("nhwc", (a, b))):
        if h > 0 and w > 0 and h * w > 1 and h <= H and w <= W:
            # log of the ratio between this reading's aspect ratio and the input's
            # (as max / min, so that readings that are each other's reciprocal tie exactly)
            error = math.log(max(h * W, w * H) / min(h * W, w * H))
            if error < math.log(1.5):
                candidates[layout] = error
    if not candidates:
        return None
    if len(candidates) == 2 and candidates["nchw"] == candidates["nhwc"]:
        return prefer
    return min(candidates, key=lambda k: candidates[k])


def _check_hw(input_hw: tuple[int, int]) -> None:
    """Raise ValueError unless ``input_hw`` is two positive ints."""
    if not (isinstance(input_hw, (tuple, list)) and len(input_hw) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_hw)):
        raise ValueError(f"input_hw: expected (H, W), two positive ints, got {input_hw!r}.")


def infer_token_grid(length: int, input_hw: tuple[int, int],
                     max_prefix: int = 8) -> tuple[int, tuple[int, int]] | None:
    """Guess ``(prefix, (h, w))`` for ``length`` tokens of an ``input_hw`` image, or ``None``.

    The patch tokens are taken to be the last ``h * w`` tokens, with ``h / w`` equal to the
    image's aspect ratio; the smallest prefix that fits wins.
    """
    _check_hw(input_hw)
    H, W = input_hw
    for prefix in range(max_prefix + 1):
        n = length - prefix
        if n <= 0:
            break
        h = round((n * H / W) ** 0.5)  # h * w = n and h / w = H / W
        if h > 0 and n % h == 0:
            w = n // h
            if abs(h / w - H / W) < 1e-6 * max(1.0, H / W) or (h * W == w * H):
                return prefix, (h, w)
    return None
