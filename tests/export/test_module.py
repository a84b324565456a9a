"""``TTAME.as_module``: one module returning ``(logits, classes, maps)`` equal to ``explain``,
sharing the model's weights and leaving the model as it was."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import assert_same_snapshot, make_tiny_cnn, make_tiny_swin, make_tiny_vit, model_snapshot

from ttame_attr import TTAME
from ttame_attr._core.head import AttentionHead
from ttame_attr.export import ExplainedModel, ExplainedOutput, ExportError

BUILDERS = {"cnn": make_tiny_cnn, "vit": make_tiny_vit, "swin": make_tiny_swin}


def trained_like(explainer: TTAME, seed: int = 3) -> TTAME:
    """Give the head non-trivial weights and BN statistics (as training would)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in explainer.head.state_dict().items():
            if tensor.is_floating_point():
                low = 0.5 if name.endswith("running_var") else -0.3
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.6 + low)
    return explainer


@pytest.fixture(params=sorted(BUILDERS))
def setup(request):
    model = BUILDERS[request.param]()
    explainer = trained_like(TTAME(model, input_size=(3, 32, 32)))
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return model, explainer, x


@pytest.mark.parametrize("top_k", [1, 3])
@pytest.mark.parametrize("scale", ["sigmoid", "raw", "minmax"])
def test_outputs_equal_explain(setup, top_k, scale) -> None:
    _, explainer, x = setup
    module = explainer.as_module(top_k=top_k, scale=scale)
    out = module(x)
    ref = explainer.explain(x, top_k=top_k)
    assert torch.equal(out.logits, ref.logits)
    assert torch.equal(out.classes, ref.classes) and out.classes.dtype == torch.int64
    expected = explainer.attribute(x, target=ref.classes, scale=scale)
    assert out.maps.shape == (5, top_k, 32, 32)
    torch.testing.assert_close(out.maps, expected, rtol=1e-5, atol=1e-5)


def test_maps_at_map_size_or_a_given_size(setup) -> None:
    _, explainer, x = setup
    small = explainer.as_module(upsample=False)(x).maps
    assert small.shape[-2:] == explainer.map_size
    classes = explainer.explain(x).classes
    expected = explainer.attribute(x, target=classes, upsample=False)
    torch.testing.assert_close(small, expected, rtol=1e-5, atol=1e-5)
    assert explainer.as_module(upsample=(20, 24))(x).maps.shape == (5, 1, 20, 24)


def test_output_is_a_named_three_tuple(setup) -> None:
    _, explainer, x = setup
    out = explainer.as_module()(x)
    assert isinstance(out, ExplainedOutput) and isinstance(out, tuple) and len(out) == 3
    logits, classes, maps = out
    assert logits is out.logits and classes is out.classes and maps is out.maps
    assert ExplainedOutput._fields == ("logits", "classes", "maps")


def test_building_and_calling_leave_the_model_untouched(setup) -> None:
    model, explainer, x = setup
    model.train()  # the user's flag, which the module must not change
    before = model_snapshot(model)
    module = explainer.as_module(top_k=2)
    module(x)
    assert_same_snapshot(before, model_snapshot(model))
    assert not module.training and not module.classifier.training  # the clone is in eval mode
    assert module._sink.items == {}  # no activation kept between calls
    assert not any(t.requires_grad for t in module(x))  # inference: no autograd graph


def test_weights_are_shared_not_copied(setup) -> None:
    model, explainer, x = setup
    module = explainer.as_module()
    own = dict(model.named_parameters())
    for name, param in module.classifier.named_parameters():
        assert param is own[name], name
    head = dict(explainer.head.named_parameters())
    for name, param in module.head.named_parameters():
        assert param is head[name], name
    # Weights loaded into the head later show in the module (the fused-branch cache follows).
    module(x)
    trained_like(explainer, seed=11)
    ref = explainer.explain(x)
    expected = explainer.attribute(x, target=ref.classes)
    torch.testing.assert_close(module(x).maps, expected, rtol=1e-5, atol=1e-5)


def test_deepcopy_is_independent(setup) -> None:
    _, explainer, x = setup
    module = explainer.as_module()
    twin = copy.deepcopy(module)
    before = twin(x)
    trained_like(explainer, seed=12)
    after = twin(x)
    assert torch.equal(before.maps, after.maps)
    assert not torch.equal(module(x).maps, after.maps)


@pytest.mark.parametrize("top_k", [0, 6, 1.0, True, "1"])
def test_bad_top_k(tiny_cnn, top_k) -> None:
    explainer = TTAME(tiny_cnn, input_size=(3, 32, 32))
    with pytest.raises(ValueError, match=r"top_k: expected an int in \[1, 5\]"):
        explainer.as_module(top_k=top_k)


def test_bad_scale(tiny_cnn) -> None:
    with pytest.raises(ValueError, match="scale"):
        TTAME(tiny_cnn, input_size=(3, 32, 32)).as_module(scale="softmax")


def test_a_head_that_does_not_fit_is_refused_before_export(tiny_cnn, tmp_path) -> None:
    explainer = TTAME(tiny_cnn, input_size=(3, 32, 32))
    explainer.head = AttentionHead((4, 4, 4), 7, explainer.map_size)
    message = (r"head: it does not fit the model \(its branches take \[4, 4, 4\] channels, the layers "
               r"\['layer1', 'layer2', 'layer3'\] give \[8, 16, 16\]; it has 7 classes, the model 5\)")
    with pytest.raises(ValueError, match=message):
        explainer.as_module()
    with pytest.raises(ValueError, match=message):
        explainer.export_program()
    with pytest.raises(ValueError, match=message):
        explainer.export_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


class HiddenCall(torch.nn.Module):
    """Calls its stages through a plain list: a clone of the model cannot see those calls."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_tiny_cnn()
        self._stages = [self.net.stem, self.net.layer1, self.net.layer2, self.net.layer3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self._stages:
            x = stage(x)
        return self.net.fc(x.mean(dim=(2, 3)))


def test_layers_the_clone_cannot_see_are_a_feature_capture_error() -> None:
    model = HiddenCall().eval()
    explainer = TTAME(model, input_size=(3, 32, 32))  # eager T-TAME hooks the real modules: fine
    assert explainer.attribute(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(ExportError, match="feature capture: layer .* did not run in the clone") as info:
        explainer.as_module()
    assert info.value.part == "feature capture"


def test_module_is_an_nn_module_with_the_explainers_settings(tiny_cnn) -> None:
    explainer = TTAME(tiny_cnn, input_size=(3, 32, 32), normalization="imagenet")
    module = explainer.as_module(top_k=2, scale="raw")
    assert isinstance(module, ExplainedModel)
    assert (module.top_k, module.scale, module.input_size, module.num_classes) == (2, "raw", (3, 32, 32), 5)
    assert module.normalization == explainer.normalization
    assert "top_k=2, scale='raw', input_size=(3, 32, 32)" in repr(module)
