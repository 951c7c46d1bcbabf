"""Efficient Channel Attention (ECA).

Wang, Wu, Zhu, Li, Zuo and Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020, https://arxiv.org/abs/1910.03151.
Official code: https://github.com/BangguWu/ECANet.
"""

import math
import numbers

from torch import nn

from ._validate import check_channels, check_input, is_int


def eca_kernel_size(channels, gamma=2, b=1):
    """The adaptive kernel size k = psi(C) = |log2(C) / gamma + b / gamma|_odd of the ECA paper.

    Computed as the authors' PyTorch listing of ECA does (Fig. 3 of the CVPR paper):
    ``t = int(abs((log2(C) + b) / gamma))``, then ``t`` if it is odd, else ``t + 1``. ``int``
    truncates, so "nearest odd" means "the odd number at or just above the truncated value":
    psi(64) = 3, psi(256) = 5, psi(2048) = 7.
    """
    channels = check_channels(channels, "eca_kernel_size")
    for name, value in (("gamma", gamma), ("b", b)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"eca_kernel_size: {name} must be a number, got {value!r}.")
    if gamma <= 0:
        raise ValueError(f"eca_kernel_size: gamma must be positive, got {gamma!r}.")
    t = int(abs((math.log(channels, 2) + b) / gamma))
    return t if t % 2 else t + 1


class EfficientChannelAttention(nn.Module):
    """Channel attention from a 1-D convolution over the pooled channels: ``x * sigmoid(conv1d(avgpool(x)))``.

    Global average pooling gives one number per channel, as in SE. Instead of SE's bottleneck MLP,
    one bias-free 1-D convolution of size k slides along the channel axis (zero padding
    ``(k - 1) // 2`` keeps C outputs), so each gate depends on the k neighbouring channels and the
    module has only k weights, shared by all channels. By default k = psi(C)
    (:func:`eca_kernel_size`); ``kernel_size`` overrides it. The released ECA-ResNets pass k per
    stage by hand (the official ``eca_resnet50`` defaults to k = 3 everywhere; the published
    ECA-Net50 is "k3557").

    Args:
        channels: C, the number of input channels.
        gamma, b: the constants of psi (paper: gamma = 2, b = 1).
        kernel_size: an odd positive int to use instead of psi(C).

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate, recorded by hooks on ``self.gate``, is (B, C).
    """

    def __init__(self, channels, gamma=2, b=1, kernel_size=None):
        super().__init__()
        channels = check_channels(channels, "EfficientChannelAttention")
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, b)
        elif not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"EfficientChannelAttention: kernel_size must be an odd positive int (so that the "
                f"convolution is centred on each channel), got {kernel_size!r}; leave it None for psi(C)."
            )
        self.channels = channels
        self.kernel_size = kernel_size = int(kernel_size)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        check_input(x, self.channels, "EfficientChannelAttention", self.conv.weight)
        z = x.mean(dim=(2, 3))  # squeeze: (B, C)
        s = self.gate(self.conv(z[:, None, :])[:, 0])  # 1-D conv along the channels: (B, C)
        return x * s[:, :, None, None]  # scale: (B, C, H, W)

    def extra_repr(self):
        return f"channels={self.channels}, kernel_size={self.kernel_size}"
