"""A small U-Net for Cluttered Digits, with or without the attention gates of Attention U-Net.

U-Net: Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, https://arxiv.org/abs/1505.04597. Attention gates: Oktay et al.,
"Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, https://arxiv.org/abs/1804.03999
(:class:`attn_course.attention_gates.AttentionGate`).

The layout follows the official Attention U-Net (ozan-oktay/Attention-Gated-Networks,
``unet_CT_single_att_dsv_3D``) in 2-D and in small: at every level two 3x3 conv-BN-ReLU layers
(the official ``UnetConv3``), 2x2 max-pooling between levels, and a decoder that upsamples the coarser
feature bilinearly (the official ``UnetUp3_CT`` upsamples trilinearly with ``nn.Upsample``, not with a
transposed convolution; the network's ``is_deconv`` argument is stored but unused), concatenates it with
the skip connection and applies two 3x3 conv-BN-ReLU layers. With ``gates=True`` each skip connection
passes through an attention gate first, gated by the decoder's feature of the level below *before* it
is upsampled (at the bottom, the bottleneck's feature), as in the official network.

Deviations from the official network, said here: it leaves its finest skip connection ungated
(``up1 = self.up_concat1(conv1, up2)``) and gates only the coarser ones, while this U-Net gates every
skip connection, the finest included; it passes ``inter_size = in_size`` to its gates (C_i = C_x),
while this U-Net keeps the gate's default C_i = C_x // 2 unless ``inter_channels`` is given. Left out:
its deep supervision (class scores from every decoder level) and its 1x1 conv-BN-ReLU on the gating
signal and after each gate. The convolutions here have no bias (the BatchNorm after each has one).

Trained as :class:`attn_course.segmentation.SegmentationNet` is: :func:`attn_course.train.fit` with
its default per-pixel cross-entropy, on :func:`attn_course.segmentation.make_segmentation_loaders`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .attention._validate import check_bool, is_int
from .attention_gates import AttentionGate
from .segmentation import NUM_CLASSES, check_images


def conv_block(in_channels, out_channels):
    """Two 3x3 conv-BN-ReLU layers, the size kept: one U-Net level."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A U-Net of ``len(widths)`` levels; ``gates=True`` puts an attention gate on every skip connection.

    Args:
        gates: False for a plain U-Net, True for Attention U-Net's gated skip connections.
        widths: channels per level, finest first; each level halves the resolution (default 8, 16
            and 32 channels at 32, 16 and 8 pixels for 32 x 32 images: a training step costs about as
            much as one of :class:`~attn_course.segmentation.SegmentationNet`, whose encoder has 16, 32
            and 64 channels at 32, 16 and 8 pixels but one convolution at full resolution, not four).
        num_classes: classes per pixel (11 for Cluttered Digits).
        in_channels: image channels.
        inter_channels: passed to every :class:`~attn_course.attention_gates.AttentionGate`
            (None: C // 2 of the skip connection, the default of the official gate block; the official
            network passes C itself).

    Shapes: (B, in_channels, H, W) -> logits (B, num_classes, H, W); H and W divisible by
    2 ** (len(widths) - 1). Gates: ``attention_gates.i.gate`` gives alpha (B, 1, H / 2 ** (i + 1),
    W / 2 ** (i + 1)) for the skip connection of level i (0 the finest).
    """

    def __init__(self, gates=False, widths=(8, 16, 32), num_classes=NUM_CLASSES, in_channels=1, inter_channels=None):
        super().__init__()
        check_bool(gates, "gates", "UNet")
        widths = tuple(widths) if isinstance(widths, (tuple, list)) else widths
        if not isinstance(widths, tuple) or len(widths) < 2 or not all(is_int(w) and w > 0 for w in widths):
            raise ValueError(f"UNet: widths must give 2 or more positive ints (channels per level, finest first), "
                             f"got {widths!r}.")
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if not is_int(value) or value < 1:
                raise ValueError(f"UNet: {name} must be a positive int, got {value!r}.")
        if not gates and inter_channels is not None:
            raise TypeError("UNet: inter_channels sets the attention gates, but gates=False builds none: "
                            "pass gates=True, or drop inter_channels.")
        self.in_channels, self.widths = in_channels, widths
        self.encoders = nn.ModuleList(conv_block(c_in, c_out) for c_in, c_out in zip((in_channels, *widths), widths))
        self.decoders = nn.ModuleList(conv_block(widths[i] + widths[i + 1], widths[i]) for i in range(len(widths) - 1))
        self.attention_gates = nn.ModuleList(
            AttentionGate(widths[i], widths[i + 1], inter_channels) for i in range(len(widths) - 1)
        ) if gates else None
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        step = 2 ** (len(self.widths) - 1)
        check_images(x, self.in_channels, step, "UNet")
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else F.max_pool2d(x, 2))  # (B, widths[level], H / 2^level, W / 2^level)
            skips.append(x)
        g = skips.pop()  # the bottleneck: the first gating signal
        for level in reversed(range(len(self.decoders))):
            skip = skips[level]  # (B, widths[level], h, w)
            if self.attention_gates is not None:
                skip = self.attention_gates[level](skip, g)  # g at (h/2, w/2), before its upsampling
            up = F.interpolate(g, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            g = self.decoders[level](torch.cat([skip, up], 1))  # (B, widths[level], h, w)
        return self.classifier(g)  # (B, num_classes, H, W)


__all__ = ["UNet", "conv_block"]
