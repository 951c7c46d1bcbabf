"""Coordinate Attention: channel attention along the rows and along the columns.

Hou, Zhou and Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
https://arxiv.org/abs/2103.02907. Official code: https://github.com/houqb/CoordAttention
(``coordatt.py``, class ``CoordAtt``).

SE pools each channel to one number and loses where things are. Coordinate attention pools along
one axis at a time, keeping the other::

    z^h_c(i) = 1/W sum_j x_c(i, j)              (B, C, H, 1): one value per row
    z^w_c(j) = 1/H sum_i x_c(i, j)              (B, C, 1, W): one value per column
    f = h_swish(BN(F_1([z^h; z^w])))            (B, mip, H + W, 1): one shared 1x1 conv over both
    a^h = sigmoid(F_h(f^h)), a^w = sigmoid(F_w(f^w))   (B, C, H, 1) and (B, C, 1, W)
    y_c(i, j) = x_c(i, j) a^h_c(i) a^w_c(j)

z^w is turned to (B, C, W, 1) so that the two can be concatenated along dim 2, and f is split back
into its H and W parts. Every convolution is 1 x 1, so the rows and the columns never mix before
the final product; the BatchNorm normalises both directions together.

Where the official code and the paper's text differ, we follow the code and say so:

- hidden width: the paper writes C / r; the code uses mip = max(8, C // r) with r = 32, so that a
  narrow layer keeps 8 hidden channels (``min_hidden``). Our defaults are the code's; on the
  course's 16 to 64 channels, mip = 8 everywhere.
- the non-linearity delta: the README calls it SiLU, the code uses h_swish,
  x * ReLU6(x + 3) / 6 (PyTorch's ``nn.Hardswish``): we follow the code.
- the three 1 x 1 convolutions have biases and a BatchNorm follows the shared one, as in the code
  (the paper's equations name only the transforms F_1, F_h, F_w and the non-linearity).

timm (``timm.layers.coord_attn.CoordAttn``, since timm 1.0.23) differs from the official code: its hidden
width is ``make_divisible(C / 16 * 2/3, 8)`` and its convolutions have no bias. We do not use it.

Gates: ``self.h.gate`` gives a^h (B, C, H, 1) and ``self.w.gate`` gives a^w (B, C, 1, W); both
names end in ``gate``, so :class:`attn_course.models.AttentionRecorder` records both. The official
``conv1``, ``bn1``, ``conv_h`` and ``conv_w`` are our ``conv1``, ``bn1``, ``h.conv`` and ``w.conv``.
"""

import torch
from torch import nn

from ._validate import check_channels, check_input, is_int


class CoordinateGate(nn.Module):
    """One direction of coordinate attention: a 1x1 conv from mip to C channels, then ``self.gate``."""

    def __init__(self, hidden, channels):
        super().__init__()
        self.conv = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, f):
        return self.gate(self.conv(f))  # (B, C, L, 1) or (B, C, 1, L)


class CoordinateAttention(nn.Module):
    """Attention along rows and columns: ``x * sigmoid(F_h(f^h)) * sigmoid(F_w(f^w))``.

    Average pooling along W and along H gives one descriptor per row and per column; one shared
    1x1 conv (C -> mip), a BatchNorm and h_swish encode both; a 1x1 conv per direction
    (mip -> C) and a sigmoid give a gate per channel and row, and per channel and column.

    Args:
        channels: C, the number of input channels.
        reduction: r, the hidden width is ``max(min_hidden, channels // r)`` (official code: 32).
        min_hidden: the smallest hidden width (official code: 8).

    Shapes: (B, C, H, W) -> (B, C, H, W). Gates: ``self.h.gate`` (B, C, H, 1) and
    ``self.w.gate`` (B, C, 1, W).
    """

    def __init__(self, channels, reduction=32, min_hidden=8):
        super().__init__()
        channels = check_channels(channels, "CoordinateAttention")
        for name, value in (("reduction", reduction), ("min_hidden", min_hidden)):
            if not is_int(value) or value < 1:
                raise ValueError(
                    f"CoordinateAttention: {name} must be a positive int, got {value!r}. The hidden width is "
                    f"max(min_hidden, channels // reduction); the official code uses reduction=32, min_hidden=8."
                )
        self.channels = channels
        self.hidden = hidden = max(int(min_hidden), channels // int(reduction))
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()  # h_swish of the official code: x * ReLU6(x + 3) / 6
        self.h = CoordinateGate(hidden, channels)
        self.w = CoordinateGate(hidden, channels)

    def forward(self, x):
        check_input(x, self.channels, "CoordinateAttention", self.conv1.weight)
        height, width = x.shape[2], x.shape[3]
        z_h = x.mean(dim=3, keepdim=True)  # pooled along W: (B, C, H, 1)
        z_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # pooled along H, turned: (B, C, W, 1)
        f = self.act(self.bn1(self.conv1(torch.cat([z_h, z_w], dim=2))))  # (B, mip, H + W, 1)
        f_h, f_w = torch.split(f, [height, width], dim=2)  # (B, mip, H, 1), (B, mip, W, 1)
        a_h = self.h(f_h)  # (B, C, H, 1)
        a_w = self.w(f_w.transpose(2, 3))  # (B, C, 1, W)
        return x * a_w * a_h  # (B, C, H, W)

    def extra_repr(self):
        return f"channels={self.channels}, hidden={self.hidden}"
