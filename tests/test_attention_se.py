"""Tests of attn_course.attention.SqueezeExcite (Hu et al. 2018)."""

import pytest
import torch

from attn_course.attention import SqueezeExcite


def se_by_hand(x, w1, b1, w2, b2):
    """x * sigmoid(W2 relu(W1 z + b1) + b2), z the spatial mean, written with explicit sums."""
    b, c, h, w = x.shape
    z = x.sum(dim=(2, 3)) / (h * w)  # (B, C)
    hidden = torch.clamp(torch.einsum("jc,bc->bj", w1, z) + b1, min=0)  # (B, C/r)
    s = 1 / (1 + torch.exp(-(torch.einsum("cj,bj->bc", w2, hidden) + b2)))  # (B, C)
    return x * s.reshape(b, c, 1, 1)


def test_shape():
    se = SqueezeExcite(32, reduction=8)
    for shape in [(2, 32, 7, 5), (1, 32, 1, 1)]:
        assert se(torch.randn(shape)).shape == shape


def test_matches_independent_computation():
    torch.manual_seed(0)
    se = SqueezeExcite(24, reduction=4)
    # Copy the weights out and perturb the biases, so that a forward ignoring them would differ.
    with torch.no_grad():
        se.fc1.bias.normal_()
        se.fc2.bias.normal_()
    w1, b1 = se.fc1.weight.detach().clone(), se.fc1.bias.detach().clone()
    w2, b2 = se.fc2.weight.detach().clone(), se.fc2.bias.detach().clone()
    x = torch.randn(3, 24, 6, 5)
    torch.testing.assert_close(se(x), se_by_hand(x, w1, b1, w2, b2))
    # A second, loop-based check of one sample's channel: output = input * its gate.
    b, c = 1, 7
    z = [x[b, k].mean() for k in range(24)]
    hidden = [max(0.0, float(sum(w1[j, k] * z[k] for k in range(24)) + b1[j])) for j in range(6)]
    gate = torch.sigmoid(sum(w2[c, j] * hidden[j] for j in range(6)) + b2[c])
    torch.testing.assert_close(se(x)[b, c], x[b, c] * gate)


def test_paper_layers_have_biases_and_parameter_count():
    for channels, reduction in [(64, 16), (16, 4), (10, 3), (5, 5)]:
        se = SqueezeExcite(channels, reduction)
        hidden = channels // reduction
        assert se.fc1.bias is not None and se.fc2.bias is not None
        assert (se.fc1.in_features, se.fc1.out_features) == (channels, hidden)
        assert (se.fc2.in_features, se.fc2.out_features) == (hidden, channels)
        expected = 2 * channels * hidden + hidden + channels  # W1, W2, b1, b2
        assert sum(p.numel() for p in se.parameters()) == expected
    # Paper default r = 16 (Sec. 6.1): 2 * 64 * 4 + 4 + 64 = 580 for 64 channels.
    assert sum(p.numel() for p in SqueezeExcite(64).parameters()) == 580


def test_gate_is_a_sigmoid_in_unit_interval():
    se = SqueezeExcite(16, 4)
    assert isinstance(se.gate, torch.nn.Sigmoid)
    recorded = []
    se.gate.register_forward_hook(lambda m, i, o: recorded.append(o))
    x = torch.randn(4, 16, 5, 5) * 10
    y = se(x)
    (g,) = recorded
    assert g.shape == (4, 16) and (g >= 0).all() and (g <= 1).all()
    torch.testing.assert_close(y, x * g[:, :, None, None])


def test_gradient_reaches_input_and_weights():
    se = SqueezeExcite(16, 4)
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    se(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in se.parameters())


def test_input_errors():
    se = SqueezeExcite(16, 4)
    rank = r"SqueezeExcite expects a 4-D tensor \(B, C, H, W\), got 3-D .*unsqueeze\(0\)"
    with pytest.raises(ValueError, match=rank):
        se(torch.randn(16, 8, 8))
    with pytest.raises(ValueError, match="SqueezeExcite was built for 16 channels but the input has 8"):
        se(torch.randn(2, 8, 4, 4))
    with pytest.raises(TypeError, match="SqueezeExcite expects a torch.Tensor, got list"):
        se([[1.0]])


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"reduction=32 is larger than channels=16.*0 hidden units"):
        SqueezeExcite(16, 32)
    for bad in [0, -1, 2.0, True]:
        with pytest.raises(ValueError, match="SqueezeExcite: reduction must be a positive int"):
            SqueezeExcite(16, bad)
    for bad in [0, -3, 16.0, "16", False]:
        with pytest.raises(ValueError, match="SqueezeExcite: channels must be a positive int"):
            SqueezeExcite(bad, 1)
