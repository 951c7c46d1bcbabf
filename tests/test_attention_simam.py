"""SimAM (Yang et al., ICML 2021): the official forward written another way, the paper's closed form
checked by minimising the energy numerically, the shortcut it takes, the gate, errors and gradients."""

import math

import numpy as np
import pytest
import torch

from attn_course.attention import ATTENTION, SimAM, create_attention
from attn_course.models import AttentionRecorder, ResNet

LAMBDA = 1e-4


def simam_by_hand(x, e_lambda=LAMBDA):
    """x * sigmoid((x - mean)^2 / (4 (var + lambda)) + 1/2), var the unbiased variance over H x W."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    mean = flat.mean(dim=2, keepdim=True)
    var = torch.var(flat, dim=2, unbiased=True, keepdim=True)  # divides by H W - 1, as the code's n
    importance = (flat - mean) ** 2 / (4 * (var + e_lambda)) + 0.5
    return (flat / (1 + torch.exp(-importance))).reshape(b, c, h, w)


def minimal_energy(t, others, e_lambda=LAMBDA):
    """min over (w, b) of (1 - (w t + b))^2 + mean_i (-1 - (w x_i + b))^2 + lambda w^2, by least squares.

    The energy is a sum of squared residuals, linear in (w, b): stack them (the others' rows scaled
    by 1 / sqrt(M - 1), the regulariser as a row sqrt(lambda) * w) and solve with numpy's lstsq.
    """
    m = len(others)
    rows = np.vstack([[t, 1.0], np.column_stack([others, np.ones(m)]) / math.sqrt(m), [math.sqrt(e_lambda), 0.0]])
    targets = np.concatenate([[1.0], -np.ones(m) / math.sqrt(m), [0.0]])
    (w, b), *_ = np.linalg.lstsq(rows, targets, rcond=None)
    return float(np.sum((rows @ np.array([w, b]) - targets) ** 2)), w, b


def test_shape_and_no_parameters():
    module = SimAM(16)
    assert sum(p.numel() for p in module.parameters()) == 0 and list(module.buffers()) == []
    for shape in [(2, 16, 7, 5), (1, 16, 1, 2), (3, 16, 32, 32)]:
        assert module(torch.randn(shape)).shape == shape
    assert isinstance(module.gate, torch.nn.Sigmoid) and module.e_lambda == 1e-4


def test_matches_independent_computation():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 6, 5) * 2 + 0.5
    for e_lambda in (1e-4, 0.5):
        torch.testing.assert_close(SimAM(8, e_lambda)(x), simam_by_hand(x, e_lambda))
    # One channel with explicit loops over its positions.
    b, c = 2, 5
    values = [float(v) for v in x[b, c].flatten()]
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    expected = [v / (1 + math.exp(-((v - mean) ** 2 / (4 * (var + LAMBDA)) + 0.5))) for v in values]
    torch.testing.assert_close(SimAM(8)(x)[b, c].flatten(), torch.tensor(expected))


def test_closed_form_is_the_minimum_of_the_energy():
    # The paper's derivation with the exact statistics: for each target t, the M - 1 other neurons'
    # mean and variance (divided by M - 1) give 1 / e_t* = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2.
    rng = np.random.default_rng(0)
    channel = rng.normal(0.3, 1.5, size=(5, 6)).ravel()
    for k, t in enumerate(channel):
        others = np.delete(channel, k)
        energy, w, b = minimal_energy(t, others)
        mu, sigma2 = others.mean(), others.var()  # var(): divided by M - 1, the number of others
        assert 1 / energy == pytest.approx((t - mu) ** 2 / (4 * (sigma2 + LAMBDA)) + 0.5, rel=1e-9)
        assert energy == pytest.approx(4 * (sigma2 + LAMBDA) / ((t - mu) ** 2 + 2 * sigma2 + 2 * LAMBDA), rel=1e-9)
        assert w == pytest.approx(2 * (t - mu) / ((t - mu) ** 2 + 2 * sigma2 + 2 * LAMBDA), rel=1e-7)
        assert b == pytest.approx(-(t + mu) * w / 2, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("size", [4, 8, 32])
def test_official_shortcut_is_close_to_the_exact_importance_and_keeps_its_order(size):
    # The code uses the mean and (n = HW - 1) variance of ALL neurons instead of the others'.
    # Measured on these N(0, 1) channels (seed 0), the code's e_inv against the exact 1 / e_t*:
    #   4 x 4:   max relative difference 0.36, mean 0.066, largest change of a gate 0.087
    #   8 x 8:   max relative difference 0.11, mean 0.016, largest change of a gate 0.022
    #   16 x 16: max relative difference 0.037, mean 0.0039, largest change of a gate 0.0054
    #   32 x 32: max relative difference 0.015, mean 0.00098, largest change of a gate 0.0014
    # (2 x 2: up to 0.86, a gate off by 0.27). The shortcut is never above the exact value and ranks the neurons of a
    # channel in the same order: it only compresses the differences, most for the outliers of small maps.
    rng = np.random.default_rng(0)
    channel = rng.standard_normal((size, size))
    flat = channel.ravel()
    exact = np.array([1 / minimal_energy(t, np.delete(flat, k))[0] for k, t in enumerate(flat)])
    x = torch.tensor(channel, dtype=torch.float64)[None, None]
    recorded = []
    module = SimAM(1)
    module.gate.register_forward_hook(lambda m, i, o: recorded.append(i[0]))  # e_inv, the gate's input
    module(x)
    shortcut = recorded[0].flatten().numpy()
    relative = np.abs(shortcut - exact) / exact
    assert (shortcut <= exact * (1 + 1e-12)).all()
    assert (np.argsort(shortcut, kind="stable") == np.argsort(exact, kind="stable")).all()
    bound = {4: 0.45, 8: 0.15, 32: 0.025}[size]  # the measured maxima above, with a margin
    assert relative.max() < bound and relative.mean() < bound / 4
    gate_change = np.abs(1 / (1 + np.exp(-shortcut)) - 1 / (1 + np.exp(-exact)))
    assert gate_change.max() < bound / 4


def test_gate_is_recorded_with_the_input_shape_and_lies_in_its_range():
    torch.manual_seed(1)
    module = SimAM(6).double()
    x = torch.randn(4, 6, 6, 5, dtype=torch.float64) * 10
    with AttentionRecorder(module) as recorder:
        y = module(x)
    (gate,) = recorder.stacked().values()
    assert list(recorder.records) == ["gate"] and gate.shape == (4, 6, 6, 5)
    n = 6 * 5 - 1
    low, high = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-(n / 4 + 0.5)))  # e_inv in [1/2, n/4 + 1/2)
    assert gate.min() >= low and gate.max() < high < 1
    torch.testing.assert_close(y, x * gate)


def test_constant_channel_gets_the_lowest_gate_everywhere():
    x = torch.full((1, 2, 4, 4), 3.0)
    torch.testing.assert_close(SimAM(2)(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_recorded_in_every_block_of_the_resnet():
    model = ResNet(attention="simam")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ResNet().parameters())
    with AttentionRecorder(model) as recorder:
        model(torch.rand(2, 1, 32, 32))
    shapes = {name: tuple(g.shape) for name, g in recorder.stacked().items()}
    assert shapes == {"stages.0.0.attention.gate": (2, 16, 32, 32), "stages.1.0.attention.gate": (2, 32, 16, 16),
                      "stages.2.0.attention.gate": (2, 64, 8, 8)}


def test_gradient_reaches_the_input():
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    SimAM(4)(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_bad_inputs_raise_helpful_errors():
    module = SimAM(8)
    with pytest.raises(ValueError, match=r"SimAM needs at least 2 positions \(H x W >= 2\).*global pooling"):
        module(torch.randn(2, 8, 1, 1))
    with pytest.raises(ValueError, match="SimAM was built for 8 channels but the input has 4"):
        module(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"SimAM expects a 4-D tensor \(B, C, H, W\)"):
        module(torch.randn(8, 5, 5))
    with pytest.raises(TypeError, match="floating-point tensor"):
        module(torch.zeros(2, 8, 3, 3, dtype=torch.long))


@pytest.mark.parametrize("bad", [0, -1e-4, True, "1e-4", None, float("nan"), float("inf")])
def test_bad_lambda_raises_a_helpful_error(bad):
    with pytest.raises(ValueError, match=r"SimAM: e_lambda must be a positive number .*paper uses 1e-4"):
        SimAM(8, e_lambda=bad)


@pytest.mark.parametrize("bad", [0, -2, 8.0, "8", None, False])
def test_bad_channels_raise_a_helpful_error(bad):
    with pytest.raises(ValueError, match="SimAM: channels must be a positive int"):
        SimAM(bad)


def test_registry_builds_simam():
    assert ATTENTION["simam"] is SimAM
    module = create_attention("simam", 32, e_lambda=np.float64(1e-3))
    assert isinstance(module, SimAM) and module.e_lambda == 1e-3 and module.channels == 32
    assert "e_lambda=0.001" in repr(module)
