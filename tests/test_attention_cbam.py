"""CBAM (Woo et al., ECCV 2018): shapes, agreement with the equations written out, order, gradients,
errors, registry, and the parameter count of CBAM-ResNet-50 against the paper."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attn_course.attention.cbam as cbam_module
from attn_course.attention import ATTENTION, CBAM, ChannelAttention, SpatialAttention, create_attention
from attn_course.attention.cbam import ORDERS


def randomise(module, seed=0):
    """Give every parameter and BatchNorm buffer random values, so that no term is trivially 0 or 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(module.parameters()) + [b for n, b in module.named_buffers() if "running" in n]:
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.6 + 0.2 if tensor.ndim == 1
                         else torch.randn(tensor.shape, generator=generator) * 0.5)
    return module


def channel_gate_by_hand(x, w0, b0, w1, b1):
    """Eq. 2 of the paper with the official biases: sigmoid(W1 relu(W0 avg + b0) + b1 + (same for max))."""
    batch, channels = x.shape[:2]
    gates = torch.empty(batch, channels)
    for i in range(batch):
        flat = x[i].reshape(channels, -1)
        total = torch.zeros(channels)
        for descriptor in (flat.sum(1) / flat.shape[1], flat.max(1).values):
            hidden = torch.clamp(w0 @ descriptor + b0, min=0)
            total = total + w1 @ hidden + b1
        gates[i] = 1 / (1 + torch.exp(-total))
    return gates  # (B, C)


def spatial_gate_by_hand(x, weight, bn=None, bias=None):
    """Eq. 3 in the official form: sigmoid(BN(conv([max_c x; mean_c x]))), BN in eval mode."""
    channels = x.shape[1]
    max_map = x[:, 0]
    mean_map = x[:, 0].clone()
    for c in range(1, channels):
        max_map = torch.maximum(max_map, x[:, c])
        mean_map = mean_map + x[:, c]
    mean_map = mean_map / channels
    pooled = torch.stack([max_map, mean_map], dim=1)  # (B, 2, H, W): official order (max, mean)
    k = weight.shape[-1]
    z = F.conv2d(pooled, weight, bias, padding=(k - 1) // 2)  # (B, 1, H, W)
    if bn is not None:
        mean, var, gamma, beta, eps = bn
        z = (z - mean) / torch.sqrt(var + eps) * gamma + beta
    return torch.sigmoid(z)  # (B, 1, H, W)


def bn_terms(bn):
    return bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps


@pytest.mark.parametrize("shape", [(2, 32, 7, 5), (2, 16, 1, 1), (3, 64, 12, 12)])
def test_output_shapes(shape):
    x = torch.randn(shape)
    cbam = CBAM(shape[1], reduction=4)
    assert cbam(x).shape == x.shape
    assert ChannelAttention(shape[1], 4)(x).shape == x.shape
    assert SpatialAttention(3)(x).shape == x.shape


def test_gates_have_the_documented_shapes_and_lie_in_unit_interval():
    cbam = CBAM(16, reduction=4).eval()
    recorded = {}
    cbam.channel.gate.register_forward_hook(lambda m, i, o: recorded.__setitem__("channel", o))
    cbam.spatial.gate.register_forward_hook(lambda m, i, o: recorded.__setitem__("spatial", o))
    cbam(torch.randn(3, 16, 9, 6))
    assert recorded["channel"].shape == (3, 16)
    assert recorded["spatial"].shape == (3, 1, 9, 6)
    for gate in recorded.values():
        assert gate.min() >= 0 and gate.max() <= 1


def test_structure_follows_the_official_code():
    channel = ChannelAttention(64, reduction=16)
    linears = [m for m in channel.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 4), (4, 64)]
    assert all(m.bias is not None for m in linears)
    spatial = SpatialAttention()
    assert spatial.conv.in_channels == 2 and spatial.conv.out_channels == 1
    assert spatial.conv.kernel_size == (7, 7) and spatial.conv.padding == (3, 3)
    assert spatial.conv.bias is None and isinstance(spatial.bn, nn.BatchNorm2d)
    plain = SpatialAttention(batch_norm=False)
    assert plain.conv.bias is not None and isinstance(plain.bn, nn.Identity)


