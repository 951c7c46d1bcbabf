"""SimAM: a parameter-free attention whose weights come from an energy function.

Yang, Zhang, Li and Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
Networks", ICML 2021, https://proceedings.mlr.press/v139/yang21o.html. Official code:
https://github.com/ZjjConan/SimAM (``networks/attentions/simam_module.py``).

The energy of a neuron. Take one channel with M = H x W neurons, a target neuron t and the
M - 1 others x_i. A linear map t^ = w t + b, x^_i = w x_i + b should send the target to y_t = 1
and the others to y_o = -1; the energy of t is how badly the best such map can do::

    e_t(w, b) = (1 - t^)^2 + 1/(M-1) sum_i (-1 - x^_i)^2 + lambda w^2

Writing mu and sigma^2 for the mean and variance of the M - 1 others (divided by M - 1), the
mean over i becomes (1 + w mu + b)^2 + w^2 sigma^2; setting both derivatives to zero gives
w = 2(t - mu) / ((t - mu)^2 + 2 sigma^2 + 2 lambda), b = -(t + mu) w / 2 and the minimum::

    e_t* = 4 (sigma^2 + lambda) / ((t - mu)^2 + 2 sigma^2 + 2 lambda)

A neuron that stands out from the others (t far from mu) is easy to separate: low energy, so the
importance of a neuron is 1 / e_t*, and::

    1 / e_t* = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2

mu and sigma^2 of the others change with t. For speed the paper uses the mean and variance of all
M neurons of the channel instead, computed once per channel; that is what the code does, and so do
we. The output is ``x * sigmoid(1 / E)``, E the minimal energies of all neurons (B, C, H, W).

What the shortcut changes: t's own deviation d_t = (t - mu)^2 (mu now the mean of all M) counts in
the channel's statistics. With S = sum d over the channel, the others' mean and variance give
exactly ``(M/(M-1))^2 d_t / (4 ((S - M d_t / (M-1)) / (M-1) + lambda)) + 1/2``; the code's
``d_t / (4 (S / (M-1) + lambda)) + 1/2`` is never above it and, like it, grows with d_t. Within a
channel the two rank the neurons in the same order: the shortcut only compresses the differences,
most for the most distinctive neurons of small maps (``tests/test_attention_simam.py`` measures it).

Exactly as the official code: with n = H W - 1 and d = (x - mean_HW x)^2,
``e_inv = d / (4 (sum_HW d / n + lambda)) + 0.5``. The mean is over all H W neurons but the sum
of squares is divided by n = H W - 1, so sigma^2 is the unbiased sample variance of the channel.
One position (H = W = 1, e.g. after a global pooling) gives n = 0: there are no other neurons to
compare with, and the module refuses such an input.

Since d_t <= sum d, ``e_inv`` lies in [1/2, n/4 + 1/2): every gate lies in [sigmoid(1/2), 1),
about [0.62, 1). SimAM only ever damps a neuron by at most 38 %; lambda keeps a constant channel
(d = 0) finite, with every gate at sigmoid(1/2).

Placement: the official ResNets put SimAM right after the residual branch's 3 x 3 convolution
(``conv2``), before its BatchNorm, where SE and CBAM sit after the BatchNorm; the course's ResNet
has one slot for every mechanism, after the last BatchNorm.
"""

import numbers

from torch import nn

from ._validate import check_channels, check_input


def _check_lambda(e_lambda):
    if isinstance(e_lambda, bool) or not isinstance(e_lambda, numbers.Real) or not 0 < e_lambda < float("inf"):
        raise ValueError(
            f"SimAM: e_lambda must be a positive number (the regulariser lambda of the energy; the paper "
            f"uses 1e-4), got {e_lambda!r}."
        )
    return float(e_lambda)


class SimAM(nn.Module):
    """Parameter-free 3-D attention: ``x * sigmoid((x - mu)^2 / (4 (sigma^2 + lambda)) + 1/2)``.

    Each neuron's weight is its inverse minimal energy 1 / e_t*, from its squared distance to the
    mean of its channel (mu, sigma^2: mean and unbiased variance over H x W); see the module's
    docstring for the derivation.

    Args:
        channels: C, the number of input channels. SimAM has no parameters; it takes ``channels``
            as every attention of the registry does, and checks the input against it.
        e_lambda: lambda, the energy's regulariser (paper default 1e-4).

    Shapes: (B, C, H, W) -> (B, C, H, W), H x W >= 2; the gate, recorded by hooks on
    ``self.gate``, is (B, C, H, W).
    """

    def __init__(self, channels, e_lambda=1e-4):
        super().__init__()
        self.channels = check_channels(channels, "SimAM")
        self.e_lambda = _check_lambda(e_lambda)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        check_input(x, self.channels, "SimAM")
        n = x.shape[2] * x.shape[3] - 1  # the other neurons of a channel
        if n < 1:
            raise ValueError(
                f"SimAM needs at least 2 positions (H x W >= 2) to compare each neuron with the others of its "
                f"channel, got H x W = 1 (shape {tuple(x.shape)}). It cannot follow a global pooling: put it "
                f"where the feature map still has a spatial extent."
            )
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)  # (t - mu)^2: (B, C, H, W)
        variance = d.sum(dim=(2, 3), keepdim=True) / n  # sigma^2: (B, C, 1, 1)
        e_inv = d / (4 * (variance + self.e_lambda)) + 0.5  # 1 / e_t*: (B, C, H, W)
        return x * self.gate(e_inv)  # (B, C, H, W)

    def extra_repr(self):
        return f"channels={self.channels}, e_lambda={self.e_lambda}"
