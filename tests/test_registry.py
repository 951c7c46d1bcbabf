"""Tests of the attention registry in attn_course.attention."""

import pytest
import torch
from torch import nn

import attn_course
from attn_course.attention import ATTENTION, SqueezeExcite, create_attention


def test_create_se_with_kwargs():
    se = create_attention("se", 32, reduction=8)
    assert isinstance(se, SqueezeExcite)
    assert se.fc1.out_features == 4 and se.channels == 32
    assert ATTENTION["se"] is SqueezeExcite
    assert attn_course.create_attention is create_attention and attn_course.ATTENTION is ATTENTION


def test_kwargs_reach_the_constructor():
    with pytest.raises(TypeError):
        create_attention("se", 32, not_an_argument=1)
    with pytest.raises(ValueError, match="reduction=64 is larger than channels=32"):
        create_attention("se", 32, reduction=64)


def test_unknown_name_lists_valid_names():
    valid = ", ".join(sorted(ATTENTION))
    with pytest.raises(ValueError, match=f"Unknown attention 'squeeze'. Valid names: {valid}."):
        create_attention("squeeze", 16)
    assert "se" in ATTENTION


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_every_registered_module_follows_the_conventions(name):
    # channels first with paper defaults; a submodule named gate; (B, C, H, W) -> (B, C, H, W).
    module = create_attention(name, 64)
    assert isinstance(module, nn.Module)
    assert any(n.rsplit(".", 1)[-1] == "gate" for n, _ in module.named_modules())
    x = torch.randn(2, 64, 8, 8, requires_grad=True)  # 8 x 8: the last stage of our ResNet
    y = module(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert name in attn_course.attention.__all__ or ATTENTION[name].__name__ in attn_course.attention.__all__
