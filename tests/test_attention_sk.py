"""Selective Kernel (Li et al., CVPR 2019): the equations written with F.conv2d on the copied weights,
selection weights summing to 1 across branches and recorded, parameter counts, errors, gradients, the ResNet."""

import pytest
import torch
import torch.nn.functional as F
from random_weights import randomise

from attn_course.attention import ATTENTION, SelectiveKernel, create_attention
from attn_course.models import AttentionRecorder, BasicBlock, ResNet
from attn_course.study import ZOO


def batch_norm(u, bn):
    """Eval-mode BatchNorm over dim 1, written out."""
    shape = (1, -1) + (1,) * (u.dim() - 2)
    return (u - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * \
        bn.weight.view(shape) + bn.bias.view(shape)


def sk_by_hand(x, module, groups, stride=1):
    """Eqs. 1-6: two grouped convolutions (the second dilated), fuse, softmax across the two branches."""
    channels = x.shape[1]
    u = []
    for dilation, branch in zip((1, 2), module.branches):
        conv, bn = branch[0], branch[1]
        out = F.conv2d(x, conv.weight.clone(), stride=stride, padding=dilation, dilation=dilation, groups=groups)
        u.append(F.relu(batch_norm(out, bn)))
    s = (u[0] + u[1]).mean(dim=(2, 3))  # (B, C)
    fc, bn = module.fuse[0].weight[:, :, 0, 0], module.fuse[1]  # (d, C)
    z = F.relu(batch_norm(s @ fc.T, bn))  # (B, d)
    a_matrix, b_matrix = module.select.weight[:channels, :, 0, 0], module.select.weight[channels:, :, 0, 0]
    logits_a, logits_b = z @ a_matrix.T, z @ b_matrix.T  # (B, C) each
    a1 = torch.exp(logits_a) / (torch.exp(logits_a) + torch.exp(logits_b))  # Eq. 5
    a2 = 1 - a1
    return a1[:, :, None, None] * u[0] + a2[:, :, None, None] * u[1], torch.stack([a1, a2], dim=1)


@pytest.mark.parametrize("channels, groups, stride", [(16, 4, 1), (32, 8, 2), (64, 16, 1)])
def test_forward_matches_the_equations(channels, groups, stride):
    module = randomise(SelectiveKernel(channels, reduction=4, min_hidden=6, groups=groups, stride=stride)).eval()
    x = torch.randn(3, channels, 9, 7)  # odd, non-square: padding and dilation must keep the size
    with torch.no_grad():
        expected, weights = sk_by_hand(x, module, groups, stride)
        with AttentionRecorder(module) as recorder:
            y = module(x)
    assert y.shape == (3, channels, (9 - 1) // stride + 1, (7 - 1) // stride + 1)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(recorder.stacked()["gate"], weights, rtol=1e-4, atol=1e-6)


def test_selection_weights_sum_to_one_across_branches_and_are_recorded():
    model = ResNet("sk", position="conv2", groups=8).eval()
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(torch.randn(5, 1, 32, 32))
    gates = recorder.stacked()
    assert list(gates) == [f"stages.{i}.0.attention.gate" for i in range(3)]
    for gate, width in zip(gates.values(), (16, 32, 64)):
        assert gate.shape == (5, 2, width)
        torch.testing.assert_close(gate.sum(dim=1), torch.ones(5, width))
        assert not torch.allclose(gate.sum(dim=2), torch.ones(5, 2))  # not normalised over channels (issue #18)
        assert (gate > 0).all() and (gate < 1).all()


def sk_parameters(channels, groups, hidden):
    """Two grouped 3x3 convs and their BNs, fc C -> d and its BN, one 1x1 conv d -> 2C, no biases."""
    branches = 2 * (channels * (channels // groups) * 9 + 2 * channels)
    return branches + (channels * hidden + 2 * hidden) + hidden * 2 * channels


@pytest.mark.parametrize("channels, kwargs, hidden", [
    (16, {"groups": 2}, 32), (32, {"groups": 2}, 32), (64, {"groups": 2}, 32),  # the zoo's d = max(C // 16, 32)
    (16, {"groups": 8}, 32),
    (64, {"groups": 32}, 32), (1024, {}, 64), (64, {"reduction": 4, "min_hidden": 8, "groups": 1}, 16)])
def test_parameter_count(channels, kwargs, hidden):
    module = create_attention("sk", channels, **kwargs)
    assert module.fuse[0].out_channels == hidden
    assert sum(p.numel() for p in module.parameters()) == sk_parameters(channels, kwargs.get("groups", 32), hidden)
    assert [sum(p.numel() for p in create_attention("sk", c, groups=2).parameters()) for c in (16, 32, 64)] == \
        [3968, 12480, 43328]


def test_sk_resnet_parameter_count():
    # conv2 (9 C^2 weights) is replaced by the SK conv; everything else is the plain ResNet's 77,754.
    model = ResNet(**ZOO["sk"].model_kwargs())
    plain = sum(p.numel() for p in ResNet().parameters())
    expected = plain + sum(sk_parameters(c, 2, 32) - 9 * c * c for c in (16, 32, 64))
    assert sum(p.numel() for p in model.parameters()) == expected == 89146


@pytest.mark.parametrize("kwargs, message", [
    ({"groups": 32}, r"groups=32 does not divide channels=16\. Choose groups from \[1, 2, 4, 8, 16\]"),
    ({"groups": 3}, r"groups=3 does not divide channels=16"),
    ({"groups": 0}, r"groups must be a positive int"),
    ({"reduction": 0}, r"reduction must be a positive int, got 0"),
    ({"reduction": 2.5}, r"reduction must be a positive int"),
    ({"reduction": True}, r"reduction must be a positive int"),
    ({"min_hidden": -1}, r"min_hidden must be a positive int"),
    ({"stride": 0}, r"stride must be a positive int"),
])
def test_bad_arguments_say_how_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelectiveKernel(16, **kwargs)


def test_bad_input():
    module = SelectiveKernel(16, groups=8)
    with pytest.raises(ValueError, match="built for 16 channels but the input has 8"):
        module(torch.randn(2, 8, 4, 4))


def test_gradient_reaches_the_input_and_every_parameter():
    module = SelectiveKernel(16, groups=4)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_standalone_keeps_the_shape():
    assert ATTENTION["sk"] is SelectiveKernel
    assert create_attention("sk", 64)(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)


def test_sk_replaces_conv2_and_keeps_bn2():
    torch.manual_seed(0)
    block = BasicBlock(8, 16, 2, attention="sk", attention_kwargs={"groups": 4, "min_hidden": 4},
                       position="conv2")
    assert isinstance(block.attention, SelectiveKernel) and isinstance(block.conv2, torch.nn.Identity)
    randomise(block).eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        out = F.relu(batch_norm(F.conv2d(x, block.conv1.weight, stride=2, padding=1), block.bn1))
        sk, _ = sk_by_hand(out, block.attention, groups=4)
        shortcut = batch_norm(F.conv2d(x, block.shortcut[0].weight, stride=2), block.shortcut[1])
        torch.testing.assert_close(block(x), F.relu(batch_norm(sk, block.bn2) + shortcut), rtol=1e-4, atol=1e-5)


def test_sk_resnet_builds_trains_and_runs_on_every_stage():
    model = ResNet("sk", position="conv2", groups=8)
    assert all(isinstance(b.attention, SelectiveKernel) and isinstance(b.conv2, torch.nn.Identity)
               for b in model.modules() if isinstance(b, BasicBlock))
    images = torch.randn(4, 1, 32, 32, requires_grad=True)
    logits = model(images)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert images.grad.abs().sum() > 0
    partial = ResNet("sk", position="conv2", groups=8, stages=(3,))
    kinds = [(type(b.conv2).__name__, type(b.attention).__name__) for b in partial.modules()
             if isinstance(b, BasicBlock)]
    assert kinds == [("Conv2d", "Identity"), ("Conv2d", "Identity"), ("Identity", "SelectiveKernel")]


@pytest.mark.parametrize("kwargs", [{}, {"position": "after_bn"}, {"position": "before_bn"}])
def test_sk_is_refused_where_a_gate_goes(kwargs):
    with pytest.raises(ValueError, match=r"position='conv2'"):
        ResNet("sk", groups=8, **kwargs)
    with pytest.raises(ValueError, match=r"position='conv2'"):
        BasicBlock(16, 16, attention="sk", attention_kwargs={"groups": 8}, **kwargs)


@pytest.mark.parametrize("attention", ["se", "simam"])
def test_conv2_position_is_for_sk_only(attention):
    with pytest.raises(ValueError, match=r"position='conv2' is for Selective Kernel \(attention='sk'\) only"):
        ResNet(attention, position="conv2")
    with pytest.raises(TypeError, match="drop 'stride'"):
        BasicBlock(16, 16, attention="sk", attention_kwargs={"groups": 8, "stride": 2}, position="conv2")


def test_the_ablations_add_the_branches_without_selection():
    torch.manual_seed(0)
    both = randomise(SelectiveKernel(16, groups=2, select=False)).eval()
    one = randomise(SelectiveKernel(16, groups=2, dilations=(1,), select=False)).eval()
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(both(x), sum(F.relu(batch_norm(F.conv2d(x, b[0].weight, padding=d, dilation=d,
                                                                           groups=2), b[1]))
                                                for b, d in zip(both.branches, (1, 2))))
        torch.testing.assert_close(one(x), F.relu(batch_norm(F.conv2d(x, one.branches[0][0].weight, padding=1,
                                                                      groups=2), one.branches[0][1])))
    assert not hasattr(both, "gate") and not hasattr(both, "select")
    # parameters: the branches only (9 C^2 / g weights and a BN per branch)
    assert sum(p.numel() for p in both.parameters()) == 2 * (9 * 16 * 16 // 2 + 2 * 16)
    assert sum(p.numel() for p in one.parameters()) == 9 * 16 * 16 // 2 + 2 * 16
    for name in ("sk-sum", "sk-3x3"):  # the study's variants build and train in conv2's place
        from attn_course.study import build_model
        model = build_model(name)
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("kwargs, match", [
    ({"dilations": (1,)}, r"select=True chooses between branches and needs at least two"),
    ({"dilations": ()}, r"dilations must be distinct positive ints"),
    ({"dilations": (1, 1)}, r"dilations must be distinct positive ints"),
    ({"dilations": 2}, r"dilations must be distinct positive ints"),
    ({"dilations": (1, 0)}, r"dilations must be distinct positive ints"),
])
def test_bad_dilations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelectiveKernel(16, groups=2, **kwargs)
    with pytest.raises(TypeError, match=r"select must be True or False"):
        SelectiveKernel(16, groups=2, select="no")
