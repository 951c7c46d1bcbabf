"""Tests of attn_course.viz: each plot returns its axis and draws what it should."""

import matplotlib

matplotlib.use("Agg")  # no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attn_course.train import History  # noqa: E402
from attn_course.viz import (  # noqa: E402
    draw_box,
    overlay_attention,
    overlay_row,
    plot_bars,
    plot_channel_gates,
    plot_history,
    show_image,
)


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_draw_box(ax):
    assert draw_box(ax, torch.tensor([2, 3, 7, 11])) is ax
    (rect,) = ax.patches
    assert rect.get_xy() == (1.5, 2.5)  # pixel edges: half a pixel before the first pixel's centre
    assert (rect.get_width(), rect.get_height()) == (5, 8)
    assert not rect.get_fill()


def test_show_image_grey(ax):
    image = torch.rand(1, 12, 10)
    assert show_image(image, ax=ax, title="a digit", box=[1, 2, 4, 6]) is ax
    (shown,) = ax.images
    np.testing.assert_array_equal(shown.get_array(), image[0].numpy())
    assert len(ax.patches) == 1 and ax.get_title() == "a digit"
    assert not ax.axison


def test_show_image_rgb_and_2d(ax):
    rgb = torch.rand(3, 5, 6)
    show_image(rgb, ax=ax)
    assert ax.images[0].get_array().shape == (5, 6, 3)
    np.testing.assert_array_equal(ax.images[0].get_array(), rgb.numpy().transpose(1, 2, 0))
    show_image(np.eye(4), ax=ax)
    assert len(ax.images) == 2 and len(ax.patches) == 0
    np.testing.assert_array_equal(ax.images[1].get_array(), np.eye(4))


def test_show_image_uses_current_axis():
    fig, ax = plt.subplots()
    assert show_image(torch.rand(8, 8)) is ax
    plt.close(fig)


@pytest.mark.parametrize("shape", [(2, 8, 8), (1, 1, 8, 8), (8,)])
def test_show_image_bad_shape(ax, shape):
    with pytest.raises(ValueError, match=r"expected an image \(1, H, W\), \(3, H, W\) or \(H, W\), got shape"):
        show_image(torch.rand(shape), ax=ax)


def test_overlay_attention(ax):
    image, attention = torch.rand(1, 32, 32), torch.rand(8, 8) * 5 + 2
    assert overlay_attention(image, attention, ax=ax, box=torch.tensor([0, 0, 4, 4]), title="cam") is ax
    base, heat = ax.images
    np.testing.assert_array_equal(base.get_array(), image[0].numpy())
    # The map is drawn as it is, on the scale of its own range, stretched over the whole image.
    shown = np.asarray(heat.get_array())
    np.testing.assert_allclose(shown, attention.numpy())
    assert heat.get_clim() == pytest.approx((attention.min().item(), attention.max().item()))
    assert heat.get_cmap().name == "viridis"
    assert heat.get_extent() == [-0.5, 31.5, 31.5, -0.5]
    assert len(ax.patches) == 1 and ax.get_title() == "cam"


def test_overlay_constant_map(ax):
    overlay_attention(torch.rand(1, 8, 8), torch.full((4, 4), 3.0), ax=ax)
    assert np.all(np.asarray(ax.images[1].get_array()) == 3.0) and ax.images[1].get_clim() == (3.0, 3.0)


def test_overlay_on_a_fixed_scale_shows_a_flat_gate_as_flat(ax):
    gate = 0.5 + 0.02 * torch.rand(8, 8)  # a gate that varies by 0.02
    overlay_attention(torch.rand(1, 32, 32), gate, ax=ax, vmin=0, vmax=1, colorbar=True, label="gate")
    heat = ax.images[-1]
    assert heat.get_clim() == (0, 1)
    colours = heat.to_rgba(np.asarray(heat.get_array()))
    assert np.ptp(colours[..., :3].reshape(-1, 3), axis=0).max() < 0.05  # nearly one colour, not the whole map
    (bar,) = [a for a in ax.figure.axes if a is not ax]
    assert bar.get_ylabel() == "gate"


def test_overlay_refuses_an_inverted_scale(ax):
    with pytest.raises(ValueError, match="vmin=1 is above vmax=0"):
        overlay_attention(torch.rand(1, 8, 8), torch.rand(4, 4), ax=ax, vmin=1, vmax=0)


