"""Convolutional Block Attention Module (CBAM): channel attention ("what"), then spatial ("where").

Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
https://arxiv.org/abs/1807.06521. Official code: https://github.com/Jongchan/attention-module
(``MODELS/cbam.py``).

Where the official code and the paper's text differ, we follow the code and say so:

- the channel MLP's two fully-connected layers have biases (the paper's Eq. 2 writes only the
  weights ``W0`` and ``W1``);
- the spatial descriptor stacks the channel-wise max first, then the mean (the paper's Eq. 3
  writes ``[AvgPool(F); MaxPool(F)]``); the order only permutes the conv's input channels;
- the spatial 7 x 7 convolution has no bias and is followed by a BatchNorm (the paper's text
  names only the convolution). ``batch_norm=False`` gives the text's version, a conv with bias.
  The official BatchNorm uses ``momentum=0.01``; we keep PyTorch's default 0.1 so that the
  running statistics settle within the short trainings of this course. The official ResNet
  also initialises this BatchNorm's scale to 0 (every spatial gate starts at sigmoid(0) = 0.5);
  we keep PyTorch's default initialisation. Neither setting explains CBAM's slow start on short
  budgets (test accuracy at chance for the first epochs): that is the evaluation mode's BatchNorm
  running statistics lagging behind fast-changing weights, in the whole network, and the official
  settings did not remove it (chapter 04 shows the measurement).

Speed, with the same forward values (tested bit for bit): in training, each half runs through a
hand-written backward (``_ChannelGating``, ``_SpatialGating``). Autograd would write the maximum's
gradient into a zero tensor and the mean's into another, then add both to ``grad * s``; here one
``addcmul`` gives ``grad * s + grad_mean / n`` and the maximum's gradient is scattered into it at
the maximum's position. The maxima themselves come from ``amax``, which is several times faster on
CPUs than ``max(dim)`` or ``adaptive_max_pool2d`` with indices; the backward recovers the positions
from the mask ``x == max`` (``_index_of_maximum``). The gradients are the same, bit for bit, as
scattering through the indices of ``max(dim)`` and ``adaptive_max_pool2d``: at a tie (two positions
share the maximum) the first position gets the whole gradient, as in the official code's
``max_pool2d`` and ``torch.max``, where autograd's ``amax`` would split it evenly. Both are valid
subgradients, and ties are rare in real-valued features (none in the course's trainings). Gradcheck
in double precision, and equality with the plain path, are tested. Without gradients (inference,
``torch.no_grad``) the plain code below runs. The spatial convolution runs on a channels-last copy
of its two-channel input: the same forward values, and a backward about 3x faster in oneDNN on
CPUs. The hand-written backward supports one level of differentiation (no gradients of gradients).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_bool, check_channels, check_input, check_reduction, is_int

ORDERS = ("channel-spatial", "spatial-channel")


def _fused(module, x):
    """Train through the hand-written backward below only when a gradient is wanted."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def _small_graph_grads(ctx, grad_s):
    """Backpropagate ``grad_s`` through the gate's small network (MLP or conv + BN): the pooled
    descriptors' gradients and the parameters' (None where a parameter is unused). The small
    graph is freed with the outer one."""
    # retain_graph: a caller may backpropagate through the outer graph twice (retain_graph=True there)
    return torch.autograd.grad(ctx.s, [*ctx.leaves, *ctx.params], grad_s, allow_unused=True, retain_graph=True)


def _index_of_maximum(x, peak, dim):
    """Where ``x`` (B, C, H, W) equals its maximum ``peak`` along ``dim`` (1: the channels; 2: the
    H x W positions, flattened), as int64 indices: (B, H * W) for dim 1, (B, C) for dim 2.

    ``amax`` finds the maxima without indices, several times faster on CPUs than ``max(dim)`` or
    ``adaptive_max_pool2d`` with them. The backward then recovers the indices: the 0/1 mask
    ``x == peak`` times a two-column matrix ``[1, position]`` counts each slice's hits and sums their
    positions in one product (exact in floating point: small integers). Returns ``None`` when a slice
    has no hit or several (a tie, or NaN): the caller then asks ``max`` for its first position, so the
    indices, and the gradients, are always those of ``max(dim)`` and ``adaptive_max_pool2d``.
    """
    x, peak = x.flatten(2), peak.flatten(2)  # (B, C, H * W), and the maxima (B, 1, H * W) or (B, C, 1)
    n = x.shape[dim]
    dtype = torch.promote_types(x.dtype, torch.float32)  # positions up to 2^24 are exact in float32
    hit = torch.eq(x, peak, out=torch.empty(x.shape, dtype=dtype, device=x.device))
    count_position = torch.stack([torch.ones(n, dtype=dtype, device=x.device),
                                  torch.arange(n, dtype=dtype, device=x.device)])  # (2, n)
    if dim == 1:
        count, index = torch.matmul(count_position, hit).unbind(1)  # (B, 2, H * W) -> two (B, H * W)
    else:
        count, index = torch.matmul(hit, count_position.T).unbind(2)  # (B, C, 2) -> two (B, C)
    index = index.to(torch.int64)
    # One hit per slice, and the value there is the maximum: the index is exact (this also guards
    # against a matrix product in reduced precision, such as TF32 on a GPU, rounding a position).
    if bool((count != 1).any()) or not torch.equal(x.gather(dim, index.unsqueeze(dim)), peak):
        return None
    return index


