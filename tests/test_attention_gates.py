"""Attention gates (Oktay et al., MIDL 2018): the gate's equations written with F.conv2d and a bilinear
matrix on copied weights, shapes, the gating signal's scale, errors; Dice and energy in the mask on
hand-made masks; the U-Net with and without gates."""

import math

import pytest
import torch
import torch.nn.functional as F
from random_weights import randomise
from torch.utils.data import DataLoader, TensorDataset

from attn_course.attention_gates import AttentionGate
from attn_course.metrics import iou_per_class
from attn_course.models import AttentionRecorder
from attn_course.segmentation import (
    dice_per_class,
    energy_in_mask,
    make_segmentation_loaders,
    mask_share,
    mean_dice,
    segmentation_scores,
)
from attn_course.train import fit
from attn_course.unet import UNet


def batch_norm(u, bn):
    """Eval-mode BatchNorm over dim 1, written out."""
    shape = (1, -1, 1, 1)
    return (u - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * \
        bn.weight.view(shape) + bn.bias.view(shape)


def bilinear_matrix(n_in, n_out):
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres (align_corners=False)."""
    matrix = torch.zeros(n_out, n_in)
    for i in range(n_out):
        source = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        low = min(math.floor(source), n_in - 1)
        high = min(low + 1, n_in - 1)
        matrix[i, low] += 1 - (source - low)
        matrix[i, high] += source - low
    return matrix


def gate_by_hand(x, g, gate):
    """alpha = sigmoid(psi(ReLU(theta(x) + phi(g)))), upsampled; y = BN(W(alpha * x)) (official 'concatenation')."""
    s = gate.sub_sample_factor
    theta_x = F.conv2d(x, gate.theta.weight, stride=s)  # s x s kernel, stride s, no bias
    phi_g = torch.einsum("bchw,ic->bihw", g, gate.phi.weight[:, :, 0, 0]) + gate.phi.bias.view(1, -1, 1, 1)
    f = torch.clamp(theta_x + phi_g, min=0)
    q = torch.einsum("bihw,i->bhw", f, gate.psi.weight[0, :, 0, 0]) + gate.psi.bias
    alpha = 1 / (1 + torch.exp(-q))  # (B, h, w)
    up = bilinear_matrix(alpha.shape[1], x.shape[2]) @ alpha @ bilinear_matrix(alpha.shape[2], x.shape[3]).T
    y = up[:, None] * x
    conv, bn = gate.W[0], gate.W[1]
    out = torch.einsum("bchw,oc->bohw", y, conv.weight[:, :, 0, 0]) + conv.bias.view(1, -1, 1, 1)
    return batch_norm(out, bn), alpha[:, None]


@pytest.mark.parametrize("channels, gating, inter, s, size", [
    (8, 16, None, 2, (12, 10)), (16, 32, 16, 2, (8, 8)), (6, 4, 3, 4, (16, 8)), (5, 7, 2, 1, (5, 3)),
])
def test_gate_matches_the_equations(channels, gating, inter, s, size):
    gate = randomise(AttentionGate(channels, gating, inter_channels=inter, sub_sample_factor=s)).eval()
    torch.manual_seed(1)
    x = torch.randn(3, channels, *size)
    g = torch.randn(3, gating, size[0] // s, size[1] // s)  # one level coarser
    with torch.no_grad(), AttentionRecorder(gate) as recorder:
        y = gate(x, g)
        expected, alpha = gate_by_hand(x, g, gate)
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    recorded = recorder.stacked()["gate"]
    assert recorded.shape == (3, 1, size[0] // s, size[1] // s)  # alpha on g's grid, before upsampling
    torch.testing.assert_close(recorded, alpha, rtol=1e-4, atol=1e-6)
    assert ((recorded > 0) & (recorded < 1)).all()


def test_bilinear_matrix_is_pytorchs_upsampling():
    """The hand-written interpolation of the test is the one F.interpolate does."""
    a = torch.randn(2, 1, 3, 5)
    expected = F.interpolate(a, size=(6, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(bilinear_matrix(3, 6) @ a @ bilinear_matrix(5, 10).T, expected)


def test_official_defaults_and_parameter_count():
    gate = AttentionGate(16, 32)
    assert (gate.inter_channels, gate.sub_sample_factor) == (8, 2)  # C // 2 and (2, 2) as in the official layer
    assert AttentionGate(1, 4).inter_channels == 1  # at least 1
    assert gate.theta.kernel_size == (2, 2) and gate.theta.stride == (2, 2) and gate.theta.bias is None
    assert gate.phi.kernel_size == (1, 1) and gate.phi.bias is not None and gate.psi.out_channels == 1
    theta, phi, psi = 16 * 8 * 4, 32 * 8 + 8, 8 + 1
    output = 16 * 16 + 16 + 2 * 16  # W: 1x1 conv with bias, BatchNorm
    assert sum(p.numel() for p in gate.parameters()) == theta + phi + psi + output
    assert isinstance(gate.gate, torch.nn.Sigmoid)


def test_gradients_reach_both_inputs():
    gate = AttentionGate(8, 16)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    g = torch.randn(2, 16, 4, 4, requires_grad=True)
    gate(x, g).square().sum().backward()
    assert x.grad.abs().sum() > 0 and g.grad.abs().sum() > 0
    assert all(p.grad is not None for p in gate.parameters())


def test_a_gate_of_zero_closes_the_skip_connection():
    """psi's bias very negative: alpha ~ 0, so W sees zeros and returns BN(bias of W) everywhere."""
    gate = AttentionGate(4, 8).eval()
    with torch.no_grad():
        gate.psi.bias.fill_(-100.0)
        y = gate(torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3))
        expected = batch_norm(gate.W[0].bias.view(1, -1, 1, 1).expand(2, 4, 6, 6), gate.W[1])
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("x_shape, g_shape, match", [
    ((2, 8, 8, 8), (2, 16, 8, 8), r"\*before\* upsampling"),  # the trap: an already-upsampled g
    ((2, 8, 8, 8), (2, 16, 2, 2), "2 times coarser"),  # two levels down
    ((2, 8, 8, 8), (3, 16, 4, 4), "same images"),
    ((2, 6, 8, 8), (2, 16, 4, 4), "built for 8 channels"),
    ((2, 8, 8, 8), (2, 12, 4, 4), "gating_channels=12"),
    ((2, 8, 7, 8), (2, 16, 3, 4), "divisible by sub_sample_factor=2"),
    ((8, 8, 8), (2, 16, 4, 4), "4-D"),
])
def test_bad_inputs_say_what_is_wrong(x_shape, g_shape, match):
    gate = AttentionGate(8, 16)
    with pytest.raises(ValueError, match=match):
        gate(torch.randn(x_shape), torch.randn(g_shape))


