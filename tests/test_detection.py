"""Tests of the box metrics (attn_course.metrics) and the detector (attn_course.detection).

The expected values are worked out by hand in the comments, independently of the code.
"""

import math

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou as torchvision_box_iou

from attn_course.data import make_loaders
from attn_course.detection import (
    BoxTargets,
    Detections,
    Detector,
    box_targets_on_grid,
    detect,
    detection_loss,
    detection_losses,
    detection_scores,
    make_detection_loaders,
)
from attn_course.metrics import COCO_IOU_THRESHOLDS, average_precision, box_ap, box_ap_coco, box_iou
from attn_course.models import AttentionRecorder
from attn_course.train import fit

T = torch.tensor


# ---------------------------------------------------------------- box IoU


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0, 4, 4), (0, 0, 4, 4), 1.0),  # the same box
    ((0, 0, 4, 4), (2, 2, 6, 6), 4 / 28),  # overlap 2 x 2 = 4; union 16 + 16 - 4 = 28
    ((0, 0, 4, 4), (0, 0, 8, 8), 16 / 64),  # inside: 16 of the union's 64
    ((0, 0, 4, 4), (4, 0, 8, 4), 0.0),  # touching edges (end exclusive): no common pixel
    ((0, 0, 4, 4), (10, 10, 12, 12), 0.0),  # apart
    ((0, 0, 10, 10), (0, 0, 8, 8), 0.64),  # 64 / 100
    ((3, 3, 3, 3), (3, 3, 3, 3), 0.0),  # two empty boxes: IoU 0 by definition, not 0 / 0
])
def test_box_iou_hand_cases(a, b, expected):
    assert box_iou(T([a]), T([b])).item() == pytest.approx(expected)
    assert box_iou(T([b]), T([a])).item() == pytest.approx(expected)  # symmetric