class _ChannelGating(torch.autograd.Function):
    """``x * gates(mean_hw(x), max_hw(x))`` with one backward pass over the big tensors.

    Autograd's version writes the maximum's gradient into a zero tensor, the mean's into another
    and adds both to ``grad * s``; here ``grad_x = grad * s + grad_mean / HW`` is one ``addcmul``,
    the maximum's gradient is scattered into it at the maximum's position (found by
    :func:`_index_of_maximum`), and ``grad_s`` (a sum over H x W of ``grad * x``) is a batched dot
    product. Same values, same tie rule (one position, the first).
    """

    @staticmethod
    def forward(ctx, x, gates, *params):
        b, c, h, w = x.shape
        avg = x.sum(dim=(2, 3)) / (h * w)
        peak = x.amax(dim=(2, 3), keepdim=True)
        with torch.enable_grad():
            ctx.leaves = [avg.detach().requires_grad_(), peak.flatten(1).detach().requires_grad_()]
            ctx.s = gates(*ctx.leaves)  # (B, C), with its small graph
        ctx.params = params
        ctx.save_for_backward(x, peak)
        return x * ctx.s.detach()[:, :, None, None]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, peak = ctx.saved_tensors
        b, c, h, w = x.shape
        s = ctx.s.detach()
        grad_s = torch.bmm(grad.reshape(b * c, 1, h * w), x.reshape(b * c, h * w, 1)).view(b, c)
        grad_avg, grad_peak, *grad_params = _small_graph_grads(ctx, grad_s)
        grad_x = torch.addcmul((grad_avg / (h * w))[:, :, None, None], grad, s[:, :, None, None]).contiguous()
        index = _index_of_maximum(x, peak, 2)
        if index is None:  # a tie: the first position, as the plain path's adaptive_max_pool2d gives
            index = F.adaptive_max_pool2d(x, 1, return_indices=True)[1]
        grad_x.view(b, c, h * w).scatter_add_(2, index.view(b, c, 1), grad_peak.view(b, c, 1))
        return (grad_x, None, *grad_params)


class _SpatialGating(torch.autograd.Function):
    """``x * gates([max_c(x); mean_c(x)])`` with one backward pass over the big tensors (as above,
    over the channels: ``grad_x = grad * s + grad_mean / C``, plus the maximum's scattered gradient)."""

    @staticmethod
    def forward(ctx, x, gates, *params):
        peak = x.amax(dim=1, keepdim=True)
        pooled = torch.cat([peak, x.sum(dim=1, keepdim=True) / x.shape[1]], dim=1)
        with torch.enable_grad():
            ctx.leaves = [pooled.detach().requires_grad_()]
            ctx.s = gates(*ctx.leaves)  # (B, 1, H, W), with its small graph
        ctx.params = params
        ctx.save_for_backward(x, peak)
        return x * ctx.s.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, peak = ctx.saved_tensors
        b, c, h, w = x.shape
        s = ctx.s.detach()
        work = grad * x
        grad_s = work.sum(dim=1, keepdim=True)
        grad_pooled, *grad_params = _small_graph_grads(ctx, grad_s)
        grad_x = torch.addcmul(grad_pooled[:, 1:] / c, grad, s, out=work)  # work's memory, reused
        index = _index_of_maximum(x, peak, 1)
        index = x.max(dim=1, keepdim=True).indices if index is None else index.view(b, 1, h, w)  # a tie: the first
        grad_x.scatter_add_(1, index, grad_pooled[:, :1])
        return (grad_x, None, *grad_params)


def _check_kernel_size(kernel_size, module_name):
    if not is_int(kernel_size) or kernel_size < 1:
        raise ValueError(f"{module_name}: kernel_size must be a positive odd int, got {kernel_size!r}.")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"{module_name}: kernel_size must be odd so that padding (k - 1) // 2 keeps H x W, got "
            f"{kernel_size}. The paper compares 3 and 7 and uses 7."
        )
    return int(kernel_size)


