"""A small single-object detector on the course's ResNet: the digit's class and its box.

Every Cluttered Digits image holds one digit and its box, so detection here is: name the digit,
and say where it is. The head is anchor-free, in the style of CenterNet (Zhou, Wang and
Krähenbühl, "Objects as Points", 2019, https://arxiv.org/abs/1904.07850, official code
xingyizhou/CenterNet): at every cell of the last feature map (8 x 8 for 32 x 32 images, stride
s = 4) a 3x3 conv, a ReLU and a 1x1 conv predict a centre score, the centre's offset inside the
cell and the box's width and height, and the ResNet's own classifier (its linear layer ``fc``),
applied to every cell instead of to the average over the cells, gives class scores per cell.
The box and the class are read at the cell with the best centre score, as CenterNet reads them at
a heat-map peak (FCOS, too, classifies at every location).

Two simplifications for one object per image, both stated in chapter 11: CenterNet predicts one
heat map per class, trained with a focal loss against Gaussian bumps at every object's centre;
here one class-agnostic softmax over the cells picks the single centre (a classification over
positions), and the class scores are separate. The losses, for an image with class y and box
(x0, y0, x1, y1), centre p = ((x0 + x1) / 2, (y0 + y1) / 2) and size (w, h), whose centre falls in
cell c* = floor(p / s)::

    L = L_class + L_centre + L_offset + L_size
    L_class  = -log softmax(class scores at c*)[y]            cross-entropy over the 10 digits
    L_centre = -log softmax(centre scores over the cells)[c*] cross-entropy over the h * w cells
    L_offset = mean |sigmoid(o[c*]) - (p / s - c*)|           L1, the centre inside its cell, in cells
    L_size   = mean |size[c*] - (w, h) / s|                   L1, the box's size, in cells

CenterNet measures sizes in the same units: its ``src/lib/datasets/sample/ctdet.py`` maps each box
onto the output map (``down_ratio`` 4) before it sets ``wh[k] = w, h``, and it weighs the size loss
0.1 (``--wh_weight`` in ``opts.py``). Every weight here is 1: this course's choice, not CenterNet's.
The class is trained at the true centre c* and read at the predicted one. Classifying the global average of the features
instead, as the classification chapters do, learnt the class far more slowly beside the box terms
(about 0.2 class accuracy against 0.9 at the chapter budget, in our trials on two seeds, on a GPU).

:func:`attn_course.train.fit` trains the detector as it is (``loss_fn=detection_loss``,
``test_loader=None``): the loaders give ``(images, BoxTargets)``, and fit's running training
accuracy compares :meth:`Detections.argmax` (the predicted digits) with the targets' labels.
Score the trained model with :func:`detection_scores`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

from .data import ClutteredDigits, make_cluttered_digits
from .metrics import _check_boxes, box_ap, box_ap_coco, box_iou
from .models import ResNet, eval_mode, model_device


@dataclass
class Detections:
    """What :class:`Detector` predicts for a batch of B images on an h x w feature map.

    Attributes:
        class_logits: (B, K, h, w) class scores at every cell.
        centre: (B, h, w) centre scores, one per cell (a softmax over the cells gives probabilities).
        offset: (B, 2, h, w) the centre's (x, y) offset inside each cell before a sigmoid.
        size: (B, 2, h, w) the box's width and height, in cells.
        stride: pixels per cell (4 for the course's 3-stage ResNet).
    """

    class_logits: torch.Tensor
    centre: torch.Tensor
    offset: torch.Tensor
    size: torch.Tensor
    stride: int

    def best_cell(self):
        """(B,) the flat index (row * w + col) of each image's best centre score."""
        return self.centre.flatten(1).argmax(1)

    @property
    def logits(self):
        """(B, K) the class scores at each image's best cell."""
        index = torch.arange(len(self.centre), device=self.centre.device)
        return self.class_logits.flatten(2)[index, :, self.best_cell()]

    def argmax(self, dim=1):
        """The predicted classes, ``logits.argmax(dim)``: what fit's running accuracy compares with the labels."""
        return self.logits.argmax(dim)

    def centre_probabilities(self):
        """(B, h, w): the softmax of the centre scores over the cells of each image."""
        return self.centre.flatten(1).softmax(1).view_as(self.centre)

    def boxes(self):
        """(B, 4) boxes ``(x0, y0, x1, y1)`` in pixels, read at each image's best cell, clipped to the image."""
        batch, height, width = self.centre.shape
        cell = self.best_cell()  # (B,)
        row, col = cell // width, cell % width
        index = torch.arange(batch, device=cell.device)
        offset = self.offset[index, :, row, col].sigmoid()  # (B, 2)
        size = self.size[index, :, row, col].clamp(min=0)  # (B, 2); a negative size means none
        centre = torch.stack([col, row], 1) + offset  # (B, 2), in cells
        boxes = torch.cat([centre - size / 2, centre + size / 2], 1) * self.stride  # (B, 4), in pixels
        limits = torch.tensor([width, height, width, height], device=boxes.device) * self.stride
        return torch.minimum(boxes.clamp(min=0), limits)

    def scores(self):
        """(B,) each detection's confidence: the probability of its class times that of its centre cell."""
        return self.logits.softmax(1).amax(1) * self.centre.flatten(1).softmax(1).amax(1)


@dataclass(eq=False)
class BoxTargets:
    """The targets of a batch: ``labels`` (B,) and ``boxes`` (B, 4) ``(x0, y0, x1, y1)`` in pixels.

    ``predicted == targets`` compares predicted classes with ``labels``, so that
    :func:`attn_course.train.fit`'s running accuracy is the class accuracy.
    """

    labels: torch.Tensor
    boxes: torch.Tensor

    def to(self, device):
        return BoxTargets(self.labels.to(device), self.boxes.to(device))

    def __len__(self):
        return len(self.labels)

    def __eq__(self, other):
        return self.labels == other


class Detector(nn.Module):
    """The course's small ResNet with a class and box head; see the module's docstring.

    Args:
        attention: None (no attention), or a name registered in :mod:`attn_course.attention`,
            placed in the ResNet's blocks as :class:`attn_course.models.ResNet` places it.
        num_classes: number of classes.
        hidden: channels of the head's 3x3 conv.
        **resnet_kwargs: more arguments of :class:`~attn_course.models.ResNet` (``stages``,
            ``position``) and of the attention (``reduction=4``).

    Shapes: images (B, 1, H, W) -> :class:`Detections`; H and W divisible by the ResNet's stride.
    """

    def __init__(self, attention=None, num_classes=10, hidden=32, **resnet_kwargs):
        super().__init__()
        self.backbone = ResNet(attention, num_classes=num_classes, **resnet_kwargs)
        channels = self.backbone.fc.in_features
        self.head = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, 5, 1))  # centre score, 2 offsets, 2 sizes per cell
        self.stride = 2 ** (len(self.backbone.stages) - 1)

    def forward(self, images):
        features = self.backbone.features(images)  # (B, C, h, w)
        if images.shape[-2] != features.shape[-2] * self.stride or images.shape[-1] != features.shape[-1] * self.stride:
            raise ValueError(f"Detector: image sides must be multiples of the stride {self.stride}, got "
                             f"{tuple(images.shape[-2:])}: pad or crop the images.")
        class_logits = self.backbone.fc(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # fc per cell: (B, K, h, w)
        out = self.head(features)  # (B, 5, h, w)
        return Detections(class_logits, out[:, 0], out[:, 1:3], out[:, 3:5], self.stride)


def _check_targets(outputs, targets):
    if not isinstance(outputs, Detections):
        raise TypeError(f"detection_loss expects the Detections of a Detector, got {type(outputs).__name__}.")
    if not isinstance(targets, BoxTargets):
        raise TypeError(f"detection_loss expects BoxTargets (labels and boxes, as make_detection_loaders "
                        f"gives them), got {type(targets).__name__}.")
    batch, height, width = outputs.centre.shape
    labels, boxes = targets.labels, targets.boxes
    if labels.shape != (batch,):
        raise ValueError(f"targets.labels must be ({batch},), one per image, got {tuple(labels.shape)}.")
    _check_boxes(boxes, batch)
    num_classes = outputs.class_logits.shape[1]
    if batch and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be classes 0 .. {num_classes - 1}, got {labels.min().item()} .. "
                         f"{labels.max().item()}.")
    size = torch.tensor([width, height, width, height], device=boxes.device) * outputs.stride
    outside = ((boxes < 0) | (boxes > size)).any(1).nonzero().flatten().tolist()
    if outside:
        raise ValueError(f"{len(outside)} boxes reach outside the {height * outputs.stride} x "
                         f"{width * outputs.stride} image, e.g. box {outside[0]} = {boxes[outside[0]].tolist()}: "
                         f"boxes are (x0, y0, x1, y1) in pixels, from 0 to the image's width and height.")


