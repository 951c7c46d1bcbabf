"""Global context block (Cao et al. 2019): the equations written out on copied weights, identity at
initialisation, parameter counts in closed form, SE as a member of the family, the gate, errors, the registry."""

import pytest
import torch
import torch.nn.functional as F
from random_weights import randomise

from attn_course.attention import ATTENTION, GlobalContext, SqueezeExcite, create_attention
from attn_course.models import AttentionRecorder, ResNet
from attn_course.study import ZOO, build_model


def transform_by_hand(c, branch, layer_norm=True):
    """W_v2 ReLU(LN(W_v1 c)) on context vectors c (B, C) with F.linear and F.layer_norm."""
    conv1, norm, conv2 = branch[0], branch[1], branch[3]
    h = F.linear(c, conv1.weight[:, :, 0, 0], conv1.bias)  # (B, p)
    if layer_norm:
        h = F.layer_norm(h, h.shape[1:], norm.weight.flatten(), norm.bias.flatten(), norm.eps)
    return F.linear(F.relu(h), conv2.weight[:, :, 0, 0], conv2.bias)  # (B, C)


def gc_by_hand(x, module):
    """The GC block with an explicit loop over positions: alpha_j = exp(w . x_j + b) / sum_m exp(...),
    c = sum_j alpha_j x_j, then the fusions (multiplication first, as in the official code)."""
    b, channels, h, w = x.shape
    if module.pooling == "att":
        w_k, b_k = module.conv_mask.weight[0, :, 0, 0], module.conv_mask.bias[0]
        logits = torch.stack([x[:, :, i, j] @ w_k + b_k for i in range(h) for j in range(w)], dim=1)  # (B, HW)
        alpha = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        alpha = alpha / alpha.sum(dim=1, keepdim=True)
        positions = [(i, j) for i in range(h) for j in range(w)]
        c = sum(alpha[:, k, None] * x[:, :, i, j] for k, (i, j) in enumerate(positions))  # (B, C)
    else:
        alpha = torch.full((b, h * w), 1.0 / (h * w))
        c = x.sum(dim=(2, 3)) / (h * w)
    out = x
    if module.channel_mul_conv is not None:
        out = out * torch.sigmoid(transform_by_hand(c, module.channel_mul_conv, module.layer_norm))[:, :, None, None]
    if module.channel_add_conv is not None:
        out = out + transform_by_hand(c, module.channel_add_conv, module.layer_norm)[:, :, None, None]
    return out, alpha