class ChannelAttention(nn.Module):
    """CBAM's channel attention: ``x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` (Eq. 2).

    Average- and max-pooling over H x W give two descriptors (B, C); ONE shared MLP
    (Linear C -> C/r, ReLU, Linear C/r -> C, with biases as in the official code) maps each,
    the two outputs are summed and squashed by a sigmoid into one gate per channel.

    Args:
        channels: C, the number of input channels.
        reduction: r, the reduction ratio of the MLP's hidden layer (paper default 16).

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate, recorded by hooks on ``self.gate``, is (B, C).
    """

    def __init__(self, channels, reduction=16):
        super().__init__()
        channels = check_channels(channels, "ChannelAttention")
        reduction = check_reduction(channels, reduction, "ChannelAttention")
        self.channels = channels
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.gate = nn.Sigmoid()

    def gates(self, avg, peak):
        """The channel gates from the two descriptors (B, C) each: ``sigmoid(MLP(avg) + MLP(peak))``."""
        return self.gate(self.mlp(avg) + self.mlp(peak))  # (B, C)

    def forward(self, x):
        check_input(x, self.channels, "ChannelAttention", self.mlp[0].weight)
        if _fused(self, x):  # training: the same values, with a faster backward (_ChannelGating)
            return _ChannelGating.apply(x, self.gates, *self.parameters())
        avg = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])  # (B, C): the mean
        peak = F.adaptive_max_pool2d(x, 1).flatten(1)  # (B, C): the maximum
        return x * self.gates(avg, peak)[:, :, None, None]  # (B, C, H, W)


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: ``x * sigmoid(BN(conv_k([max_c(x); mean_c(x)])))`` (Eq. 3).

    Max- and average-pooling over the channels give a two-channel map (B, 2, H, W), in the
    official order (max, mean); a k x k convolution with padding (k - 1) // 2 maps it to one
    channel, a BatchNorm normalises it (official code) and a sigmoid gives one gate per position.
    It has no parameter that depends on C, so it takes no ``channels`` argument.

    Args:
        kernel_size: k, odd (paper default 7).
        batch_norm: True (official code): conv without bias, then BatchNorm. False (paper's
            text): a plain conv with bias.

    Shapes: (B, C, H, W) -> (B, C, H, W); the gate, recorded on ``self.gate``, is (B, 1, H, W).
    """

    def __init__(self, kernel_size=7, batch_norm=True):
        super().__init__()
        kernel_size = _check_kernel_size(kernel_size, "SpatialAttention")
        check_bool(batch_norm, "batch_norm", "SpatialAttention")
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(1) if batch_norm else nn.Identity()
        self.gate = nn.Sigmoid()

    def gates(self, pooled):
        """The spatial gates from the pooled map (B, 2, H, W): ``sigmoid(BN(conv(pooled)))``, (B, 1, H, W)."""
        # channels-last: the same forward values, and oneDNN runs this 2-channel conv's backward ~3x faster
        return self.gate(self.bn(self.conv(pooled.contiguous(memory_format=torch.channels_last))))

    def forward(self, x):
        check_input(x, None, "SpatialAttention", self.conv.weight)  # any C: no weight depends on it
        if _fused(self, x):  # training: the same values, with a faster backward (_SpatialGating)
            return _SpatialGating.apply(x, self.gates, *self.parameters())
        peak, total = x.max(dim=1, keepdim=True).values, x.sum(dim=1, keepdim=True)  # (B, 1, H, W) each
        pooled = torch.cat([peak, total / x.shape[1]], dim=1)  # (B, 2, H, W): max, then mean
        return x * self.gates(pooled)  # (B, C, H, W)


class CBAM(nn.Module):
    """CBAM: channel attention, then spatial attention, each refining the previous output (Eq. 1).

    ``order="spatial-channel"`` reverses the two, and ``use_channel`` / ``use_spatial`` switch
    one off, for the paper's ablations (Table 3 compares the orders and the parallel variant).

    Args:
        channels: C, the number of input channels.
        reduction: r of the channel MLP (paper default 16).
        kernel_size: k of the spatial convolution (paper default 7).
        order: ``"channel-spatial"`` (the paper's choice) or ``"spatial-channel"``.
        use_channel, use_spatial: keep the channel / spatial half; at least one must be True.
        batch_norm: BatchNorm after the spatial conv, as in the official code.

    Shapes: (B, C, H, W) -> (B, C, H, W). Gates: ``self.channel.gate`` (B, C) and
    ``self.spatial.gate`` (B, 1, H, W); a half that is switched off is an ``nn.Identity``.
    """

    def __init__(self, channels, reduction=16, kernel_size=7, order="channel-spatial",
                 use_channel=True, use_spatial=True, batch_norm=True):
        super().__init__()
        channels = check_channels(channels, "CBAM")
        for name, value in (("use_channel", use_channel), ("use_spatial", use_spatial), ("batch_norm", batch_norm)):
            check_bool(value, name, "CBAM")  # use_spatial="no" would be truthy and keep the half
        if order not in ORDERS:
            raise ValueError(f"CBAM: order must be one of {ORDERS}, got {order!r}.")
        if not (use_channel or use_spatial):
            raise ValueError(
                "CBAM: use_channel and use_spatial are both False, which leaves no attention. "
                "For a network without attention use ResNet(attention=None)."
            )
        self.channels, self.order = channels, order
        self.channel = ChannelAttention(channels, reduction) if use_channel else nn.Identity()
        self.spatial = SpatialAttention(kernel_size, batch_norm) if use_spatial else nn.Identity()

    def forward(self, x):
        check_input(x, self.channels, "CBAM")
        if self.order == "channel-spatial":
            return self.spatial(self.channel(x))  # (B, C, H, W)
        return self.channel(self.spatial(x))  # (B, C, H, W)
