"""Stage discovery by dry run: which outputs are feature maps and which modules end a stage."""

from __future__ import annotations

import torch
from adapter_helpers import model_state, round_trip, seed  # noqa: F401 (seed: autouse)
from torch import nn

from ttame_attr._core.ttame import TTAME
from ttame_attr.adapters import ModuleCall, probe_modules
from ttame_attr.adapters._base import _declared_input_size
from ttame_attr.adapters._cnn import feature_geometry, find_resolution_stages


def test_feature_geometry_reads_each_layout() -> None:
    hw = (224, 224)
    assert feature_geometry((2, 64, 28, 28), hw) == ("nchw", 64, 28, 28)
    assert feature_geometry((2, 28, 28, 96), hw) == ("nhwc", 96, 28, 28)
    assert feature_geometry((2, 197, 384), hw) == ("tokens", 384, 14, 14)
    assert feature_geometry((2, 8, 224, 224), hw) == ("nchw", 8, 224, 224)  # full resolution


def test_feature_geometry_rejects_what_is_not_a_feature_map() -> None:
    hw = (224, 224)
    assert feature_geometry((392, 16, 24), hw, batch=2) is None  # inner tokens folded in batch
    assert feature_geometry((2, 6, 197, 197), hw) is None  # attention matrix (L x L)
    assert feature_geometry((2, 1000), hw) is None
    assert feature_geometry((2, 512, 196), hw) is None  # (N, C, L): 512 "tokens" fill no grid


def _call(name: str, module: nn.Module, shape: tuple[int, ...], order: int, attention=False):
    return ModuleCall(name, module, shape, order, attention)


def _block() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2))


def test_a_later_block_with_the_same_geometry_replaces_a_shallow_placeholder() -> None:
    # PiT: pos_drop (depth 1) runs before transformers.0 (depth 2) at the same size.
    calls = [
        _call("patch_embed", _block(), (2, 64, 27, 27), 1),
        _call("pos_drop", nn.Dropout(), (2, 64, 27, 27), 2),
        _call("transformers.0", _block(), (2, 64, 27, 27), 3),
        _call("transformers.1", _block(), (2, 128, 14, 14), 4),
        _call("transformers.2", _block(), (2, 256, 7, 7), 5),
        _call("transformers", _block(), (2, 256, 7, 7), 6),
    ]
    stages = find_resolution_stages(calls, (224, 224), num_classes=1000)
    assert stages == ["transformers.0", "transformers.1", "transformers"]


def test_leaf_like_modules_and_attention_weights_are_not_stages() -> None:
    calls = [
        _call("layer2", _block(), (2, 128, 28, 28), 1),
        # a norm + activation wrapper (children without weights) of the same size, later
        _call("layer3.0.norm", nn.Sequential(nn.ReLU()), (2, 128, 28, 28), 2),
        _call("layer3", _block(), (2, 256, 14, 14), 3),
        _call("layer4.0.attn.attn_drop", nn.Dropout(), (2, 4, 12, 12), 4, attention=True),
        _call("layer4", _block(), (2, 512, 7, 7), 5),
    ]
    assert find_resolution_stages(calls, (224, 224), None) == ["layer2", "layer3", "layer4"]


def test_isotropic_networks_get_their_last_three_blocks() -> None:
    calls = [_call("stem", _block(), (2, 196, 32), 0)]
    calls += [_call(f"blocks.{i}", _block(), (2, 196, 32), i + 1) for i in range(6)]
    calls += [_call("norm", nn.LayerNorm(32), (2, 196, 32), 7)]
    assert find_resolution_stages(calls, (224, 224), 10) == ["blocks.3", "blocks.4", "blocks.5"]


def test_class_score_maps_and_pooled_heads_are_skipped() -> None:
    calls = [
        _call("features.0", _block(), (2, 64, 28, 28), 1),
        _call("features.1", _block(), (2, 64, 14, 14), 2),
        _call("features", _block(), (2, 64, 7, 7), 3),
        _call("classifier.conv", nn.Conv2d(64, 10, 1), (2, 10, 5, 5), 4),  # class scores
        _call("avgpool", nn.AdaptiveAvgPool2d(2), (2, 64, 2, 2), 5),
    ]
    assert find_resolution_stages(calls, (224, 224), 10) == ["features.0", "features.1", "features"]


def test_probe_flags_softmax_outputs_as_attention() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softmax(dim=-1))
    calls = {c.name: c for c in probe_modules(model, torch.randn(2, 3, 8, 8))}
    assert not calls["0"].attention
    assert calls["1"].attention
    assert all(not m._forward_hooks for m in model.modules())


class TokenNet(nn.Module):
    """A ViT-like network the ``vit`` adapter does not know: no ``patch_embed``/``blocks``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 8, stride=8)
        self.cls = nn.Parameter(torch.zeros(1, 1, 16))
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU()) for _ in range(4)
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (N, h * w, C)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        for layer in self.layers:
            tokens = tokens + layer(tokens)
        return self.fc(tokens[:, 0])


def test_unknown_token_model_gets_its_last_blocks_on_the_patch_grid() -> None:
    model = TokenNet()
    before = model_state(model)
    explainer = TTAME(model, input_size=(3, 32, 48))
    assert explainer.adapter.name == "cnn"
    assert explainer.layers == ["layers.1", "layers.2", "layers.3"]
    assert [(i.layout, i.prefix_tokens, i.height, i.width) for i in explainer.layer_info] == [
        ("tokens", 1, 4, 6)
    ] * 3
    round_trip(explainer, model, before)


def test_input_size_from_patch_embed_with_the_first_convolution_s_channels() -> None:
    class Embed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.img_size = (40, 56)
            self.proj = nn.Conv2d(8, 16, 1)  # reads backbone features, not the image

    class Hybrid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3)
            self.patch_embed = Embed()

    assert _declared_input_size(Hybrid()) == (1, 40, 56)
