"""The ``cnn`` adapter: feature maps found by a dry run (NCHW, channels-last or patch tokens).

It is also the fallback for models no other adapter recognises: hybrid and hierarchical
transformers and MLP mixers whose stages return tokens ``(N, L, C)`` are read on their patch grid.
"""

from __future__ import annotations

from torch import Tensor, nn

from ttame_attr._core.outputs import extract_logits
from ttame_attr.adapters._base import BackboneAdapter, Layout, guess_layout, infer_token_grid
from ttame_attr.adapters._hooks import DRY_RUN_BATCH, ModuleCall, dry_run_input, probe_modules
from ttame_attr.adapters._registry import register_adapter

__all__ = ["CNNAdapter", "feature_geometry", "find_resolution_stages", "is_not_a_stage"]

#: Modules whose output is never a feature map to read: pooling heads, padding (its output is
#: its input with a border), pass-throughs and dropout.
_NOT_STAGES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
               nn.AvgPool1d, nn.MaxPool1d, nn.Flatten, nn.Identity, nn.modules.dropout._DropoutNd,
               nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d)


def is_not_a_stage(module: nn.Module) -> bool:
    """Pooling, padding, identity and dropout modules (timm's ``DropPath`` too) are no stages."""
    return isinstance(module, _NOT_STAGES) or type(module).__name__ in ("DropPath", "StochasticDepth")



def _depth(name: str) -> int:
    """Nesting depth of a module name (``"layer4"`` is 1, ``"layer4.2.conv1"`` is 3)."""
    return name.count(".") + 1 if name else 0


def feature_geometry(shape: tuple[int, ...], input_hw: tuple[int, int],
                     batch: int | None = None) -> tuple[Layout, int, int, int] | None:
    """Read ``(layout, channels, h, w)`` off an output shape, or ``None`` if it is no feature map.

    4-D outputs are NCHW or channels-last (:func:`~ttame_attr.adapters.guess_layout`); 3-D
    outputs ``(N, L, C)`` are tokens when their last ``h * w`` tokens fill a patch grid with the
    image's aspect ratio, after at most a few prefix tokens (class, distillation, registers).
    A map must have the input's size or be at least 2x smaller in both directions: this keeps
    out attention matrices ``(N, heads, L, L)``, which otherwise look like large square maps.
    Pooled outputs ``(N, C, 1)`` and ``(N, C)`` are no feature maps.
    ``batch``, when given, must match ``N``.
    """
    if batch is not None and (not shape or shape[0] != batch):
        return None
    H, W = input_hw
    if len(shape) == 4:
        layout = guess_layout(shape, input_hw)
        if layout is None:
            return None
        c, h, w = shape[1:] if layout == "nchw" else (shape[3], shape[1], shape[2])
    elif len(shape) == 3:
        if shape[2] <= 1:  # (N, C, 1): a pooled output, not C tokens of one channel
            return None
        found = infer_token_grid(shape[1], input_hw)
        if found is None or found[0] >= found[1][0] * found[1][1]:  # more prefix than patch tokens
            return None
        layout, c, (h, w) = "tokens", shape[2], found[1]
    else:
        return None
    if (h, w) != (H, W) and (2 * h > H or 2 * w > W):
        return None
    return layout, c, h, w


def _is_block(module: nn.Module) -> bool:
    """A module with a child that has weights (unlike leaf-like wrappers: timm's ``BatchNormAct2d``)."""
    return any(next(child.parameters(), None) is not None for child in module.children())


def _block_run(calls: list[ModuleCall], count: int) -> list[str]:
    """The last ``count`` of a run of sibling blocks (``blocks.0``, ``blocks.1``, ...) of one shape."""
    runs: dict[tuple[str, tuple[int, ...]], list[ModuleCall]] = {}
    for call in calls:
        parent, _, last = call.name.rpartition(".")
        if last.isdigit() and _is_block(call.module):
            runs.setdefault((parent, call.shape), []).append(call)
    long_runs = [run for run in runs.values() if len(run) >= count]
    if not long_runs:
        return []
    # Of the runs long enough, the one with the shallowest parent wins (ties: the one that ends last).
    best = min(long_runs, key=lambda run: (_depth(run[0].name), -run[-1].order))
    return [c.name for c in sorted(best, key=lambda c: c.order)[-count:]]


