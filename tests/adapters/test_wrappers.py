"""A backbone inside the user's wrapper reads as if bare: same layers (prefixed), same maps.

Users rarely pass a stock classifier: they wrap it in a module that normalises its input, in
``nn.Sequential(Normalize, model)``, or in a Lightning-style holder. The oracle of every test
here is the bare backbone with the same head weights.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from adapter_helpers import model_state, round_trip, seed  # noqa: F401 (seed: autouse)
from torch import nn

from ttame_attr import TTAME
from ttame_attr.adapters import find_backbone, find_resolution_stages
from ttame_attr.adapters._cnn import feature_geometry, is_not_a_stage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _hf_models as hf  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalisingWrapper(nn.Module):
    """Takes pixels in [0, 1] and normalises them in ``forward``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.normalize = net, Normalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class Holder(nn.Module):
    """A LightningModule-like holder: a loss and a metric beside the network, ``forward`` passes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _same_head(wrapped: TTAME, bare: TTAME) -> None:
    """Random fusion rows for ``bare`` (the default zero start makes every map 0.5, which would hide
    any difference in the features), copied into ``wrapped``."""
    with torch.no_grad():
        bare.head.fusion.weight.normal_(generator=torch.Generator().manual_seed(0))
    wrapped.head.load_state_dict(bare.head.state_dict())


def _resnet() -> nn.Module:
    return torchvision.models.resnet18(num_classes=5).eval()


def test_forward_normalising_wrapper_reads_the_backbone_on_normalised_pixels() -> None:
    net = _resnet()
    bare, wrapped = TTAME(net, input_size=(3, 64, 64)), TTAME(NormalisingWrapper(net), input_size=(3, 64, 64))
    assert wrapped.layers == [f"net.{name}" for name in bare.layers]
    assert wrapped.layers == ["net.layer2", "net.layer3", "net.layer4"]
    assert wrapped.adapter.name == bare.adapter.name == "cnn"
    assert bare.normalization == (MEAN, STD)  # a torchvision classifier takes ImageNet-normalised input
    assert wrapped.normalization is None  # the wrapper takes pixels: nothing to undo before masking
    assert wrapped.mask_space == "input"  # its input *is* pixels: masking it blackens pixels
    assert bare.mask_space == "pixel"  # un-normalise, mask, normalise again (the paper's)
    _same_head(wrapped, bare)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(wrapped.attribute(x, target=1), bare.attribute(Normalize()(x), target=1))


def test_sequential_normalize_then_model() -> None:
    net = _resnet()
    model = nn.Sequential(Normalize(), net)
    explainer = TTAME(model, input_size=(3, 64, 64))
    assert explainer.layers == ["1.layer2", "1.layer3", "1.layer4"]
    assert explainer.normalization is None
    bare = TTAME(net, input_size=(3, 64, 64))
    _same_head(explainer, bare)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(explainer.attribute(x, target=0), bare.attribute(Normalize()(x), target=0))


def test_holder_of_a_timm_vit_keeps_its_layers_normalisation_and_maps() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=64).eval()
    holder = Holder(vit)
    before = model_state(holder)
    bare, held = TTAME(vit), TTAME(holder)
    assert held.layers == [f"model.{name}" for name in bare.layers]
    assert held.input_size == bare.input_size == (3, 64, 64)  # read from the timm model inside
    assert held.normalization == bare.normalization is not None  # input passed on unchanged
    assert held.mask_space == bare.mask_space == "input" and held.adapter.family == "vit"
    assert [(i.layout, i.prefix_tokens) for i in held.layer_info] == [("tokens", 1)] * 3
    _same_head(held, bare)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(held.attribute(x, target=2), bare.attribute(x, target=2))
    round_trip(held, holder, before)


def test_holder_of_a_conv_stem_vit_suggests_the_stem_stage_by_its_full_name(caplog) -> None:
    from torchvision.models.vision_transformer import ConvStemConfig

    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5,
        conv_stem_configs=[ConvStemConfig(8, 3, 2), ConvStemConfig(16, 3, 2)])
    with caplog.at_level(logging.INFO, logger="ttame_attr"):
        held = TTAME(Holder(vit))
    assert list(held.adapter.suggestions) == ["model.conv_proj.conv_bn_relu_0"]
    assert "suggests adding layer 'model.conv_proj.conv_bn_relu_0'" in caplog.text
    stem = TTAME(Holder(vit), [*held.adapter.suggestions, *held.layers])
    assert stem.map_size == (16, 16) and stem.layer_info[0].layout == "nchw"


def test_holder_of_a_torchvision_resnet() -> None:
    net = _resnet()
    bare, held = TTAME(net, input_size=(3, 64, 64)), TTAME(Holder(net), input_size=(3, 64, 64))
    assert held.layers == ["model.layer2", "model.layer3", "model.layer4"]
    assert held.normalization == bare.normalization == (MEAN, STD)
    _same_head(held, bare)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(held.attribute(x), bare.attribute(x))


def test_holder_of_a_transformers_vit() -> None:
    vit = hf.build("vit")
    bare, held = TTAME(vit), TTAME(Holder(vit))
    assert held.adapter.name == "hf"
    assert held.layers == [f"model.{name}" for name in bare.layers]
    assert [n.rsplit(".", 1)[1] for n in held.layers] == ["layernorm_before"] * 3
    assert held.input_size == bare.input_size
    _same_head(held, bare)
    x = torch.rand(2, *bare.input_size)
    torch.testing.assert_close(held.attribute(x, target=1), bare.attribute(x, target=1))


def test_find_backbone_takes_the_shallowest_library_model() -> None:
    net = _resnet()
    outer = Holder(NormalisingWrapper(net))
    assert find_backbone(outer, lambda m: False) == (net, "model.net")
    assert find_backbone(net, lambda m: False) == (net, "")
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert find_backbone(plain, lambda m: False) == (plain, "")  # nothing inside: the model itself


def test_a_wrapper_adds_no_hooks_and_changes_nothing() -> None:
    holder = NormalisingWrapper(_resnet())
    before = model_state(holder)
    round_trip(TTAME(holder, input_size=(3, 32, 32)), holder, before)


# ---- modules whose output is never a feature map ------------------------------------------------

class PaddedNet(nn.Module):
    """Each stage followed by a padding, a dropout and an identity of the same or larger size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pad1 = nn.ZeroPad2d(1)
        self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=0), nn.ReLU())
        self.drop = nn.Dropout2d(0.1)
        self.stage3 = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU())
        self.identity = nn.Identity()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.identity(self.stage3(self.drop(self.stage2(self.pad1(self.stage1(self.stem(x)))))))
        return self.fc(self.pool(x.flatten(2)).flatten(1))  # pool: (N, 64, 1)