def test_box_iou_is_torchvision_diagonal():
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(50, 2, 2, generator=g) * 32
    boxes1 = torch.cat([corners[:, 0].min(1).values[:, None], corners[:, 1].min(1).values[:, None],
                        corners[:, 0].max(1).values[:, None], corners[:, 1].max(1).values[:, None]], 1)
    boxes2 = boxes1 + torch.randn(50, 4, generator=g).clamp(-1, 1)
    boxes2 = torch.cat([torch.minimum(boxes2[:, :2], boxes2[:, 2:]), torch.maximum(boxes2[:, :2], boxes2[:, 2:])], 1)
    torch.testing.assert_close(box_iou(boxes1, boxes2), torchvision_box_iou(boxes1, boxes2).diagonal(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("a, b, message", [
    (T([[4, 0, 0, 4]]), T([[0, 0, 4, 4]]), "x0 <= x1"),  # x1 < x0
    (T([[0, 0, 4]]), T([[0, 0, 4]]), r"\(N, 4\)"),
    (T([[0, 0, 4, 4]]), T([[0, 0, 4, 4], [0, 0, 4, 4]]), "N = 1"),
])
def test_box_iou_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        box_iou(a, b)


# ---------------------------------------------------------------- average precision


def test_average_precision_hand_case():
    # 3 objects; ranked detections hit, miss, hit. Recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3.
    # Envelope: 1 up to recall 1/3, then 2/3 up to 2/3, then never reached (0).
    # Levels 0.00..0.33 (34 levels) -> 1; 0.34..0.66 (33) -> 2/3; 0.67..1.00 (34) -> 0.
    # AP = (34 + 33 * 2/3) / 101 = 56 / 101.
    assert average_precision(T([0.9, 0.8, 0.7]), T([True, False, True]), 3) == pytest.approx(56 / 101)
    # The same detections given in another order: ranked by score, the AP does not change.
    assert average_precision(T([0.7, 0.9, 0.8]), T([True, True, False]), 3) == pytest.approx(56 / 101)


@pytest.mark.parametrize("scores, hits, n, expected", [
    ([0.9, 0.5], [True, True], 2, 1.0),  # every object found, no false positive
    ([0.9, 0.5], [False, False], 2, 0.0),  # nothing found
    # A miss ranked above the only hit: precision 0 then 1/2 at recall 1; envelope 1/2 everywhere.
    ([0.9, 0.8], [False, True], 1, 0.5),
    # One hit of 2 objects: recall reaches 0.5 only; levels 0.00..0.50 (51 of 101) get precision 1.
    ([0.9], [True], 2, 51 / 101),
    ([], [], 3, 0.0),  # no detections
])
def test_average_precision_small_cases(scores, hits, n, expected):
    assert average_precision(T(scores, dtype=torch.float32), T(hits, dtype=torch.bool), n) == pytest.approx(expected)


def test_average_precision_ties_keep_their_order():
    # Equal scores: the stable sort keeps the given order (miss then hit): envelope 1/2 -> AP 1/2;
    # hit then miss: precision 1 at recall 1 -> AP 1.
    assert average_precision(T([0.5, 0.5]), T([False, True]), 1) == pytest.approx(0.5)
    assert average_precision(T([0.5, 0.5]), T([True, False]), 1) == pytest.approx(1.0)


@pytest.mark.parametrize("scores, hits, n, message", [
    (T([0.9, 0.8]), T([True, True]), 1, "matched once"),
    (T([0.9]), T([True]), 0, "num_objects"),
    (T([0.9, 0.8]), T([True]), 1, r"scores \(D,\) and hits \(D,\)"),
    (T([float("nan")]), T([True]), 1, "finite"),
])
def test_average_precision_bad_input(scores, hits, n, message):
    with pytest.raises(ValueError, match=message):
        average_precision(scores, hits, n)


def _four_images():
    # Images 0, 1 hold class 0; images 2, 3 class 1; all true boxes (0, 0, 4, 4).
    # 0: right class, exact box, score 0.9      -> hit
    # 1: wrong class (1), exact box, score 0.8  -> a false positive of class 1, a miss of class 0
    # 2: right class, box (2, 2, 6, 6) (IoU 4/28 = 1/7), score 0.7 -> a miss at IoU 0.5, a hit at 0.1
    # 3: right class, exact box, score 0.6      -> hit
    true_boxes = T([[0, 0, 4, 4]] * 4)
    true_labels = T([0, 0, 1, 1])
    pred_boxes = T([[0, 0, 4, 4], [0, 0, 4, 4], [2, 2, 6, 6], [0, 0, 4, 4]])
    pred_labels = T([0, 1, 1, 1])
    scores = T([0.9, 0.8, 0.7, 0.6])
    return pred_boxes, pred_labels, scores, true_boxes, true_labels


def test_box_ap_hand_case():
    # Class 0 (2 objects): its one detection (image 0) hits: recall 1/2 -> AP 51/101 (as above).
    # Class 1 at IoU 0.5 (2 objects): detections of images 1, 2, 3 ranked: miss, miss, hit; precision
    # 0, 0, 1/3 at recall 0, 0, 1/2; envelope 1/3 on levels 0..0.5 (51) -> AP 17/101.
    # Mean over the two classes: (51 + 17) / 2 / 101 = 34/101.
    assert box_ap(*_four_images(), iou_threshold=0.5) == pytest.approx(34 / 101)
    # At IoU 0.1 image 2 hits too: class 1 ranks miss, hit, hit: precision 0, 1/2, 2/3 at recall 0,
    # 1/2, 1; envelope 2/3 everywhere -> AP 2/3. Mean ((51/101) + 2/3) / 2.
    assert box_ap(*_four_images(), iou_threshold=0.1) == pytest.approx((51 / 101 + 2 / 3) / 2)
    # COCO's thresholds run 0.5..0.95: the exact boxes hit at all, image 2 at none -> 34/101 at each.
    assert box_ap_coco(*_four_images()) == pytest.approx(34 / 101)


def test_box_ap_coco_averages_the_thresholds():
    # One image, right class, IoU 0.64 (box (0, 0, 8, 8) in (0, 0, 10, 10)): a hit at 0.5, 0.55 and
    # 0.6 (AP 1), a miss from 0.65 on (AP 0): 3 of COCO's 10 thresholds -> 0.3.
    args = (T([[0, 0, 8, 8]]), T([3]), T([0.9]), T([[0, 0, 10, 10]]), T([3]))
    assert COCO_IOU_THRESHOLDS[0] == pytest.approx(0.5) and COCO_IOU_THRESHOLDS[-1] == pytest.approx(0.95)
    assert len(COCO_IOU_THRESHOLDS) == 10
    assert box_ap_coco(*args) == pytest.approx(0.3)
    assert box_ap(*args, iou_threshold=0.64) == 1.0  # IoU >= threshold is a hit, as in cocoeval
    assert box_ap(*args, iou_threshold=0.65) == 0.0


def test_box_ap_bad_input():
    pred_boxes, pred_labels, scores, true_boxes, true_labels = _four_images()
    with pytest.raises(ValueError, match=r"scores must be \(4,\)"):
        box_ap(pred_boxes, pred_labels, scores[:3], true_boxes, true_labels)
    with pytest.raises(ValueError, match="x0 <= x1"):
        box_ap(pred_boxes.flip(1), pred_labels, scores, true_boxes, true_labels)
    with pytest.raises(ValueError, match="iou_threshold"):
        box_ap(*_four_images(), iou_threshold=0)
    empty = torch.zeros(0, 4)
    with pytest.raises(ValueError, match="empty"):
        box_ap(empty, T([]), T([]), empty, T([]))


# ---------------------------------------------------------------- the detector


def _detections(batch=1, classes=3, height=2, width=2, stride=4):
    zeros = lambda *shape: torch.zeros(batch, *shape)  # noqa: E731
    return Detections(zeros(classes, height, width), zeros(height, width), zeros(2, height, width),
                      zeros(2, height, width), stride)


def test_detector_shapes():
    model = Detector()
    out = model(torch.rand(5, 1, 32, 32))
    assert out.class_logits.shape == (5, 10, 8, 8) and out.centre.shape == (5, 8, 8)
    assert out.offset.shape == out.size.shape == (5, 2, 8, 8) and out.stride == 4
    assert out.logits.shape == (5, 10) and out.argmax(1).shape == (5,)
    boxes, scores = out.boxes(), out.scores()
    assert boxes.shape == (5, 4) and scores.shape == (5,)
    assert (boxes >= 0).all() and (boxes <= 32).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert ((scores > 0) & (scores <= 1)).all()
    torch.testing.assert_close(out.centre_probabilities().sum((1, 2)), torch.ones(5))


def test_decoding_hand_case():
    # Best cell at row 2, col 5 of 8 x 8; offset logits 0 -> sigmoid 1/2; size (2, 3) cells; stride 4.
    # Centre (5.5, 2.5) cells; box (5.5 - 1, 2.5 - 1.5, 5.5 + 1, 2.5 + 1.5) * 4 = (18, 4, 26, 16).
    out = _detections(height=8, width=8)
    out.centre[0, 2, 5] = 5.0
    out.size[0, :, 2, 5] = T([2.0, 3.0])
    out.class_logits[0, 1, 2, 5] = 2.0  # class 1 wins at that cell only
    torch.testing.assert_close(out.boxes(), T([[18.0, 4.0, 26.0, 16.0]]))
    assert out.argmax(1).item() == 1
    # Score: p(class 1) = e^2 / (e^2 + 2) times p(cell) = e^5 / (e^5 + 63).
    expected = math.exp(2) / (math.exp(2) + 2) * math.exp(5) / (math.exp(5) + 63)
    assert out.scores().item() == pytest.approx(expected, rel=1e-5)
    out.size[0, :, 2, 5] = T([100.0, -1.0])  # too wide: clipped to the image; negative: an empty box
    torch.testing.assert_close(out.boxes(), T([[0.0, 10.0, 32.0, 10.0]]))


@pytest.mark.parametrize("box, cell, offset, size", [
    # (8, 4, 20, 12): centre (14, 8) px = (3.5, 2) cells -> col 3, row 2, index 2 * 8 + 3 = 19;
    # offset (0.5, 0); size (12, 8) / 4 = (3, 2).
    ((8, 4, 20, 12), 19, (0.5, 0.0), (3.0, 2.0)),
    ((28, 28, 32, 32), 63, (0.5, 0.5), (1.0, 1.0)),  # centre (30, 30) px = 7.5 cells: the last cell
    ((0, 0, 32, 32), 36, (0.0, 0.0), (8.0, 8.0)),  # centre 4 cells: cell (4, 4) = 36
])
def test_box_targets_on_grid(box, cell, offset, size):
    got_cell, got_offset, got_size = box_targets_on_grid(T([box]), 4, 8, 8)
    assert got_cell.item() == cell
    torch.testing.assert_close(got_offset, T([offset]))
    torch.testing.assert_close(got_size, T([size]))


def test_loss_values_on_a_tiny_input():
    # 2 x 2 cells of 4 px (an 8 x 8 image), 3 classes, every output 0. Box (0, 0, 4, 8): centre
    # (2, 4) px = (0.5, 1) cells -> col 0, row 1; offset (0.5, 0); size (1, 2) cells.
    # L_class = log 3 (uniform over 3); L_centre = log 4 (uniform over 4 cells);
    # L_offset = mean(|0.5 - 0.5|, |0.5 - 0|) = 0.25 (sigmoid(0) = 0.5); L_size = mean(1, 2) = 1.5.
    targets = BoxTargets(T([2]), T([[0, 0, 4, 8]]))
    losses = detection_losses(_detections(), targets)
    expected = {"class": math.log(3), "centre": math.log(4), "offset": 0.25, "size": 1.5}
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-6), name
    assert detection_loss(_detections(), targets).item() == pytest.approx(sum(expected.values()), rel=1e-6)


def test_loss_is_lower_for_the_right_answer():
    targets = BoxTargets(T([2]), T([[0, 0, 4, 8]]))
    good = _detections()
    good.class_logits[0, 2, 1, 0] = 5.0  # class 2 at the centre cell (row 1, col 0)
    good.centre[0, 1, 0] = 5.0
    good.size[0, :, 1, 0] = T([1.0, 2.0])
    assert detection_loss(good, targets) < detection_loss(_detections(), targets)
    assert detection_losses(good, targets)["size"].item() == 0.0


@pytest.mark.parametrize("targets, error, message", [
    (BoxTargets(T([0]), T([[0, 0, 9, 8]])), ValueError, "outside the 8 x 8 image"),  # x1 = 9 > 8
    (BoxTargets(T([0]), T([[-1, 0, 4, 4]])), ValueError, "outside"),
    (BoxTargets(T([0]), T([[4, 0, 2, 4]])), ValueError, "x0 <= x1"),  # x1 < x0
    (BoxTargets(T([0, 1]), T([[0, 0, 4, 4]])), ValueError, r"labels must be \(1,\)"),
    (BoxTargets(T([0]), T([[0, 0, 4]])), ValueError, r"\(N, 4\)"),
    (BoxTargets(T([3]), T([[0, 0, 4, 4]])), ValueError, "classes 0 .. 2"),
    ((T([0]), T([[0, 0, 4, 4]])), TypeError, "BoxTargets"),
])
def test_loss_bad_targets(targets, error, message):
    with pytest.raises(error, match=message):
        detection_loss(_detections(), targets)


def test_loss_bad_outputs_and_empty_batch():
    with pytest.raises(TypeError, match="Detections"):
        detection_loss(torch.zeros(1, 10), BoxTargets(T([0]), T([[0, 0, 4, 4]])))
    empty = BoxTargets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        detection_loss(_detections(batch=0), empty)


def test_detector_bad_images():
    with pytest.raises(ValueError, match="multiples of the stride 4"):
        Detector()(torch.rand(2, 1, 30, 30))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        Detector()(torch.rand(2, 3, 32, 32))


def test_detector_with_attention_records_gates_and_passes_gradients():
    model = Detector("cbam", reduction=4, kernel_size=7)
    images = torch.rand(2, 1, 32, 32, requires_grad=True)
    with AttentionRecorder(model) as recorder:
        out = model(images)
    assert any(name.startswith("backbone.stages.2") for name in recorder.stacked())
    detection_loss(out, BoxTargets(T([1, 2]), T([[0, 0, 16, 16], [10, 12, 20, 30]]))).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="no attention"):
        Detector(reduction=4)


