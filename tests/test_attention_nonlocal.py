"""Non-local block (Wang et al., CVPR 2018): the embedded-Gaussian and dot-product formulas written with einsum
on the copied weights, the identity at initialisation, the scale, the subsampling, the gate, parameters, errors
and the ResNet."""

import pytest
import torch
from random_weights import randomise

from attn_course.attention import ATTENTION, NonLocal, create_attention
from attn_course.models import AttentionRecorder, BasicBlock, ResNet
from attn_course.study import ZOO, build_model


def conv1x1(x, conv):
    """A 1x1 convolution with bias, as a sum over the input channels."""
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def max_pool_2x2(x):
    """2x2 max-pooling with stride 2, rounding down on odd sizes (the official Caffe2 pooling, no padding)."""
    b, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2, 2, w2, 2).amax(dim=(3, 5))


def batch_norm(u, bn):
    """Eval-mode BatchNorm over dim 1, written out."""
    shape = (1, -1, 1, 1)
    return (u - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * \
        bn.weight.view(shape) + bn.bias.view(shape)


def non_local_by_hand(x, module, subsample=True, scale=True, mode="embedded_gaussian"):
    """Eqs. 1-6 of the paper with the official code's pooling and scale: y_i = sum_j a_ij g(x_j), z = x + BN(W_z y)."""
    b, c, h, w = x.shape
    keys = max_pool_2x2(x) if subsample else x
    theta = conv1x1(x, module.theta).flatten(2)  # (B, i, N')
    phi, g = conv1x1(keys, module.phi).flatten(2), conv1x1(keys, module.g).flatten(2)  # (B, i, N)
    logits = torch.einsum("bkq,bkn->bqn", theta, phi)  # theta_i^T phi_j
    if mode == "embedded_gaussian":
        if scale:
            logits = logits / module.inner ** 0.5
        f = torch.exp(logits - logits.amax(dim=2, keepdim=True))  # exp(theta^T phi), shifted for stability
        attention = f / f.sum(dim=2, keepdim=True)  # C(x) = sum_j f
    else:
        attention = logits / phi.shape[2]  # C(x) = N
    y = torch.einsum("bqn,bkn->bkq", attention, g).reshape(b, module.inner, h, w)
    return x + batch_norm(conv1x1(y, module.w_z), module.bn), attention


@pytest.mark.parametrize("channels, inner, size, subsample, scale", [
    (16, None, (8, 8), True, True), (32, 5, (16, 16), True, True), (8, 3, (6, 10), False, True),
    (16, None, (7, 9), True, False), (16, 8, (5, 5), False, False), (64, None, (8, 8), True, True)])
def test_embedded_gaussian_matches_the_formula(channels, inner, size, subsample, scale):
    # in float64: random weights make large logits, whose float32 rounding differs between two code paths
    module = randomise(NonLocal(channels, inner=inner, subsample=subsample, scale=scale)).double().eval()
    x = torch.randn(3, channels, *size, dtype=torch.float64)
    with torch.no_grad(), AttentionRecorder(module) as recorder:
        z = module(x)
    expected, attention = non_local_by_hand(x, module, subsample, scale)
    assert z.shape == x.shape
    torch.testing.assert_close(z, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(recorder.stacked()["gate"], attention, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("subsample, size", [(True, (8, 8)), (False, (6, 5)), (True, (9, 7))])
def test_dot_product_matches_the_formula(subsample, size):
    module = randomise(NonLocal(16, mode="dot_product", subsample=subsample)).double().eval()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    with torch.no_grad(), AttentionRecorder(module) as recorder:
        z = module(x)
    expected, attention = non_local_by_hand(x, module, subsample, mode="dot_product")
    torch.testing.assert_close(z, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(recorder.stacked()["gate"], attention, rtol=1e-10, atol=1e-12)
    scaled = NonLocal(16, mode="dot_product", subsample=subsample, scale=False).double()
    scaled.load_state_dict(module.state_dict())
    with torch.no_grad():  # the official code never scales the dot product: the flag does not touch it
        torch.testing.assert_close(scaled.eval()(x), z, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product"])
def test_the_block_is_the_identity_at_initialisation(mode):
    torch.manual_seed(0)
    module = NonLocal(32, mode=mode)
    assert (module.bn.weight == 0).all() and (module.bn.bias == 0).all()
    for conv in (module.theta, module.phi, module.g, module.w_z):
        assert (conv.bias == 0).all() and 0.005 < conv.weight.std().item() < 0.015  # N(0, 0.01^2), as in the code
    x = torch.randn(4, 32, 8, 8)
    torch.testing.assert_close(module.train()(x), x, rtol=0, atol=0)  # batch statistics
    torch.testing.assert_close(module.eval()(x), x, rtol=0, atol=0)  # running statistics


def test_a_resnet_with_fresh_blocks_computes_the_plain_resnet():
    torch.manual_seed(0)
    with_blocks = ResNet(**ZOO["nonlocal"].model_kwargs()).eval()
    plain = ResNet().eval()
    missing, unexpected = plain.load_state_dict(with_blocks.state_dict(), strict=False)
    assert not missing and all(".attention." in key for key in unexpected)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(with_blocks(x), plain(x), rtol=0, atol=0)


def logits_into_the_gate(module, x):
    """The tensor that enters ``module.gate``: theta^T phi, scaled or not."""
    seen = []
    handle = module.gate.register_forward_hook(lambda m, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        module(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("inner", [8, 5])
def test_scale_changes_exactly_the_scale_of_the_logits(inner):
    scaled = randomise(NonLocal(16, inner=inner)).eval()
    plain = NonLocal(16, inner=inner, scale=False).eval()
    plain.load_state_dict(scaled.state_dict())
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(logits_into_the_gate(scaled, x), logits_into_the_gate(plain, x) * inner ** -0.5)
    with torch.no_grad():
        assert not torch.allclose(scaled(x), plain(x))


@pytest.mark.parametrize("subsample", [True, False])
def test_subsampling_pools_phi_and_g_only(subsample):
    module = randomise(NonLocal(8, subsample=subsample)).eval()
    shapes = {}
    for name in ("theta", "phi", "g"):
        getattr(module, name).register_forward_hook(
            lambda m, inputs, output, name=name: shapes.update({name: tuple(inputs[0].shape)}))
    x = torch.randn(2, 8, 12, 10)
    with torch.no_grad(), AttentionRecorder(module) as recorder:
        assert module(x).shape == x.shape
    keys = (6, 5) if subsample else (12, 10)
    assert shapes == {"theta": (2, 8, 12, 10), "phi": (2, 8, *keys), "g": (2, 8, *keys)}
    assert recorder.stacked()["gate"].shape == (2, 12 * 10, keys[0] * keys[1])  # every position is a query
    if subsample:  # the keys come from the 2x2 maximum of x, not of phi(x) (pool first, as the official code)
        torch.testing.assert_close(module.pool(x), max_pool_2x2(x))


def test_odd_sizes_round_down_like_the_official_pooling():
    module = NonLocal(8).eval()
    with torch.no_grad(), AttentionRecorder(module) as recorder:
        assert module(torch.randn(2, 8, 5, 7)).shape == (2, 8, 5, 7)
    assert recorder.stacked()["gate"].shape == (2, 35, 2 * 3)  # the last row and column are no keys


def test_gate_rows_sum_to_one():
    model = ResNet("nonlocal", stages=(2, 3), position="after_block").eval()
    randomise(model)
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(torch.rand(5, 1, 32, 32))
    gates = recorder.stacked()
    assert list(gates) == ["stages.1.0.attention.gate", "stages.2.0.attention.gate"]
    for gate, (queries, keys) in zip(gates.values(), ((16 * 16, 8 * 8), (8 * 8, 4 * 4))):
        assert gate.shape == (5, queries, keys)
        torch.testing.assert_close(gate.sum(dim=2), torch.ones(5, queries))
        assert (gate >= 0).all()


def non_local_parameters(channels, inner):
    """theta, phi, g (C -> inner, with bias), W_z (inner -> C, with bias), the BN's scale and shift."""
    return 3 * (channels * inner + inner) + (inner * channels + channels) + 2 * channels


@pytest.mark.parametrize("channels, inner", [(16, None), (32, None), (64, None), (1024, None), (64, 5), (3, 1)])
def test_parameter_count(channels, inner):
    module = NonLocal(channels, inner=inner)
    inner = channels // 2 if inner is None else inner
    assert module.inner == inner
    assert sum(p.numel() for p in module.parameters()) == non_local_parameters(channels, inner) \
        == 4 * channels * inner + 3 * inner + 3 * channels
    assert sum(p.numel() for p in NonLocal(64, mode="dot_product").parameters()) == non_local_parameters(64, 32)


def test_zoo_model_parameter_count():
    plain = sum(p.numel() for p in ResNet().parameters())
    model = build_model("nonlocal")
    assert sum(p.numel() for p in model.parameters()) == plain + non_local_parameters(32, 16) + \
        non_local_parameters(64, 32) == 88426


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product"])
def test_gradients_flow(mode):
    module = NonLocal(16, mode=mode)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    module(x).square().sum().backward()
    # at initialisation the BN's zero scale blocks the branch: only x (through the shortcut) and the BN learn
    assert x.grad.abs().sum() > 0 and module.bn.weight.grad.abs().sum() > 0
    assert module.theta.weight.grad.abs().sum() == 0
    module = randomise(NonLocal(16, mode=mode))
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("size", [(1, 8), (8, 1), (1, 1)])
def test_a_map_too_small_to_subsample_says_how_to_fix(size):
    with pytest.raises(ValueError, match=rf"needs H and W of at least 2; got a {size[0]} x {size[1]} feature map"
                                         r".*Pass subsample=False"):
        NonLocal(8)(torch.randn(2, 8, *size))
    assert NonLocal(8, subsample=False)(torch.randn(2, 8, *size)).shape == (2, 8, *size)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"mode": "gaussian"}, ValueError, r"mode must be one of 'embedded_gaussian', 'dot_product', got 'gaussian'"),
    ({"mode": None}, ValueError, r"mode must be one of"),
    ({"inner": 0}, ValueError, r"inner must be a positive int .*got 0"),
    ({"inner": -3}, ValueError, r"inner must be a positive int"),
    ({"inner": 2.5}, ValueError, r"inner must be a positive int"),
    ({"inner": True}, ValueError, r"inner must be a positive int"),
    ({"subsample": "yes"}, TypeError, r"subsample must be True or False"),
    ({"scale": 1}, TypeError, r"scale must be True or False"),
])
def test_bad_arguments_say_how_to_fix(kwargs, error, message):
    with pytest.raises(error, match=message):
        NonLocal(16, **kwargs)


def test_one_channel_needs_an_explicit_inner():
    with pytest.raises(ValueError, match=r"channels=1 leaves inner = channels // 2 = 0 .*Pass inner=1"):
        NonLocal(1)
    assert NonLocal(1, inner=1)(torch.randn(2, 1, 4, 4)).shape == (2, 1, 4, 4)


def test_bad_input():
    module = NonLocal(16)
    with pytest.raises(ValueError, match="built for 16 channels but the input has 8"):
        module(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="expects a 4-D tensor"):
        module(torch.randn(16, 4, 4))


def test_registry_and_zoo():
    assert ATTENTION["nonlocal"] is NonLocal
    module = create_attention("nonlocal", 64, inner=16, mode="dot_product")
    assert isinstance(module, NonLocal) and module.inner == 16 and module.mode == "dot_product"
    entry = ZOO["nonlocal"]
    assert (entry.attention, entry.kwargs, entry.stages) == ("nonlocal", {"position": "after_block"}, (2, 3))


def test_resnet_puts_the_blocks_after_the_residual_blocks_of_stages_2_and_3():
    model = ResNet(attention="nonlocal", stages=(2, 3), position="after_block")
    kinds = [type(b.attention).__name__ for b in model.modules() if isinstance(b, BasicBlock)]
    assert kinds == ["Identity", "NonLocal", "NonLocal"]
    randomise(model).eval()
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(torch.rand(2, 1, 32, 32))
    assert {name: tuple(g.shape) for name, g in recorder.stacked().items()} == {
        "stages.1.0.attention.gate": (2, 256, 64), "stages.2.0.attention.gate": (2, 64, 16)}
    block = model.stages[2][0]  # on the block's output: after the addition and the ReLU
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        out = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))) + block.shortcut(x))
        torch.testing.assert_close(block(x), block.attention(out))
