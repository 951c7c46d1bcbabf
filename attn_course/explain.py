"""Grad-CAM: where a classifier looks, from the gradients of its score.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, https://arxiv.org/abs/1610.02391.

We use Captum's ``LayerGradCam`` (https://captum.ai), maintained by the PyTorch team, rather
than hooks of our own: it handles the hooks, multi-output layers and batching, and its result is
checked against a direct autograd computation in ``tests/test_explain.py``.
"""

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from .models import eval_mode, model_device


def grad_cam(model, layer, images, target=None, upsample=True):
    """Grad-CAM maps of ``model`` at ``layer`` for ``images``.

    Args:
        model: a classifier returning logits (B, K).
        layer: the module whose output feature map is explained, e.g. the last stage.
        images: (B, C, H, W) inputs.
        target: class index per image (B,) or an int; default: the predicted class.
        upsample: resize the maps bilinearly to the images' H x W.

    Returns:
        Maps (B, H, W) (or the layer's resolution when ``upsample=False``), ReLU applied, on
        the CPU. Each map is ``relu(sum_k alpha_k A^k)`` with ``alpha_k`` the spatial mean of
        the score's gradient with respect to channel ``k`` of the layer's output ``A``.
    """
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be a submodule of the model, got {type(layer).__name__}.")
    if not isinstance(upsample, bool):  # "no" would count as True
        raise TypeError(f"upsample must be True or False, got {upsample!r}.")
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}.")
    if not any(module is layer for module in model.modules()):
        raise ValueError(f"layer must be a submodule of the model (e.g. model.stages[-1]), got a "
                         f"{type(layer).__name__} that is not part of it: the gradients would never reach it.")
    device = model_device(model)
    images = images.to(device)
    with eval_mode(model):
        if target is None:
            with torch.no_grad():
                target = model(images).argmax(1)
        else:
            _check_target(model, images, target)
        if isinstance(target, torch.Tensor):
            target = target.to(device)
        maps = LayerGradCam(model, layer).attribute(images, target=target, relu_attributions=True)
        if upsample:
            maps = LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return maps[:, 0].detach().cpu()


def _check_target(model, images, target):
    """Raise a ValueError unless ``target`` is an int or (B,) classes within the model's outputs."""
    classes = torch.as_tensor(target)
    if classes.is_floating_point() or classes.dim() > 1 or (classes.dim() == 1 and len(classes) != len(images)):
        raise ValueError(f"target must be a class index (an int) or one per image ({len(images)},), got {target!r}.")
    with torch.no_grad():
        num_classes = model(images[:1]).shape[1]
    if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"target classes must lie in 0 .. {num_classes - 1} (the model has {num_classes} outputs), "
                         f"got {classes.tolist()}.")
