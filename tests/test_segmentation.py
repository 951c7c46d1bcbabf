"""Tests of the segmentation network, its loaders and scores, and fit/evaluate on per-pixel targets."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attn_course.attention import PointwiseSpatialAttention
from attn_course.data import make_cluttered_digits
from attn_course.segmentation import (
    NUM_CLASSES,
    SegmentationNet,
    make_segmentation_loaders,
    predict_masks,
    segmentation_dataset,
    segmentation_scores,
)
from attn_course.train import evaluate, fit


@pytest.mark.parametrize("attention, kwargs", [(None, {}), ("psa", {"reduction": 4, "feature_size": 8})])
def test_output_shape_and_gradient(attention, kwargs):
    torch.manual_seed(0)
    model = SegmentationNet(attention, **kwargs)
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES, 32, 32)
    F.cross_entropy(logits, torch.randint(0, NUM_CLASSES, (2, 32, 32))).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_head_holds_the_attention():
    assert isinstance(SegmentationNet().head, nn.Identity)
    model = SegmentationNet("psa", reduction=4, feature_size=8)
    assert isinstance(model.head, PointwiseSpatialAttention)
    assert {name for name, _ in model.named_modules() if name.endswith("gate")} == {
        "head.collect.gate", "head.distribute.gate"}


def test_forward_matches_its_steps_written_out():
    torch.manual_seed(0)
    model = SegmentationNet("psa", reduction=4, feature_size=8).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        detail = model.down1(model.stem(x))  # (3, 32, 16, 16)
        context = model.head(model.down2(detail))  # (3, 64, 8, 8)
        up = F.interpolate(context, scale_factor=2, mode="bilinear", align_corners=False)
        logits = F.conv2d(torch.cat([up, detail], 1), model.classifier.weight, model.classifier.bias)
        expected = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected)
    assert detail.shape == (3, 32, 16, 16) and context.shape == (3, 64, 8, 8)


def test_non_square_input_without_attention():
    assert SegmentationNet()(torch.rand(1, 1, 32, 48)).shape == (1, NUM_CLASSES, 32, 48)


def test_bad_inputs():
    model = SegmentationNet()
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"expects images \(B, 1, H, W\)"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="widths must give 3 numbers"):
        SegmentationNet(widths=(16, 32))
    with pytest.raises(ValueError, match="built for feature maps up to 8 x 8"):
        SegmentationNet("psa", reduction=4, feature_size=8)(torch.rand(1, 1, 64, 64))


def test_dataset_and_loaders_match_the_data_module():
    data = make_cluttered_digits(64, "test", seed=3)
    dataset = segmentation_dataset(64, "test", seed=3)
    images, targets = dataset.tensors
    torch.testing.assert_close(images, data.images)
    assert targets.dtype == torch.int64 and targets.shape == (64, 32, 32)
    # background 0 off the digit, digit + 1 on its mask
    assert (targets[~data.masks] == 0).all()
    assert (targets == data.labels[:, None, None] + 1)[data.masks].all()

    train, test = make_segmentation_loaders(n_train=100, n_test=50, batch_size=32, seed=1)
    x, y = next(iter(train))
    assert x.shape == (32, 1, 32, 32) and y.shape == (32, 32, 32)
    assert 0 <= y.min() and y.max() < NUM_CLASSES
    x_again, _ = next(iter(make_segmentation_loaders(n_train=100, n_test=50, batch_size=32, seed=1)[0]))
    torch.testing.assert_close(x, x_again)  # same seed, same first batch
    assert len(test.dataset) == 50


class OneHot(nn.Module):
    """A 'model' whose image is its answer: logits are the one-hot code of round(image)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.one_hot(x[:, 0].round().long(), NUM_CLASSES).permute(0, 3, 1, 2).float() + self.dummy


def test_scores_by_hand():
    targets = segmentation_dataset(20, "test").tensors[1]
    perfect = DataLoader(TensorDataset(targets[:, None].float(), targets), batch_size=8)
    scores = segmentation_scores(OneHot(), perfect)
    assert scores == {"mIoU": 1.0, "pixel accuracy": 1.0}

    # Predicting background everywhere: accuracy is the background share; background's IoU is that
    # share too, every other class present has IoU 0, so mIoU = share / (number of classes present).
    background = DataLoader(TensorDataset(torch.zeros(20, 1, 32, 32), targets), batch_size=8)
    share = (targets == 0).float().mean().item()
    present = len(torch.unique(targets))
    scores = segmentation_scores(OneHot(), background)
    assert scores["pixel accuracy"] == pytest.approx(share)
    assert scores["mIoU"] == pytest.approx(share / present)
    pred, target = predict_masks(OneHot(), background)
    assert (pred == 0).all() and torch.equal(target, targets)


def test_fit_and_evaluate_on_per_pixel_targets():
    torch.manual_seed(0)
    train, test = make_segmentation_loaders(n_train=64, n_test=32, batch_size=32, seed=0)
    model = SegmentationNet(widths=(4, 8, 8))
    history = fit(model, train, test, epochs=2, lr=1e-2, device="cpu", progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    assert 0 <= history.final_test_accuracy <= 1
    pixel_accuracy = segmentation_scores(model, test)["pixel accuracy"]
    assert evaluate(model, test) == pytest.approx(pixel_accuracy)


@pytest.mark.parametrize("kwargs, given", [({"atention": "psa"}, "atention"), ({"reduction": 4}, "reduction")])
def test_a_misspelt_or_missing_attention_is_refused(kwargs, given):
    # SegmentationNet(atention="psa") used to build a network with an Identity head.
    with pytest.raises(TypeError, match=f"SegmentationNet got {given} but no attention"):
        SegmentationNet(**kwargs)


def test_integer_images_get_an_error_that_says_what_to_pass():
    with pytest.raises(TypeError, match="SegmentationNet expects floating-point images, got torch.int64"):
        SegmentationNet()(torch.zeros(2, 1, 32, 32, dtype=torch.long))
