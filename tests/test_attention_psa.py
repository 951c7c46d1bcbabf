"""Tests of psa_mask and PointwiseSpatialAttention against loops that follow the official kernels."""

import pytest
import torch
import torch.nn.functional as F

from attn_course.attention import ATTENTION, PointwiseSpatialAttention, create_attention, psa_mask

SIZES = [(1, 1), (2, 3), (3, 3), (4, 2), (5, 4)]


def psa_mask_loop(x, mode, mask_size=None):
    """The official PSAMask CPU kernel (hszhao/semseg lib/psa/src/cpu/psamask.cpp), loop for loop.

    ``mask_size`` (mask_H, mask_W), odd, defaults to (2H-1, 2W-1) as in the official operator.
    """
    num, _, fh, fw = x.shape
    mh, mw = mask_size or (2 * fh - 1, 2 * fw - 1)
    half_h, half_w = (mh - 1) // 2, (mw - 1) // 2
    out = torch.zeros(num, fh * fw, fh, fw, dtype=x.dtype)
    for n in range(num):
        for h in range(fh):
            for w in range(fw):
                for hidx in range(max(0, half_h - h), min(mh, fh + half_h - h)):
                    for widx in range(max(0, half_w - w), min(mw, fw + half_w - w)):
                        value = x[n, hidx * mw + widx, h, w]
                        other = (hidx + h - half_h) * fw + (widx + w - half_w)
                        if mode == "collect":
                            out[n, other, h, w] = value
                        else:  # distribute: flat buffer index (h * W + w) * H * W + other
                            out.view(num, fh * fw, fh * fw)[n, h * fw + w, other] = value
    return out


@pytest.mark.parametrize("mode", ["collect", "distribute"])
@pytest.mark.parametrize("size", SIZES)
def test_psa_mask_matches_official_kernel(mode, size):
    h, w = size
    x = torch.randn(2, (2 * h - 1) * (2 * w - 1), h, w)
    torch.testing.assert_close(psa_mask(x, mode), psa_mask_loop(x, mode), rtol=0, atol=0)


def test_psa_mask_centre_channel_is_the_diagonal():
    # Hand computation: offset (0, 0) is channel (H-1)(2W-1) + (W-1); it links each position to itself.
    h, w = 3, 4
    x = torch.randn(1, 5 * 7, h, w)
    centre = (h - 1) * (2 * w - 1) + (w - 1)
    for mode in ("collect", "distribute"):
        a = psa_mask(x, mode).view(h * w, h * w)
        torch.testing.assert_close(a.diagonal(), x[0, centre].flatten())


def test_distribute_is_the_transpose_of_collect():
    x = torch.randn(2, 5 * 3, 3, 2)
    collect = psa_mask(x, "collect").view(2, 6, 6)
    distribute = psa_mask(x, "distribute").view(2, 6, 6)
    torch.testing.assert_close(distribute, collect.transpose(1, 2))


def test_psa_mask_gradient_matches_official_backward():
    # The official backward scatters the output gradient back to the cropped channels; the rest get 0.
    h, w = 3, 2
    x = torch.randn(1, 5 * 3, h, w, requires_grad=True)
    g = torch.randn(1, h * w, h, w)
    for mode in ("collect", "distribute"):
        (grad,) = torch.autograd.grad((psa_mask(x, mode) * g).sum(), x)
        ones = psa_mask_loop(torch.ones_like(x), mode)  # which entries were read
        assert ones.sum() == (h * w) ** 2
        expected = torch.zeros_like(x)
        for n in range(h * w):  # rebuild by perturbing one input at a time
            for c in range(x.shape[1]):
                basis = torch.zeros_like(x)
                basis[0, c].view(-1)[n] = 1
                expected[0, c].view(-1)[n] = (psa_mask_loop(basis, mode) * g).sum()
        torch.testing.assert_close(grad, expected)


def test_psa_mask_bad_inputs():
    with pytest.raises(ValueError, match=r"\(2H-1\)\(2W-1\) = 5 \* 7 = 35 channels"):
        psa_mask(torch.randn(1, 34, 3, 4), "collect")
    with pytest.raises(ValueError, match="mode must be 'collect' or 'distribute'"):
        psa_mask(torch.randn(1, 9, 2, 2), "gather")
    with pytest.raises(ValueError, match="4-D tensor"):
        psa_mask(torch.randn(9, 2, 2), "collect")


