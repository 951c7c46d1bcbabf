"""Point-wise Spatial Attention (PSA), the module of PSANet.

Zhao, Zhang, Liu, Shi, Loy, Lin and Jia, "PSANet: Point-wise Spatial Attention Network for Scene
Parsing", ECCV 2018, https://hszhao.github.io/papers/eccv18_psanet.pdf. Official code:
https://github.com/hszhao/PSANet (Caffe) and https://github.com/hszhao/semseg (PyTorch:
``model/psanet.py`` and the ``PSAMask`` operator in ``lib/psa``).

Every position predicts an *over-complete* map of (2H-1) x (2W-1) weights, one per relative
offset, centred on itself; cropping the H x W window that overlaps the feature map gives its
attention over all positions. :func:`psa_mask` does the crop for every position at once, in
plain PyTorch (the official operator is a compiled C++/CUDA kernel).
"""

import torch
from torch import nn

from ._validate import check_channels, check_input, check_reduction, is_int

MODES = ("collect", "distribute")


def _pair(size, name):
    if is_int(size):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2 or any(not is_int(s) or s < 1 for s in size):
        raise ValueError(f"{name} must be a positive int or a pair (H, W) of positive ints, got {size!r}.")
    return tuple(int(s) for s in size)


def _crop_index(height, width, device):
    """Channel of the over-complete map that links centre (h, w) to position q: (H*W, H, W).

    The centre's own offset sits at (H-1, W-1) of its (2H-1) x (2W-1) map, so position
    q = (qy, qx) is read from row qy - h + H - 1 and column qx - w + W - 1.
    """
    qy = torch.arange(height, device=device)[:, None, None, None]
    qx = torch.arange(width, device=device)[None, :, None, None]
    h = torch.arange(height, device=device)[None, None, :, None]
    w = torch.arange(width, device=device)[None, None, None, :]
    row, col = qy - h + height - 1, qx - w + width - 1  # (H, 1, H, 1) and (1, W, 1, W)
    return (row * (2 * width - 1) + col).reshape(height * width, height, width)


def psa_mask(x, mode):
    """Crop each position's over-complete map to the H x W feature map (the ``PSAMask`` operator).

    Args:
        x: (B, (2H-1)(2W-1), H, W); channel ``a * (2W-1) + b`` of position (h, w) is the weight
            for relative offset ``(a - (H-1), b - (W-1))``.
        mode: ``"collect"``: position p = (h, w) predicted how much it gathers from each q; the
            result ``out[b, q, h, w]`` is ``x[b, offset(q - p), h, w]``. ``"distribute"``:
            position p predicted how much it sends to each q; the result is the transpose,
            ``out.view(B, HW, HW)[b, p, q]`` holds the same value.

    Returns:
        (B, H*W, H, W). In both modes, viewed as (B, HW, HW), entry [q, p] is the weight of
        source q in the output at p, so ``torch.bmm(features.view(B, C, HW), out.view(B, HW, HW))``
        aggregates, as in the official ``model/psanet.py``.
    """
    if mode not in MODES:
        raise ValueError(f"psa_mask: mode must be 'collect' or 'distribute', got {mode!r}.")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"psa_mask expects a 4-D tensor (B, (2H-1)(2W-1), H, W), got {shape}.")
    batch, channels, height, width = x.shape
    expected = (2 * height - 1) * (2 * width - 1)
    if channels != expected:
        raise ValueError(
            f"psa_mask: a {height} x {width} feature map needs (2H-1)(2W-1) = {2 * height - 1} * "
            f"{2 * width - 1} = {expected} channels (one per relative offset), got {channels}."
        )
    index = _crop_index(height, width, x.device).expand(batch, -1, -1, -1)  # (B, HW, H, W)
    out = torch.gather(x, 1, index)  # collect: out[b, q, h, w], centre p = (h, w)
    if mode == "distribute":
        n = height * width
        out = out.reshape(batch, n, n).transpose(1, 2).reshape(batch, n, height, width)
    return out


