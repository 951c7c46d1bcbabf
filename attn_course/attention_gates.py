"""The additive attention gate of Attention U-Net: a skip connection filtered by a coarser gating signal.

Oktay, Schlemper, Le Folgoc, Lee, Heinrich, Misawa, Mori, McDonagh, Hammerla, Kainz, Glocker and
Rueckert, "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
https://arxiv.org/abs/1804.03999. Official code: https://github.com/ozan-oktay/Attention-Gated-Networks,
``models/layers/grid_attention_layer.py``, class ``_GridAttentionBlockND``, mode ``'concatenation'``.

A skip connection x (B, C_x, H, W) of a U-Net is gated by g (B, C_g, H/s, W/s), the decoder's
feature one level coarser, with s = ``sub_sample_factor``::

    theta_x = theta(x)                      (B, C_i, H/s, W/s): s x s conv, stride s, no bias
    phi_g   = phi(g)                        (B, C_i, H/s, W/s): 1x1 conv with bias (b_g)
    q       = psi(ReLU(theta_x + phi_g))    (B, 1, H/s, W/s):   1x1 conv to one channel, bias b_psi
    alpha   = sigmoid(q)                    (B, 1, H/s, W/s):   ``self.gate``, recorded
    alpha   = upsample(alpha)               (B, 1, H, W):       bilinear, to x's size
    y       = W(alpha * x)                  (B, C_x, H, W):     1x1 conv with bias, then BatchNorm

The official defaults, kept here: ``inter_channels = C_x // 2`` (at least 1) and
``sub_sample_factor = 2``. BatchNorm sits only in the output transform W; theta, phi and psi have
none. (The official Attention U-Net network, ``unet_CT_single_att_dsv_3D``, passes
``inter_channels = C_x`` explicitly and follows each gate by a 1x1 conv-BN-ReLU, its
``MultiAttentionBlock.combine_gates``; neither is part of the gate, so neither is here.)

Paper and code differ in one place, and we follow the code: the paper (Sec. 2) calls W_x a linear
transformation computed by a 1x1x1 convolution, while the code's theta is an s x s convolution with
stride s, which both projects x and brings it to g's grid. The code resizes phi(g) to theta(x)'s grid
whatever its size (``F.upsample``); in Attention U-Net the two grids already agree, and here they must:
a g on another grid raises an error. That catches the known trap of some re-implementations, which
feed the decoder feature *after* upsampling it to x's scale, so that the "coarser" gating signal is
not coarser at all. The official ``F.upsample`` calls name no ``align_corners``; we use
``align_corners=False``, PyTorch's default since 0.4. Weights keep PyTorch's default initialisation
(the official code draws them with Kaiming's normal initialisation).

Why this is not in the registry (:mod:`attn_course.attention`): every registered module maps one
input (B, C, H, W) to (B, C, H, W) and fits an attention slot of the course's ResNet. The gate takes
*two* inputs, the skip connection and the gating signal from another level, so it only fits a
network with two paths, an encoder-decoder such as :class:`attn_course.unet.UNet`.
"""

import torch.nn.functional as F
from torch import nn

from .attention._validate import check_channels, check_input, is_int


class AttentionGate(nn.Module):
    """Additive attention gate: ``W(upsample(sigmoid(psi(ReLU(theta(x) + phi(g))))) * x)``.

    Args:
        channels: C_x, channels of the skip connection x (and of the output).
        gating_channels: C_g, channels of the gating signal g.
        inter_channels: C_i, channels of the sum theta(x) + phi(g); official default C_x // 2 (at least 1).
        sub_sample_factor: s, the stride (and kernel size) of theta; g must be s times coarser than x
            (official default 2).

    Shapes: x (B, C_x, H, W) and g (B, C_g, H / s, W / s) -> (B, C_x, H, W); H and W divisible by s.
    Gate: ``self.gate`` gives alpha (B, 1, H / s, W / s), before its upsampling to (H, W).
    """

    def __init__(self, channels, gating_channels, inter_channels=None, sub_sample_factor=2):
        super().__init__()
        name = "AttentionGate"
        self.channels = check_channels(channels, name)
        if not is_int(gating_channels) or gating_channels < 1:
            raise ValueError(f"{name}: gating_channels must be a positive int (the C of the gating signal g), "
                             f"got {gating_channels!r}.")
        if inter_channels is None:
            inter_channels = max(self.channels // 2, 1)  # official default
        if not is_int(inter_channels) or inter_channels < 1:
            raise ValueError(f"{name}: inter_channels must be a positive int or None (C // 2), got {inter_channels!r}.")
        if not is_int(sub_sample_factor) or sub_sample_factor < 1:
            raise ValueError(f"{name}: sub_sample_factor must be a positive int (official: 2, g one level coarser "
                             f"than x), got {sub_sample_factor!r}.")
        self.gating_channels, self.inter_channels = int(gating_channels), int(inter_channels)
        self.sub_sample_factor = s = int(sub_sample_factor)
        self.theta = nn.Conv2d(self.channels, self.inter_channels, s, stride=s, bias=False)
        self.phi = nn.Conv2d(self.gating_channels, self.inter_channels, 1)
        self.psi = nn.Conv2d(self.inter_channels, 1, 1)
        self.gate = nn.Sigmoid()
        self.W = nn.Sequential(nn.Conv2d(self.channels, self.channels, 1), nn.BatchNorm2d(self.channels))

    def forward(self, x, g):
        self._check(x, g)
        f = F.relu(self.theta(x) + self.phi(g))  # (B, C_i, H/s, W/s)
        alpha = self.gate(self.psi(f))  # (B, 1, H/s, W/s)
        alpha = F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)
        return self.W(alpha * x)  # (B, C_x, H, W)

    def _check(self, x, g):
        name, s = "AttentionGate", self.sub_sample_factor
        check_input(x, self.channels, f"{name} (skip connection x)", self.theta.weight)
        check_input(g, None, f"{name} (gating signal g)", self.phi.weight)
        if g.shape[1] != self.gating_channels:
            raise ValueError(f"{name} was built for a gating signal of {self.gating_channels} channels but g has "
                             f"{g.shape[1]} (shape {tuple(g.shape)}). Build it with gating_channels={g.shape[1]}, "
                             f"or feed it the decoder feature of the level below.")
        if x.shape[0] != g.shape[0]:
            raise ValueError(f"{name}: x and g must hold the same images, got batches of {x.shape[0]} and "
                             f"{g.shape[0]}.")
        height, width = x.shape[-2:]
        if height % s or width % s:
            raise ValueError(f"{name}: the skip connection's size {height}x{width} must be divisible by "
                             f"sub_sample_factor={s}.")
        if tuple(g.shape[-2:]) != (height // s, width // s):
            raise ValueError(
                f"{name}: the gating signal g is {g.shape[-2]}x{g.shape[-1]} but must be {s} times coarser than "
                f"the skip connection x ({height}x{width}), i.e. {height // s}x{width // s}. Pass the decoder's "
                f"feature from the level below *before* upsampling it (an already-upsampled g is a known "
                f"mistake), or set sub_sample_factor to the ratio of the two scales."
            )

    def extra_repr(self):
        return (f"channels={self.channels}, gating_channels={self.gating_channels}, "
                f"inter_channels={self.inter_channels}, sub_sample_factor={self.sub_sample_factor}")


__all__ = ["AttentionGate"]