def test_bad_types_and_arguments():
    gate = AttentionGate(8, 16)
    with pytest.raises(TypeError, match="floating-point"):
        gate(torch.ones(2, 8, 8, 8, dtype=torch.long), torch.randn(2, 16, 4, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        gate(torch.randn(2, 8, 8, 8), None)
    for kwargs, match in [({"channels": 0, "gating_channels": 4}, "channels"),
                          ({"channels": 8, "gating_channels": 2.5}, "gating_channels"),
                          ({"channels": 8, "gating_channels": 4, "inter_channels": 0}, "inter_channels"),
                          ({"channels": 8, "gating_channels": 4, "sub_sample_factor": True}, "sub_sample_factor")]:
        with pytest.raises(ValueError, match=match):
            AttentionGate(**kwargs)


# Dice and energy in the mask, on hand-made masks

def test_dice_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 0]])
    # class 0: |P| = 4, |T| = 4, overlap 3 -> 6/8; class 1: |P| = 3, |T| = 2, overlap 2 -> 4/5;
    # class 2: |P| = 1, |T| = 2, overlap 1 -> 2/3
    dice = dice_per_class(pred, target, 4)
    torch.testing.assert_close(dice[:3], torch.tensor([6 / 8, 4 / 5, 2 / 3], dtype=torch.float64))
    assert math.isnan(dice[3])  # absent from both
    assert mean_dice(pred, target, 4) == pytest.approx((4 / 5 + 2 / 3) / 2)  # background left out
    assert mean_dice(pred, target, 4, include_background=True) == pytest.approx((6 / 8 + 4 / 5 + 2 / 3) / 3)
    iou = iou_per_class(pred, target, 4)
    torch.testing.assert_close(dice[:3], 2 * iou[:3] / (1 + iou[:3]))  # Dice = 2 IoU / (1 + IoU)
    assert mean_dice(target, target, 4) == 1.0
    assert math.isnan(mean_dice(torch.zeros(2, 2), torch.zeros(2, 2), 3))  # no foreground anywhere