def box_targets_on_grid(boxes, stride, height, width):
    """Each box's centre cell (B,) (flat index row * width + col), its offset inside the cell
    (B, 2) and its size (B, 2), both in cells: the targets of the losses at c*."""
    boxes = boxes.float() / stride  # in cells
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (B, 2) as (x, y)
    col = centre[:, 0].floor().long().clamp(0, width - 1)  # a centre on the far edge belongs to the last cell
    row = centre[:, 1].floor().long().clamp(0, height - 1)
    offset = centre - torch.stack([col, row], 1)
    return row * width + col, offset, boxes[:, 2:] - boxes[:, :2]


def detection_losses(outputs, targets):
    """The four terms of the loss (see the module's docstring) as a dict of scalar tensors."""
    _check_targets(outputs, targets)
    batch, height, width = outputs.centre.shape
    if batch == 0:
        raise ValueError("detection_loss got an empty batch: there is nothing to learn from.")
    cell, offset, size = box_targets_on_grid(targets.boxes, outputs.stride, height, width)
    index = torch.arange(batch, device=cell.device)
    predicted_offset = outputs.offset.flatten(2)[index, :, cell].sigmoid()  # (B, 2) at c*
    predicted_size = outputs.size.flatten(2)[index, :, cell]  # (B, 2) at c*
    return {
        "class": F.cross_entropy(outputs.class_logits.flatten(2)[index, :, cell], targets.labels),
        "centre": F.cross_entropy(outputs.centre.flatten(1), cell),
        "offset": F.l1_loss(predicted_offset, offset),
        "size": F.l1_loss(predicted_size, size),
    }