def test_padding_dropout_identity_and_pooling_are_never_chosen() -> None:
    explainer = TTAME(PaddedNet().eval(), input_size=(3, 64, 64))
    # pad1 (18x18) would be a resolution of its own; identity and drop would tie with a stage.
    assert explainer.layers == ["stage1", "stage2", "stage3"]
    assert [(i.height, i.width) for i in explainer.layer_info] == [(16, 16), (8, 8), (4, 4)]
    for name in explainer.layers:
        assert "ends the" in explainer.adapter.reasons[name]


@pytest.mark.parametrize("module", [
    nn.ZeroPad2d(1), nn.ReflectionPad2d(1), nn.Identity(), nn.Dropout(), nn.Dropout2d(),
    nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
    timm.layers.DropPath(0.1), torchvision.ops.StochasticDepth(0.1, "row"),
])
def test_filters_refuse_each_pass_through_kind(module: nn.Module) -> None:
    assert is_not_a_stage(module)
    assert not is_not_a_stage(nn.Conv2d(3, 3, 1)) and not is_not_a_stage(nn.Sequential(nn.ReLU()))


def test_a_pooled_three_d_output_is_no_token_map() -> None:
    assert feature_geometry((2, 64, 1), (64, 64)) is None  # (N, C, 1) after AdaptiveAvgPool1d
    from ttame_attr.adapters import ModuleCall

    calls = [ModuleCall("a", nn.Sequential(nn.Linear(1, 1)), (2, 16, 8, 8), 1, False),
             ModuleCall("p", nn.Sequential(nn.Linear(1, 1)), (2, 16, 1), 2, False)]
    assert find_resolution_stages(calls, (64, 64), num_classes=3) == ["a"]


def test_a_torchvision_classifier_masks_to_black_pixels_by_default() -> None:
    # torchvision weights take ImageNet-normalised input: a zero mask must give the normalised
    # value of a black pixel, (0 - mean) / std per channel, not a zero input (mid-grey).
    explainer = TTAME(_resnet(), input_size=(3, 32, 32))
    pixels = torch.rand(1, 3, 32, 32)
    x = Normalize()(pixels)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1.0
    masked = explainer.mask_images(x, mask)
    black = -torch.tensor(MEAN).view(1, 3, 1, 1) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(masked[..., 16:], black.expand(1, 3, 32, 16))
    torch.testing.assert_close(masked[..., :16], x[..., :16])