def branch_reference(branch, x):
    """One branch written out: reduce, predict, crop by loops, softmax over sources, weighted sum."""
    z = branch.reduce(x)
    maps = branch.over_complete(z)
    b, c, h, w = z.shape
    a = F.softmax(psa_mask_loop(maps, branch.mode), dim=1).view(b, h * w, h * w)  # [b, source, target]
    out = torch.zeros(b, c, h * w)
    for p in range(h * w):
        for q in range(h * w):
            out[:, :, p] += a[:, q, p, None] * z.flatten(2)[:, :, q]
    return out.view(b, c, h, w)


def make_psa(channels=8, reduction=2, feature_size=(3, 4), seed=0):
    torch.manual_seed(seed)
    module = PointwiseSpatialAttention(channels, reduction=reduction, feature_size=feature_size).eval()
    for m in module.modules():  # non-trivial BatchNorm statistics, so eval mode is tested for real
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module


def test_psa_shape_and_independent_computation():
    module = make_psa()
    x = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        out = module(x)
        context = module.project(torch.cat([branch_reference(module.collect, x),
                                            branch_reference(module.distribute, x)], 1))
        expected = module.fuse(torch.cat([x, context], 1))
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)


def test_smaller_input_uses_central_offsets_like_the_official_kernel():
    # Official kernel with mask (2Hm-1, 2Wm-1) larger than needed reads the central offsets only.
    module = make_psa(feature_size=(4, 5))
    x = torch.randn(1, 8, 2, 3)
    branch = module.collect
    with torch.no_grad():
        z = branch.reduce(x)
        full = branch.attention(z)  # (1, 7 * 9, 2, 3)
        torch.testing.assert_close(psa_mask(branch.over_complete(z), "collect"),
                                   psa_mask_loop(full, "collect", mask_size=(7, 9)))
        assert module(x).shape == x.shape


def test_attention_columns_sum_to_one():
    module = make_psa()
    x = torch.randn(2, 8, 3, 4)
    recorded = {}
    hooks = [getattr(module, name).gate.register_forward_hook(
        lambda m, i, o, name=name: recorded.__setitem__(name, o)) for name in ("collect", "distribute")]
    with torch.no_grad():
        module(x)
    for hook in hooks:
        hook.remove()
    for name, a in recorded.items():
        assert a.shape == (2, 12, 3, 4), name
        assert (a >= 0).all(), name
        torch.testing.assert_close(a.sum(1), torch.ones(2, 3, 4))  # softmax over the 12 sources


def test_gradients_reach_input_and_parameters():
    module = PointwiseSpatialAttention(8, reduction=2, feature_size=4)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name in ("collect.attention.1.weight", "distribute.attention.1.weight"):
        assert module.get_parameter(name).grad.abs().sum() > 0, name


def test_parameter_count():
    c, r, hm, wm = 8, 2, 3, 4
    hidden, k = c // r, (2 * hm - 1) * (2 * wm - 1)
    branch = (c * hidden + 2 * hidden) + (hidden * hidden + 2 * hidden) + hidden * k  # convs, no bias; BN
    expected = 2 * branch + (2 * hidden * c + 2 * c) + (2 * c * c + 2 * c)
    module = PointwiseSpatialAttention(c, reduction=r, feature_size=(hm, wm))
    assert sum(p.numel() for p in module.parameters()) == expected


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        PointwiseSpatialAttention(0)
    with pytest.raises(ValueError, match="reduction=16 is larger than channels=8"):
        PointwiseSpatialAttention(8, reduction=16)
    with pytest.raises(ValueError, match="feature_size must be a positive int or a pair"):
        PointwiseSpatialAttention(8, feature_size=(4, 0))
    module = PointwiseSpatialAttention(8, reduction=2, feature_size=4)
    with pytest.raises(ValueError, match="built for 8 channels"):
        module(torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="4-D tensor"):
        module(torch.randn(8, 4, 4))
    with pytest.raises(ValueError, match=r"up to 4 x 4 .* got 5 x 4.*\(2H-1\)\(2W-1\) = 63"):
        module(torch.randn(1, 8, 5, 4))


def test_registry():
    assert ATTENTION["psa"] is PointwiseSpatialAttention
    module = create_attention("psa", 16, reduction=4, feature_size=6)
    assert isinstance(module, PointwiseSpatialAttention)
    assert module.feature_size == (6, 6)
    assert module(torch.randn(1, 16, 6, 6)).shape == (1, 16, 6, 6)
