"""A head records its model's class and weights; loading it into another model warns (refuses
under strict=True) naming what differs."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from tiny_models import TinyCNN, make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr._core.fingerprint import weights_fingerprint

SIZE = (3, 32, 32)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(scope="module")
def resnet18_head(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    path = TTAME(model, input_size=SIZE, head_init="pytorch").save(
        tmp_path_factory.mktemp("head") / "r18.safetensors")
    return model, path


def test_same_model_loads_without_warning(resnet18_head, caplog) -> None:
    model, path = resnet18_head
    with caplog.at_level(logging.WARNING):
        TTAME.load(path, model)
        TTAME.load(path, model, strict=True)
    assert _warnings(caplog) == []


def test_resnet18_head_into_resnet34_warns_and_strict_refuses(resnet18_head, caplog) -> None:
    _, path = resnet18_head
    torch.manual_seed(0)
    other = torchvision.models.resnet34(num_classes=10).eval()
    with caplog.at_level(logging.WARNING):
        explainer = TTAME.load(path, other)  # same layer names and channels: it fits
    assert explainer.attribute(torch.rand(1, *SIZE)).shape == (1, 1, 32, 32)
    (message,) = _warnings(caplog)
    assert "weights differ" in message and "'conv1.weight' has other values" in message
    with pytest.raises(ValueError, match=r"weights differ: 'conv1.weight' has other values.*strict=True"):
        TTAME.load(path, other, strict=True)


def test_extra_tensor_is_named(resnet18_head, caplog) -> None:
    model, path = resnet18_head
    deeper = torchvision.models.resnet34(num_classes=10).eval()
    deeper.load_state_dict(model.state_dict(), strict=False)  # resnet18's weights where they exist
    with caplog.at_level(logging.WARNING):
        TTAME.load(path, deeper)
    (message,) = _warnings(caplog)
    assert "'layer1.2.conv1.weight' is not in the model the head was trained on" in message


def test_other_class_with_same_weights_warns(tmp_path, caplog) -> None:
    class OtherCNN(TinyCNN):
        pass

    path = TTAME(make_tiny_cnn(), input_size=SIZE).save(tmp_path / "head.safetensors")
    other = OtherCNN()
    other.load_state_dict(make_tiny_cnn().state_dict())
    other.eval()
    with caplog.at_level(logging.WARNING):
        TTAME.load(path, other)
    (message,) = _warnings(caplog)
    assert "it was a tiny_models.TinyCNN, this is" in message and "OtherCNN" in message
    assert "weights differ" not in message
    with pytest.raises(ValueError, match="OtherCNN"):
        TTAME.load(path, other, strict=True)


def test_fingerprint_is_the_weights_not_the_object() -> None:
    a, b = make_tiny_cnn(seed=0), make_tiny_cnn(seed=0)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.fc.bias[0] += 1e-6
    fa, fb = weights_fingerprint(a), weights_fingerprint(b)
    assert fa["sha256"] != fb["sha256"]
    assert [k for k in fa["tensors"] if fa["tensors"][k] != fb["tensors"][k]] == ["fc.bias"]
    assert weights_fingerprint(a.double())["tensors"]["fc.bias"] != fa["tensors"]["fc.bias"]  # dtype counts
