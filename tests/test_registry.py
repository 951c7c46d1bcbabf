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


@pytest.mark.parametrize("name, kwargs", [("se", {"reduction": 4}), ("cbam", {"reduction": 4, "kernel_size": 3}),
                                          ("eca", {"kernel_size": 3}), ("ge", {"extent": 2}),
                                          ("psa", {"reduction": 4, "feature_size": 4}), ("simam", {}),
                                          ("coord", {"reduction": 4, "min_hidden": 2}),
                                          ("sk", {"reduction": 4, "min_hidden": 2, "groups": 8}),
                                          ("nonlocal", {"inner": 4}), ("gc", {"reduction": 4})])
def test_numpy_integers_are_accepted_as_ints(name, kwargs):
    # create_attention("se", np.int64(16)) was refused with "must be a positive int, got np.int64(16)".
    import numpy as np

    module = create_attention(name, np.int64(16), **{k: np.int64(v) for k, v in kwargs.items()})
    reference = create_attention(name, 16, **kwargs)
    assert [p.shape for p in module.parameters()] == [p.shape for p in reference.parameters()]
    assert module(torch.randn(2, 16, 4, 4)).shape == (2, 16, 4, 4)


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_wrong_input_dtypes_say_what_to_pass(name):
    # PSA needs its feature size; SK's official 32 groups cannot divide 16 channels
    module = create_attention(name, 16, **{"psa": {"feature_size": 4}, "sk": {"groups": 8}}.get(name, {}))
    with pytest.raises(TypeError, match=r"floating-point tensor, got torch.int64: convert it with x.float\(\)"):
        module(torch.zeros(2, 16, 4, 4, dtype=torch.long))
    if any(True for _ in module.parameters()):
        with pytest.raises(TypeError, match=r"torch.float32 weights but the input is torch.float64"):
            module(torch.zeros(2, 16, 4, 4, dtype=torch.float64))
    assert module.double()(torch.zeros(2, 16, 4, 4, dtype=torch.float64)).dtype == torch.float64
