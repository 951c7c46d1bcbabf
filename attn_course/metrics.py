"""Scores for predictions and for attention maps against the ground-truth boxes and masks.

The pointing game is from Zhang et al., "Top-down Neural Attention by Excitation Backprop",
ECCV 2016, https://arxiv.org/abs/1608.00507: a map scores a hit when its maximum falls inside
the object's box. Energy in box is the share of the map's (non-negative) mass inside the box,
as in Wang et al., "Score-CAM", CVPR-W 2020, https://arxiv.org/abs/1910.01279.
"""

import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F


def accuracy(logits, labels):
    """Share of rows of ``logits`` (N, K) whose argmax equals ``labels`` (N,)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"accuracy expects logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}."
        )
    if logits.is_floating_point() and logits.isnan().any():
        warnings.warn("accuracy: the logits contain NaN, which has no argmax, so the accuracy is NaN. "
                      "Has the training diverged (try a smaller learning rate)?", RuntimeWarning, stacklevel=2)
        return float("nan")
    return (logits.argmax(1) == labels).float().mean().item()


def _check_boxes(boxes, n=None):
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 or \
            (n is not None and boxes.shape[0] != n):
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        count = f" with N = {n} maps" if n is not None else ""
        raise ValueError(f"boxes must be (N, 4) = (x0, y0, x1, y1){count}, got {shape}.")
    inverted = ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).nonzero().flatten().tolist()
    if inverted:
        raise ValueError(
            f"boxes must have x0 <= x1 and y0 <= y1 (x0, y0, x1, y1), but {len(inverted)} do not, e.g. box "
            f"{inverted[0]} = {boxes[inverted[0]].tolist()}: are the corners swapped, or is it (y0, x0, y1, x1)?"
        )


def _nan_maps(maps, metric):
    """Indices of the maps holding a NaN; warns, since their score is NaN and so is the mean."""
    bad = maps.flatten(1).isnan().any(1).nonzero().flatten().tolist() if maps.is_floating_point() else []
    if bad:
        warnings.warn(f"{metric}: {len(bad)} of {len(maps)} maps contain NaN (e.g. map {bad[0]}), so the score is "
                      f"NaN. Find where the NaN comes from, or score them with torch.nan_to_num(maps) as 0.",
                      RuntimeWarning, stacklevel=3)
    return bad


def _check_maps_and_boxes(maps, boxes):
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"attention maps must be a tensor (N, H, W), got {type(maps).__name__}.")
    if maps.dim() != 3:
        raise ValueError(
            f"attention maps must be (N, H, W), got shape {tuple(maps.shape)}; "
            f"squeeze a channel dimension of 1 with maps[:, 0]."
        )
    _check_boxes(boxes, maps.shape[0])


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
    """Share of maps (N, H, W) whose maximum lies inside its box (N, 4). Ties: the first maximum.

    A map holding a NaN has no maximum: the score is then NaN, with a warning.
    """
    _check_maps_and_boxes(maps, boxes)
    if _nan_maps(maps, "pointing_game"):
        return float("nan")
    n, height, width = maps.shape
    peak = maps.reshape(n, -1).argmax(1)
    y, x = peak // width, peak % width
    hits = (x >= boxes[:, 0]) & (x < boxes[:, 2]) & (y >= boxes[:, 1]) & (y < boxes[:, 3])
    return hits.float().mean().item()


def energy_in_box(maps, boxes):
    """Mean share of each map's mass inside its box; negative values are clipped to 0 first.

    A map holding a NaN has no share: the score is then NaN, with a warning.
    """
    _check_maps_and_boxes(maps, boxes)
    if _nan_maps(maps, "energy_in_box"):
        return float("nan")
    maps = maps.clamp(min=0)
    inside = (maps * box_masks(boxes, *maps.shape[-2:])).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    share = torch.where(total > 0, inside / total.clamp(min=1e-12), torch.zeros_like(total))
    return share.mean().item()


def box_area_fraction(boxes, height, width):
    """Mean share of the canvas covered by the boxes: the score of a uniformly random map.

    Only the part of a box on the ``height`` x ``width`` canvas counts.
    """
    _check_boxes(boxes)
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"box_area_fraction: {name} must be a positive int (pixels), got {value!r}.")
    x0, x1 = boxes[:, 0].clamp(0, width), boxes[:, 2].clamp(0, width)
    y0, y1 = boxes[:, 1].clamp(0, height), boxes[:, 3].clamp(0, height)
    area = (x1 - x0) * (y1 - y0)
    return (area.float() / (height * width)).mean().item()


def confusion_matrix(pred, target, num_classes):
    """Counts (K, K), row = true class, column = predicted class, over all elements."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    for name, values in (("pred", pred), ("target", target)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} holds classes from {values.min().item()} to {values.max().item()}, outside 0 .. "
                f"{num_classes - 1} (num_classes={num_classes}): pass the right num_classes, or map the "
                f"labels to 0 .. K-1 first."
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