def test_channel_attention_matches_equation_2():
    module = randomise(ChannelAttention(12, reduction=3))
    x = torch.randn(3, 12, 5, 4)
    first, last = module.mlp[0], module.mlp[2]
    gates = channel_gate_by_hand(x, first.weight, first.bias, last.weight, last.bias)
    torch.testing.assert_close(module(x), x * gates[:, :, None, None])


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_spatial_attention_matches_equation_3_with_batch_norm_in_eval_mode(kernel_size):
    module = randomise(SpatialAttention(kernel_size)).eval()
    x = torch.randn(2, 6, 9, 11)
    gate = spatial_gate_by_hand(x, module.conv.weight, bn=bn_terms(module.bn))
    torch.testing.assert_close(module(x), x * gate)


def test_spatial_attention_in_training_mode_normalises_with_batch_statistics():
    module = randomise(SpatialAttention(5)).train()
    x = torch.randn(4, 3, 6, 6)
    pre = spatial_gate_by_hand(x, module.conv.weight)  # sigmoid(z): invert to get the conv output z
    z = torch.log(pre / (1 - pre))
    stats = (z.mean(), z.var(unbiased=False), module.bn.weight, module.bn.bias, module.bn.eps)
    expected = x * spatial_gate_by_hand(x, module.conv.weight, bn=stats)
    torch.testing.assert_close(module(x), expected, atol=1e-4, rtol=1e-4)


def test_spatial_attention_without_batch_norm_is_the_papers_plain_conv():
    module = randomise(SpatialAttention(7, batch_norm=False))
    x = torch.randn(2, 5, 8, 8)
    gate = spatial_gate_by_hand(x, module.conv.weight, bias=module.conv.bias)
    torch.testing.assert_close(module(x), x * gate)


def test_max_comes_before_mean_as_in_the_official_channel_pool():
    module = SpatialAttention(1, batch_norm=False)
    with torch.no_grad():
        module.conv.weight.copy_(torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1))  # keep only input 0
        module.conv.bias.zero_()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(module(x), x * torch.sigmoid(x.amax(dim=1, keepdim=True)))


@pytest.mark.parametrize("order", ["channel-spatial", "spatial-channel"])
def test_cbam_chains_its_halves_in_the_requested_order(order):
    cbam = randomise(CBAM(8, reduction=2, kernel_size=3, order=order)).eval()
    x = torch.randn(2, 8, 6, 6)
    channel = lambda t: t * channel_gate_by_hand(
        t, cbam.channel.mlp[0].weight, cbam.channel.mlp[0].bias, cbam.channel.mlp[2].weight,
        cbam.channel.mlp[2].bias)[:, :, None, None]
    spatial = lambda t: t * spatial_gate_by_hand(t, cbam.spatial.conv.weight, bn=bn_terms(cbam.spatial.bn))
    expected = spatial(channel(x)) if order == "channel-spatial" else channel(spatial(x))
    torch.testing.assert_close(cbam(x), expected)


def test_order_matters():
    first = randomise(CBAM(8, reduction=2, kernel_size=3)).eval()
    second = CBAM(8, reduction=2, kernel_size=3, order="spatial-channel").eval()
    second.load_state_dict(first.state_dict())
    x = torch.randn(2, 8, 6, 6)
    assert (first(x) - second(x)).abs().max() > 1e-3


def test_switching_a_half_off_leaves_the_other():
    x = torch.randn(2, 8, 5, 5)
    full = randomise(CBAM(8, reduction=2)).eval()
    channel_only = CBAM(8, reduction=2, use_spatial=False).eval()
    channel_only.channel.load_state_dict(full.channel.state_dict())
    spatial_only = CBAM(8, use_channel=False).eval()
    spatial_only.spatial.load_state_dict(full.spatial.state_dict())
    assert isinstance(channel_only.spatial, nn.Identity) and isinstance(spatial_only.channel, nn.Identity)
    torch.testing.assert_close(channel_only(x), full.channel(x))
    torch.testing.assert_close(spatial_only(x), full.spatial(x))


