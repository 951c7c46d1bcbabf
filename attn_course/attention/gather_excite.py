"""Gather-Excite (GE): GE-theta-minus, GE-theta and GE-theta-plus.

Hu, Shen, Albanie, Sun and Vedaldi, "Gather-Excite: Exploiting Feature Context in Convolutional
Neural Networks", NeurIPS 2018, https://arxiv.org/abs/1810.12348.
Official code (Caffe model definitions): https://github.com/hujie-frank/GENet; the PyTorch
version of timm (``timm/layers/gather_excite.py``) covers every extent and was used to check details.
"""

import torch.nn.functional as F
from torch import nn

from ._validate import check_bool, check_channels, check_input, check_reduction, is_int


def _check_extent(extent):
    if not is_int(extent) or extent < 0 or (extent & (extent - 1)):
        raise ValueError(
            f"GatherExcite: extent must be 0 (global) or a power of two such as 2, 4 or 8 (each gathered "
            f"value summarises a neighbourhood about that many pixels apart), got {extent!r}."
        )
    if extent == 1:
        raise ValueError("GatherExcite: extent=1 gathers nothing (each pixel gates itself); use 2 or more, "
                         "or 0 for global.")
    return int(extent)


def _check_feature_size(feature_size):
    size = (feature_size, feature_size) if is_int(feature_size) else feature_size
    if not isinstance(size, (tuple, list)) or len(size) != 2 or any(not is_int(s) or s < 1 for s in size):
        raise ValueError(f"GatherExcite: feature_size must be a positive int H or a pair (H, W) of positive ints, "
                         f"the size of the feature maps the module will see; got {feature_size!r}.")
    return tuple(int(s) for s in size)


class GatherExcite(nn.Module):
    """Gather context over a spatial extent, then excite: ``x * sigmoid(upsample(excite(gather(x))))``.

    Gather: each channel is summarised over neighbourhoods of extent ``e`` (``e = 0``: the whole map).

    - GE-theta-minus (``extra_params=False``): parameter-free average pooling; global average
      pooling for ``e = 0``, else windows of ``2e - 1`` pixels with stride ``e`` (padding not
      counted), the footprint of the strided convolutions of GE-theta.
    - GE-theta (``extra_params=True``): depth-wise convolutions, each followed by BatchNorm. For
      ``e = 0`` one convolution as large as the feature map (``feature_size``), as in the
      official Caffe models; else ``log2(e)`` 3x3 convolutions of stride 2, with a ReLU between
      consecutive ones.

    Excite: GE-theta-plus (``use_mlp=True``) adds SE's bottleneck of two 1x1 convolutions
    (``C -> C / reduction -> C``, with biases). The gathered map is then resized back to the input's
    size by nearest-neighbour interpolation, passed through the sigmoid ``self.gate`` and multiplied
    with the input. With ``e = 0`` and no parameters, GE is SE without its MLP: ``x * sigmoid(mean(x))``.

    Args:
        channels: C, the number of input channels.
        extent: e, 0 for global or a power of two >= 2.
        extra_params: use depth-wise convolutions for the gather (GE-theta) instead of pooling.
        use_mlp: add the 1x1-convolution bottleneck to the excite (GE-theta-plus).
        reduction: r of the bottleneck (only with ``use_mlp``; default 16).
        feature_size: H (or (H, W)) of the input; needed only for a global gather with parameters.

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate, recorded by hooks on ``self.gate``, is
    (B, C, 1, 1) for a global extent and (B, C, H, W) otherwise.
    """

    def __init__(self, channels, extent=0, extra_params=False, use_mlp=False, reduction=None, feature_size=None):
        super().__init__()
        channels = check_channels(channels, "GatherExcite")
        extent = _check_extent(extent)
        check_bool(extra_params, "extra_params", "GatherExcite")
        check_bool(use_mlp, "use_mlp", "GatherExcite")
        if reduction is not None and not use_mlp:
            raise ValueError(f"GatherExcite: reduction={reduction!r} is used only by the MLP of GE-theta-plus, and "
                             f"use_mlp is False, so it would be ignored: pass use_mlp=True, or drop reduction.")
        if feature_size is not None and not (extra_params and extent == 0):
            raise ValueError(f"GatherExcite: feature_size={feature_size!r} is used only by a global gather with "
                             f"parameters (extent=0, extra_params=True), so it would be ignored here: drop it.")
        self.channels, self.extent, self.extra_params = channels, extent, extra_params
        self.gather = None
        if extra_params and extent == 0:
            if feature_size is None:
                raise ValueError("GatherExcite: a global gather with parameters (extent=0, extra_params=True) "
                                 "is a depth-wise convolution as large as the feature map: pass feature_size=H.")
            size = _check_feature_size(feature_size)
            self.feature_size = size
            self.gather = nn.Sequential(nn.Conv2d(channels, channels, size, groups=channels, bias=False),
                                        nn.BatchNorm2d(channels))
        elif extra_params:
            layers = []
            for i in range(extent.bit_length() - 1):  # log2(extent) stride-2 convolutions
                if i > 0:
                    layers.append(nn.ReLU(inplace=True))
                layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False),
                           nn.BatchNorm2d(channels)]
            self.gather = nn.Sequential(*layers)
        self.mlp = nn.Identity()
        if use_mlp:
            reduction = check_reduction(channels, 16 if reduction is None else reduction, "GatherExcite")
            hidden = channels // reduction
            self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(hidden, channels, 1))
        self.gate = nn.Sigmoid()

    def _gather(self, x):
        if self.gather is not None:
            if self.extent == 0 and tuple(x.shape[-2:]) != self.feature_size:
                raise ValueError(f"GatherExcite was built for {self.feature_size} feature maps (feature_size) "
                                 f"but got {tuple(x.shape[-2:])}.")
            return self.gather(x)  # depth-wise convolutions: (B, C, h, w)
        if self.extent == 0:
            return x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        e = self.extent
        return F.avg_pool2d(x, 2 * e - 1, stride=e, padding=e - 1, count_include_pad=False)  # (B, C, H/e, W/e)

    def forward(self, x):
        check_input(x, self.channels, "GatherExcite")
        context = self.mlp(self._gather(x))  # (B, C, h, w)
        if context.shape[-2:] != (1, 1):
            context = F.interpolate(context, size=x.shape[-2:], mode="nearest")  # (B, C, H, W)
        return x * self.gate(context)  # (B, C, H, W)

    def extra_repr(self):
        return f"channels={self.channels}, extent={self.extent or 'global'}"
