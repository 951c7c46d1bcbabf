"""Global context (GC) block: one attention map per image pools the context, a bottleneck transforms it.

Cao, Xu, Lin, Wei and Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
ICCV Workshops 2019 / TPAMI 2020, https://arxiv.org/abs/1904.11492. Official code:
https://github.com/xvjiarui/GCNet (``mmdet/ops/ct/context_block.py``, ``ContextBlock2d``, built in
``mmdet/models/backbones/resnet.py``), the same block as mmdetection's ``ContextBlock``
(``mmdet/ops/gcb/context_block.py`` in mmdetection 1.x, today ``mmcv/cnn/bricks/context_block.py``).

The non-local block computes one attention map per query position, (HW)^2 weights per image; the GCNet
paper observes that these maps are almost the same for every query and keeps one, computed without a
query. The GC block, for an input x with positions j = 1..HW and p = C // r hidden channels::

    alpha_j = exp(W_k x_j) / sum_m exp(W_k x_m)     (B, 1, HW): conv_mask, a 1x1 conv C -> 1; softmax over j
    c = sum_j alpha_j x_j                           (B, C, 1, 1): attention pooling (context modelling)
    t = W_v2 ReLU(LN(W_v1 c))                       (B, C, 1, 1): 1x1 convs C -> p -> C, LayerNorm over (p, 1, 1)
    z_i = x_i + t                                   (B, C, H, W): the same vector added at every position

The three steps are the paper's general framework: context modelling (attention pooling, or SE's average
pooling ``pooling="avg"``), transform (the bottleneck, with or without LayerNorm) and fusion (``channel_add``
above, or ``channel_mul``: z = x * sigmoid(t), SE's scaling). With ``pooling="avg"``,
``fusions=("channel_mul",)`` and ``layer_norm=False`` the block *is* SE (Hu et al. 2018): same equations,
same parameters; ``tests/test_attention_gc.py`` checks it with copied weights.

What we read in the official code (both versions agree) and follow:

- ``planes = int(C * ratio)`` (GCNet's resnet.py, mmdetection's ContextBlock) with ratio 1/16 (the
  configs' r16; r4 is also released). We take the reduction r as the other attentions of the course
  do: p = C // r (the same for every C of ResNet-50);
- conv_mask is ``Conv2d(C, 1, 1)`` *with* a bias, kaiming-normal initialised (fan_in, bias 0). The bias
  shifts every logit alike and cancels in the softmax, but it is a parameter (one per block, counted in
  GC-ResNet-50's 28,078,773);
- the softmax runs over the HW positions of each image (``nn.Softmax(dim=2)`` on (B, 1, HW)): our
  ``self.gate``, recorded by :class:`attn_course.models.AttentionRecorder` as (B, 1, HW), summing to 1;
- each fusion branch is ``Conv2d(C, p, 1)``, ``LayerNorm([p, 1, 1])`` (normalises the p values of the one
  context vector, with a scale and a shift per channel), ``ReLU``, ``Conv2d(p, C, 1)``, every conv with a
  bias. The last conv of each branch starts at zero, weight and bias (``last_zero_init``): with
  ``channel_add`` the block starts as the identity, z = x; with ``channel_mul`` it starts as x * 0.5;
- ``channel_mul`` uses ``torch.sigmoid``; when both fusions are given the code multiplies first and adds
  second, whatever their order in the tuple, and so do we. The branches keep the official names
  (``conv_mask``, ``channel_add_conv``, ``channel_mul_conv``, indices 0, 1, 3 inside each), so an official
  state dict loads by name.

Where the paper and the code differ, we follow the code: the paper's equations have no biases (the code's
1x1 convs all have one), and the paper writes the transform on the pooled vector without saying that the
last layer starts at zero. ``layer_norm=False`` is ours, not the code's: an ``nn.Identity`` takes the
LayerNorm's place, so that the SE member of the family can be built and compared.

Placement: the paper puts a GC block in every residual block of c3-c5 (torchvision's layer2 to layer4),
after the last 1x1 convolution and its BatchNorm, before the addition (the code's ``after_1x1``,
mmdetection's ``after_conv3`` plugin): SE-ResNet's slot, which :func:`attn_course.models.add_attention`
and the course's ResNet use. With r = 16, GC-ResNet-50 has 28,078,773 parameters, the paper's 28.08M.

Parameters of one block: ``C + 1`` for conv_mask (``pooling="att"``), and for each fusion
``2 C p + C + p`` for the two convs plus ``2 p`` for the LayerNorm.
"""

import torch
from torch import nn

from ._validate import check_bool, check_channels, check_input, check_reduction

POOLINGS = ("att", "avg")
FUSIONS = ("channel_add", "channel_mul")