# Boxes: the detector's scores (chapter 11). COCO's detection metric is Lin et al., "Microsoft COCO:
# Common Objects in Context", ECCV 2014, https://arxiv.org/abs/1405.0312; its reference code is
# pycocotools (cocodataset/cocoapi, PythonAPI/pycocotools/cocoeval.py), whose rules the functions
# below follow: a hit needs IoU >= the threshold; precision is interpolated at 101 recall levels;
# AP is averaged over the classes that have ground truth; "AP" is the mean over IoU 0.5:0.05:0.95.

COCO_IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))  # as cocoeval's iouThrs
COCO_RECALL_LEVELS = 101  # cocoeval's recThrs: 0, 0.01, ..., 1


def box_iou(boxes1, boxes2):
    """Intersection over union of matched boxes: box i of ``boxes1`` with box i of ``boxes2``, (N,).

    Boxes are (N, 4) = ``(x0, y0, x1, y1)`` in pixels, end exclusive (the data set's convention), so
    a box's area is ``(x1 - x0) * (y1 - y0)``, as in ``torchvision.ops.box_iou``; that function
    compares every box with every other (N, M), and its diagonal is this. Two boxes of area 0
    have IoU 0. Boxes with x1 < x0 or y1 < y0 raise a ValueError.
    """
    _check_boxes(boxes1)
    _check_boxes(boxes2, boxes1.shape[0])
    boxes1, boxes2 = boxes1.double(), boxes2.double()
    width = (torch.minimum(boxes1[:, 2], boxes2[:, 2]) - torch.maximum(boxes1[:, 0], boxes2[:, 0])).clamp(min=0)
    height = (torch.minimum(boxes1[:, 3], boxes2[:, 3]) - torch.maximum(boxes1[:, 1], boxes2[:, 1])).clamp(min=0)
    intersection = width * height
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    union = area(boxes1) + area(boxes2) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), torch.zeros_like(union)).float()


