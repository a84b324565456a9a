"""The optimised head paths agree with the straightforward computation (``forward_full``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ttame_attr._core.head import AttentionHead, FeatureBranch


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (defaults would hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def _reference_branch(branch: FeatureBranch, x: torch.Tensor) -> torch.Tensor:
    """``ReLU(BN(conv(x)) + x)`` written out with the running statistics."""
    bn = branch.bn
    y = F.conv2d(x, branch.conv.weight, branch.conv.bias)
    y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    y = y * bn.weight[:, None, None] + bn.bias[:, None, None]
    return torch.relu(y + x)


def _head(channels=(6, 10), classes=7, size=(8, 8), seed=0) -> AttentionHead:
    torch.manual_seed(seed)
    head = AttentionHead(list(channels), classes, size, init="pytorch").double()  # random fusion rows
    _randomise(head, seed)
    return head.eval()


def _features(head: AttentionHead, n: int = 3, sizes=((8, 8), (4, 4)), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, *hw, generator=g, dtype=torch.float64)
            for c, hw in zip(head.channels, sizes)]


def test_eval_branch_equals_unfused_reference():
    torch.manual_seed(0)
    branch = FeatureBranch(5).double()
    _randomise(branch)
    branch.eval()
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        fast = branch(x)
    torch.testing.assert_close(fast, _reference_branch(branch, x), rtol=1e-10, atol=1e-10)


def test_fused_weight_is_bn_scaled_conv_plus_identity_by_hand():
    branch = FeatureBranch(2).double().eval()
    with torch.no_grad():
        branch.conv.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]])[:, :, None, None])
        branch.conv.bias.copy_(torch.tensor([0.5, -1.0]))
        branch.bn.running_mean.copy_(torch.tensor([1.0, 2.0]))
        branch.bn.running_var.copy_(torch.tensor([4.0 - branch.bn.eps, 1.0 - branch.bn.eps]))
        branch.bn.weight.copy_(torch.tensor([2.0, 3.0]))
        branch.bn.bias.copy_(torch.tensor([0.0, 1.0]))
        weight, bias = branch.fused_weight_bias()
    # s = gamma / sqrt(var + eps) = (1, 3); W' = diag(s) W + I; b' = s (b - mean) + beta
    torch.testing.assert_close(
        weight[:, :, 0, 0], torch.tensor([[2.0, 2.0], [9.0, 13.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(bias, torch.tensor([-0.5, -8.0], dtype=torch.float64))


def test_training_mode_uses_batch_statistics():
    torch.manual_seed(0)
    branch = FeatureBranch(4).double().train()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    out = branch(x)
    y = branch.conv(x)
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = torch.relu((y - mean) / torch.sqrt(var + branch.bn.eps) + x)
    torch.testing.assert_close(out, expected)


def test_fused_cache_follows_parameter_updates():
    branch = FeatureBranch(3).double().eval()
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        before = branch(x)
        branch.conv.weight.mul_(2.0)  # in-place, as an optimiser step does
        after = branch(x)
        expected_after = _reference_branch(branch, x)
        branch.bn.running_mean.add_(1.0)
        after_stats = branch(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected_after, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(after_stats, _reference_branch(branch, x), rtol=1e-10, atol=1e-10)


def test_gradients_flow_through_fused_eval_branch():
    torch.manual_seed(0)
    branch = FeatureBranch(3).double().eval()
    _randomise(branch)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    (g_fast,) = torch.autograd.grad(branch(x).sum(), x)
    (g_ref,) = torch.autograd.grad(_reference_branch(branch, x).sum(), x)
    torch.testing.assert_close(g_fast, g_ref)


def test_forward_selected_classes_equal_forward_full():
    head = _head()
    feats = _features(head)
    with torch.no_grad():
        full = head.forward_full(feats)  # (N, K, h, w)
        shared = head(feats, torch.tensor([4, 0, 4]))
        per_image = head(feats, torch.tensor([[1, 6], [0, 0], [5, 2]]))
        all_maps = head(feats, None)
    torch.testing.assert_close(shared, full[:, [4, 0, 4]])
    expected = torch.stack([full[0, [1, 6]], full[1, [0, 0]], full[2, [5, 2]]])
    torch.testing.assert_close(per_image, expected)
    torch.testing.assert_close(all_maps, full)


def test_forward_full_matches_reference_written_out():
    head = _head()
    feats = _features(head)
    with torch.no_grad():
        branches = [
            F.interpolate(_reference_branch(b, f), size=head.map_size, mode="bilinear",
                          align_corners=False)
            for b, f in zip(head.branches, feats)
        ]
        expected = head.fusion(torch.cat(branches, dim=1))
        torch.testing.assert_close(head.forward_full(feats), expected)
        torch.testing.assert_close(head(feats), expected)


def test_channels_last_and_token_views_give_same_maps():
    head = _head()
    feats = _features(head)
    views = [f.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) for f in feats]
    with torch.no_grad():
        torch.testing.assert_close(head(views, torch.tensor([[3], [2], [1]])),
                                   head(feats, torch.tensor([[3], [2], [1]])))


def test_float32_fast_path_within_tolerance_of_float64():
    head = _head()
    feats = _features(head)
    head32 = _head().float()
    with torch.no_grad():
        ref = head.forward_full(feats)
        fast = head32([f.float() for f in feats], torch.arange(7))
    torch.testing.assert_close(fast.double(), ref, rtol=1e-4, atol=1e-4)


def test_project_per_image_layouts_agree():
    from ttame_attr._core.head import _project_per_image

    g = torch.Generator().manual_seed(5)
    b = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    expected = torch.einsum("nmc,nchw->nmhw", w, b)
    cl = b.contiguous(memory_format=torch.channels_last)
    strided = b.transpose(2, 3).contiguous().transpose(2, 3)  # neither layout
    for layout in (b, cl, strided):
        torch.testing.assert_close(_project_per_image(layout, w), expected)
    assert _project_per_image(cl, w).is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_fast_path_within_bf16_tolerance():
    torch.manual_seed(0)
    branch = FeatureBranch(16)
    _randomise(branch)
    branch.eval()
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        reference = _reference_branch(branch, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = branch(x)
    scale = reference.abs().max()
    assert float((fast.float() - reference).abs().max()) <= 0.02 * float(scale)