def test_loaders_match_the_classification_loaders():
    train, test = make_detection_loaders(n_train=129, n_test=20, batch_size=64, seed=3)
    plain_train, plain_test = make_loaders(n_train=129, n_test=20, batch_size=64, seed=3)
    assert len(train) == len(plain_train) == 2  # 129 = 2 * 64 + 1: the single last image is dropped
    for (images, targets), (plain_images, labels) in zip(train, plain_train):
        torch.testing.assert_close(images, plain_images)  # the same images in the same order
        assert torch.equal(targets.labels, labels)
        assert targets.boxes.shape == (len(labels), 4)
    images, targets = next(iter(test))
    assert torch.equal(targets.boxes, test.dataset.boxes) and torch.equal(images, plain_test.dataset.images)
    assert (targets.labels == targets).all()  # fit compares predicted classes with the targets so


def test_fit_trains_the_detector_and_scores_it():
    train, test = make_detection_loaders(n_train=64, n_test=32, batch_size=32, seed=0)
    model = Detector()
    history = fit(model, train, None, epochs=1, lr=3e-3, device="cpu", loss_fn=detection_loss, progress=False)
    assert np.isfinite(history.train_loss[0]) and 0 <= history.train_accuracy[0] <= 1
    scores = detection_scores(model, test)
    assert set(scores) == {"accuracy", "mean_iou", "ap50", "ap75", "ap"}
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in scores.values())
    assert scores["ap"] <= scores["ap50"]
    found = detect(model, test.dataset.images)
    assert found["boxes"].shape == (32, 4) and found["centre"].shape == (32, 8, 8)


def test_detection_scores_empty_loader():
    with pytest.raises(ValueError, match="no batches"):
        detection_scores(Detector(), torch.utils.data.DataLoader([]))