def detection_loss(outputs, targets):
    """L = L_class + L_centre + L_offset + L_size, a scalar: the ``loss_fn`` of :func:`attn_course.train.fit`."""
    return sum(detection_losses(outputs, targets).values())


class DetectionDigits(ClutteredDigits):
    """Cluttered Digits whose items are ``(image, (label, box))``, for detection."""

    def __getitem__(self, index):
        return self.images[index], (self.labels[index], self.boxes[index])


def collate_detections(batch):
    """Stack a list of ``(image, (label, box))`` into ``(images, BoxTargets)``."""
    images, (labels, boxes) = default_collate(batch)
    return images, BoxTargets(labels, boxes)


def make_detection_loaders(n_train=2000, n_test=1000, batch_size=64, seed=0, **data_kwargs):
    """Train and test loaders of ``(images, BoxTargets)`` over fresh Cluttered Digits.

    The same images, order and rules as :func:`attn_course.data.make_loaders` with the same
    arguments: the train loader shuffles with a generator seeded from ``seed``, a last training
    batch of one image is dropped, and the test loader gives batches of 512 in order. The defaults
    are the study's chapter budget; extra keyword arguments go to :func:`make_cluttered_digits`.
    """
    train = DetectionDigits(**vars(make_cluttered_digits(n_train, "train", seed=seed, **data_kwargs)))
    test = DetectionDigits(**vars(make_cluttered_digits(n_test, "test", seed=seed, **data_kwargs)))
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate_detections,
                   drop_last=len(train) % batch_size == 1),
        DataLoader(test, batch_size=512, shuffle=False, collate_fn=collate_detections),
    )


@torch.no_grad()
def detect(model, images, device=None, batch_size=512):
    """Run a :class:`Detector` over ``images`` (N, 1, H, W) in eval mode: a dict of CPU tensors
    ``labels`` (N,), ``boxes`` (N, 4), ``scores`` (N,) and ``centre`` (N, h, w), the centre probabilities."""
    device = device or model_device(model)
    parts = []
    with eval_mode(model):
        for batch in images.split(batch_size):
            out = model(batch.to(device))
            parts.append({"labels": out.argmax(1), "boxes": out.boxes(), "scores": out.scores(),
                          "centre": out.centre_probabilities()})
    return {key: torch.cat([part[key] for part in parts]).cpu() for key in parts[0]}


def detection_scores(model, loader, device=None):
    """Score a detector on a loader of ``(images, BoxTargets)``: a dict of Python floats.

    ``accuracy`` (the class), ``mean_iou`` (the mean box IoU, whatever the class), ``ap50`` and
    ``ap75`` (:func:`attn_course.metrics.box_ap` at IoU 0.5 and 0.75) and ``ap`` (COCO's AP,
    averaged over IoU 0.5:0.95, :func:`attn_course.metrics.box_ap_coco`).
    """
    if len(loader) == 0:
        raise ValueError("detection_scores: the loader has no batches: is its data set empty?")
    found, labels, boxes = [], [], []
    for images, targets in loader:
        found.append(detect(model, images, device))
        labels.append(targets.labels.cpu())
        boxes.append(targets.boxes.cpu())
    found = {key: torch.cat([part[key] for part in found]) for key in ("labels", "boxes", "scores")}
    labels, boxes = torch.cat(labels), torch.cat(boxes)
    args = (found["boxes"], found["labels"], found["scores"], boxes, labels)
    return {
        "accuracy": (found["labels"] == labels).float().mean().item(),
        "mean_iou": box_iou(found["boxes"], boxes).mean().item(),
        "ap50": box_ap(*args, iou_threshold=0.5),
        "ap75": box_ap(*args, iou_threshold=0.75),
        "ap": box_ap_coco(*args),
    }