@pytest.mark.parametrize("kwargs", [
    {}, {"reduction": 4}, {"fusions": ("channel_mul",)}, {"fusions": ("channel_add", "channel_mul")},
    {"fusions": ("channel_mul", "channel_add")}, {"pooling": "avg", "reduction": 8},
    {"layer_norm": False, "fusions": ("channel_add", "channel_mul")},
])
def test_forward_matches_the_equations(kwargs):
    module = randomise(GlobalContext(32, **kwargs))  # random last convs: not the identity any more
    x = torch.randn(3, 32, 5, 7, generator=torch.Generator().manual_seed(1))  # non-square
    with torch.no_grad():
        expected, alpha = gc_by_hand(x, module)
        if module.pooling == "att":
            with AttentionRecorder(module) as recorder:
                y = module(x)
            torch.testing.assert_close(recorder.stacked()["gate"], alpha[:, None, :])
        else:
            y = module(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    assert (y - x).abs().max() > 0.1  # the random transform changes the input


def test_both_fusions_multiply_first_whatever_their_order():
    a = randomise(GlobalContext(16, 4, fusions=("channel_add", "channel_mul")))
    b = GlobalContext(16, 4, fusions=("channel_mul", "channel_add"))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("kwargs", [{}, {"reduction": 4}, {"pooling": "avg"}, {"layer_norm": False}])
def test_channel_add_starts_as_the_identity(kwargs):
    torch.manual_seed(0)
    module = GlobalContext(64, **kwargs)
    for branch in (module.channel_add_conv,):
        assert (branch[-1].weight == 0).all() and (branch[-1].bias == 0).all()
    x = torch.randn(2, 64, 6, 6)
    assert torch.equal(module(x), x)


def test_channel_mul_starts_at_half_and_conv_mask_as_the_official_init():
    torch.manual_seed(0)
    module = GlobalContext(64, fusions=("channel_mul",))
    x = torch.randn(2, 64, 6, 6)
    torch.testing.assert_close(module(x), 0.5 * x)  # sigmoid(0) = 1/2: not the identity
    assert (module.conv_mask.bias == 0).all()
    std = module.conv_mask.weight.std().item()  # kaiming normal, fan_in = 64: sqrt(2 / 64) = 0.177
    assert 0.12 < std < 0.24, std


def gc_parameters(channels, reduction, pooling="att", n_fusions=1, layer_norm=True):
    """C + 1 (conv_mask with bias) for att pooling; per fusion two 1x1 convs with biases and a LayerNorm."""
    p = channels // reduction
    per_fusion = (channels * p + p) + (p * channels + channels) + (2 * p if layer_norm else 0)
    return (channels + 1 if pooling == "att" else 0) + n_fusions * per_fusion


@pytest.mark.parametrize("channels, kwargs", [
    (16, {"reduction": 4}), (32, {"reduction": 4}), (64, {"reduction": 4}), (256, {}), (2048, {}),
    (64, {"reduction": 4, "fusions": ("channel_add", "channel_mul")}), (48, {"reduction": 5, "pooling": "avg"}),
    (64, {"reduction": 8, "layer_norm": False}),
])
def test_parameter_count_in_closed_form(channels, kwargs):
    module = GlobalContext(channels, **kwargs)
    expected = gc_parameters(channels, kwargs.get("reduction", 16), kwargs.get("pooling", "att"),
                             len(kwargs.get("fusions", ("channel_add",))), kwargs.get("layer_norm", True))
    assert sum(p.numel() for p in module.parameters()) == expected
    assert module.hidden == channels // kwargs.get("reduction", 16)


def test_gc_resnet_of_the_zoo():
    model = build_model("gc")
    plain = sum(p.numel() for p in ResNet().parameters())
    assert ZOO["gc"].kwargs == {"reduction": 4} and ZOO["gc"].stages is None
    assert sum(p.numel() for p in model.parameters()) == plain + sum(gc_parameters(c, 4) for c in (16, 32, 64)) \
        == 80753
    assert [type(b.attention).__name__ for b in model.stages.modules() if hasattr(b, "attention")] == \
        ["GlobalContext"] * 3


def test_se_is_a_member_of_the_family():
    """Average pooling, a bottleneck without LayerNorm and scaling fusion: SE, with SE's weights copied in."""
    torch.manual_seed(0)
    se = SqueezeExcite(24, reduction=4)
    with torch.no_grad():
        se.fc1.bias.normal_()
        se.fc2.bias.normal_()
    gc = GlobalContext(24, reduction=4, pooling="avg", fusions=("channel_mul",), layer_norm=False)
    assert sum(p.numel() for p in gc.parameters()) == sum(p.numel() for p in se.parameters())
    with torch.no_grad():
        branch = gc.channel_mul_conv
        branch[0].weight.copy_(se.fc1.weight[:, :, None, None])
        branch[0].bias.copy_(se.fc1.bias)
        branch[3].weight.copy_(se.fc2.weight[:, :, None, None])
        branch[3].bias.copy_(se.fc2.bias)
    x = torch.randn(3, 24, 6, 5)
    torch.testing.assert_close(gc(x), se(x))
    # and the LayerNorm is what keeps GC-avg-mul from being SE
    with_norm = GlobalContext(24, reduction=4, pooling="avg", fusions=("channel_mul",))
    state = {k: v for k, v in gc.state_dict().items()}
    with_norm.load_state_dict({**with_norm.state_dict(), **state})
    assert not torch.allclose(with_norm(x), se(x))


def test_gate_sums_to_one_over_positions_in_a_resnet():
    torch.manual_seed(0)
    model = ResNet("gc", reduction=4).eval()  # as built: conv_mask's kaiming init already gives non-uniform maps
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(torch.randn(5, 1, 32, 32))
    gates = recorder.stacked()
    assert list(gates) == [f"stages.{i}.0.attention.gate" for i in range(3)]
    for gate, side in zip(gates.values(), (32, 16, 8)):
        assert gate.shape == (5, 1, side * side)
        torch.testing.assert_close(gate.sum(dim=2), torch.ones(5, 1))
        assert (gate > 0).all()
        assert gate.std() > 0.01 / side ** 2  # not uniform (the mean is 1 / side ** 2): it depends on the features


def test_average_pooling_has_no_gate():
    module = GlobalContext(16, 4, pooling="avg")
    assert not hasattr(module, "gate") and not hasattr(module, "conv_mask")
    with pytest.raises(ValueError, match="no submodule named gate"):
        AttentionRecorder(module)


def test_gradient_reaches_the_input_and_every_parameter():
    module = randomise(GlobalContext(16, 4, fusions=("channel_add", "channel_mul")))
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_official_state_dict_names_load():
    """mmcv's ContextBlock names: conv_mask, channel_add_conv.0 (conv), .1 (LayerNorm), .3 (conv)."""
    keys = set(GlobalContext(64).state_dict())
    assert keys == {"conv_mask.weight", "conv_mask.bias", "channel_add_conv.0.weight", "channel_add_conv.0.bias",
                    "channel_add_conv.1.weight", "channel_add_conv.1.bias", "channel_add_conv.3.weight",
                    "channel_add_conv.3.bias"}
    assert tuple(GlobalContext(64).state_dict()["channel_add_conv.1.weight"].shape) == (4, 1, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"reduction": 32}, r"reduction=32 is larger than channels=16.*0 hidden units"),
    ({"reduction": 0}, r"reduction must be a positive int"),
    ({"reduction": 1 / 16}, r"reduction must be a positive int"),
    ({"pooling": "max"}, r"pooling must be 'att' \(attention pooling.*or 'avg'.*got 'max'"),
    ({"pooling": None}, r"pooling must be 'att'"),
    ({"fusions": ("channel_sum",)}, r"unknown fusion 'channel_sum'\. Valid names: 'channel_add'.*'channel_mul'"),
    ({"fusions": ()}, r"fusions is empty.*Name at least one"),
    ({"fusions": []}, r"fusions is empty"),
    ({"fusions": "channel_add"}, r"fusions must be a tuple of fusion names.*write it as a tuple, \(name,\)"),
    ({"fusions": None}, r"fusions must be a tuple of fusion names"),
    ({"fusions": ("channel_add", "channel_add")}, r"each fusion at most once"),
])
def test_bad_arguments_say_how_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GlobalContext(16, **kwargs)


def test_bad_layer_norm_flag_and_input():
    with pytest.raises(TypeError, match="layer_norm must be True or False"):
        GlobalContext(16, 4, layer_norm="no")
    module = GlobalContext(16, 4)
    with pytest.raises(ValueError, match="built for 16 channels but the input has 8"):
        module(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="expects a 4-D tensor"):
        module(torch.randn(16, 4, 4))


def test_registry():
    assert ATTENTION["gc"] is GlobalContext
    module = create_attention("gc", 64, reduction=4)
    assert isinstance(module, GlobalContext) and module.hidden == 16
    assert module.pooling == "att" and module.fusions == ("channel_add",) and module.layer_norm is True
    assert create_attention("gc", 64)(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)
