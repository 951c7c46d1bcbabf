"""Non-local block: every position attends to every other, through a softmax over all positions.

Wang, Girshick, Gupta and He, "Non-local Neural Networks", CVPR 2018, https://arxiv.org/abs/1711.07971.
Official code: https://github.com/facebookresearch/video-nonlocal-net (Caffe2;
``lib/models/nonlocal_helper.py``, function ``spacetime_nonlocal``, defaults in ``lib/core/config.py``,
``NONLOCAL.*``; read at commit c253ed5, January 2019). Our block is its 2-D (spatial) version.

The generic non-local operation (Eq. 1) and the block around it, for positions i and j::

    y_i = 1 / C(x) sum_j f(x_i, x_j) g(x_j)          g(x_j) = W_g x_j: a 1x1 convolution
    z_i = BN(W_z y_i) + x_i                           a residual connection

(the paper's Eq. 6 is z_i = W_z y_i + x_i; its Sec. 4.1 and the code add the BatchNorm after W_z).

The embedded-Gaussian instance (the official default) has f = exp(theta(x_i)^T phi(x_j)) and
C(x) = sum_j f, a softmax over j, with theta = W_theta x and phi = W_phi x 1x1 convolutions.
The dot-product instance has f = theta(x_i)^T phi(x_j) and C(x) = N, the number of positions j.
With N' query positions and N key positions, the attention matrix is (B, N', N): (HW)^2 weights per
image, a quarter of that with the subsampling below.

What the official code does, and we do:

- theta, phi and g are 1x1 convolutions *with bias* (``NO_BIAS = 0``) from C to ``inner`` channels;
  ``add_nonlocal`` is called with ``dim_inner = dim_in / 2``, so inner = C / 2 by default. Their
  weights start from N(0, 0.01^2) (``CONV_INIT_STD = 0.01``) and their biases from 0.
- subsampling (``USE_MAXPOOL = True``): a 2x2 max-pooling with stride 2 is applied to the block's
  *input x*, and phi and g are computed from the pooled map: pool first, then the 1x1 convolutions.
  The paper's text describes "a max pooling layer after phi and g" (Sec. 3.3); pooling and a 1x1
  convolution do not commute, so the two differ, and we follow the code. theta keeps every
  position: queries at full resolution, keys and values at a quarter of the positions.
  Odd sizes: the official pooling has no padding and rounds down (Caffe2's default), so an odd
  H or W loses its last row or column *as a key and value* (every position remains a query). We
  do the same (``nn.MaxPool2d(2)``). A map smaller than 2 x 2 cannot be pooled: the block refuses
  it and says to pass ``subsample=False``.
- the scale (``USE_SCALE = True``): theta^T phi is multiplied by inner^-0.5 before the softmax,
  which the paper's equations do not have (the Transformer's 1/sqrt(d_k)). ``scale=False`` gives
  the paper's plain exp(theta^T phi). The official code applies it only in the softmax branch: the
  dot-product variant is never scaled, and neither is ours (``scale`` has no effect there).
- the dot-product variant (``USE_SOFTMAX = False``) divides theta^T phi by N, the number of key
  positions (a constant with a stopped gradient in the code), and has no softmax.
- W_z is a 1x1 convolution with bias, inner -> C, from N(0, 0.01^2) (``USE_ZERO_INIT_CONV = False``),
  followed by a BatchNorm whose scale starts at 0 (``USE_BN = True``, ``BN_INIT_GAMMA = 0.0``) and
  whose shift starts at 0. BN(W_z y) is then 0 whatever y is, and the block starts as the identity,
  z = x (the paper, Sec. 4.1: "the initial state of the entire non-local block is an identity
  mapping"). The official BN momentum 0.9 and epsilon 1e-5 are Caffe2's way of writing
  PyTorch's defaults (momentum 0.1, eps 1e-5).
- placement: blocks go on the output of residual blocks (``lib/models/resnet_helper.py``,
  ``res_stage_nonlocal``: after every second block of res3 and res4 of ResNet-50, with
  ``LAYER_MOD = 2``; the paper's "5 blocks (3 to res4 and 2 to res3)"), i.e. between residual
  blocks; in :class:`attn_course.models.ResNet` that is ``position="after_block"``.

Gate: ``self.gate`` gives the attention matrix (B, N', N), query positions by key positions in
row-major order: ``nn.Softmax(dim=-1)`` for the embedded Gaussian (each row sums to 1), or
:class:`DivideByPositions` for the dot product. :class:`attn_course.models.AttentionRecorder`
records it. Parameters: 4 C inner + 3 inner + 3 C (three embeddings and W_z with biases, the BN's
scale and shift).
"""

