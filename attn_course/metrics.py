"""Scores for predictions and for attention maps against the ground-truth boxes and masks.

The pointing game is from Zhang et al., "Top-down Neural Attention by Excitation Backprop",
ECCV 2016, https://arxiv.org/abs/1608.00507: a map scores a hit when its maximum falls inside
the object's box. Energy in box is the share of the map's (non-negative) mass inside the box,
as in Wang et al., "Score-CAM", CVPR-W 2020, https://arxiv.org/abs/1910.01279.
"""

import torch
import torch.nn.functional as F


def accuracy(logits, labels):
    """Share of rows of ``logits`` (N, K) whose argmax equals ``labels`` (N,)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"accuracy expects logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}."
        )
    return (logits.argmax(1) == labels).float().mean().item()


def _check_maps_and_boxes(maps, boxes):
    if maps.dim() != 3:
        raise ValueError(
            f"attention maps must be (N, H, W), got shape {tuple(maps.shape)}; "
            f"squeeze a channel dimension of 1 with maps[:, 0]."
        )
    if boxes.shape != (maps.shape[0], 4):
        raise ValueError(
            f"boxes must be (N, 4) = (x0, y0, x1, y1) with N = {maps.shape[0]} maps, got {tuple(boxes.shape)}."
        )


def resize_maps(maps, size):
    """Bilinearly resize maps (N, h, w) to ``size`` = (H, W), e.g. a 8 x 8 gate to a 32 x 32 image."""
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {tuple(maps.shape)}.")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def box_masks(boxes, height, width):
    """Boolean masks (N, H, W) that are True inside each box ``(x0, y0, x1, y1)``, end exclusive."""
    ys = torch.arange(height)[None, :, None]
    xs = torch.arange(width)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def pointing_game(maps, boxes):
    """Share of maps (N, H, W) whose maximum lies inside its box (N, 4). Ties: the first maximum."""
    _check_maps_and_boxes(maps, boxes)
    n, height, width = maps.shape
    peak = maps.reshape(n, -1).argmax(1)
    y, x = peak // width, peak % width
    hits = (x >= boxes[:, 0]) & (x < boxes[:, 2]) & (y >= boxes[:, 1]) & (y < boxes[:, 3])
    return hits.float().mean().item()


def energy_in_box(maps, boxes):
    """Mean share of each map's mass inside its box; negative values are clipped to 0 first."""
    _check_maps_and_boxes(maps, boxes)
    maps = maps.clamp(min=0)
    inside = (maps * box_masks(boxes, *maps.shape[-2:])).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    share = torch.where(total > 0, inside / total.clamp(min=1e-12), torch.zeros_like(total))
    return share.mean().item()


def box_area_fraction(boxes, height, width):
    """Mean share of the canvas covered by the boxes: the score of a uniformly random map."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return (area.float() / (height * width)).mean().item()


def confusion_matrix(pred, target, num_classes):
    """Counts (K, K), row = true class, column = predicted class, over all elements."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    index = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(pred, target, num_classes):
    """Intersection over union of each class (K,); NaN for a class absent from both."""
    cm = confusion_matrix(pred, target, num_classes).double()
    intersection = cm.diag()
    union = cm.sum(0) + cm.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))


def mean_iou(pred, target, num_classes):
    """Mean IoU over the classes present in ``pred`` or ``target`` (segmentation's mIoU)."""
    return iou_per_class(pred, target, num_classes).nanmean().item()
