"""TTAME: construction, attribute/explain semantics, targets and bad input."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_cnn
from torch import nn

from ttame_attr import TTAME


@pytest.fixture
def explainer(tiny_cnn) -> TTAME:
    torch.manual_seed(0)
    e = TTAME(tiny_cnn, input_size=(3, 32, 32))
    with torch.no_grad():  # a non-trivial head so different classes give different maps
        e.head.fusion.weight.normal_()
        e.head.fusion.bias.normal_()
    return e


def _manual_full_maps(e: TTAME, x: torch.Tensor) -> torch.Tensor:
    """All class maps the straightforward way: own hooks, concatenation, full fusion."""
    store = {}
    modules = dict(e.model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, a, o, n=n: store.__setitem__(n, o))
        for n in e.layers
    ]
    try:
        with torch.no_grad():
            e.model(x)
            return e.head.forward_full([store[n] for n in e.layers])
    finally:
        for h in handles:
            h.remove()


def test_construction_finds_stages_and_shapes(explainer) -> None:
    assert explainer.layers == ["layer1", "layer2", "layer3"]
    assert [(i.channels, i.height, i.width) for i in explainer.layer_info] == [
        (8, 16, 16), (16, 8, 8), (16, 4, 4)
    ]
    assert explainer.num_classes == 5
    assert explainer.map_size == (16, 16)
    assert explainer.adapter.name == "cnn"
    assert "layer1" in repr(explainer)


def test_map_size_is_capped() -> None:
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32), max_map_size=10)
    assert e.map_size == (10, 10)


def test_attribute_raw_equals_full_computation(explainer, images) -> None:
    full = _manual_full_maps(explainer, images)
    maps = explainer.attribute(images, target=3, scale="raw", upsample=False)
    torch.testing.assert_close(maps, full[:, 3:4], rtol=1e-5, atol=1e-5)
    per_image = explainer.attribute(images, target=[0, 1, 2, 4], scale="raw", upsample=False)
    expected = torch.stack([full[i, c] for i, c in enumerate([0, 1, 2, 4])])[:, None]
    torch.testing.assert_close(per_image, expected, rtol=1e-5, atol=1e-5)


def test_attribute_default_target_is_prediction(explainer, images) -> None:
    predicted = explainer.model(images).argmax(1)
    torch.testing.assert_close(
        explainer.attribute(images), explainer.attribute(images, target=predicted)
    )


def test_attribute_scales_and_upsampling(explainer, images) -> None:
    raw = explainer.attribute(images, target=1, scale="raw")
    assert raw.shape == (4, 1, 32, 32)
    torch.testing.assert_close(explainer.attribute(images, target=1), torch.sigmoid(raw))
    mm = explainer.attribute(images, target=1, scale="minmax")
    flat = mm.flatten(1)
    torch.testing.assert_close(flat.amin(1), torch.zeros(4))
    torch.testing.assert_close(flat.amax(1), torch.ones(4))
    assert explainer.attribute(images, target=1, upsample=(20, 24)).shape == (4, 1, 20, 24)
    assert explainer.attribute(images, target=1, upsample=False).shape == (4, 1, 16, 16)


@pytest.mark.parametrize(
    "target",
    [2, (2,), torch.tensor(2), torch.tensor([2]), [2, 2, 2, 2], [(2,), (2,), (2,), (2,)],
     torch.tensor([2, 2, 2, 2])],
)
def test_every_captum_target_form(explainer, images, target) -> None:
    expected = explainer.attribute(images, target=2)
    torch.testing.assert_close(explainer.attribute(images, target=target), expected)


def test_two_d_target_gives_k_maps_in_one_pass(explainer, images) -> None:
    target = torch.tensor([[0, 1], [2, 3], [4, 0], [1, 1]])
    maps = explainer.attribute(images, target=target)
    assert maps.shape == (4, 2, 32, 32)
    for k in range(2):
        torch.testing.assert_close(
            maps[:, k : k + 1], explainer.attribute(images, target=target[:, k]),
            rtol=1e-5, atol=1e-6,
        )
    assert torch.equal(explainer.attribute(images, target=target.tolist()), maps)


def test_tuple_in_tuple_out(explainer, images) -> None:
    out = explainer.attribute((images,), target=0)
    assert isinstance(out, tuple) and len(out) == 1
    torch.testing.assert_close(out[0], explainer.attribute(images, target=0))


def test_no_grad_and_inference_mode(explainer, images) -> None:
    # References built without attribute(): own hooks + full fusion, bilinear resize, sigmoid.
    full = nn.functional.interpolate(_manual_full_maps(explainer, images), size=(32, 32),
                                     mode="bilinear", align_corners=False).sigmoid()
    with torch.no_grad():
        predicted = explainer.model(images).argmax(1)
    ref = full[:, 3:4]
    ref_predicted = full[torch.arange(4), predicted][:, None]
    assert not torch.allclose(ref, ref_predicted)  # class 3 is predicted for no image
    torch.testing.assert_close(explainer.attribute(images, target=3), ref, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(explainer.attribute(images, target=3), ref,
                                   rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(explainer.attribute(images), ref_predicted,
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(explainer.attribute(images, target=3), ref,
                                   rtol=1e-5, atol=1e-6)


def test_gradients_flow_when_inputs_require_grad(explainer, images) -> None:
    x = images.clone().requires_grad_(True)
    explainer.attribute(x, target=1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_explain_matches_attribute(explainer, images) -> None:
    result = explainer.explain(images, top_k=2)
    assert result.logits.shape == (4, 5)
    assert result.classes.shape == result.probabilities.shape == (4, 2)
    assert result.maps.shape == (4, 2, 32, 32)
    torch.testing.assert_close(result.classes[:, 0], result.logits.argmax(1))
    assert (result.probabilities[:, 0] >= result.probabilities[:, 1]).all()
    torch.testing.assert_close(
        result.maps, explainer.attribute(images, target=result.classes), rtol=1e-5, atol=1e-6
    )


def test_class_maps_are_all_classes(explainer, images) -> None:
    torch.testing.assert_close(
        explainer.class_maps(images), _manual_full_maps(explainer, images), rtol=1e-5, atol=1e-5
    )


class _TupleModel(nn.Module):
    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x):
        logits = self.inner(x)
        if self.kind == "tuple":
            return logits, logits.detach() * 0
        if self.kind == "dict":
            return {"logits": logits}

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_models_returning_wrapped_logits(kind, images) -> None:
    wrapped = _TupleModel(make_tiny_cnn(), kind)
    e = TTAME(wrapped, input_size=(3, 32, 32))
    assert e.layers == ["inner.layer1", "inner.layer2", "inner.layer3"]
    assert e.attribute(images).shape == (4, 1, 32, 32)


def test_layers_by_name_on_any_model(tiny_cnn, images) -> None:
    e = TTAME(tiny_cnn, ["layer2", "layer3"], input_size=(3, 32, 32))
    assert e.layers == ["layer2", "layer3"] and e.map_size == (8, 8)
    assert e.attribute(images, target=0).shape == (4, 1, 32, 32)


def test_vit_and_swin_zero_config(tiny_vit, tiny_swin, images) -> None:
    vit = TTAME(tiny_vit)
    assert vit.adapter.name == "vit" and vit.input_size == (3, 32, 32)
    assert [i.prefix_tokens for i in vit.layer_info] == [1, 1, 1]
    assert vit.map_size == (4, 4)
    assert vit.attribute(images).shape == (4, 1, 32, 32)
    swin = TTAME(tiny_swin, input_size=(3, 32, 32))
    assert swin.adapter.name == "swin"
    assert [i.layout for i in swin.layer_info] == ["nhwc"] * 3
    assert swin.attribute(images, target=1).shape == (4, 1, 32, 32)


# ------------------------------------------------------------------------- bad input
def test_unknown_layer_lists_close_names(tiny_cnn) -> None:
    with pytest.raises(ValueError, match=r"no module named 'layer4'.*'layer1'"):
        TTAME(tiny_cnn, ["layer4"], input_size=(3, 32, 32))


@pytest.mark.parametrize("layers", ["layer3", [], [3]])
def test_bad_layers_type(tiny_cnn, layers) -> None:
    with pytest.raises((TypeError, ValueError), match="layers"):
        TTAME(tiny_cnn, layers, input_size=(3, 32, 32))


def test_model_must_be_module() -> None:
    with pytest.raises(TypeError, match="model"):
        TTAME(lambda x: x)


def test_non_logit_output_is_rejected() -> None:
    class Segmenter(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            return self.conv2(self.conv(x))

    with pytest.raises(ValueError, match=r"logits of shape \(N, num_classes\)"):
        TTAME(Segmenter(), ["conv"], input_size=(3, 16, 16))


def test_num_classes_mismatch(tiny_cnn) -> None:
    with pytest.raises(ValueError, match="num_classes: given 7, but the model outputs 5"):
        TTAME(tiny_cnn, num_classes=7, input_size=(3, 32, 32))


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        (torch.rand(3, 32, 32), ValueError, "unsqueeze"),
        (torch.rand(2, 1, 32, 32), ValueError, "expected 3 channels, got 1"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.rand(0, 3, 32, 32), ValueError, "empty"),
        ([torch.rand(3, 32, 32)], TypeError, "inputs"),
        ((torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)), ValueError, "single-input"),
    ],
)
def test_bad_inputs(explainer, inputs, error, match) -> None:
    with pytest.raises(error, match=match):
        explainer.attribute(inputs, target=0)


def test_wrong_size_for_fixed_size_model(tiny_vit) -> None:
    e = TTAME(tiny_vit)
    with pytest.raises(ValueError, match="size"):
        e.attribute(torch.rand(1, 3, 48, 48))


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (5, ValueError, r"in \[0, 4\]"),
        (-1, ValueError, r"in \[0, 4\]"),
        ([0, 1], ValueError, "needs 4 entries"),
        (torch.tensor([0, 1, 2]), ValueError, "expected 4 targets"),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), TypeError, "integer"),
        ((1, 2), ValueError, "one element"),
        ("cat", TypeError, "target"),
        (torch.zeros(4, 0, dtype=torch.long), ValueError, r"\(N, K\)"),
    ],
)
def test_bad_targets(explainer, images, target, error, match) -> None:
    with pytest.raises(error, match=match):
        explainer.attribute(images, target=target)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "softmax"}, "scale"),
        ({"interpolate_mode": "cubic"}, "interpolate_mode"),
        ({"upsample": (1, 2, 3)}, "upsample"),
    ],
)
def test_bad_options(explainer, images, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        explainer.attribute(images, target=0, **kwargs)


def test_bad_constructor_options(tiny_cnn) -> None:
    with pytest.raises(ValueError, match="input_size"):
        TTAME(tiny_cnn, input_size=(3, 0, 32))
    with pytest.raises(ValueError, match="mask_space"):
        TTAME(tiny_cnn, input_size=(3, 32, 32), mask_space="pixels")
    with pytest.raises(ValueError, match="mask_space='pixel' needs"):
        TTAME(tiny_cnn, input_size=(3, 32, 32), mask_space="pixel")
    with pytest.raises(ValueError, match="normalization"):
        TTAME(tiny_cnn, input_size=(3, 32, 32), normalization="cifar")
    with pytest.raises(ValueError, match="top_k"):
        TTAME(tiny_cnn, input_size=(3, 32, 32)).explain(torch.rand(1, 3, 32, 32), top_k=6)


def test_input_size_the_model_cannot_take() -> None:
    with pytest.raises(ValueError, match="input_size: the model failed on a dry run"):
        TTAME(make_tiny_cnn(), input_size=(1, 32, 32))


def test_mask_images_pixel_space_by_hand(tiny_cnn) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    e = TTAME(tiny_cnn, input_size=(3, 32, 32), normalization=(mean, std))
    assert e.mask_space == "pixel"
    x = torch.randn(1, 3, 2, 2)
    mask = torch.full((1, 1, 2, 2), 0.5)
    m = torch.tensor(mean)[:, None, None]
    s = torch.tensor(std)[:, None, None]
    expected = ((x * s + m) * 0.5 - m) / s
    torch.testing.assert_close(e.mask_images(x, mask), expected)
    e_in = TTAME(tiny_cnn, input_size=(3, 32, 32), normalization=(mean, std), mask_space="input")
    torch.testing.assert_close(e_in.mask_images(x, mask), x * 0.5)