def find_resolution_stages(calls: list[ModuleCall], input_hw: tuple[int, int], num_classes: int | None,
                           count: int = 3, *, batch: int | None = None) -> list[str]:
    """Pick the modules that end the last ``count`` resolution stages of a network.

    Feature maps are NCHW, channels-last or token outputs (see :func:`feature_geometry`); attention
    weights (square, rows summing to 1), pooling, padding, identity and dropout modules
    (:func:`is_not_a_stage`), outputs with ``num_classes`` channels (class-score maps such as
    SqueezeNet's) and 1x1 maps are skipped.
    For every spatial resolution ``(h, w)``, the candidate is the shallowest module with that
    output (ties: the one that finished last), so whole stages such as ``layer3`` win over the
    blocks inside them; a block (a module with weighted children, at most one level deeper) that
    finishes later with the same channels and size then takes its place (PiT's ``pos_drop``
    gives way to ``transformers.0``, LeViT's ``stem`` to ``stages.0``). The last stages are the
    ``count`` smallest resolutions. A network with fewer resolutions but a run of at least
    ``count`` sibling blocks with one output shape (an isotropic network) gets its last ``count``
    blocks instead.

    Args:
        calls: the dry run's module outputs (:func:`~ttame_attr.adapters.probe_modules`).
        input_hw: ``(H, W)`` of the dry run's input.
        num_classes: the model's number of classes, if known.
        count: how many stages to return.
        batch: the dry run's batch size; outputs with another first dimension are skipped.

    Returns:
        Up to ``count`` module names, earliest stage first.
    """
    valid: list[tuple[ModuleCall, tuple[int, int, int]]] = []
    for call in calls:
        geometry = feature_geometry(call.shape, input_hw, batch)
        if geometry is None or call.attention or is_not_a_stage(call.module):
            continue
        _, c, h, w = geometry
        if h * w > 1 and (num_classes is None or c != num_classes):
            valid.append((call, (c, h, w)))
    best: dict[tuple[int, int], tuple[ModuleCall, tuple[int, int, int]]] = {}
    for call, chw in valid:
        current = best.get(chw[1:])
        if current is None or (_depth(call.name), -call.order) < (_depth(current[0].name), -current[0].order):
            best[chw[1:]] = (call, chw)
    for call, chw in valid:
        current, current_chw = best[chw[1:]]
        if (call.order > current.order and chw == current_chw
                and _depth(call.name) <= _depth(current.name) + 1 and _is_block(call.module)):
            best[chw[1:]] = (call, chw)
    if len(best) < count:
        run = _block_run([call for call, _ in valid], count)
        if run:
            return run
    # The last stages are the smallest resolutions (large maps that show up late, such as
    # attention matrices, are not stages), returned in the order the network computes them.
    smallest = sorted(best.items(), key=lambda item: (item[0][0] * item[0][1], -item[1][0].order))
    return [c.name for c in sorted((call for _, (call, _) in smallest[:count]), key=lambda c: c.order)]


@register_adapter("cnn", priority=-100)
class CNNAdapter(BackboneAdapter):
    """Feature maps that are already images: CNNs (ResNet, VGG, EfficientNet, ConvNeXt, ...).

    Default layers: the modules that end the last three resolution stages, found by a dry run
    (see :func:`find_resolution_stages`); for torchvision's VGG, the last three max-pools, as in
    the T-TAME paper. Channels-last 4-D outputs are recognised and permuted, and token outputs
    ``(N, L, C)`` whose patch tokens fill a grid of the input's aspect ratio are laid out on it
    (hybrid and hierarchical transformers such as LeViT, PiT, Twins or MLP-Mixer). Matches every
    model, so it is also the fallback for unknown architectures.
    """

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return True

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        features = getattr(self.model, "features", None)
        if type(self.model).__name__ == "VGG" and isinstance(features, nn.Sequential):
            pools = [f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
            if len(pools) >= 3:
                self.reasons = {p: "one of VGG's last three max-pools (the paper's)" for p in pools[-3:]}
                return pools[-3:]
        calls, num_classes = self._dry_run(input_size)
        layers = find_resolution_stages(calls, input_size[1:], num_classes, batch=DRY_RUN_BATCH)
        shapes = {call.name: call.shape for call in calls}
        for name in layers:
            _, c, h, w = feature_geometry(shapes[name], input_size[1:], DRY_RUN_BATCH) or (0, 0, 0, 0)
            self.reasons[name] = f"ends the {h}x{w} stage (one of the last three resolutions; {c} channels)"
        if not layers:
            raise ValueError(
                f"layers: could not find any feature map in {type(self.model).__name__} "
                f"(no module returns an image-like tensor for an input of size {input_size}). "
                "Pass `layers=[...]` with the names of the modules to read.")
        return layers

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> Layout:
        geometry = feature_geometry(tuple(output.shape), input_hw)
        if geometry is None:
            raise ValueError(
                f"layers: the output of {name!r} has shape {tuple(output.shape)}, which is not a "
                "feature map (N, C, h, w) or (N, h, w, C), nor tokens (N, L, C) that fill a patch "
                "grid of the input. Choose a layer that returns an image-like tensor, or pass "
                "adapter='vit' for a transformer whose grid the model declares.")
        return geometry[0]

    def _dry_run(self, input_size: tuple[int, int, int]) -> tuple[list[ModuleCall], int | None]:
        """The module calls of a zero-input forward pass, and the number of classes if read."""
        outputs: list[object] = []
        calls = probe_modules(self.model, dry_run_input(self.model, input_size), outputs=outputs)
        try:
            logits = extract_logits(outputs[0])
        except (TypeError, ValueError):
            return calls, None
        return calls, int(logits.shape[-1]) if logits.dim() == 2 else None