def test_overlay_bad_attention(ax):
    with pytest.raises(ValueError, match=r"attention must be a 2-D map \(h, w\), got shape \(1, 8, 8\)"):
        overlay_attention(torch.rand(1, 32, 32), torch.rand(1, 8, 8), ax=ax)


def test_plot_history(ax):
    histories = {"plain": History(test_accuracy=[0.5, 0.6, 0.7]), "se": History(test_accuracy=[0.4, 0.8])}
    assert plot_history(histories, ax=ax) is ax
    lines = ax.get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == [1, 2, 3] and list(lines[0].get_ydata()) == [0.5, 0.6, 0.7]
    assert list(lines[1].get_xdata()) == [1, 2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "se"]
    assert ax.get_ylabel() == "test accuracy" and ax.get_xlabel() == "epoch"
    assert all(float(t).is_integer() for t in ax.get_xticks())  # whole epochs only


def test_plot_history_other_metric(ax):
    plot_history({"a": History(train_loss=[2.0, 1.0])}, ax=ax, metric="train_loss")
    assert list(ax.get_lines()[0].get_ydata()) == [2.0, 1.0] and ax.get_ylabel() == "train loss"


def test_plot_channel_gates(ax):
    gates = torch.rand(3, 16)
    assert plot_channel_gates(gates, ax=ax, labels=["0", "1", "2"], title="SE gates") is ax
    (shown,) = ax.images
    np.testing.assert_array_equal(shown.get_array(), gates.numpy())
    assert shown.get_clim() == (0, 1)
    assert len(ax.figure.axes) == 2  # the colour bar
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert ax.get_title() == "SE gates"


def test_plot_channel_gates_bad_shape(ax):
    with pytest.raises(ValueError, match=r"gates must be \(rows, channels\), got shape \(16,\)"):
        plot_channel_gates(torch.rand(16), ax=ax)


def test_plot_bars(ax):
    values = {"ResNet": 0.91, "SE": torch.tensor(0.935)}
    assert plot_bars(values, ax=ax, ylabel="accuracy", title="test", fmt="{:.2f}") is ax
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.91, 0.935])
    assert [t.get_text() for t in ax.texts] == ["0.91", "0.94"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ResNet", "SE"]
    assert ax.get_ylabel() == "accuracy" and ax.get_title() == "test"


def test_overlay_with_a_nan_pixel_still_draws_the_map():
    # One NaN pixel used to make the whole normalised map NaN: nothing was drawn.
    attention = np.arange(16, dtype=float).reshape(4, 4)
    attention[0, 0] = np.nan
    fig, ax = plt.subplots()
    overlay_attention(np.zeros((32, 32)), attention, ax=ax)
    shown = ax.images[-1].get_array()
    assert shown.mask[0, 0] and not shown.mask[1:].any()
    assert ax.images[-1].get_clim() == (1.0, 15.0)  # the scale of the finite pixels
    plt.close(fig)


def test_an_image_in_0_to_255_is_refused_not_shown_white():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="divide a 0..255 image by 255 first"):
        show_image(np.full((8, 8), 200.0), ax=ax)
    show_image(np.full((8, 8), 1.0), ax=ax)
    plt.close(fig)


def test_overlay_row_shares_one_scale_and_one_colour_bar_in_a_subfigure():
    fig = plt.figure()
    panel = fig.subfigures(1, 2)[1]  # an explorer draws into a subfigure
    maps = [torch.zeros(4, 4), torch.full((4, 4), 3.0)]
    axes = overlay_row(panel, torch.rand(1, 8, 8), maps, titles=["a"], box=[1, 1, 5, 5], label="weight")
    assert len(axes) == 3 and axes[0].get_title() == "" and axes[1].get_title() == "a"
    assert [ax.images[-1].get_clim() for ax in axes[1:]] == [(0.0, 3.0), (0.0, 3.0)]  # one scale over all maps
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "weight"]
    assert len(colour_bars) == 1
    assert len(axes[0].patches) == 1  # the box
    plt.close(fig)


def test_overlay_row_keeps_a_given_scale_and_needs_a_map():
    fig = plt.figure()
    axes = overlay_row(fig, torch.rand(8, 8), [torch.rand(2, 2)], vmin=0, vmax=1)
    assert axes[1].images[-1].get_clim() == (0, 1)
    with pytest.raises(ValueError, match="at least one map"):
        overlay_row(fig, torch.rand(8, 8), [])
    plt.close(fig)