from torch import nn

from ._validate import check_bool, check_channels, check_input, is_int

MODES = ("embedded_gaussian", "dot_product")
INIT_STD = 0.01  # NONLOCAL.CONV_INIT_STD of the official code


class DivideByPositions(nn.Module):
    """The dot-product variant's normalisation: f / N, N the number of key positions (the last dim)."""

    def forward(self, f):
        return f / f.shape[-1]


class NonLocal(nn.Module):
    """Non-local block: ``z = x + BN(W_z y)``, ``y_i = sum_j softmax_j(theta_i . phi_j) g_j``.

    Args:
        channels: C, input and output channels.
        inner: channels of theta, phi and g (official: C / 2; None means ``channels // 2``).
        subsample: max-pool x 2x2 before phi and g, so that keys and values have a quarter of the
            positions (official: True).
        scale: multiply theta^T phi by inner^-0.5 before the softmax (official: True; the paper's
            equation has no scale). Only the embedded Gaussian uses it, as in the official code.
        mode: ``"embedded_gaussian"`` (softmax over j, the default) or ``"dot_product"`` (divide by N).

    Shapes: (B, C, H, W) -> (B, C, H, W). Gate: ``self.gate`` gives (B, H W, N), N = H W, or
    (H // 2) (W // 2) with ``subsample``; rows index the query positions.
    """

    def __init__(self, channels, inner=None, subsample=True, scale=True, mode="embedded_gaussian"):
        super().__init__()
        channels = check_channels(channels, "NonLocal")
        if inner is None:
            inner = channels // 2
            if inner < 1:
                raise ValueError(f"NonLocal: channels={channels} leaves inner = channels // 2 = 0 channels for "
                                 f"theta, phi and g. Pass inner=1 (or more) explicitly.")
        if not is_int(inner) or inner < 1:
            raise ValueError(f"NonLocal: inner must be a positive int (the channels of theta, phi and g; the "
                             f"official code uses channels // 2), got {inner!r}.")
        check_bool(subsample, "subsample", "NonLocal")
        check_bool(scale, "scale", "NonLocal")
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"NonLocal: mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}. The "
                             f"Gaussian and concatenation variants of the paper are the chapter's exercises.")
        self.channels, self.inner, self.subsample, self.scale, self.mode = channels, int(inner), subsample, scale, mode
        self.theta = nn.Conv2d(channels, self.inner, 1)
        self.phi = nn.Conv2d(channels, self.inner, 1)
        self.g = nn.Conv2d(channels, self.inner, 1)
        self.pool = nn.MaxPool2d(2) if subsample else nn.Identity()
        self.w_z = nn.Conv2d(self.inner, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.gate = nn.Softmax(dim=-1) if mode == "embedded_gaussian" else DivideByPositions()
        for conv in (self.theta, self.phi, self.g, self.w_z):
            nn.init.normal_(conv.weight, std=INIT_STD)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)  # BN_INIT_GAMMA = 0: the block starts as the identity

    def forward(self, x):
        check_input(x, self.channels, "NonLocal", self.theta.weight)
        batch, _, height, width = x.shape
        if self.subsample and (height < 2 or width < 2):
            raise ValueError(
                f"NonLocal: subsample=True max-pools the keys and values 2x2, which needs H and W of at least 2; "
                f"got a {height} x {width} feature map (shape {tuple(x.shape)}). Pass subsample=False, or put the "
                f"block on a larger feature map."
            )
        theta = self.theta(x).flatten(2)  # (B, inner, N'): every position is a query
        pooled = self.pool(x)  # (B, C, H // 2, W // 2) with subsample: pool first, as the official code
        phi, g = self.phi(pooled).flatten(2), self.g(pooled).flatten(2)  # (B, inner, N) each
        f = theta.transpose(1, 2) @ phi  # theta_i^T phi_j: (B, N', N)
        if self.scale and self.mode == "embedded_gaussian":
            f = f * self.inner ** -0.5
        attention = self.gate(f)  # (B, N', N): softmax over j, or f / N
        y = (g @ attention.transpose(1, 2)).view(batch, self.inner, height, width)  # sum_j a_ij g_j
        return x + self.bn(self.w_z(y))  # (B, C, H, W)

    def extra_repr(self):
        return (f"channels={self.channels}, inner={self.inner}, subsample={self.subsample}, scale={self.scale}, "
                f"mode={self.mode!r}")
