"""Squeeze-and-Excitation (SE).

Hu, Shen, Albanie, Sun and Wu, "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2020,
https://arxiv.org/abs/1709.01507. Official code: https://github.com/hujie-frank/SENet.
"""

from torch import nn

from ._validate import check_channels, check_input, check_reduction


class SqueezeExcite(nn.Module):
    """Channel attention: ``x * sigmoid(W2 relu(W1 avgpool(x) + b1) + b2)``.

    Squeeze: global average pooling gives one number per channel (Eq. 2). Excitation: two
    fully-connected layers, with biases as in the paper and the official Caffe model, reduce
    to ``channels // reduction`` units and expand back, then a sigmoid (Eq. 3). Scale: each
    channel is multiplied by its gate (Eq. 4).

    Args:
        channels: C, the number of input channels.
        reduction: r, the reduction ratio of the hidden layer (paper default 16).

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate, recorded by hooks on ``self.gate``, is (B, C).
    """

    def __init__(self, channels, reduction=16):
        super().__init__()
        channels = check_channels(channels, "SqueezeExcite")
        reduction = check_reduction(channels, reduction, "SqueezeExcite")
        self.channels = channels
        hidden = channels // reduction
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        check_input(x, self.channels, "SqueezeExcite", self.fc1.weight)
        z = x.mean(dim=(2, 3))  # squeeze: (B, C)
        s = self.gate(self.fc2(self.relu(self.fc1(z))))  # excitation: (B, C)
        return x * s[:, :, None, None]  # scale: (B, C, H, W)
