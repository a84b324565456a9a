"""The cheaper module walks of the eval-mode guard and of the layer lookup keep their behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttame_attr._core.modes import eval_mode, training_submodules
from ttame_attr.adapters import capture_features, named_modules_or_error


def _net() -> nn.Module:
    shared = nn.Linear(3, 3)
    net = nn.Sequential(
        nn.Linear(4, 3),
        nn.Sequential(nn.ReLU(), nn.Dropout(0.5), shared),
        shared,  # the same module twice
        nn.BatchNorm1d(3),
    )
    net.register_module("empty", None)
    return net


def testtraining_submodules_matches_modules_listing():
    net = _net()
    net[1].eval()  # a mix of train and eval submodules
    net[1][1].train()
    expected = [m for m in net.modules() if m.training]
    found = training_submodules(net)
    assert len(found) == len(expected)
    assert {id(m) for m in found} == {id(m) for m in expected}


def test_eval_mode_restores_mixed_flags_also_on_error():
    net = _net()
    net[1][0].eval()
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError):
        with eval_mode(net):
            assert not any(m.training for m in net.modules())
            raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before


def test_layer_lookup_by_path_and_error_for_unknown_names():
    net = _net()
    found = named_modules_or_error(net, ["1.2", "0"])
    assert found["1.2"] is net[1][2] and found["0"] is net[0]
    with pytest.raises(ValueError, match="no module named '1.5'"):
        named_modules_or_error(net, ["1.5"])
    with pytest.raises(ValueError, match="no module named ''"):
        named_modules_or_error(net, [""])
    with pytest.raises(ValueError, match="Closest valid names"):
        named_modules_or_error(net, ["1.2x"])
    with pytest.raises(TypeError, match="module names"):
        named_modules_or_error(net, [3])


def test_capture_keeps_the_output_without_copy_and_removes_hooks():
    net = _net().eval()
    del net.empty  # nn.Sequential cannot run a None entry
    x = torch.randn(2, 4)
    with torch.no_grad(), capture_features(net, ["0", "3"]) as store:
        out = net(x)
    assert store["3"] is out
    torch.testing.assert_close(store["0"], net[0](x))
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
