"""Efficient Channel Attention: psi(C), shape, an explicit per-channel computation, gradients, errors."""

import pytest
import torch

from attn_course.attention import EfficientChannelAttention, create_attention, eca_kernel_size

# psi(C) = t if t is odd else t + 1, with t = int((log2(C) + b) / gamma), by hand (gamma = 2, b = 1):
#   C=16:   (4 + 1) / 2 = 2.5  -> t = 2 -> 3        C=32:   (5 + 1) / 2 = 3    -> t = 3 -> 3
#   C=64:   (6 + 1) / 2 = 3.5  -> t = 3 -> 3        C=128:  (7 + 1) / 2 = 4    -> t = 4 -> 5
#   C=256:  (8 + 1) / 2 = 4.5  -> t = 4 -> 5        C=512:  (9 + 1) / 2 = 5    -> t = 5 -> 5
#   C=1024: (10 + 1) / 2 = 5.5 -> t = 5 -> 5        C=2048: (11 + 1) / 2 = 6   -> t = 6 -> 7
# and for channel counts that are not powers of two (log2 rounded to 3 decimals):
#   C=24:   (4.585 + 1) / 2 = 2.79  -> 2 -> 3       C=160:  (7.322 + 1) / 2 = 4.16 -> 4 -> 5
#   C=1280: (10.322 + 1) / 2 = 5.66 -> 5 -> 5       C=3000: (11.551 + 1) / 2 = 6.28 -> 6 -> 7
#   C=1:    (0 + 1) / 2 = 0.5   -> 0 -> 1
HAND_PSI = {16: 3, 32: 3, 64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7, 24: 3, 160: 5, 1280: 5, 3000: 7, 1: 1}


@pytest.mark.parametrize("channels, k", sorted(HAND_PSI.items()))
def test_kernel_size_matches_the_hand_computation(channels, k):
    assert eca_kernel_size(channels) == k
    assert EfficientChannelAttention(channels).conv.kernel_size == (k,)


def test_kernel_size_with_other_gamma_and_b():
    # gamma = 1, b = 0: t = log2(C); C = 64 -> 6 -> 7, C = 128 -> 7 -> 7.
    assert eca_kernel_size(64, gamma=1, b=0) == 7 and eca_kernel_size(128, gamma=1, b=0) == 7
    # gamma = 3, b = 1: C = 256 -> 9 / 3 = 3 -> 3.
    assert eca_kernel_size(256, gamma=3, b=1) == 3


def test_explicit_kernel_size_overrides_psi():
    eca = EfficientChannelAttention(2048, kernel_size=3)
    assert eca.conv.kernel_size == (3,) and eca.conv.padding == (1,) and eca.conv.bias is None
    assert sum(p.numel() for p in eca.parameters()) == 3


def test_shape_and_registry():
    x = torch.randn(2, 32, 5, 7)
    assert EfficientChannelAttention(32)(x).shape == x.shape
    assert isinstance(create_attention("eca", 32, kernel_size=5), EfficientChannelAttention)


@pytest.mark.parametrize("channels, kernel_size", [(16, None), (64, 5), (128, None), (8, 7)])
def test_matches_an_explicit_loop_over_channels(channels, kernel_size):
    """gate_c = sigmoid(sum_j w_j * z_{c + j - (k-1)/2}), with z = 0 outside 0..C-1."""
    torch.manual_seed(0)
    eca = EfficientChannelAttention(channels, kernel_size=kernel_size)
    w = eca.conv.weight.detach()[0, 0].tolist()
    k, half = len(w), (len(w) - 1) // 2
    x = torch.randn(3, channels, 4, 6)
    z = x.mean(dim=(2, 3))
    expected = torch.empty_like(x)
    for c in range(channels):
        total = torch.zeros(3)
        for j in range(k):
            neighbour = c + j - half
            if 0 <= neighbour < channels:
                total = total + w[j] * z[:, neighbour]
        expected[:, c] = x[:, c] * torch.sigmoid(total)[:, None, None]
    torch.testing.assert_close(eca(x), expected)


def test_gate_is_recorded_per_channel_in_unit_interval():
    eca = EfficientChannelAttention(32)
    recorded = []
    eca.gate.register_forward_hook(lambda module, inputs, output: recorded.append(output))
    eca(torch.randn(4, 32, 3, 3))
    assert recorded[0].shape == (4, 32)
    assert ((recorded[0] > 0) & (recorded[0] < 1)).all()


def test_gradients_reach_input_and_weights():
    eca = EfficientChannelAttention(16)
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    eca(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert eca.conv.weight.grad.abs().sum() > 0


def test_bad_arguments_and_inputs_are_explained():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        EfficientChannelAttention(0)
    with pytest.raises(ValueError, match="kernel_size must be an odd positive int"):
        EfficientChannelAttention(16, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size must be an odd positive int"):
        EfficientChannelAttention(16, kernel_size=-3)
    with pytest.raises(ValueError, match="gamma must be positive"):
        eca_kernel_size(64, gamma=0)
    with pytest.raises(ValueError, match="b must be a number"):
        eca_kernel_size(64, b="1")
    eca = EfficientChannelAttention(16)
    with pytest.raises(ValueError, match="4-D tensor"):
        eca(torch.randn(16, 4, 4))
    with pytest.raises(ValueError, match="built for 16 channels but the input has 8"):
        eca(torch.randn(2, 8, 4, 4))
