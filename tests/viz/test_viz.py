"""Conversion helpers (Captum, pytorch-grad-cam) and matplotlib overlays/grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttame_attr.viz import (
    figure_to_png,
    overlay,
    plot_grid,
    save_overlays,
    to_captum_vis,
    to_grad_cam,
    to_numpy_image,
    to_numpy_maps,
)


def test_to_numpy_maps_minmax_by_hand():
    m = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    out = to_numpy_maps(m)
    assert out.shape == (2, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [0.25, 1.0]])
    np.testing.assert_array_equal(out[1], np.zeros((2, 2)))  # constant map -> zeros, no NaN


def test_to_numpy_maps_rejects_multi_class_and_bad_types():
    with pytest.raises(ValueError, match="maps\\[:, k:k\\+1\\]"):
        to_numpy_maps(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        to_numpy_maps(torch.rand(4))
    with pytest.raises(TypeError, match="maps"):
        to_numpy_maps([[0.0]])


def test_to_grad_cam_single_and_batch_and_zero():
    cam = to_grad_cam(torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]]))
    assert cam.shape == (2, 2) and cam.dtype == np.float32
    np.testing.assert_allclose(cam, [[0.0, 0.25], [0.5, 1.0]])
    assert to_grad_cam(torch.rand(3, 1, 5, 5)).shape == (3, 5, 5)
    zero = to_grad_cam(np.zeros((5, 5), dtype=np.float64))
    assert zero.dtype == np.float32 and not zero.any()


def test_to_grad_cam_feeds_show_cam_on_image():
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = to_numpy_image(torch.rand(1, 3, 8, 8))[0]
    out = show_cam_on_image(img, to_grad_cam(torch.rand(1, 1, 8, 8)), use_rgb=True)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    out = show_cam_on_image(img, to_grad_cam(torch.zeros(1, 1, 8, 8)), use_rgb=True)
    assert out.shape == (8, 8, 3)


def test_to_numpy_image_undoes_normalisation():
    x = torch.full((1, 3, 2, 2), 0.5)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.5)
    img = to_numpy_image((x - torch.tensor(mean)[:, None, None]) / 0.5, mean, std)
    assert img.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(img, 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="both"):
        to_numpy_image(x, mean=mean)
    with pytest.raises(ValueError, match="3 values"):
        to_numpy_image(x, mean=(0.1,), std=(0.2,))


def test_to_captum_vis_layout_and_visualize_image_attr():
    from captum.attr import visualization

    visualize_image_attr = visualization.visualize_image_attr

    attr, img = to_captum_vis(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    assert attr.shape == (8, 8, 1) and img.shape == (8, 8, 3)
    fig, _ = visualize_image_attr(attr, img, method="blended_heat_map", sign="positive",
                                  use_pyplot=False)
    assert fig is not None
    attrs, imgs = to_captum_vis(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 8))
    assert attrs.shape == (2, 8, 8, 1) and imgs.shape == (2, 8, 8, 3)


def test_to_captum_vis_all_zero_map_does_not_crash_captum(caplog):
    from captum.attr import visualization

    visualize_image_attr = visualization.visualize_image_attr

    with caplog.at_level("WARNING"):
        attr, _ = to_captum_vis(torch.zeros(1, 1, 6, 6))
    assert "constant" in caplog.text
    assert attr[0, 0, 0] == pytest.approx(1e-8) and attr.sum() == pytest.approx(1e-8)
    with pytest.warns(UserWarning, match="close to 0"):
        visualize_image_attr(attr, method="heat_map", sign="positive", use_pyplot=False)


def test_to_captum_vis_size_mismatch():
    with pytest.raises(ValueError, match="Upsample"):
        to_captum_vis(torch.rand(1, 1, 4, 4), torch.rand(1, 3, 8, 8))


def test_overlay_blends_by_hand():
    img = np.zeros((2, 2, 3), dtype=np.float32)
    out = overlay(img, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), alpha=1.0, cmap="gray")
    np.testing.assert_allclose(out[0, 1], [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.0], atol=1e-6)
    only_image = overlay(np.full((2, 2, 3), 0.3, np.float32), torch.rand(2, 2), alpha=0.0)
    np.testing.assert_allclose(only_image, 0.3, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, torch.rand(2, 2), alpha=2.0)
    with pytest.raises(ValueError, match="cmap"):
        overlay(img, torch.rand(2, 2), cmap="no_such_map")
    with pytest.raises(ValueError, match="differs"):
        overlay(img, torch.rand(3, 3))


def test_plot_grid_layout_and_png(tmp_path):
    fig = plot_grid(torch.rand(3, 3, 8, 8), {"A": torch.rand(3, 1, 8, 8), "B": torch.rand(3, 8, 8)},
                    titles=["x", "y", "z"], contours=(torch.rand(3, 1, 8, 8) > 0.5).float())
    assert len(fig.axes) == 9
    assert [fig.axes[1].get_title(), fig.axes[2].get_title()] == ["A", "B"]
    assert figure_to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one per image"):
        plot_grid(torch.rand(2, 3, 8, 8), {"A": torch.rand(3, 1, 8, 8)})


def test_save_overlays_writes_image_sized_pngs(tmp_path):
    from PIL import Image

    paths = save_overlays(torch.rand(2, 3, 10, 12), torch.rand(2, 1, 10, 12),
                          [tmp_path / "a.png", tmp_path / "b" / "c.png"])
    assert [Image.open(p).size for p in paths] == [(12, 10), (12, 10)]


def test_missing_matplotlib_gives_a_clear_import_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"ttame-attr\[plot\]"):
        overlay(np.zeros((2, 2, 3), np.float32), torch.rand(2, 2))
    # The conversion helpers need no matplotlib.
    assert to_grad_cam(torch.rand(1, 1, 2, 2)).shape == (2, 2)
