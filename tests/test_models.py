"""Tests of attn_course.models: the small ResNet, its attention slot and the gate recorder."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_course.attention import SqueezeExcite
from attn_course.models import AttentionRecorder, BasicBlock, ResNet, eval_mode


def blocks(model):
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


class Zeros(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


def test_output_and_feature_shapes():
    model = ResNet()
    x = torch.randn(3, 1, 32, 32)
    assert model(x).shape == (3, 10)
    assert model.features(x).shape == (3, 64, 8, 8)
    wide = ResNet(widths=(8, 16, 32, 48), depths=(1, 2, 1, 1), in_channels=3, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    assert wide(x).shape == (2, 5)
    assert wide.features(x).shape == (2, 48, 4, 4)


def test_stride_two_only_at_the_first_block_of_later_stages():
    model = ResNet(widths=(8, 16), depths=(2, 2))
    strides = [b.conv1.stride for b in blocks(model)]
    assert strides == [(1, 1), (1, 1), (2, 2), (1, 1)]
    shortcuts = [isinstance(b.shortcut, nn.Identity) for b in blocks(model)]
    assert shortcuts == [True, True, False, True]


def _branch(block, x):
    """The residual branch before the attention slot, written out by hand."""
    out = F.relu(block.bn1(block.conv1(x)))
    return block.bn2(block.conv2(out))


@pytest.mark.parametrize("stride, c_in", [(1, 8), (2, 4)])
def test_attention_slot_position(stride, c_in):
    torch.manual_seed(0)
    block = BasicBlock(c_in, 8, stride).eval()
    x = torch.randn(2, c_in, 8, 8)
    assert isinstance(block.attention, nn.Identity)
    # The slot's output is added to the shortcut: with a slot that zeroes its input, only
    # the shortcut remains.
    block.attention = Zeros()
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(block.shortcut(x)))
        # With a slot that doubles its input, the branch counts twice.
        block.attention = Double()
        torch.testing.assert_close(block(x), F.relu(2 * _branch(block, x) + block.shortcut(x)))


def test_attention_input_is_bn2_output():
    torch.manual_seed(0)
    block = BasicBlock(8, 8, attention="se", attention_kwargs={"reduction": 4}).eval()
    seen = {}
    block.bn2.register_forward_hook(lambda m, i, o: seen.__setitem__("bn2", o.clone()))
    block.attention.register_forward_hook(
        lambda m, i, o: seen.update(att_in=i[0].clone(), att_out=o.clone())
    )
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        y = block(x)
    torch.testing.assert_close(seen["att_in"], seen["bn2"])
    torch.testing.assert_close(y, F.relu(seen["att_out"] + x))
    assert not torch.allclose(seen["att_out"], seen["att_in"])  # SE changed something


def _conv_bn(c_in, c_out, k):
    return c_in * c_out * k * k + 2 * c_out


def _se(c, r):
    return 2 * c * (c // r) + c // r + c


def _expected_parameters(widths, depths, in_channels, num_classes, se_reduction=None):
    """Closed-form parameter count of ResNet (BatchNorm: weight and bias per channel)."""
    total = _conv_bn(in_channels, widths[0], 3)
    c = widths[0]
    for i, (w, d) in enumerate(zip(widths, depths)):
        for j in range(d):
            stride = 2 if i > 0 and j == 0 else 1
            total += _conv_bn(c, w, 3) + _conv_bn(w, w, 3)
            if stride != 1 or c != w:
                total += _conv_bn(c, w, 1)
            if se_reduction is not None:
                total += _se(w, se_reduction)
            c = w
    return total + c * num_classes + num_classes


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_plain_parameter_count():
    assert count(ResNet()) == _expected_parameters((16, 32, 64), (1, 1, 1), 1, 10)
    # Hand computation of the default: stem 144+32; block 16->16: 2*(2304+32); block 16->32:
    # 4608+64 + 9216+64 + 512+64; block 32->64: 18432+128 + 36864+128 + 2048+128; fc 650.
    assert count(ResNet()) == 176 + 4672 + 14528 + 57728 + 650
    assert count(ResNet(widths=(8, 16), depths=(2, 3), in_channels=3, num_classes=4)) == \
        _expected_parameters((8, 16), (2, 3), 3, 4)


@pytest.mark.parametrize("reduction", [4, 8, 16])
def test_se_resnet(reduction):
    model = ResNet("se", reduction=reduction)
    assert len(blocks(model)) == 3
    for block, width in zip(blocks(model), (16, 32, 64)):
        assert isinstance(block.attention, SqueezeExcite)
        assert block.attention.fc1.out_features == width // reduction
    assert count(model) == _expected_parameters((16, 32, 64), (1, 1, 1), 1, 10, se_reduction=reduction)
    assert count(model) - count(ResNet()) == sum(_se(w, reduction) for w in (16, 32, 64))


def test_se_in_every_block_of_a_deeper_net():
    model = ResNet("se", widths=(8, 16, 32), depths=(2, 2, 2), reduction=2)
    assert len(blocks(model)) == 6
    assert all(isinstance(b.attention, SqueezeExcite) for b in blocks(model))


def test_callable_attention_gets_channels_and_kwargs():
    calls = []

    def factory(channels, **kwargs):
        calls.append((channels, kwargs))
        return nn.Identity()

    ResNet(factory, widths=(4, 8), depths=(1, 2), scale=3)
    assert calls == [(4, {"scale": 3}), (8, {"scale": 3}), (8, {"scale": 3})]


def test_recorder_records_gates_per_block():
    torch.manual_seed(0)
    model = ResNet("se", reduction=4).eval()
    x = torch.randn(5, 1, 32, 32)
    inputs = {}
    for i, block in enumerate(blocks(model)):
        block.attention.register_forward_hook(lambda m, a, o, i=i: inputs.__setitem__(i, a[0]))
    with AttentionRecorder(model) as recorder, torch.no_grad():
        model(x)
        model(x[:2])
    gates = recorder.stacked()
    names = [f"stages.{i}.0.attention.gate" for i in range(3)]
    assert list(gates) == names
    for i, (name, width) in enumerate(zip(names, (16, 32, 64))):
        assert len(recorder.records[name]) == 2
        assert gates[name].shape == (7, width)
        assert ((gates[name] >= 0) & (gates[name] <= 1)).all()
        # The recorded gate is the one SE applies: output / input, channel-wise (last call: x[:2]).
        se = blocks(model)[i].attention
        z = inputs[i].mean(dim=(2, 3))
        expected = torch.sigmoid(F.linear(F.relu(F.linear(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias))
        torch.testing.assert_close(gates[name][5:], expected)


def test_recorder_removes_hooks_on_exit():
    model = ResNet("se", reduction=4)
    gates = [m for n, m in model.named_modules() if n.endswith("gate")]
    with AttentionRecorder(model) as recorder:
        assert all(len(g._forward_hooks) == 1 for g in gates)
    assert all(len(g._forward_hooks) == 0 for g in gates)
    with torch.no_grad():
        model(torch.randn(2, 1, 32, 32))
    assert recorder.stacked() == {}  # nothing recorded after exit
    # Hooks are also removed when the block raises.
    with pytest.raises(RuntimeError), AttentionRecorder(model):
        raise RuntimeError("boom")
    assert all(len(g._forward_hooks) == 0 for g in gates)


def test_recorder_other_names():
    model = ResNet("se", reduction=4)
    recorder = AttentionRecorder(model, names=("fc1",))
    assert list(recorder.modules) == [f"stages.{i}.0.attention.fc1" for i in range(3)]


def test_recorder_errors():
    with pytest.raises(ValueError, match="no submodule named gate: is its attention slot empty"):
        AttentionRecorder(ResNet())
    with pytest.raises(TypeError, match="needs an nn.Module, got str"):
        AttentionRecorder("model")


def test_bad_attention_argument():
    with pytest.raises(TypeError, match="attention must be None, a registered name .* got int"):
        ResNet(attention=3)
    with pytest.raises(ValueError, match="Unknown attention 'nope'. Valid names: .*se"):
        ResNet(attention="nope")
    with pytest.raises(ValueError, match=r"widths \(16, 32\) and depths \(1,\) need the same"):
        ResNet(widths=(16, 32), depths=(1,))
    with pytest.raises(ValueError, match="need the same, non-zero length"):
        ResNet(widths=(), depths=())


@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 3, 32, 32), (2, 1, 1, 32, 32)])
def test_bad_input_shape(shape):
    model = ResNet()
    with pytest.raises(ValueError, match=r"ResNet expects images of shape \(B, 1, H, W\), got"):
        model(torch.randn(shape))


def test_eval_mode_restores_mode():
    model = ResNet()
    model.train()
    with eval_mode(model) as m:
        assert m is model and not model.training
        assert not any(sub.training for sub in model.modules())
    assert model.training and all(sub.training for sub in model.modules())
    model.eval()
    with eval_mode(model):
        assert not model.training
    assert not model.training
    model.train()
    with pytest.raises(KeyError), eval_mode(model):
        raise KeyError("restored even after an error")
    assert model.training


def test_stages_choose_which_stages_hold_attention():
    model = ResNet(attention="se", reduction=4, stages=(3,), depths=(1, 2, 1))
    kinds = [type(block.attention) for stage in model.stages for block in stage]
    assert kinds == [nn.Identity, nn.Identity, nn.Identity, SqueezeExcite]
    both = ResNet(attention="se", reduction=4, stages=[1, 3])
    assert [type(stage[0].attention) for stage in both.stages] == [SqueezeExcite, nn.Identity, SqueezeExcite]
    # None (the default) is every stage; the parameter count is the sum of the chosen stages' SE blocks.
    every = ResNet(attention="se", reduction=4)
    plain = sum(p.numel() for p in ResNet().parameters())
    se = lambda c: 2 * c * (c // 4) + c // 4 + c  # noqa: E731
    assert sum(p.numel() for p in every.parameters()) == plain + se(16) + se(32) + se(64)
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in ResNet(depths=(1, 2, 1)).parameters()) \
        == se(64)


@pytest.mark.parametrize("stages", [(0,), (4,), (1, 1), (), 3, "3", (2.0,), (True,)])
def test_bad_stages(stages):
    with pytest.raises(ValueError, match=r"stages must"):
        ResNet(attention="se", reduction=4, stages=stages)


@pytest.mark.parametrize("kwargs", [dict(atention="se"), dict(reduction=4), dict(stages=(3,))])
def test_keywords_without_attention_raise_instead_of_being_ignored(kwargs):
    with pytest.raises(TypeError, match=r"but no attention, so they would be ignored"):
        ResNet(**kwargs)


def test_misspelt_attention_keyword_raises():
    with pytest.raises(TypeError, match=r"reductoin"):
        ResNet(attention="se", reductoin=4)


def test_recorder_takes_one_name_as_a_string():
    # names="gate" used to be read as the letters g, a, t, e, and '' matched the whole model.
    recorder = AttentionRecorder(ResNet("se", reduction=4), names="gate")
    assert list(recorder.modules) == [f"stages.{i}.0.attention.gate" for i in range(3)]
    with pytest.raises(ValueError, match="names must be submodule names"):
        AttentionRecorder(ResNet("se", reduction=4), names=())


def test_recorder_refuses_to_be_entered_twice():
    model = ResNet("se", reduction=4)
    recorder = AttentionRecorder(model)
    with recorder:
        with pytest.raises(RuntimeError, match="already recording"):
            recorder.__enter__()
        model(torch.randn(2, 1, 32, 32))
    assert [len(v) for v in recorder.records.values()] == [1, 1, 1]
    with recorder:  # once it has exited, it may record again
        model(torch.randn(2, 1, 32, 32))
    assert [len(v) for v in recorder.records.values()] == [2, 2, 2]


def test_basic_block_refuses_attention_arguments_without_attention():
    with pytest.raises(TypeError, match="BasicBlock got reduction but no attention"):
        BasicBlock(16, 16, attention=None, attention_kwargs={"reduction": 4})


@pytest.mark.parametrize("kwargs", [{"widths": (16, 32, 0)}, {"depths": (1, 1.5, 1)}, {"num_classes": 0},
                                    {"in_channels": True}])
def test_resnet_sizes_are_validated(kwargs):
    with pytest.raises(ValueError, match="must be positive ints"):
        ResNet(**kwargs)


def test_integer_images_get_an_error_that_says_what_to_pass():
    with pytest.raises(TypeError, match=r"ResNet expects floating-point images, got torch.uint8: convert them"):
        ResNet()(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))


def test_default_position_leaves_the_block_unchanged():
    # The default must compute exactly what the block computed before ``position`` existed:
    # the same parameters in the same order, the same output bit for bit.
    outputs, names = [], []
    for kwargs in ({}, {"position": None}, {"position": "after_bn"}):
        torch.manual_seed(0)
        model = ResNet("simam", **kwargs).eval()
        names.append([name for name, _ in model.named_parameters()])
        with torch.no_grad():
            outputs.append(model(torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))))
    assert names[0] == names[1] == names[2]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    torch.manual_seed(0)
    block = BasicBlock(8, 8, attention="se", attention_kwargs={"reduction": 4}).eval()
    torch.manual_seed(0)
    same = BasicBlock(8, 8, attention="se", attention_kwargs={"reduction": 4}, position="after_bn").eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(block(x), same(x))
        torch.testing.assert_close(block(x), F.relu(block.attention(_branch(block, x)) + x))
    assert block.position == same.position == "after_bn"


@pytest.mark.parametrize("attention, kwargs", [("simam", {}), ("se", {"reduction": 4})])
def test_before_bn_puts_the_attention_between_conv2_and_bn2(attention, kwargs):
    torch.manual_seed(0)
    block = BasicBlock(4, 8, 2, attention=attention, attention_kwargs=kwargs, position="before_bn")
    for bn in (block.bn1, block.bn2):  # BatchNorms that are not the identity, so the order matters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    block.eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        branch = block.bn2(block.attention(block.conv2(F.relu(block.bn1(block.conv1(x))))))
        torch.testing.assert_close(block(x), F.relu(branch + block.shortcut(x)))
        after = block.attention(_branch(block, x))  # the default place gives something else
        assert not torch.allclose(block(x), F.relu(after + block.shortcut(x)))
    model = ResNet("simam", position="before_bn")
    assert all(b.position == "before_bn" for b in blocks(model))
    assert count(model) == count(ResNet())  # SimAM has no parameters wherever it sits
    partial = ResNet("se", reduction=4, stages=(3,), position="before_bn")
    # empty slots keep the default
    assert [b.position for b in blocks(partial)] == ["after_bn", "after_bn", "before_bn"]


@pytest.mark.parametrize("attention, kwargs", [("simam", {}), ("se", {"reduction": 4})])
def test_after_block_applies_the_attention_to_the_blocks_output(attention, kwargs):
    torch.manual_seed(0)
    block = BasicBlock(4, 8, 2, attention=attention, attention_kwargs=kwargs, position="after_block").eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        plain = F.relu(_branch(block, x) + block.shortcut(x))  # the block without attention
        torch.testing.assert_close(block(x), block.attention(plain))
        inside = F.relu(block.attention(_branch(block, x)) + block.shortcut(x))  # the default place
        assert not torch.allclose(block(x), inside)
    partial = ResNet(attention, stages=(2, 3), position="after_block", **kwargs)
    assert [b.position for b in blocks(partial)] == ["after_bn", "after_block", "after_block"]


@pytest.mark.parametrize("position", ["before", "after", "BEFORE_BN", "after-block", "", 1])
def test_bad_position(position):
    with pytest.raises(ValueError, match=r"position must be 'after_bn' .* or 'before_bn'"):
        ResNet("simam", position=position)
    with pytest.raises(ValueError, match=r"position must be"):
        BasicBlock(8, 8, attention="simam", position=position)


def test_position_without_attention_raises():
    with pytest.raises(TypeError, match=r"ResNet got position but no attention"):
        ResNet(position="before_bn")
    with pytest.raises(TypeError, match=r"BasicBlock got position but no attention"):
        BasicBlock(8, 8, position="before_bn")


def _reference_parameters(attention):
    """The parameters a seeded ResNet had before ``position="conv2"`` existed, built layer by layer in the
    original order (stem; per block conv1, bn1, conv2, bn2, SE, shortcut; fc), so the RNG is drawn alike."""
    from attn_course.attention import SqueezeExcite as SE

    layers = [("stem.0", nn.Conv2d(1, 16, 3, 1, 1, bias=False)), ("stem.1", nn.BatchNorm2d(16))]
    channels = 16
    for i, width in enumerate((16, 32, 64)):
        prefix = f"stages.{i}.0"
        layers += [(f"{prefix}.conv1", nn.Conv2d(channels, width, 3, 1, 1, bias=False)),
                   (f"{prefix}.bn1", nn.BatchNorm2d(width)),
                   (f"{prefix}.conv2", nn.Conv2d(width, width, 3, 1, 1, bias=False)),
                   (f"{prefix}.bn2", nn.BatchNorm2d(width))]
        if attention:
            layers.append((f"{prefix}.attention", SE(width, 4)))
        if channels != width:
            layers += [(f"{prefix}.shortcut.0", nn.Conv2d(channels, width, 1, 2, bias=False)),
                       (f"{prefix}.shortcut.1", nn.BatchNorm2d(width))]
        channels = width
    layers.append(("fc", nn.Linear(64, 10)))
    return [(f"{prefix}.{name}", p) for prefix, layer in layers for name, p in layer.named_parameters()]


@pytest.mark.parametrize("attention", [None, "se"])
def test_sk_support_leaves_existing_models_bit_identical(attention):
    # Committed results depend on it: same parameter names, same initial values (the RNG is drawn in the
    # same order), and a forward pass that is the block's math written out.
    kwargs = {"attention": attention, "reduction": 4} if attention else {}
    torch.manual_seed(0)
    model = ResNet(**kwargs).eval()
    torch.manual_seed(0)
    reference = _reference_parameters(attention)
    assert [name for name, _ in model.named_parameters()] == [name for name, _ in reference]
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(model.named_parameters(), reference))
    assert all(type(b.conv2) is nn.Conv2d for b in blocks(model))
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))

    def bn(u, layer):
        return F.batch_norm(u, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, layer.eps)

    with torch.no_grad():
        out = F.relu(bn(F.conv2d(x, model.stem[0].weight, padding=1), model.stem[1]))
        for i, block in enumerate(blocks(model)):
            stride = 2 if i else 1
            branch = F.relu(bn(F.conv2d(out, block.conv1.weight, stride=stride, padding=1), block.bn1))
            branch = bn(F.conv2d(branch, block.conv2.weight, padding=1), block.bn2)
            if attention:
                se = block.attention
                gate = torch.sigmoid(se.fc2(F.relu(se.fc1(branch.mean(dim=(2, 3))))))
                branch = branch * gate[:, :, None, None]
            shortcut = out if i == 0 else bn(F.conv2d(out, block.shortcut[0].weight, stride=2), block.shortcut[1])
            out = F.relu(branch + shortcut)
        expected = model.fc(out.mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), expected)
