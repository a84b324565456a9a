"""Issue 33, cases 5 and 6: a model moved after ``TTAME(model)``, and a forward returning a tuple
whose first element is not the logits."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_models import make_tiny_cnn
from torch import nn

from ttame_attr import TTAME
from ttame_attr._core import outputs


@pytest.mark.parametrize("call", ["attribute", "explain"])
def test_a_model_moved_after_construction_is_named_with_the_fix(call):
    model = make_tiny_cnn()
    explainer = TTAME(model, input_size=(3, 32, 32))
    model.to("meta")  # was: torch's "Tensor on device meta is not on the expected device cpu"
    with pytest.raises(ValueError, match=r"model: the model is on meta but the explainer's head and the "
                                         r"images are on cpu: the model was moved after TTAME\(model\) was "
                                         r"built\. Move the head with it, explainer\.head\.to\('meta'\)"):
        getattr(explainer, call)(torch.rand(2, 3, 32, 32))


class EmbeddingAndLogits(nn.Module):
    """A forward returning ``(embedding (N, 16), logits (N, 3))``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        embedding = self.features(x).mean(dim=(2, 3))
        return embedding, self.fc(embedding)


def test_a_tuple_output_says_which_element_was_taken(caplog):
    outputs._WARNED.clear()
    caplog.set_level(logging.WARNING)
    explainer = TTAME(EmbeddingAndLogits().eval(), ["features.1", "features.3"], input_size=(3, 32, 32))
    assert explainer.num_classes == 16  # the first element, as documented, but no longer silently
    warned = [r.getMessage() for r in caplog.records if r.name == "ttame_attr._core.outputs"]
    assert len(warned) == 1, warned
    assert "a tuple of 2 elements ([0] (2, 16), [1] (2, 3)); element 0 (16 classes) is taken" in warned[0]
    assert "`lambda x: model(x)[1]`" in warned[0]
    caplog.clear()
    explainer.attribute(torch.rand(2, 3, 32, 32), target=0)
    assert not [r for r in caplog.records if r.name == "ttame_attr._core.outputs"]  # once per layout


def test_a_tuple_with_one_table_is_taken_without_a_warning(caplog):
    outputs._WARNED.clear()
    caplog.set_level(logging.WARNING)
    logits = torch.rand(2, 5)
    assert outputs.extract_logits((logits, torch.rand(2, 3, 4, 4))) is logits
    assert not caplog.records
