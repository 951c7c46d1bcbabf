"""Tests of attn_course.explain.grad_cam against a direct autograd computation."""

import pytest
import torch
import torch.nn.functional as F

from attn_course.explain import grad_cam
from attn_course.models import ResNet


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = ResNet("se", widths=(8, 16, 32), reduction=4)  # narrower than the default, for speed
    # Give BatchNorm non-trivial running statistics, so that eval mode differs from train mode.
    with torch.no_grad():
        model(torch.rand(16, 1, 32, 32))
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, images


def autograd_cam(model, layer, images, target, upsample=True):
    """Grad-CAM written out: hook the layer's output A, differentiate the class score by hand."""
    model.eval()
    captured = []
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
    logits = model(images)
    handle.remove()
    activations = captured[0]  # (B, K, h, w)
    score = logits[torch.arange(len(images)), target].sum()  # each image's score depends on it alone
    (gradients,) = torch.autograd.grad(score, activations)
    alpha = gradients.mean(dim=(2, 3))  # (B, K)
    cam = F.relu((alpha[:, :, None, None] * activations).sum(1))  # (B, h, w)
    if upsample:
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    model.train()
    return cam.detach()


@pytest.mark.parametrize("upsample", [True, False])
def test_grad_cam_matches_autograd(model_and_images, upsample):
    model, images = model_and_images
    layer = model.stages[-1]
    target = torch.tensor([0, 3, 7, 9])
    expected = autograd_cam(model, layer, images, target, upsample)
    assert expected.abs().sum() > 0  # the comparison is not between two zero maps
    maps = grad_cam(model, layer, images, target=target, upsample=upsample)
    assert maps.shape == ((4, 32, 32) if upsample else (4, 8, 8))
    assert maps.device.type == "cpu" and not maps.requires_grad
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-6)


def test_grad_cam_other_layer(model_and_images):
    model, images = model_and_images
    layer = model.stages[1]
    target = torch.tensor([2, 2, 5, 5])
    expected = autograd_cam(model, layer, images, target, upsample=False)
    maps = grad_cam(model, layer, images, target=target, upsample=False)
    assert maps.shape == (4, 16, 16)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-6)


def test_default_target_is_the_predicted_class(model_and_images):
    model, images = model_and_images
    layer = model.stages[-1]
    with torch.no_grad():
        predicted = model.eval()(images).argmax(1)
    model.train()
    expected = autograd_cam(model, layer, images, predicted)
    torch.testing.assert_close(grad_cam(model, layer, images), expected, rtol=1e-4, atol=1e-6)
    # Another class gives another map, so the default is not an accident.
    other = (predicted + 1) % 10
    assert not torch.allclose(grad_cam(model, layer, images, target=other), expected)


def test_int_target_and_mode_restored(model_and_images):
    model, images = model_and_images
    layer = model.stages[-1]
    model.train()
    maps = grad_cam(model, layer, images, target=4)
    assert model.training
    torch.testing.assert_close(maps, autograd_cam(model, layer, images, torch.full((4,), 4)), rtol=1e-4, atol=1e-6)
    assert (maps >= 0).all()


def test_grad_cam_errors(model_and_images):
    model, images = model_and_images
    with pytest.raises(TypeError, match="layer must be a submodule of the model, got str"):
        grad_cam(model, "stages.2", images)
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\), got shape \(1, 32, 32\)"):
        grad_cam(model, model.stages[-1], images[0])


def test_grad_cam_refuses_a_target_out_of_range_and_a_foreign_layer():
    torch.manual_seed(0)
    model = ResNet()
    images = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"target classes must lie in 0 \.\. 9 \(the model has 10 outputs\), got 12"):
        grad_cam(model, model.stages[-1], images, target=12)
    with pytest.raises(ValueError, match=r"got \[0, -1\]"):
        grad_cam(model, model.stages[-1], images, target=torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="one per image"):
        grad_cam(model, model.stages[-1], images, target=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="layer must be a submodule of the model"):
        grad_cam(model, torch.nn.Conv2d(64, 64, 1), images)
    assert grad_cam(model, model.stages[-1], images, target=3).shape == (2, 32, 32)


def test_grad_cam_wants_a_bool_for_upsample():
    model = ResNet()
    with pytest.raises(TypeError, match="upsample must be True or False"):
        grad_cam(model, model.stages[-1], torch.rand(2, 1, 32, 32), upsample="no")
