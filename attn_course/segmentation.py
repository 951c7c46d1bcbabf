"""Semantic segmentation of Cluttered Digits: a small network with an attention head, loaders, scores.

Every pixel gets one of 11 classes: 0 for background and clutter, ``d + 1`` on the ink of the
digit ``d`` (:meth:`attn_course.data.ClutteredDigits.segmentation_targets`). Telling the digit
from clutter made of fragments of other digits, and naming it, both need context from beyond
a pixel's neighbourhood: the setting of PSANet (Zhao et al., ECCV 2018).

:func:`attn_course.train.fit` trains these networks as they are: its default loss, cross-entropy,
takes logits (B, K, H, W) and targets (B, H, W), and its accuracy is then per pixel.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .data import loaders_for, make_cluttered_digits
from .metrics import confusion_matrix, mean_iou, resize_maps
from .models import BasicBlock, eval_mode, make_attention, model_device

NUM_CLASSES = 11  # background (with clutter) + 10 digits


def check_images(x, in_channels, step, name):
    """Refuse anything but float images (B, ``in_channels``, H, W) with H and W divisible by ``step``,
    with an error that says what was given and what ``name`` (the network) expects."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != in_channels or x.shape[2] % step or \
            x.shape[3] % step:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects images (B, {in_channels}, H, W) with H and W divisible by {step}, "
                         f"got {shape}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects floating-point images, got {x.dtype}: convert them with x.float().")


