"""Known-answer tests of the labels of multi-label and single-logit classifiers."""

from __future__ import annotations

import math

import pytest
import torch

from ttame_attr import positive_labels, sample_pairs


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_positives_sorted_by_probability_and_padded() -> None:
    logits = torch.tensor([[logit(0.6), logit(0.9), logit(0.2), logit(0.7)],
                           [logit(0.1), logit(0.3), logit(0.2), logit(0.4)],
                           [logit(0.55), logit(0.1), logit(0.1), logit(0.1)]])
    out = positive_labels(logits)
    assert out.classes.tolist() == [[1, 3, 0], [3, -1, -1], [0, -1, -1]]
    assert out.valid.tolist() == [[True, True, True], [True, False, False], [True, False, False]]
    assert out.fallback.tolist() == [False, True, False]
    assert out.probs[0].tolist() == pytest.approx([0.9, 0.7, 0.6], abs=1e-6)
    assert out.probs[1].tolist() == pytest.approx([0.4, 0.0, 0.0], abs=1e-6)
    assert out.counts.tolist() == [3, 1, 1]
    pairs = out.pairs()
    assert pairs.image.tolist() == [0, 0, 0, 1, 2] and pairs.label.tolist() == [1, 3, 0, 3, 0]
    assert out.multi_hot(4).tolist() == [[True, True, False, True], [False, False, False, True],
                                         [True, False, False, False]]


def test_threshold_and_max_labels() -> None:
    logits = torch.tensor([[logit(0.6), logit(0.9), logit(0.2), logit(0.7)]])
    assert positive_labels(logits, threshold=0.65).classes.tolist() == [[1, 3]]
    assert positive_labels(logits, max_labels=2).classes.tolist() == [[1, 3]]
    assert positive_labels(logits, threshold=0.95).classes.tolist() == [[1]]  # none: top-1


def test_ties_keep_the_smaller_class_first() -> None:
    out = positive_labels(torch.tensor([[1.0, 2.0, 2.0, 1.0]]))
    assert out.classes.tolist() == [[1, 2, 0, 3]]


def test_no_positive_anywhere_gives_top1() -> None:
    out = positive_labels(torch.full((2, 3), -5.0) + torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    assert out.classes.tolist() == [[1], [2]] and out.fallback.all()


def test_single_logit_is_always_label_zero() -> None:
    out = positive_labels(torch.tensor([[3.0], [-3.0]]))
    assert out.classes.tolist() == [[0], [0]]
    assert out.fallback.tolist() == [False, True]  # the model calls image 1 negative
    assert out.probs[:, 0].tolist() == pytest.approx([1 / (1 + math.exp(-3)), 1 / (1 + math.exp(3))])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, True, "0.5"])
def test_bad_threshold(bad: object) -> None:
    with pytest.raises(ValueError, match="threshold"):
        positive_labels(torch.zeros(1, 3), threshold=bad)


def test_bad_logits_and_max_labels() -> None:
    with pytest.raises(ValueError, match=r"logits: expected shape \(N, K\)"):
        positive_labels(torch.zeros(3))
    with pytest.raises(TypeError, match="logits"):
        positive_labels([[0.0, 1.0]])
    with pytest.raises(TypeError, match="floating"):
        positive_labels(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_labels"):
        positive_labels(torch.zeros(1, 3), max_labels=0)
    with pytest.raises(ValueError, match="max_pairs"):
        sample_pairs(positive_labels(torch.zeros(1, 3)), max_pairs=0)


def test_sample_pairs_all_when_within_bound() -> None:
    labels = positive_labels(torch.tensor([[1.0, 2.0, -1.0], [-1.0, -1.0, 3.0]]))
    pairs = sample_pairs(labels, max_pairs=4)
    assert pairs.image.tolist() == [0, 0, 1] and pairs.label.tolist() == [1, 0, 2]
    assert len(sample_pairs(labels, None)) == 3


def test_sample_pairs_keeps_each_images_top_label_and_covers_the_rest() -> None:
    # image 0 has four labels (3 > 2 > 1 > 0 by logit), image 1 one label
    labels = positive_labels(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, -1.0, -1.0, -1.0]]))
    seen = set()
    for seed in range(30):
        pairs = sample_pairs(labels, max_pairs=3, generator=torch.Generator().manual_seed(seed))
        assert len(pairs) == 3
        assert pairs.image.tolist() == [0, 0, 1]
        assert pairs.label[0].item() == 3 and pairs.label[2].item() == 0  # each image's top label
        seen.add(pairs.label[1].item())
    assert seen == {0, 1, 2}  # the one free place goes to every other label of image 0 in turn


def test_sample_pairs_fewer_places_than_images() -> None:
    labels = positive_labels(torch.tensor([[1.0, 2.0], [3.0, -1.0], [-1.0, 1.0]]))
    pairs = sample_pairs(labels, max_pairs=2, generator=torch.Generator().manual_seed(0))
    assert len(pairs) == 2 and len(set(pairs.image.tolist())) == 2  # two images, their top labels
    top = {0: 1, 1: 0, 2: 1}
    assert all(top[i] == k for i, k in zip(pairs.image.tolist(), pairs.label.tolist()))


def test_sample_pairs_is_reproducible() -> None:
    labels = positive_labels(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)) + 1.0)
    a = sample_pairs(labels, 7, torch.Generator().manual_seed(4))
    b = sample_pairs(labels, 7, torch.Generator().manual_seed(4))
    assert torch.equal(a.image, b.image) and torch.equal(a.label, b.label)


def test_fixed_width_labels_agree_with_positive_labels() -> None:
    from ttame_attr._core.labels import fixed_width_labels

    logits = torch.randn(20, 6, generator=torch.Generator().manual_seed(3)) * 2
    for width in (1, 3, 6):
        classes, probs, valid = fixed_width_labels(logits, width)
        ref = positive_labels(logits, max_labels=width)
        n = ref.classes.shape[1]
        assert classes.shape == (20, width) and torch.equal(classes[:, :n], ref.classes)
        assert torch.equal(valid[:, :n], ref.valid) and not valid[:, n:].any()
        assert torch.allclose(probs[:, :n], ref.probs) and (classes[:, n:] == -1).all()


def test_fixed_width_labels_traces_to_one_graph() -> None:
    from ttame_attr._core.labels import fixed_width_labels

    class Labels(torch.nn.Module):
        def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return fixed_width_labels(logits, 2)

    program = torch.export.export(Labels(), (torch.randn(2, 4),))
    logits = torch.tensor([[-5.0, 1.0, 2.0, -1.0], [-3.0, -2.0, -4.0, -6.0]])
    classes, probs, valid = program.module()(logits)
    assert classes.tolist() == [[2, 1], [1, -1]] and valid.tolist() == [[True, True], [True, False]]