def average_precision(scores, hits, num_objects):
    """COCO's average precision of one class: a ranked list of detections against ``num_objects`` objects.

    Args:
        scores: (D,) confidence of each detection; the list is ranked by it, highest first (ties
            keep their order, as cocoeval's stable sort).
        hits: (D,) bool, whether each detection is a true positive (matches an object not matched
            before).
        num_objects: the number of ground-truth objects, >= 1 (and >= the number of hits).

    After the k best detections, recall is hits / num_objects and precision is hits / k. The
    precision at recall level r is the highest precision at any recall >= r (the curve's upper
    envelope), and 0 if recall r is never reached; AP is its mean over the 101 levels
    0, 0.01, ..., 1. No detections give 0.
    """
    if not isinstance(scores, torch.Tensor) or not isinstance(hits, torch.Tensor) or scores.dim() != 1 \
            or hits.shape != scores.shape:
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (scores, hits)]
        raise ValueError(f"average_precision expects scores (D,) and hits (D,), one per detection; got {shapes[0]} "
                         f"and {shapes[1]}.")
    if isinstance(num_objects, bool) or not isinstance(num_objects, numbers.Integral) or num_objects < 1:
        raise ValueError(f"num_objects must be an int >= 1 (AP is undefined for a class with no objects), "
                         f"got {num_objects!r}.")
    hits = hits.bool()
    if hits.sum() > num_objects:
        raise ValueError(f"{int(hits.sum())} hits for {num_objects} objects: an object can be matched once only.")
    if scores.is_floating_point() and not scores.isfinite().all():
        raise ValueError("scores must be finite numbers: rank NaN or infinite confidences how?")
    if len(scores) == 0:
        return 0.0
    order = torch.argsort(-scores.double(), stable=True)
    true_positives = hits[order].double().cumsum(0)
    recall = (true_positives / num_objects).numpy()
    precision = true_positives / torch.arange(1, len(order) + 1, dtype=torch.float64)
    envelope = precision.flip(0).cummax(0).values.flip(0).numpy()  # best precision at this recall or beyond
    levels = np.linspace(0, 1, COCO_RECALL_LEVELS)
    first = np.searchsorted(recall, levels, side="left")  # the first detection reaching each level
    reached = first < len(recall)
    return float(np.where(reached, envelope[np.minimum(first, len(recall) - 1)], 0.0).mean())


def _check_detections(pred_boxes, pred_labels, scores, true_boxes, true_labels):
    n = pred_boxes.shape[0] if isinstance(pred_boxes, torch.Tensor) and pred_boxes.dim() == 2 else None
    _check_boxes(pred_boxes)
    _check_boxes(true_boxes, n)
    for name, values in (("pred_labels", pred_labels), ("scores", scores), ("true_labels", true_labels)):
        if not isinstance(values, torch.Tensor) or values.shape != (n,):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"{name} must be ({n},), one per image as the boxes, got {shape}.")
    if n == 0:
        raise ValueError("no images to score: the detections are empty.")


def box_ap(pred_boxes, pred_labels, scores, true_boxes, true_labels, iou_threshold=0.5):
    """COCO's AP at one IoU threshold, for images that hold one object and get one detection each.

    Image i holds the object ``(true_labels[i], true_boxes[i])`` and gets the detection
    ``(pred_labels[i], pred_boxes[i])`` with confidence ``scores[i]``. The detection is a hit when
    it names the right class and its :func:`box_iou` with the object is >= ``iou_threshold``.
    As cocoeval does, each class is scored on its own (the detections that name it, against the
    objects of that class: a wrong class is a false positive of the class named and a miss of
    the true one), and the :func:`average_precision` of the classes with objects are averaged.

    Args:
        pred_boxes, true_boxes: (N, 4) boxes ``(x0, y0, x1, y1)``.
        pred_labels, true_labels: (N,) classes.
        scores: (N,) confidences.
        iou_threshold: a number in (0, 1].
    """
    _check_detections(pred_boxes, pred_labels, scores, true_boxes, true_labels)
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real) or not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}.")
    hits = (pred_labels == true_labels) & (box_iou(pred_boxes, true_boxes) >= iou_threshold)
    per_class = []
    for label in true_labels.unique().tolist():
        named = pred_labels == label
        per_class.append(average_precision(scores[named], hits[named], int((true_labels == label).sum())))
    return float(np.mean(per_class))


def box_ap_coco(pred_boxes, pred_labels, scores, true_boxes, true_labels):
    """COCO's headline "AP": :func:`box_ap` averaged over the IoU thresholds 0.5, 0.55, ..., 0.95.

    A detection must then not only overlap its object but fit it tightly to score fully.
    """
    return float(np.mean([box_ap(pred_boxes, pred_labels, scores, true_boxes, true_labels, t)
                          for t in COCO_IOU_THRESHOLDS]))