class SegmentationNet(nn.Module):
    """A small encoder-decoder: context at stride 4, an optional attention there, detail at stride 2.

    Encoder: a 3x3 stem at full resolution and two residual :class:`~attn_course.models.BasicBlock`
    s at strides 2 and 4 (16 x 16 and 8 x 8 for 32 x 32 images). The attention ``head`` works on
    the stride-4 features, where PSA's maps are small (8 x 8 gives (2*8-1)^2 = 225 offsets per
    position, against 3969 at 32 x 32). Decoder: the head's output, upsampled to stride 2, is
    concatenated with the stride-2 features, a 1x1 conv gives the class scores, and bilinear
    upsampling brings them to the input size.

    Args:
        attention: None (no head), a name registered in :mod:`attn_course.attention` such as
            ``"psa"``, or a callable ``f(channels, **attention_kwargs)`` returning a module.
        widths: channels of the stem, the stride-2 block and the stride-4 block.
        num_classes: classes per pixel (11 for Cluttered Digits).
        in_channels: image channels.
        **attention_kwargs: passed to the attention, e.g. ``reduction=4, feature_size=8``.

    Shapes: (B, in_channels, H, W) -> logits (B, num_classes, H, W); H and W divisible by 4.
    """

    def __init__(self, attention=None, widths=(16, 32, 64), num_classes=NUM_CLASSES, in_channels=1,
                 **attention_kwargs):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths must give 3 numbers (stem, stride 2, stride 4), got {widths!r}.")
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        self.down1 = BasicBlock(widths[0], widths[1], stride=2)
        self.down2 = BasicBlock(widths[1], widths[2], stride=2)
        self.head = make_attention(attention, widths[2], attention_kwargs, "SegmentationNet")
        self.classifier = nn.Conv2d(widths[2] + widths[1], num_classes, 1)

    def forward(self, x):
        check_images(x, self.in_channels, 4, "SegmentationNet")
        detail = self.down1(self.stem(x))  # (B, C1, H/2, W/2)
        context = self.head(self.down2(detail))  # (B, C2, H/4, W/4)
        context = F.interpolate(context, size=detail.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(torch.cat([context, detail], 1))  # (B, K, H/2, W/2)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)


def conv_head(channels):
    """A head of local context only, to compare attention heads with: one residual block of two 3x3
    convolutions (:class:`~attn_course.models.BasicBlock`), at the same place and resolution."""
    return BasicBlock(channels, channels)


def segmentation_dataset(n, split="train", seed=0, **data_kwargs):
    """A :class:`~torch.utils.data.TensorDataset` of (images (N, 1, H, W), targets (N, H, W))."""
    data = make_cluttered_digits(n, split, seed=seed, **data_kwargs)
    return TensorDataset(data.images, data.segmentation_targets())


def make_segmentation_loaders(n_train=4000, n_test=1000, batch_size=128, seed=0, **data_kwargs):
    """Train and test loaders of (image, per-pixel target) over fresh Cluttered Digits.

    The same samples as :func:`attn_course.data.make_loaders` with the same arguments, with
    targets from :meth:`~attn_course.data.ClutteredDigits.segmentation_targets`; the train loader
    shuffles with a generator seeded from ``seed``.
    """
    train = segmentation_dataset(n_train, "train", seed, **data_kwargs)
    test = segmentation_dataset(n_test, "test", seed, **data_kwargs)
    return loaders_for(train, test, batch_size, seed)


@torch.no_grad()
def predict_masks(model, loader, device=None):
    """The predicted class of every pixel, (N, H, W), and the targets, (N, H, W), over ``loader``."""
    device = device or model_device(model)
    preds, targets = [], []
    with eval_mode(model):
        for images, target in loader:
            preds.append(model(images.to(device)).argmax(1).cpu())
            targets.append(target)
    return torch.cat(preds), torch.cat(targets)


def segmentation_scores(model, loader, num_classes=NUM_CLASSES, device=None, dice=False):
    """``{"mIoU": ..., "pixel accuracy": ...}`` of ``model`` over ``loader``, floats in [0, 1].

    ``dice=True`` adds ``"dice"``: :func:`mean_dice`, the mean Dice of the foreground classes.
    """
    pred, target = predict_masks(model, loader, device)
    scores = {
        "mIoU": mean_iou(pred, target, num_classes),
        "pixel accuracy": (pred == target).float().mean().item(),
    }
    if dice:
        scores["dice"] = mean_dice(pred, target, num_classes)
    return scores


# Dice, as the medical literature reports it: the Dice (F1) score 2|P & T| / (|P| + |T|) of each
# structure of interest, background left out (Oktay et al. 2018 report the pancreas's Dice). Here
# the structures are the 10 digit classes, each pooled over all pixels of the test set as mIoU
# pools IoU; medical papers usually average one structure's Dice over patients (volumes) instead.
# For one class Dice = 2 IoU / (1 + IoU), so it is never below the class's IoU.

def dice_per_class(pred, target, num_classes):
    """Dice score of each class (K,), 2 |P & T| / (|P| + |T|) over all elements; NaN for a class absent
    from both ``pred`` and ``target``."""
    cm = confusion_matrix(pred, target, num_classes).double()
    size = cm.sum(0) + cm.sum(1)  # |P| + |T|
    return torch.where(size > 0, 2 * cm.diag() / size.clamp(min=1), torch.full_like(size, float("nan")))


def mean_dice(pred, target, num_classes=NUM_CLASSES, include_background=False):
    """Mean Dice over the classes present in ``pred`` or ``target``; class 0 (background and clutter)
    is left out unless ``include_background``. NaN when no foreground class is present."""
    dice = dice_per_class(pred, target, num_classes)
    dice = dice if include_background else dice[1:]
    return dice.nanmean().item() if not dice.isnan().all() else float("nan")


def mask_share(masks):
    """Mean share of the image that each mask (N, H, W) covers: what a uniform map puts inside it."""
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        raise ValueError(f"masks must be a tensor (N, H, W), got {getattr(masks, 'shape', type(masks).__name__)}.")
    return masks.flatten(1).float().mean(1).mean().item()


def energy_in_mask(maps, masks):
    """Mean share of each map's mass inside its mask, like :func:`attn_course.metrics.energy_in_box`
    with a pixel mask for the box.

    Args:
        maps: (N, h, w), resized bilinearly to the masks' size first; negative values count as 0.
        masks: (N, H, W), True (or 1) on the object.

    A map with no mass scores 0. Compare with :func:`mask_share`, the score of a uniform map.
    """
    mask_share(masks)  # checks the masks
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or maps.shape[0] != masks.shape[0]:
        raise ValueError(f"maps must be a tensor (N, h, w) with one map per mask ({masks.shape[0]}), "
                         f"got {getattr(maps, 'shape', type(maps).__name__)}.")
    maps = resize_maps(maps.float(), tuple(masks.shape[-2:])).clamp(min=0)
    inside = (maps * masks.float()).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-12), torch.zeros_like(total)).mean().item()


__all__ = ["NUM_CLASSES", "SegmentationNet", "conv_head", "segmentation_dataset", "make_segmentation_loaders",
           "predict_masks", "segmentation_scores", "dice_per_class", "mean_dice", "mask_share", "energy_in_mask"]
