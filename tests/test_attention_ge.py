"""Gather-Excite: theta-minus, theta, theta-plus against explicit computations; SE as a special case."""

import pytest
import torch
import torch.nn.functional as F

from attn_course.attention import GatherExcite, SqueezeExcite, create_attention


def bn_eval(x, bn):
    """BatchNorm in eval mode, written out: (x - mean) / sqrt(var + eps) * weight + bias."""
    shape = (1, -1, 1, 1)
    return ((x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def randomise_batch_norms(module):
    """Give every BatchNorm non-trivial statistics and affine parameters, so that it matters."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
            torch.nn.init.uniform_(bn.bias, -0.5, 0.5)


@pytest.mark.parametrize("kwargs", [
    {}, {"extent": 2}, {"extent": 4}, {"extent": 2, "extra_params": True},
    {"extent": 8, "extra_params": True, "use_mlp": True, "reduction": 4},
    {"extra_params": True, "feature_size": (8, 6)}, {"use_mlp": True, "reduction": 4},
])
def test_shape_for_every_variant(kwargs):
    x = torch.randn(2, 16, 8, 6)
    assert GatherExcite(16, **kwargs)(x).shape == x.shape


def test_registry():
    ge = create_attention("ge", 32, extent=4, extra_params=True)
    assert isinstance(ge, GatherExcite) and ge.extent == 4


def test_global_theta_minus_is_se_without_its_layers():
    x = torch.randn(3, 8, 5, 7)
    expected = x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))
    ge = GatherExcite(8)
    torch.testing.assert_close(ge(x), expected)
    assert sum(p.numel() for p in ge.parameters()) == 0


def test_global_with_mlp_is_se():
    """GE-theta-minus (global) plus the bottleneck is exactly SE, with SE's weights as 1x1 convolutions."""
    torch.manual_seed(0)
    se, ge = SqueezeExcite(16, reduction=4), GatherExcite(16, use_mlp=True, reduction=4)
    ge.mlp[0].weight.data.copy_(se.fc1.weight[:, :, None, None])
    ge.mlp[0].bias.data.copy_(se.fc1.bias)
    ge.mlp[2].weight.data.copy_(se.fc2.weight[:, :, None, None])
    ge.mlp[2].bias.data.copy_(se.fc2.bias)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(ge(x), se(x))
    assert sum(p.numel() for p in ge.parameters()) == sum(p.numel() for p in se.parameters())


@pytest.mark.parametrize("extent", [2, 4])
def test_theta_minus_with_extent_matches_explicit_pooling_and_nearest_upsampling(extent):
    """Pooled cell (i, j) averages rows i*e-(e-1) .. i*e+e-1 (clipped to the map), columns alike;
    pixel (y, x) takes the gate of cell (y // e, x // e)."""
    torch.manual_seed(0)
    e, (H, W) = extent, (8, 8)
    x = torch.randn(2, 3, H, W)
    cells = torch.empty(2, 3, H // e, W // e)
    for i in range(H // e):
        for j in range(W // e):
            rows = slice(max(0, i * e - (e - 1)), min(H, i * e + e))
            cols = slice(max(0, j * e - (e - 1)), min(W, j * e + e))
            cells[:, :, i, j] = x[:, :, rows, cols].mean(dim=(2, 3))
    expected = torch.empty_like(x)
    for y in range(H):
        for x_ in range(W):
            expected[:, :, y, x_] = x[:, :, y, x_] * torch.sigmoid(cells[:, :, y // e, x_ // e])
    torch.testing.assert_close(GatherExcite(3, extent=e)(x), expected)


def test_theta_gathers_with_strided_depthwise_convolutions():
    """extent 4: conv(3x3, stride 2, depth-wise) - BN - ReLU - conv - BN, then nearest upsampling."""
    torch.manual_seed(0)
    ge = GatherExcite(4, extent=4, extra_params=True)
    convs = [m for m in ge.gather if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in ge.gather if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 2 and len(bns) == 2  # log2(4) convolutions, each followed by a BN
    assert all(c.groups == 4 and c.stride == (2, 2) and c.kernel_size == (3, 3) and c.bias is None for c in convs)
    randomise_batch_norms(ge)
    ge.eval()
    x = torch.randn(2, 4, 8, 8)
    g = bn_eval(F.conv2d(x, convs[0].weight, stride=2, padding=1, groups=4), bns[0])  # (2, 4, 4, 4)
    g = bn_eval(F.conv2d(torch.relu(g), convs[1].weight, stride=2, padding=1, groups=4), bns[1])  # (2, 4, 2, 2)
    up = g.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # nearest: (2, 4, 8, 8)
    torch.testing.assert_close(ge(x), x * torch.sigmoid(up))


def test_global_theta_is_a_full_size_depthwise_convolution():
    """Gather value of channel c: sum over positions of w_c(y, x) * x_c(y, x), then BN."""
    torch.manual_seed(0)
    ge = GatherExcite(3, extra_params=True, feature_size=5)
    randomise_batch_norms(ge)
    ge.eval()
    x = torch.randn(2, 3, 5, 5)
    w = ge.gather[0].weight[:, 0]  # (3, 5, 5)
    context = bn_eval((x * w).sum(dim=(2, 3))[:, :, None, None], ge.gather[1])
    torch.testing.assert_close(ge(x), x * torch.sigmoid(context))
    assert sum(p.numel() for p in ge.parameters()) == 3 * 25 + 2 * 3  # kernel weights + BN weight, bias


def test_theta_plus_adds_the_bottleneck_parameters():
    theta = GatherExcite(32, extent=4, extra_params=True)
    plus = GatherExcite(32, extent=4, extra_params=True, use_mlp=True, reduction=4)
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(theta) == 2 * (32 * 9 + 2 * 32)  # two depth-wise 3x3 convolutions and their BNs
    assert n(plus) - n(theta) == 32 * 8 + 8 + 8 * 32 + 32


def test_gate_is_recorded_at_full_resolution():
    ge = GatherExcite(8, extent=2)
    recorded = []
    ge.gate.register_forward_hook(lambda module, inputs, output: recorded.append(output))
    ge(torch.randn(2, 8, 6, 6))
    assert recorded[0].shape == (2, 8, 6, 6)
    assert ((recorded[0] > 0) & (recorded[0] < 1)).all()


@pytest.mark.parametrize("kwargs", [{}, {"extent": 2}, {"extent": 4, "extra_params": True, "use_mlp": True,
                                                       "reduction": 4}])
def test_gradients_reach_the_input(kwargs):
    ge = GatherExcite(8, **kwargs)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    ge(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_arguments_and_inputs_are_explained():
    for extent in (3, 6, -2, 2.0):
        with pytest.raises(ValueError, match="extent must be 0 .global. or a power of two"):
            GatherExcite(8, extent=extent)
    with pytest.raises(ValueError, match="extent=1 gathers nothing"):
        GatherExcite(8, extent=1)
    with pytest.raises(ValueError, match="pass feature_size"):
        GatherExcite(8, extra_params=True)
    with pytest.raises(ValueError, match="reduction=16 is larger than channels=8"):
        GatherExcite(8, use_mlp=True)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        GatherExcite(0)
    with pytest.raises(ValueError, match=r"built for \(4, 4\) feature maps"):
        GatherExcite(8, extra_params=True, feature_size=4)(torch.randn(1, 8, 6, 6))
    with pytest.raises(ValueError, match="built for 8 channels but the input has 4"):
        GatherExcite(8)(torch.randn(1, 4, 6, 6))
    with pytest.raises(ValueError, match="4-D tensor"):
        GatherExcite(8)(torch.randn(8, 6, 6))


@pytest.mark.parametrize("feature_size", [0, (8,), (8, 8, 8), (8, 0), 8.0, "8"])
def test_feature_size_is_validated(feature_size):
    # 0, (8,) and (8, 8, 8) used to build a module that failed later, or never.
    with pytest.raises(ValueError, match="feature_size must be a positive int H or a pair"):
        GatherExcite(16, extra_params=True, feature_size=feature_size)


@pytest.mark.parametrize("kwargs, ignored", [({"reduction": 4}, "reduction=4 is used only by the MLP"),
                                             ({"extent": 2, "extra_params": True, "feature_size": 8},
                                              "feature_size=8 is used only by a global gather"),
                                             ({"feature_size": 8}, "feature_size=8 is used only")])
def test_arguments_that_would_be_ignored_are_refused(kwargs, ignored):
    with pytest.raises(ValueError, match=ignored):
        GatherExcite(16, **kwargs)


def test_switches_must_be_bools():
    with pytest.raises(TypeError, match="GatherExcite: use_mlp must be True or False"):
        GatherExcite(16, use_mlp="yes")
    with pytest.raises(TypeError, match="GatherExcite: extra_params must be True or False"):
        GatherExcite(16, extent=2, extra_params=1)
