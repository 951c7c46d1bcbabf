"""Coordinate Attention (Hou et al., CVPR 2021): the equations written with einsum on a non-square input,
the official CoordAtt forward with our weights, parameter counts, both gates recorded, errors, gradients."""

import pytest
import torch
import torch.nn.functional as F
from random_weights import randomise
from torch import nn

from attn_course.attention import ATTENTION, CoordinateAttention, create_attention
from attn_course.models import AttentionRecorder, ResNet


def coord_by_hand(x, module, batch_statistics=False):
    """Eqs. 4-6 with the official BatchNorm and h_swish, written with einsum on the copied weights.

    Returns the output and the two gates a_h (B, C, H) and a_w (B, C, W). With ``batch_statistics`` the
    BatchNorm normalises with the mean and (biased) variance over the batch and all H + W positions.
    """
    w1, b1 = module.conv1.weight[:, :, 0, 0], module.conv1.bias  # (mip, C), (mip,)
    wh, bh = module.h.conv.weight[:, :, 0, 0], module.h.conv.bias  # (C, mip), (C,)
    ww, bw = module.w.conv.weight[:, :, 0, 0], module.w.conv.bias
    bn = module.bn1
    height, width = x.shape[2], x.shape[3]
    rows = x.sum(dim=3) / width  # z^h: (B, C, H)
    cols = x.sum(dim=2) / height  # z^w: (B, C, W)
    u_h = torch.einsum("kc,bci->bki", w1, rows) + b1[:, None]  # (B, mip, H)
    u_w = torch.einsum("kc,bcj->bkj", w1, cols) + b1[:, None]  # (B, mip, W)
    if batch_statistics:
        both = torch.cat([u_h, u_w], dim=2)  # one BatchNorm over both directions
        mean, var = both.mean(dim=(0, 2)), both.var(dim=(0, 2), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var

    def normalise_and_activate(u):
        u = (u - mean[:, None]) / torch.sqrt(var[:, None] + bn.eps) * bn.weight[:, None] + bn.bias[:, None]
        return u * torch.clamp(u + 3, 0, 6) / 6  # h_swish

    f_h, f_w = normalise_and_activate(u_h), normalise_and_activate(u_w)
    a_h = torch.sigmoid(torch.einsum("ck,bki->bci", wh, f_h) + bh[:, None])  # (B, C, H)
    a_w = torch.sigmoid(torch.einsum("ck,bkj->bcj", ww, f_w) + bw[:, None])  # (B, C, W)
    return torch.einsum("bcij,bci,bcj->bcij", x, a_h, a_w), a_h, a_w


class OfficialCoordAtt(nn.Module):
    """The official ``CoordAtt`` (houqb/CoordAttention, coordatt.py, MIT licence), restated."""

    def __init__(self, inp, oup, reduction=32):
        super().__init__()
        mip = max(8, inp // reduction)
        self.pool_h, self.pool_w = nn.AdaptiveAvgPool2d((None, 1)), nn.AdaptiveAvgPool2d((1, None))
        self.conv1, self.bn1 = nn.Conv2d(inp, mip, 1), nn.BatchNorm2d(mip)
        self.conv_h, self.conv_w = nn.Conv2d(mip, oup, 1), nn.Conv2d(mip, oup, 1)

    def forward(self, x):
        n, c, h, w = x.size()
        y = torch.cat([self.pool_h(x), self.pool_w(x).permute(0, 1, 3, 2)], dim=2)
        y = self.bn1(self.conv1(y))
        y = y * F.relu6(y + 3) / 6  # h_swish
        x_h, x_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w.permute(0, 1, 3, 2)).sigmoid()
        return x * a_w * a_h


def official_to_ours(state):
    return {k.replace("conv_h.", "h.conv.").replace("conv_w.", "w.conv."): v for k, v in state.items()}


@pytest.mark.parametrize("shape", [(2, 16, 7, 5), (1, 32, 1, 1), (3, 64, 8, 8), (2, 8, 1, 6)])
def test_output_shape(shape):
    module = CoordinateAttention(shape[1])
    assert module(torch.randn(shape)).shape == shape
    assert module.eval()(torch.randn(shape)).shape == shape


def test_matches_the_equations_on_a_non_square_input_in_eval_mode():
    module = randomise(CoordinateAttention(12, reduction=4, min_hidden=2)).eval()  # mip = 3
    x = torch.randn(2, 12, 5, 7)  # H != W: a transposed axis would not even broadcast
    expected, a_h, a_w = coord_by_hand(x, module)
    torch.testing.assert_close(module(x), expected)
    with AttentionRecorder(module) as recorder:
        module(x)
    gates = recorder.stacked()
    torch.testing.assert_close(gates["h.gate"], a_h[:, :, :, None])
    torch.testing.assert_close(gates["w.gate"], a_w[:, :, None, :])


def test_training_mode_normalises_both_directions_with_shared_batch_statistics():
    module = randomise(CoordinateAttention(8, reduction=2, min_hidden=1)).train()  # mip = 4
    x = torch.randn(3, 8, 6, 4)
    expected, _, _ = coord_by_hand(x, module, batch_statistics=True)
    torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("channels, shape", [(16, (2, 16, 9, 6)), (64, (2, 64, 8, 8)), (512, (1, 512, 3, 5))])
def test_matches_the_official_forward_with_the_same_weights(channels, shape):
    official = randomise(OfficialCoordAtt(channels, channels), seed=1).eval()
    ours = CoordinateAttention(channels).eval()
    ours.load_state_dict(official_to_ours(official.state_dict()))  # strict: the same tensors, renamed
    x = torch.randn(shape)
    torch.testing.assert_close(ours(x), official(x))
    official.train()
    ours.train()
    torch.testing.assert_close(ours(x), official(x))


def test_parameter_count_follows_the_formula():
    def formula(c, mip):
        # conv1: C*mip + mip; bn1: 2*mip; conv_h and conv_w: mip*C + C each
        return (c * mip + mip) + 2 * mip + 2 * (mip * c + c)

    for channels, mip in [(16, 8), (32, 8), (64, 8), (256, 8), (512, 16), (2048, 64)]:
        module = CoordinateAttention(channels)
        assert module.hidden == mip == max(8, channels // 32)
        assert sum(p.numel() for p in module.parameters()) == formula(channels, mip)
    assert [formula(c, 8) for c in (16, 32, 64)] == [440, 856, 1688]  # the course's three stages
    assert CoordinateAttention(64, reduction=4).hidden == 16 and CoordinateAttention(4).hidden == 8
    assert CoordinateAttention(64, reduction=32, min_hidden=1).hidden == 2
    module = CoordinateAttention(16)
    assert all(conv.bias is not None for conv in (module.conv1, module.h.conv, module.w.conv))  # official: biases


def test_both_gates_are_recorded_with_their_shapes():
    module = CoordinateAttention(16)
    assert isinstance(module.h.gate, nn.Sigmoid) and isinstance(module.w.gate, nn.Sigmoid)
    x = torch.randn(3, 16, 5, 7)
    with AttentionRecorder(module) as recorder:
        y = module(x)
    gates = recorder.stacked()
    assert {name: tuple(g.shape) for name, g in gates.items()} == {"h.gate": (3, 16, 5, 1), "w.gate": (3, 16, 1, 7)}
    for gate in gates.values():
        assert gate.min() >= 0 and gate.max() <= 1
    torch.testing.assert_close(y, x * gates["w.gate"] * gates["h.gate"])


def test_both_gates_of_every_block_are_recorded_in_the_resnet():
    model = ResNet(attention="coord", reduction=32)
    with AttentionRecorder(model) as recorder:
        model(torch.rand(2, 1, 32, 32))
    shapes = {name: tuple(g.shape) for name, g in recorder.stacked().items()}
    assert shapes == {
        "stages.0.0.attention.h.gate": (2, 16, 32, 1), "stages.0.0.attention.w.gate": (2, 16, 1, 32),
        "stages.1.0.attention.h.gate": (2, 32, 16, 1), "stages.1.0.attention.w.gate": (2, 32, 1, 16),
        "stages.2.0.attention.h.gate": (2, 64, 8, 1), "stages.2.0.attention.w.gate": (2, 64, 1, 8),
    }
    added = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in ResNet().parameters())
    assert added == 440 + 856 + 1688


def test_eval_mode_is_deterministic_and_each_sample_is_independent_of_its_batch():
    module = randomise(CoordinateAttention(16)).eval()
    x = torch.randn(4, 16, 6, 9)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    first, second = module(x), module(x)
    assert torch.equal(first, second)
    torch.testing.assert_close(module(x[:1]), first[:1])
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # no running-statistic update


def test_gradients_reach_the_input_and_every_parameter():
    module = randomise(CoordinateAttention(8, reduction=2, min_hidden=2)).train()
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bad_inputs_raise_helpful_errors():
    module = CoordinateAttention(16)
    with pytest.raises(ValueError, match="CoordinateAttention was built for 16 channels but the input has 8"):
        module(torch.randn(2, 8, 5, 5))
    with pytest.raises(ValueError, match=r"CoordinateAttention expects a 4-D tensor \(B, C, H, W\)"):
        module(torch.randn(16, 5, 5))
    with pytest.raises(TypeError, match=r"torch.float32 weights but the input is torch.float64"):
        module(torch.randn(2, 16, 5, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point tensor"):
        module(torch.zeros(2, 16, 5, 5, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": 0}, "CoordinateAttention: channels must be a positive int"),
        ({"channels": 16.0}, "CoordinateAttention: channels must be a positive int"),
        ({"channels": 16, "reduction": 0}, r"reduction must be a positive int, got 0\. .*reduction=32, min_hidden=8"),
        ({"channels": 16, "reduction": 2.0}, "reduction must be a positive int"),
        ({"channels": 16, "reduction": True}, "reduction must be a positive int"),
        ({"channels": 16, "min_hidden": 0}, "min_hidden must be a positive int"),
        ({"channels": 16, "min_hidden": "8"}, "min_hidden must be a positive int"),
    ],
)
def test_bad_arguments_raise_helpful_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoordinateAttention(**kwargs)


def test_registry_builds_coordinate_attention():
    assert ATTENTION["coord"] is CoordinateAttention
    module = create_attention("coord", 64, reduction=4)
    assert isinstance(module, CoordinateAttention) and module.hidden == 16
    assert "hidden=16" in repr(module)
