"""The attention head: architecture by hand, and sliced (per-class) maps equal the full maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ttame_attr import AttentionHead, FeatureBranch


def _randomised_head(channels, num_classes, map_size, seed=0) -> AttentionHead:
    torch.manual_seed(seed)
    head = AttentionHead(channels, num_classes, map_size, init="pytorch")
    with torch.no_grad():
        for branch in head.branches:
            branch.bn.running_mean.normal_()
            branch.bn.running_var.uniform_(0.5, 2.0)
            branch.bn.weight.normal_()
            branch.bn.bias.normal_()
        head.fusion.bias.normal_()
    return head.eval()


def _features(channels, sizes, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes)]


def test_branch_is_conv_bn_skip_relu() -> None:
    torch.manual_seed(0)
    branch = FeatureBranch(4).eval()
    with torch.no_grad():
        branch.bn.running_mean.uniform_(-1, 1)
        branch.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 3, 3)
    conv = F.conv2d(x, branch.conv.weight, branch.conv.bias)
    bn = (conv - branch.bn.running_mean[None, :, None, None]) / torch.sqrt(
        branch.bn.running_var[None, :, None, None] + branch.bn.eps
    ) * branch.bn.weight[None, :, None, None] + branch.bn.bias[None, :, None, None]
    expected = torch.relu(bn + x)
    torch.testing.assert_close(branch(x), expected)


def test_full_forward_is_resize_concat_fuse() -> None:
    channels, sizes = (3, 5, 7), [(8, 8), (4, 4), (2, 2)]
    head = _randomised_head(channels, 6, (8, 8))
    feats = _features(channels, sizes)
    ups = [
        F.interpolate(b(f), size=(8, 8), mode="bilinear", align_corners=False)
        for b, f in zip(head.branches, feats)
    ]
    expected = F.conv2d(torch.cat(ups, 1), head.fusion.weight, head.fusion.bias)
    torch.testing.assert_close(head.forward_full(feats), expected)


@pytest.mark.parametrize("map_size", [(8, 8), (6, 6), (10, 12)])
def test_sliced_all_classes_equals_full(map_size) -> None:
    channels, sizes = (3, 5, 7), [(8, 8), (4, 4), (2, 2)]
    head = _randomised_head(channels, 6, map_size)
    feats = _features(channels, sizes)
    torch.testing.assert_close(head(feats), head.forward_full(feats), rtol=1e-5, atol=1e-5)


def test_sliced_shared_classes_equal_full_rows() -> None:
    channels, sizes = (4, 6), [(7, 7), (3, 3)]
    head = _randomised_head(channels, 10, (7, 7))
    feats = _features(channels, sizes)
    classes = torch.tensor([9, 2, 2])
    full = head.forward_full(feats)
    torch.testing.assert_close(head(feats, classes), full[:, classes], rtol=1e-5, atol=1e-5)


def test_sliced_per_image_classes_equal_gathered_full() -> None:
    channels, sizes = (4, 6, 8), [(8, 8), (4, 4), (2, 2)]
    head = _randomised_head(channels, 10, (8, 8))
    feats = _features(channels, sizes, n=3)
    classes = torch.tensor([[1, 5], [0, 0], [9, 3]])
    full = head.forward_full(feats)
    expected = torch.stack([full[i, classes[i]] for i in range(3)])
    torch.testing.assert_close(head(feats, classes), expected, rtol=1e-5, atol=1e-5)


def test_training_masks_shape_and_diagonal() -> None:
    channels, sizes = (4,), [(5, 5)]
    head = _randomised_head(channels, 7, (5, 5))
    feats = _features(channels, sizes, n=4)
    labels = torch.tensor([3, 1, 3, 6])
    maps = head(feats, labels)
    assert maps.shape == (4, 4, 5, 5)
    full = head.forward_full(feats)
    diagonal = maps[torch.arange(4), torch.arange(4)]
    torch.testing.assert_close(diagonal, full[torch.arange(4), labels], rtol=1e-5, atol=1e-5)
