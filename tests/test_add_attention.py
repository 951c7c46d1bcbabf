"""add_attention: attention in every residual block of torchvision's ResNets (no downloads: weights=None)."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from attn_course.attention import EfficientChannelAttention, SqueezeExcite
from attn_course.models import AttentionRecorder, BatchNormWithAttention, ResNet, add_attention

# ResNet-50: (blocks, output channels of a Bottleneck) per stage.
RESNET50_STAGES = [(3, 256), (4, 512), (6, 1024), (3, 2048)]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def blocks(model):
    return [block for i in range(1, 5) for block in getattr(model, f"layer{i}")]


def test_every_block_gets_attention_after_its_last_batch_norm():
    model = add_attention(resnet18(weights=None), "se", reduction=16)
    for block in blocks(model):
        assert isinstance(block.bn2, BatchNormWithAttention)
        assert isinstance(block.bn2.attention, SqueezeExcite)
        assert block.bn2.attention.channels == block.conv2.out_channels
    model = add_attention(resnet50(weights=None), "eca")
    for block in blocks(model):
        assert isinstance(block.bn3, BatchNormWithAttention) and not isinstance(block.bn2, BatchNormWithAttention)
        assert block.bn3.attention.channels == block.conv3.out_channels


@pytest.mark.parametrize("make, name", [(resnet18, "se"), (resnet18, "eca"), (resnet18, "ge"), (resnet50, "se")])
def test_forward_and_gates_are_recorded(make, name):
    model = add_attention(make(weights=None, num_classes=10), name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        out = model(x)
    assert out.shape == (2, 10)
    gates = recorder.stacked()
    assert len(gates) == len(blocks(model))
    last = "bn3" if make is resnet50 else "bn2"
    assert f"layer1.0.{last}.attention.gate" in gates
    assert all(((g >= 0) & (g <= 1)).all() for g in gates.values())


def test_block_computes_attention_on_the_branch_before_the_addition():
    """One Bottleneck by hand: relu(SE(bn3(conv3(...))) + downsample(x))."""
    torch.manual_seed(0)
    model = add_attention(resnet50(weights=None), "se", reduction=16).eval()
    block = model.layer2[0]
    x = torch.randn(2, 256, 8, 8)
    with torch.no_grad():
        out = torch.relu(block.bn1(block.conv1(x)))
        out = torch.relu(block.bn2(block.conv2(out)))
        bn = block.bn3
        out = nn.functional.batch_norm(block.conv3(out), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                       False, 0.0, bn.eps)
        se = bn.attention
        gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(out.mean(dim=(2, 3))))))
        expected = torch.relu(out * gate[:, :, None, None] + block.downsample(x))
        torch.testing.assert_close(block(x), expected)


def test_state_dict_keeps_the_plain_names_and_pretrained_weights_load():
    plain = resnet18(weights=None)
    model = add_attention(resnet18(weights=None), "se", reduction=16)
    keys, plain_keys = set(model.state_dict()), set(plain.state_dict())
    assert plain_keys <= keys
    assert all(".attention." in k for k in keys - plain_keys)
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all(".attention." in k for k in result.missing_keys)
    torch.testing.assert_close(model.layer3[1].bn2.running_var, plain.layer3[1].bn2.running_var)


def test_with_identity_attention_the_network_is_unchanged():
    torch.manual_seed(0)
    plain = resnet18(weights=None).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = plain(x)
    torch.testing.assert_close(add_attention(plain, lambda channels: nn.Identity())(x), expected)


def test_se_resnet50_parameters_match_the_se_paper():
    """SE paper (Hu et al., TPAMI / arXiv v4), the table of reduction ratios (Table 7):
    ResNet-50 has 25.6M parameters and SE-ResNet-50 with r = 16 28.1M, published to 0.1M."""
    base = n_params(resnet50(weights=None))
    with_se = n_params(add_attention(resnet50(weights=None), "se", reduction=16))
    assert round(base / 1e6, 1) == 25.6
    assert round(with_se / 1e6, 1) == 28.1
    # Closed form: two FC layers with biases per block, C -> C/16 -> C.
    expected = sum(n * (2 * c * (c // 16) + c // 16 + c) for n, c in RESNET50_STAGES)
    assert with_se - base == expected == 2_530_992


def test_eca_resnet50_adds_80_parameters_as_published():
    """ECA paper, abstract: ECA adds 80 parameters to ResNet-50. The released ECA-Net50 is
    "eca_resnet50_k3557" (official README): kernel sizes 3, 5, 5, 7 for the four stages, so
    3*3 + 4*5 + 6*5 + 3*7 = 9 + 20 + 30 + 21 = 80."""
    base = n_params(resnet50(weights=None))
    k_of_stage = {256: 3, 512: 5, 1024: 5, 2048: 7}
    model = add_attention(resnet50(weights=None),
                          lambda channels: EfficientChannelAttention(channels, kernel_size=k_of_stage[channels]))
    assert n_params(model) - base == sum(n * k_of_stage[c] for n, c in RESNET50_STAGES) == 80
    # psi(C) on each block's own channels (256: 5, 512: 5, 1024: 5, 2048: 7 by hand) gives 86 instead.
    assert n_params(add_attention(resnet50(weights=None), "eca")) - base == 3 * 5 + 4 * 5 + 6 * 5 + 3 * 7 == 86


def test_refuses_models_it_does_not_know():
    with pytest.raises(TypeError, match="torchvision ResNet with stages layer1 to layer4"):
        add_attention(ResNet(), "se")
    with pytest.raises(TypeError, match="torchvision ResNet"):
        add_attention(nn.Linear(3, 3), "se")
    odd = resnet18(weights=None)
    odd.layer2[0] = nn.Identity()
    with pytest.raises(TypeError, match=r"BasicBlock and Bottleneck\), found torch.nn.modules.linear.Identity"):
        add_attention(odd, "se")
    with pytest.raises(TypeError, match="registered name"):
        add_attention(resnet18(weights=None), 3)
    with pytest.raises(ValueError, match="Unknown attention 'nope'"):
        add_attention(resnet18(weights=None), "nope")


def test_refuses_a_model_that_already_has_attention():
    model = add_attention(resnet18(weights=None), "eca")
    with pytest.raises(ValueError, match="already has attention"):
        add_attention(model, "se")


def test_an_instance_instead_of_a_name_or_factory_is_refused_clearly():
    # It used to say "SqueezeExcite expects a torch.Tensor, got int".
    with pytest.raises(TypeError, match=r"got a SqueezeExcite module: pass its name or its class \(SqueezeExcite\)"):
        add_attention(resnet18(weights=None), SqueezeExcite(64))


def test_double_model_keeps_its_dtype():
    # The wrapped BatchNorms and the attention used to be rebuilt in float32.
    model = add_attention(resnet18(weights=None).double(), "se", reduction=4)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_a_bad_argument_leaves_the_model_unchanged():
    def only_small(channels):  # fits layer1 and layer2, not layer3: it used to leave a half-changed model
        if channels > 128:
            raise ValueError(f"too many channels: {channels}")
        return SqueezeExcite(channels, 4)

    model = resnet18(weights=None)
    with pytest.raises(ValueError, match="too many channels: 256"):
        add_attention(model, only_small)
    assert not any(isinstance(m, BatchNormWithAttention) for m in model.modules())


def test_a_timm_like_block_is_named_with_its_module():
    class BasicBlock(nn.Module):  # same name as torchvision's, another class
        pass

    odd = resnet18(weights=None)
    odd.layer1[0] = BasicBlock()
    with pytest.raises(TypeError, match=r"found test_add_attention.*BasicBlock\. Build the model with torchvision"):
        add_attention(odd, "se")


# --- stages= : which of layer1-layer4 receive attention ---------------------------------------------------


def gc_block_parameters(c, r=16):
    """One GC block (att pooling, channel_add): conv_mask C -> 1 with bias; C -> C/r -> C with biases; LayerNorm."""
    p = c // r
    return (c + 1) + (c * p + p) + 2 * p + (p * c + c)


def test_gc_resnet50_in_stages_c3_to_c5_has_the_papers_parameter_count():
    """GCNet (Cao et al. 2019): GC with r = 16 in every block of c3-c5 (layer2-layer4) of ResNet-50, 28.08M."""
    base = n_params(resnet50(weights=None))
    model = add_attention(resnet50(weights=None), "gc", stages=(2, 3, 4), reduction=16)
    assert all(not isinstance(block.bn3, BatchNormWithAttention) for block in model.layer1)
    assert all(isinstance(b.bn3, BatchNormWithAttention) for i in (2, 3, 4) for b in getattr(model, f"layer{i}"))
    expected = sum(n * gc_block_parameters(c) for n, c in RESNET50_STAGES[1:])
    assert n_params(model) - base == expected == 2_521_741
    assert n_params(model) == 28_078_773
    assert round(n_params(model) / 1e6, 2) == 28.08


def test_gc_resnet50_runs_and_records_one_map_per_block():
    model = add_attention(resnet50(weights=None, num_classes=10), "gc", stages=(2, 3, 4)).eval()
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    maps = recorder.stacked()
    assert len(maps) == 4 + 6 + 3 and not any(name.startswith("layer1.") for name in maps)
    # 64 px in: layer2 at 8 x 8, layer3 at 4 x 4, layer4 at 2 x 2; each map sums to 1 over the positions
    assert maps["layer2.0.bn3.attention.gate"].shape == (2, 1, 64)
    assert maps["layer4.2.bn3.attention.gate"].shape == (2, 1, 4)
    for gate in maps.values():
        torch.testing.assert_close(gate.sum(dim=2), torch.ones(2, 1))


@pytest.mark.parametrize("stages", [(1,), (4,), (2, 4), [3, 1], range(1, 5)])
def test_only_the_named_stages_get_attention(stages):
    model = add_attention(resnet18(weights=None), "se", stages=stages, reduction=16)
    for i in range(1, 5):
        for block in getattr(model, f"layer{i}"):
            assert isinstance(block.bn2, BatchNormWithAttention) == (i in set(stages))


def test_stages_accept_numpy_integers_and_default_to_all():
    import numpy as np

    model = add_attention(resnet18(weights=None), "eca", stages=(np.int64(3),))
    assert [isinstance(b.bn2, BatchNormWithAttention) for b in blocks(model)] == [False] * 4 + [True] * 2 + [False] * 2
    everything = add_attention(resnet18(weights=None), "eca", stages=None)
    assert all(isinstance(b.bn2, BatchNormWithAttention) for b in blocks(everything))


@pytest.mark.parametrize("stages, message", [
    ((0,), r"from \[1, 2, 3, 4\].*got \(0,\)"),
    ((5,), r"from \[1, 2, 3, 4\].*got \(5,\)"),
    ((2, 2), r"each stage at most once.*got \(2, 2\)"),
    ((2.0,), r"from \[1, 2, 3, 4\]"),
    ((True,), r"from \[1, 2, 3, 4\]"),
    (("2",), r"from \[1, 2, 3, 4\]"),
    (3, r"must be a tuple of stage numbers.*such as \(2, 3\); got 3"),
    ("234", r"must be a tuple of stage numbers"),
    ((), r"stages=\(\) names no stage"),
])
def test_bad_stages_say_what_is_wrong_and_how_to_fix_it(stages, message):
    model = resnet18(weights=None)
    with pytest.raises(ValueError, match=message) as error:
        add_attention(model, "se", stages=stages)
    assert "add_attention" in str(error.value) and "stages=(2, 3, 4)" in str(error.value)
    assert not any(isinstance(m, BatchNormWithAttention) for m in model.modules())  # the model is unchanged


def test_other_stages_can_take_another_attention_but_no_block_gets_two():
    model = add_attention(resnet18(weights=None), "se", stages=(1,), reduction=16)
    add_attention(model, "gc", stages=(2, 3, 4))
    kinds = [type(b.bn2.attention).__name__ for b in blocks(model)]
    assert kinds == ["SqueezeExcite"] * 2 + ["GlobalContext"] * 6
    with pytest.raises(ValueError, match="already has attention"):
        add_attention(model, "eca", stages=(4,))