def _conv_bn_relu(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


class PointwiseSpatialAttentionBranch(nn.Module):
    """One branch of PSA ("collect" or "distribute"): predict, crop, softmax, aggregate.

    As ``PSA`` in the official ``model/psanet.py``: ``reduce`` (1x1 conv-BN-ReLU to ``hidden``
    channels), then ``attention`` (1x1 conv-BN-ReLU, 1x1 conv to (2Hm-1)(2Wm-1) channels, no
    bias), :func:`psa_mask`, a softmax over the source positions (``self.gate``) and a batched
    matrix product with the reduced features.

    Args:
        channels: C of the input.
        hidden: channels after the reduction.
        feature_size: (Hm, Wm), the largest feature map the branch handles.
        mode: "collect" or "distribute".

    Shapes: (B, C, H, W) -> (B, hidden, H, W); the gate's output is (B, H*W, H, W), where
    ``gate_out[b, q, h, w]`` is the weight of source q in the output at (h, w).
    """

    def __init__(self, channels, hidden, feature_size, mode):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be 'collect' or 'distribute', got {mode!r}.")
        self.mode = mode
        self.feature_size = _pair(feature_size, "feature_size")
        height, width = self.feature_size
        self.reduce = _conv_bn_relu(channels, hidden)
        self.attention = nn.Sequential(
            _conv_bn_relu(hidden, hidden), nn.Conv2d(hidden, (2 * height - 1) * (2 * width - 1), 1, bias=False)
        )
        self.gate = nn.Softmax(dim=1)

    def over_complete(self, z):
        """The over-complete maps of the reduced features z, cropped to z's size: (B, (2H-1)(2W-1), H, W)."""
        height, width = z.shape[-2:]
        max_h, max_w = self.feature_size
        maps = self.attention(z)  # (B, (2Hm-1)(2Wm-1), H, W)
        if (height, width) != (max_h, max_w):  # keep the central offsets |dy| < H, |dx| < W
            maps = maps.unflatten(1, (2 * max_h - 1, 2 * max_w - 1))
            maps = maps[:, max_h - height : max_h + height - 1, max_w - width : max_w + width - 1]
            maps = maps.flatten(1, 2)
        return maps

    def forward(self, x):
        z = self.reduce(x)  # (B, hidden, H, W)
        batch, hidden, height, width = z.shape
        a = self.gate(psa_mask(self.over_complete(z), self.mode))  # (B, HW, H, W), sums to 1 over dim 1
        out = torch.bmm(z.flatten(2), a.flatten(2))  # (B, hidden, HW)
        return out.view(batch, hidden, height, width)


class PointwiseSpatialAttention(nn.Module):
    """Point-wise spatial attention (PSA): collect and distribute branches, projected and fused.

    Each branch (:class:`PointwiseSpatialAttentionBranch`) lets every position attend to every
    other through its own predicted map; the two results are concatenated and projected back to
    C channels (1x1 conv-BN-ReLU, ``self.project``), as in the official code. The official
    network then concatenates this context with the input and lets its 3x3 classifier conv fuse
    the 2C channels. To be a (B, C, H, W) -> (B, C, H, W) module that fits any slot, we fuse here
    with a 1x1 conv (2C -> C, no bias) and a BatchNorm (``self.fuse``).

    Differences from the official defaults: no ``shrink_factor`` (the official code halves the
    feature map before the attention and upsamples after; we attend at the input's resolution)
    and the output is fused as said above. The softmax over each map is the official default
    (``psa_softmax=True``, ``normalization_factor=1``).

    Input size: the predicted maps have (2Hm-1)(2Wm-1) channels for ``feature_size`` (Hm, Wm),
    fixed at construction as in the official ``mask_h, mask_w``. Smaller inputs use the central
    (2H-1)(2W-1) offsets, which is what the official kernel does with a larger mask; larger
    inputs raise a ValueError.

    Args:
        channels: C, the number of input channels.
        reduction: the branches work on ``channels // reduction`` channels (official: 2048 -> 512,
            i.e. 4).
        feature_size: Hm or (Hm, Wm), the largest feature map the module handles (default 8: the
            last stage of the course's ResNet on 32 x 32 images).

    Shapes: (B, C, H, W) -> (B, C, H, W) for H <= Hm, W <= Wm; the gates ``collect.gate`` and
    ``distribute.gate`` output (B, H*W, H, W), each column summing to 1 over dim 1.
    """

    def __init__(self, channels, reduction=4, feature_size=8):
        super().__init__()
        channels = check_channels(channels, "PointwiseSpatialAttention")
        reduction = check_reduction(channels, reduction, "PointwiseSpatialAttention")
        self.channels = channels
        self.feature_size = _pair(feature_size, "PointwiseSpatialAttention: feature_size")
        hidden = channels // reduction
        self.collect = PointwiseSpatialAttentionBranch(channels, hidden, self.feature_size, "collect")
        self.distribute = PointwiseSpatialAttentionBranch(channels, hidden, self.feature_size, "distribute")
        self.project = _conv_bn_relu(2 * hidden, channels)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        check_input(x, self.channels, "PointwiseSpatialAttention", self.fuse[0].weight)
        self._check_size(x)
        context = self.project(torch.cat([self.collect(x), self.distribute(x)], 1))  # (B, C, H, W)
        return self.fuse(torch.cat([x, context], 1))  # (B, C, H, W)

    def _check_size(self, x):
        (height, width), (max_h, max_w) = x.shape[-2:], self.feature_size
        if height > max_h or width > max_w:
            raise ValueError(
                f"PointwiseSpatialAttention was built for feature maps up to {max_h} x {max_w} "
                f"(feature_size={self.feature_size}) but got {height} x {width}. Build it with "
                f"feature_size=({height}, {width}): it then predicts (2H-1)(2W-1) = "
                f"{(2 * height - 1) * (2 * width - 1)} weights per position; or apply it at a "
                f"lower-resolution stage."
            )


__all__ = ["psa_mask", "PointwiseSpatialAttention", "PointwiseSpatialAttentionBranch"]
