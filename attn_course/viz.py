"""Plots for the chapters. Each function takes the data and a matplotlib axis and returns the axis."""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _image2d(image):
    """(1, H, W), (H, W) or (3, H, W) tensor -> array matplotlib can show, values in [0, 1]."""
    image = _numpy(image)
    if image.size and np.nanmax(image) > 1 + 1e-6:  # shown with vmax=1, a 0..255 image would be all white
        raise ValueError(f"images are shown with values in [0, 1], but this one reaches {np.nanmax(image):g}: "
                         f"divide a 0..255 image by 255 first.")
    if image.ndim == 3 and image.shape[0] == 1:
        return image[0]
    if image.ndim == 3 and image.shape[0] == 3:
        return image.transpose(1, 2, 0)
    if image.ndim != 2:
        raise ValueError(f"expected an image (1, H, W), (3, H, W) or (H, W), got shape {image.shape}.")
    return image


def draw_box(ax, box, color="tab:red", linewidth=1.5):
    """Outline a box ``(x0, y0, x1, y1)`` (end exclusive, pixel units) on ``ax``."""
    x0, y0, x1, y1 = (float(v) for v in _numpy(box))
    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                               edgecolor=color, linewidth=linewidth))
    return ax


def show_image(image, ax=None, title=None, box=None):
    """Show one grey-scale (or RGB) image, optionally with its bounding box."""
    ax = ax or plt.gca()
    ax.imshow(_image2d(image), cmap="gray", vmin=0, vmax=1)
    if box is not None:
        draw_box(ax, box)
    if title is not None:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def overlay_attention(image, attention, ax=None, title=None, box=None, alpha=0.5, cmap="viridis", vmin=None,
                      vmax=None, colorbar=False, label=None):
    """Show ``attention`` (h, w) resized over ``image``, on a colour scale you can read.

    The scale runs from ``vmin`` to ``vmax``. Give both for maps with a natural range, such as
    sigmoid gates (0 and 1): a gate that barely varies then looks flat, as it is. Left out, they
    are the map's own smallest and largest value, so that each map fills the colour scale; then
    only the pattern within one map can be read, not its strength against another map.
    ``colorbar=True`` draws the scale beside the axes, titled ``label``. The default colour map,
    viridis, is perceptually uniform and readable in grey and by colour-blind readers.

    NaN pixels are left transparent (the others are still drawn); an all-NaN map draws nothing.
    Returns ``ax``; the map is ``ax.images[-1]`` (e.g. for one shared ``fig.colorbar``).
    """
    ax = ax or plt.gca()
    image = _image2d(image)
    attention = _numpy(attention).astype(float)
    if attention.ndim != 2:
        raise ValueError(f"attention must be a 2-D map (h, w), got shape {attention.shape}.")
    finite = np.isfinite(attention)
    low, high = (attention[finite].min(), attention[finite].max()) if finite.any() else (0.0, 1.0)
    vmin = low if vmin is None else vmin
    vmax = high if vmax is None else vmax
    if not vmin <= vmax:
        raise ValueError(f"overlay_attention: vmin={vmin} is above vmax={vmax}.")
    attention = np.ma.masked_where(~finite, attention)  # one NaN made the whole map NaN before
    height, width = image.shape[:2]
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    heat = ax.imshow(attention, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax,
                     extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="bilinear")
    if colorbar:
        ax.figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.04, label=label)
    if box is not None:
        draw_box(ax, box, color="white")
    if title is not None:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def plot_history(histories, ax=None, metric="test_accuracy"):
    """One curve per run: ``histories`` maps a name to a :class:`attn_course.train.History`."""
    ax = ax or plt.gca()
    for name, history in histories.items():
        values = getattr(history, metric)
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, 3, not 1.25
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_channel_gates(gates, ax=None, labels=None, title=None):
    """Heat map of gates (rows, C): e.g. the mean SE gate of each class over the channels."""
    ax = ax or plt.gca()
    gates = _numpy(gates)
    if gates.ndim != 2:
        raise ValueError(f"gates must be (rows, channels), got shape {gates.shape}.")
    image = ax.imshow(gates, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("channel")
    if labels is not None:
        ax.set_yticks(range(len(labels)), labels)
    if title is not None:
        ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    return ax


def plot_bars(values, ax=None, ylabel=None, title=None, fmt="{:.3f}"):
    """Bar chart of ``values`` (a dict name -> number), each bar labelled with its value."""
    ax = ax or plt.gca()
    names, numbers = list(values), [float(v) for v in values.values()]
    bars = ax.bar(names, numbers, color=plt.cm.tab10.colors[: len(names)])
    ax.bar_label(bars, labels=[fmt.format(v) for v in numbers], fontsize=9)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=20)
    return ax


def overlay_row(fig, image, maps, titles=(), box=None, vmin=None, vmax=None, label=None, image_title=None):
    """Draw ``image`` and each map of ``maps`` (a list of (h, w)) over it, in one row of ``fig``.

    ``fig`` is a figure or a subfigure (an explorer's panel). All maps share one colour scale,
    ``vmin`` to ``vmax`` (left out: the smallest and largest value over all maps), and one colour
    bar titled ``label`` beside the last map. Returns the axes: the image first, then the maps.
    """
    arrays = [_numpy(m).astype(float) for m in maps]
    if not arrays:
        raise ValueError("overlay_row: give at least one map to draw over the image.")
    finite = [a[np.isfinite(a)] for a in arrays]
    values = np.concatenate(finite) if any(f.size for f in finite) else np.zeros(1)
    vmin = float(values.min()) if vmin is None else vmin
    vmax = float(values.max()) if vmax is None else vmax
    titles = list(titles) + [None] * (len(arrays) - len(titles))
    axes = fig.subplots(1, len(arrays) + 1, squeeze=False)[0]
    show_image(image, axes[0], title=image_title, box=box)
    for i, (ax, attention, title) in enumerate(zip(axes[1:], arrays, titles)):
        overlay_attention(image, attention, ax, title=title, box=box, vmin=vmin, vmax=vmax,
                          colorbar=i == len(arrays) - 1, label=label)
    return axes
