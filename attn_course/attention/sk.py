"""Selective Kernel (SK) convolution: two kernel sizes, mixed per channel by a softmax across them.

Li, Wang, Hu and Yang, "Selective Kernel Networks", CVPR 2019, https://arxiv.org/abs/1903.06586.
Official code: https://github.com/implus/SKNet (Caffe prototxt).

SK is a convolution, not a gate after a BatchNorm: it replaces the 3x3 convolution of a residual
block. With M = 2 branches::

    U_1 = ReLU(BN(conv3x3(x)))                 (B, C, H, W): grouped, padding 1
    U_2 = ReLU(BN(conv3x3_dilation2(x)))       (B, C, H, W): grouped, padding 2, a 5x5 receptive field
    s = avgpool(U_1 + U_2)                     (B, C)                         Fuse (Eqs. 1-2)
    z = ReLU(BN(fc(s)))                        (B, d), d = max(C // r, L)     (Eq. 4)
    a_m = exp(A_m z) / (exp(A_1 z) + exp(A_2 z))   (B, C): softmax across the branches (Eq. 5)
    V = a_1 U_1 + a_2 U_2                      (B, C, H, W)                   Select (Eq. 6)

Details, as in the paper and the official code:

- the 5x5 branch is a 3x3 convolution with dilation 2 (paper, Sec. 3.1, "for further efficiency");
- both branches are grouped convolutions (official: 32 groups, ResNeXt-style) without bias, each
  followed by BatchNorm and ReLU. ``groups`` must divide ``channels``: on the course's 16-channel
  stage the official 32 groups are impossible, so the study uses 2 (8, 16 and 32 channels per group,
  inside the 4 to 32 of SKNet-50);
- fc is a 1x1 convolution C -> d without bias, then BatchNorm and ReLU; d = max(C // r, L) with the
  official r = 16, L = 32 (``reduction``, ``min_hidden``);
- the per-branch matrices A_m (d -> C) are one 1x1 convolution d -> M * C, reshaped to (B, M, C) as
  in the official code; no bias, as in Eq. 5.

The softmax runs across the branches, separately for each channel: a_1 + a_2 = 1 for every channel.
A popular re-implementation (xmu-xiaoma666/External-Attention-pytorch, issue #18) once took it over the
wrong dimension (the channels), so that the weights of one branch summed to 1 across channels
instead. Ours is ``nn.Softmax(dim=1)`` on a (B, M, C) tensor: dim 1 is the branch axis.

Ablations (the study's variants ``sk-sum`` and ``sk-3x3``): ``select=False`` drops fuse and select
and adds the branches, V = U_1 + U_2 (what SK's selection is measured against); ``dilations=(1,)``
with ``select=False`` keeps the 3x3 branch alone, a grouped conv with BN and ReLU. Neither is in the
paper's code; the SK paper's own ablations (Table 5) compare kernel combinations with and without
selection in the same spirit.

Gate: ``self.gate`` gives the selection weights a (B, M, C), recorded by
:class:`attn_course.models.AttentionRecorder`. In :class:`attn_course.models.ResNet` use it with
``attention="sk", position="conv2"``: it takes conv2's place, before bn2 (it sits in the block's
attention slot, so its gate is recorded at ``stages.i.j.attention.gate``, and conv2 becomes an Identity).
"""

import torch
from torch import nn

from ._validate import check_bool, check_channels, check_input, is_int

DILATIONS = (1, 2)  # M = 2 branches: the 3x3 and the dilated 3x3 (5x5) kernels


class SelectiveKernel(nn.Module):
    """SK convolution: a 3x3 and a dilated 3x3 branch mixed by ``softmax`` across branches per channel.

    Args:
        channels: C, input and output channels.
        reduction: r, the hidden width is ``max(channels // r, min_hidden)`` (official: 16).
        min_hidden: L, the smallest hidden width (official: 32).
        groups: groups of both branch convolutions; must divide ``channels`` (official: 32).
        stride: stride of both branch convolutions.
        dilations: one 3x3 branch per dilation (official: (1, 2), a 3x3 and a 5x5 receptive field).
        select: True (SK) mixes the branches by the softmax; False adds them (an ablation, no gate).

    Shapes: (B, C, H, W) -> (B, C, H / stride, W / stride). Gate: ``self.gate`` gives (B, 2, C),
    summing to 1 over dim 1.
    """

    def __init__(self, channels, reduction=16, min_hidden=32, groups=32, stride=1, dilations=DILATIONS,
                 select=True):
        super().__init__()
        channels = check_channels(channels, "SelectiveKernel")
        for name, value in (("reduction", reduction), ("min_hidden", min_hidden), ("groups", groups),
                            ("stride", stride)):
            if not is_int(value) or value < 1:
                raise ValueError(
                    f"SelectiveKernel: {name} must be a positive int, got {value!r}. The official SKNet uses "
                    f"reduction=16, min_hidden=32, groups=32 and stride 1 (2 where a stage halves the resolution)."
                )
        if channels % groups:
            divisors = [g for g in range(1, channels + 1) if channels % g == 0]
            raise ValueError(
                f"SelectiveKernel: groups={groups} does not divide channels={channels}. Choose groups from "
                f"{divisors} (the official 32 groups need a multiple of 32 channels; the course's ResNet "
                f"has 16, 32 and 64 channels, which groups=2, 4, 8 or 16 all divide; the study's zoo uses 2)."
            )
        check_bool(select, "select", "SelectiveKernel")
        if (isinstance(dilations, (str, bytes)) or not hasattr(dilations, "__iter__") or not dilations
                or not all(is_int(d) and d >= 1 for d in dilations) or len(set(dilations)) != len(dilations)):
            raise ValueError(f"SelectiveKernel: dilations must be distinct positive ints, one per branch, got "
                             f"{dilations!r}. The official SK uses (1, 2): a 3x3 and a dilated 3x3 (5x5) branch.")
        if select and len(dilations) < 2:
            raise ValueError(f"SelectiveKernel: select=True chooses between branches and needs at least two, got "
                             f"dilations={tuple(dilations)!r}. Pass select=False for a single branch.")
        self.channels, self.selects = channels, select
        hidden = max(channels // int(reduction), int(min_hidden))
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, stride, padding=dilation, dilation=dilation, groups=groups,
                          bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for dilation in dilations  # 3x3, and 3x3 dilated 2 standing in for 5x5
        )
        if select:
            self.fuse = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                      nn.ReLU(inplace=True))
            self.select = nn.Conv2d(hidden, len(dilations) * channels, 1, bias=False)  # A_1 and A_2 in one conv
            self.gate = nn.Softmax(dim=1)  # across the branches of (B, M, C)

    def forward(self, x):
        check_input(x, self.channels, "SelectiveKernel", self.branches[0][0].weight)
        if not self.selects:  # the ablations: the branches added, no selection
            return sum(branch(x) for branch in self.branches)
        u = torch.stack([branch(x) for branch in self.branches], dim=1)  # split: (B, M, C, H', W')
        s = u.sum(dim=1).mean(dim=(2, 3))  # fuse: (B, C)
        z = self.fuse(s[:, :, None, None])  # (B, d, 1, 1)
        a = self.gate(self.select(z).view(x.shape[0], len(self.branches), self.channels))  # select: (B, M, C)
        return (u * a[:, :, :, None, None]).sum(dim=1)  # (B, C, H', W')