def test_dice_in_segmentation_scores_only_when_asked():
    targets = torch.tensor([[[0, 1], [2, 0]]] * 4)
    loader = DataLoader(TensorDataset(targets[:, None].float(), targets), batch_size=2)

    class OneHot(torch.nn.Module):
        def forward(self, x):
            return F.one_hot(x[:, 0].long(), 11).permute(0, 3, 1, 2).float()

    assert set(segmentation_scores(OneHot(), loader, device="cpu")) == {"mIoU", "pixel accuracy"}
    scores = segmentation_scores(OneHot(), loader, device="cpu", dice=True)
    assert scores["dice"] == 1.0 and scores["mIoU"] == 1.0


def test_energy_in_mask_and_mask_share_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True  # a quarter of the image
    masks[1, :, :2] = True  # half of it
    assert mask_share(masks) == pytest.approx((0.25 + 0.5) / 2)
    uniform = torch.ones(2, 4, 4)
    assert energy_in_mask(uniform, masks) == pytest.approx(mask_share(masks))  # a uniform map scores chance
    peaked = torch.zeros(2, 4, 4)
    peaked[0, 0, 0], peaked[1, 3, 3] = 1.0, 1.0  # inside the first mask, outside the second
    peaked[0, 3, 3] = -5.0  # negative values count as 0
    assert energy_in_mask(peaked, masks) == pytest.approx(0.5)
    coarse = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]).expand(2, 2, 2)  # 2x2 maps, resized to 4x4
    resized = F.interpolate(coarse[:, None], size=(4, 4), mode="bilinear", align_corners=False)[:, 0]
    expected = [(resized[i] * masks[i]).sum() / resized[i].sum() for i in range(2)]
    assert energy_in_mask(coarse, masks) == pytest.approx(sum(expected).item() / 2)
    assert energy_in_mask(torch.zeros(2, 4, 4), masks) == 0.0
    with pytest.raises(ValueError, match="one map per mask"):
        energy_in_mask(torch.ones(3, 4, 4), masks)


# The U-Net

@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("widths", [(8, 16, 32), (4, 8, 8, 16)])
def test_unet_output_shape_and_gates(gates, widths):
    model = UNet(gates=gates, widths=widths).eval()
    x = torch.randn(2, 1, 32, 16)
    if gates:
        with torch.no_grad(), AttentionRecorder(model) as recorder:
            y = model(x)
        recorded = recorder.stacked()
        assert list(recorded) == [f"attention_gates.{i}.gate" for i in range(len(widths) - 1)]
        for i, alpha in enumerate(recorded.values()):
            assert alpha.shape == (2, 1, 32 // 2 ** (i + 1), 16 // 2 ** (i + 1))  # on the coarser level's grid
    else:
        assert model.attention_gates is None
        with torch.no_grad():
            y = model(x)
        with pytest.raises(ValueError, match="no submodule named gate"):
            AttentionRecorder(model)
    assert y.shape == (2, 11, 32, 16)


def test_unet_gates_add_only_the_gates_parameters():
    plain, gated = UNet(), UNet(gates=True)
    extra = sum(p.numel() for p in gated.attention_gates.parameters())
    assert sum(p.numel() for p in gated.parameters()) - sum(p.numel() for p in plain.parameters()) == extra
    assert [g.gating_channels for g in gated.attention_gates] == [16, 32]  # the level below's width


def test_unet_bad_input_and_arguments():
    model = UNet()
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(1, 1, 32, 32, dtype=torch.long))
    with pytest.raises(TypeError, match="True or False"):
        UNet(gates="yes")
    with pytest.raises(TypeError, match="gates=False builds none"):
        UNet(inter_channels=4)
    with pytest.raises(ValueError, match="widths"):
        UNet(widths=(16,))


def test_unet_trains_with_fit():
    torch.manual_seed(0)
    train, test = make_segmentation_loaders(n_train=64, n_test=32, batch_size=32, seed=0)
    model = UNet(gates=True, widths=(4, 8, 8))
    history = fit(model, train, test, epochs=2, lr=1e-2, device="cpu", progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    scores = segmentation_scores(model, test, device="cpu", dice=True)
    assert 0 <= scores["dice"] <= 1 and 0 <= scores["mIoU"] <= 1