def test_parameter_counts():
    # channel MLP: C*C/r + C/r + C/r*C + C; spatial: 2*k*k conv weights + 2 BatchNorm affine terms
    assert sum(p.numel() for p in ChannelAttention(64, 16).parameters()) == 64 * 4 + 4 + 4 * 64 + 64
    assert sum(p.numel() for p in SpatialAttention(7).parameters()) == 2 * 49 + 2
    assert sum(p.numel() for p in SpatialAttention(7, batch_norm=False).parameters()) == 2 * 49 + 1
    assert sum(p.numel() for p in CBAM(64, 16).parameters()) == 580 + 100


@pytest.mark.parametrize("module", [ChannelAttention(8, 2), SpatialAttention(3), CBAM(8, 2, 3)],
                         ids=["channel", "spatial", "cbam"])
def test_gradients_reach_the_input_and_every_parameter(module):
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ChannelAttention(0), "channels must be a positive int"),
        (lambda: ChannelAttention(8, reduction=16), "larger than channels"),
        (lambda: ChannelAttention(8, reduction=0), "reduction must be a positive int"),
        (lambda: SpatialAttention(4), "must be odd"),
        (lambda: SpatialAttention(0), "positive odd int"),
        (lambda: SpatialAttention(3.0), "positive odd int"),
        (lambda: CBAM(8, reduction=16), "larger than channels"),
        (lambda: CBAM(8, 2, kernel_size=6), "must be odd"),
        (lambda: CBAM(8, 2, order="parallel"), "order must be one of"),
        (lambda: CBAM(8, 2, use_channel=False, use_spatial=False), "leaves no attention"),
        (lambda: CBAM(-1), "channels must be a positive int"),
    ],
)
def test_bad_arguments_raise_helpful_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_raise_helpful_errors():
    with pytest.raises(ValueError, match="built for 8 channels but the input has 4"):
        CBAM(8, 2)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="4-D tensor"):
        CBAM(8, 2)(torch.randn(8, 5, 5))
    with pytest.raises(ValueError, match="4-D tensor"):
        SpatialAttention()(torch.randn(8, 5, 5))
    with pytest.raises(ValueError, match="4-D tensor"):
        ChannelAttention(8, 2)(torch.randn(2, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        SpatialAttention()([[1.0]])


def test_registry_builds_cbam():
    assert ATTENTION["cbam"] is CBAM
    module = create_attention("cbam", 32, reduction=4, kernel_size=3, order="spatial-channel")
    assert isinstance(module, CBAM) and module.order == "spatial-channel"
    assert module.spatial.conv.kernel_size == (3, 3)
    assert module.channel.mlp[0].out_features == 8


# CBAM paper, Table 4 (ImageNet): ResNet50 25.56M parameters, ResNet50 + CBAM 28.09M (in millions,
# two decimals). CBAM sits in every bottleneck after the last BatchNorm, on its 4 * planes channels.
PAPER_RESNET50_M, PAPER_CBAM_RESNET50_M = 25.56, 28.09


def _resnet50():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.resnet50(weights=None)


def test_cbam_resnet50_parameter_count_matches_the_paper():
    model = _resnet50()
    base = sum(p.numel() for p in model.parameters())
    added = sum(
        sum(p.numel() for p in CBAM(block.bn3.num_features).parameters())
        for block in model.modules() if type(block).__name__ == "Bottleneck"
    )
    assert round(base / 1e6, 2) == PAPER_RESNET50_M
    assert round((base + added) / 1e6, 2) == PAPER_CBAM_RESNET50_M


def test_add_attention_cbam_to_resnet50_matches_the_paper():
    from attn_course import models

    if not hasattr(models, "add_attention"):
        pytest.skip("attn_course.models.add_attention is not written yet")
    model = models.add_attention(_resnet50(), "cbam")
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == PAPER_CBAM_RESNET50_M
    assert sum(isinstance(m, CBAM) for m in model.modules()) == 16  # 3 + 4 + 6 + 3 bottlenecks
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def _cbam_with_amax(module, x):
    """CBAM written with amax and mean, as in the official code: the reference for the fast version."""
    c, s = module.channel, module.spatial
    x = x * c.gate(c.mlp(x.mean(dim=(2, 3))) + c.mlp(x.amax(dim=(2, 3))))[:, :, None, None]
    pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    return x * s.gate(s.bn(s.conv(pooled)))


@pytest.mark.parametrize("shape", [(4, 16, 8, 8), (2, 64, 32, 32), (3, 8, 5, 7)])
def test_fast_reductions_give_the_same_output_and_gradients_as_amax(shape):
    torch.manual_seed(0)
    module = CBAM(shape[1], reduction=4)
    x = torch.randn(shape, requires_grad=True)
    fast = module(x)
    reference = _cbam_with_amax(module, x)
    assert torch.equal(fast, reference)  # bit for bit
    g = torch.randn_like(fast)
    grad_fast, = torch.autograd.grad(fast, x, g)
    grad_reference, = torch.autograd.grad(reference, x, g)
    torch.testing.assert_close(grad_fast, grad_reference)  # random inputs have no ties


def test_at_a_tie_the_maximum_gradient_goes_to_one_position_and_its_total_is_kept():
    x = torch.zeros(1, 4, 2, 2, requires_grad=True)  # every position ties for every maximum
    module = ChannelAttention(4, reduction=2)
    peak = F.adaptive_max_pool2d(x, 1).flatten(1)  # what the module uses
    grad, = torch.autograd.grad(peak.sum(), x)
    assert torch.equal(grad.sum(dim=(2, 3)), torch.ones(1, 4))  # the total gradient is the same as amax's...
    assert torch.equal((grad != 0).sum(dim=(2, 3)), torch.ones(1, 4, dtype=torch.long))  # ...but on one position
    grad_amax, = torch.autograd.grad(x.amax(dim=(2, 3)).sum(), x)
    assert torch.equal(grad_amax, torch.full_like(x, 0.25))  # amax splits it evenly
    assert module(x).shape == x.shape


@pytest.mark.parametrize("kwargs, name", [({"use_spatial": "no"}, "use_spatial"), ({"use_channel": 0}, "use_channel"),
                                          ({"batch_norm": None}, "batch_norm")])
def test_switches_must_be_bools(kwargs, name):
    # CBAM(16, use_spatial="no") used to keep the spatial half: "no" is truthy.
    with pytest.raises(TypeError, match=f"CBAM: {name} must be True or False"):
        CBAM(16, **kwargs)
    with pytest.raises(TypeError, match="SpatialAttention: batch_norm must be True or False"):
        SpatialAttention(7, batch_norm="off")


def _unfused(module, monkeypatch):
    """The module's plain autograd path (the one no_grad inference takes), for comparison."""
    monkeypatch.setattr(cbam_module, "_fused", lambda *args: False)
    return module


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", [(2, 8, 4, 4), (2, 6, 3, 5)])
def test_hand_written_backward_passes_gradcheck(order, shape):
    torch.manual_seed(0)
    module = CBAM(shape[1], reduction=2, order=order).double()
    x = torch.randn(shape, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


@pytest.mark.parametrize("order", ORDERS)
def test_training_path_equals_the_plain_autograd_path(order, monkeypatch):
    torch.manual_seed(0)
    module = CBAM(16, reduction=4, order=order)
    x = torch.randn(4, 16, 8, 8, requires_grad=True)
    fused = module(x)
    g = torch.randn_like(fused)
    grads = torch.autograd.grad(fused, [x, *module.parameters()], g)
    plain = _unfused(module, monkeypatch)(x)
    plain_grads = torch.autograd.grad(plain, [x, *module.parameters()], g)
    assert torch.equal(fused, plain)  # the forward values are the same, bit for bit
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums in another order (gradcheck: exact)


def test_the_graph_can_be_walked_twice_with_retain_graph():
    module = CBAM(8, reduction=2)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    y = module(x).square().sum()
    first, = torch.autograd.grad(y, x, retain_graph=True)
    second, = torch.autograd.grad(y, x)
    assert torch.equal(first, second)


def test_inference_without_gradients_takes_the_plain_path_with_the_same_values():
    module = CBAM(8, reduction=2).eval()
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        inferred = module(x)
    assert inferred.grad_fn is None
    assert torch.equal(inferred, module(x.requires_grad_()).detach())


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (3, 5, 4, 7), (1, 64, 32, 32)])
def test_index_of_maximum_gives_the_indices_of_max_and_adaptive_max_pool(shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    b, c, h, w = shape
    over_channels = cbam_module._index_of_maximum(x, x.amax(dim=1, keepdim=True), 1)
    assert torch.equal(over_channels, x.max(dim=1).indices.view(b, h * w))
    over_positions = cbam_module._index_of_maximum(x, x.amax(dim=(2, 3), keepdim=True), 2)
    assert torch.equal(over_positions, F.adaptive_max_pool2d(x, 1, return_indices=True)[1].view(b, c))


def test_index_of_maximum_hands_ties_and_nan_back_to_the_caller():
    x = torch.randn(2, 4, 3, 3)
    x[1, 2, 0, 0] = x[1, 3, 0, 0] = x[1].max() + 1  # a tie over the channels at one position
    assert cbam_module._index_of_maximum(x, x.amax(dim=1, keepdim=True), 1) is None
    assert cbam_module._index_of_maximum(x, x.amax(dim=(2, 3), keepdim=True), 2) is not None  # no tie there
    x[0, 0, 1, 1] = float("nan")  # amax is NaN, which equals nothing
    assert cbam_module._index_of_maximum(x, x.amax(dim=(2, 3), keepdim=True), 2) is None


@pytest.mark.parametrize("order", ORDERS)
def test_indices_from_the_mask_give_the_same_gradients_bit_for_bit(order, monkeypatch):
    # The fast path must not change a training run: the study's CBAM rows were computed with the
    # indices of max and adaptive_max_pool2d, which the fallback below takes at every call.
    torch.manual_seed(0)
    module = CBAM(32, reduction=4, order=order)
    x = torch.randn(8, 32, 16, 16, requires_grad=True)
    g = torch.randn_like(x)
    fast = torch.autograd.grad(module(x), [x, *module.parameters()], g)
    monkeypatch.setattr(cbam_module, "_index_of_maximum", lambda *args: None)
    indexed = torch.autograd.grad(module(x), [x, *module.parameters()], g)
    for a, b in zip(fast, indexed):
        assert torch.equal(a, b)


def test_at_a_tie_the_training_path_routes_the_gradient_as_the_plain_path(monkeypatch):
    torch.manual_seed(0)
    module = CBAM(8, reduction=2)
    x = torch.randn(2, 8, 4, 4).round().requires_grad_()  # many ties, over positions and channels
    g = torch.randn_like(x)
    grads = torch.autograd.grad(module(x), [x, *module.parameters()], g)
    plain_grads = torch.autograd.grad(_unfused(module, monkeypatch)(x), [x, *module.parameters()], g)
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_index_of_maximum_refuses_a_rounded_position(monkeypatch):
    # A matrix product in reduced precision (TF32 on a GPU) could round a large position: the index
    # must then be refused, not used, even though every slice counts one hit.
    x = torch.randn(2, 3, 64, 64)
    exact = torch.matmul

    def rounded(a, b):
        out = exact(a, b)
        return out + torch.tensor([0.0, 1.0])  # every position off by one, the counts intact
    monkeypatch.setattr(torch, "matmul", rounded)
    assert cbam_module._index_of_maximum(x, x.amax(dim=(2, 3), keepdim=True), 2) is None