def _check_pooling(pooling):
    if not isinstance(pooling, str) or pooling not in POOLINGS:
        raise ValueError(
            f"GlobalContext: pooling must be 'att' (attention pooling: a 1x1 conv to one channel and a softmax "
            f"over positions, the GC block) or 'avg' (global average pooling, as in SE), got {pooling!r}."
        )
    return pooling


def _check_fusions(fusions):
    hint = "such as ('channel_add',) (the GC block), ('channel_mul',) (SE's scaling) or both"
    if isinstance(fusions, str) or not isinstance(fusions, (tuple, list)):
        raise ValueError(f"GlobalContext: fusions must be a tuple of fusion names, {hint}; got {fusions!r}"
                         + (": write it as a tuple, (name,)." if isinstance(fusions, str) else "."))
    if not fusions:
        raise ValueError(f"GlobalContext: fusions is empty, so the context would never reach the output. "
                         f"Name at least one, {hint}.")
    unknown = [f for f in fusions if not isinstance(f, str) or f not in FUSIONS]
    if unknown:
        raise ValueError(f"GlobalContext: unknown fusion {unknown[0]!r}. Valid names: 'channel_add' (z = x + t) "
                         f"and 'channel_mul' (z = x * sigmoid(t)).")
    if len(set(fusions)) != len(fusions):
        raise ValueError(f"GlobalContext: fusions names {tuple(fusions)!r}; name each fusion at most once.")
    return tuple(fusions)


class GlobalContext(nn.Module):
    """Global context block: ``x + W_v2 ReLU(LN(W_v1 sum_j softmax_j(W_k x_j) x_j))``.

    Args:
        channels: C, the number of input channels.
        reduction: r, the transform's hidden width is ``channels // reduction`` (official: 16).
        pooling: ``"att"`` (official: attention pooling, a softmax over positions) or ``"avg"``
            (global average pooling, as in SE).
        fusions: a tuple of ``"channel_add"`` (official default) and/or ``"channel_mul"``.
        layer_norm: the LayerNorm inside each transform (official: always there); False gives SE's
            plain bottleneck.

    Shapes: (B, C, H, W) -> (B, C, H, W). Gate (``pooling="att"`` only): ``self.gate`` gives the
    attention map (B, 1, H * W), summing to 1 over dim 2. With ``pooling="avg"`` there is no gate:
    every position weighs 1 / HW.
    """

    def __init__(self, channels, reduction=16, pooling="att", fusions=("channel_add",), layer_norm=True):
        super().__init__()
        channels = check_channels(channels, "GlobalContext")
        reduction = check_reduction(channels, reduction, "GlobalContext")
        check_bool(layer_norm, "layer_norm", "GlobalContext")
        self.channels, self.hidden = channels, channels // reduction
        self.pooling, self.fusions, self.layer_norm = _check_pooling(pooling), _check_fusions(fusions), layer_norm
        if self.pooling == "att":
            self.conv_mask = nn.Conv2d(channels, 1, 1)  # W_k: one logit per position
            self.gate = nn.Softmax(dim=2)  # over the HW positions of (B, 1, HW)
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        self.channel_add_conv = self._transform() if "channel_add" in self.fusions else None
        self.channel_mul_conv = self._transform() if "channel_mul" in self.fusions else None

    def _transform(self):
        """W_v2 ReLU(LN(W_v1 c)), its last conv zero-initialised as in the official code."""
        transform = nn.Sequential(
            nn.Conv2d(self.channels, self.hidden, 1),  # W_v1: (B, p, 1, 1)
            nn.LayerNorm([self.hidden, 1, 1]) if self.layer_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.hidden, self.channels, 1),  # W_v2: (B, C, 1, 1)
        )
        nn.init.zeros_(transform[-1].weight)
        nn.init.zeros_(transform[-1].bias)
        return transform

    def context(self, x):
        """Context modelling: the pooled context vector (B, C, 1, 1)."""
        if self.pooling == "avg":
            return x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        alpha = self.gate(self.conv_mask(x).flatten(2))  # (B, 1, HW), sums to 1 over the positions
        return (x.flatten(2) @ alpha.transpose(1, 2))[..., None]  # sum_j alpha_j x_j: (B, C, 1, 1)

    def forward(self, x):
        check_input(x, self.channels, "GlobalContext", next(self.parameters()))
        c = self.context(x)  # (B, C, 1, 1)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(c))  # scaling, as SE: (B, C, H, W)
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(c)  # the same vector at every position: (B, C, H, W)
        return out

    def extra_repr(self):
        return (f"channels={self.channels}, hidden={self.hidden}, pooling={self.pooling!r}, "
                f"fusions={self.fusions}, layer_norm={self.layer_norm}")
