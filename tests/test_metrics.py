"""Tests of attn_course.metrics against hand-built examples and plain loops."""

import math

import numpy as np
import pytest
import torch

from attn_course.metrics import (
    accuracy,
    box_area_fraction,
    box_masks,
    confusion_matrix,
    energy_in_box,
    iou_per_class,
    mean_iou,
    pointing_game,
    resize_maps,
)


def test_accuracy_hand_example():
    logits = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 5.0]])  # argmax 1, 0, 1
    assert accuracy(logits, torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    assert accuracy(logits, torch.tensor([1, 0, 1])) == 1.0


def test_accuracy_vs_loop():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    manual = sum(int(np.argmax(logits[i].numpy()) == labels[i].item()) for i in range(50)) / 50
    assert accuracy(logits, labels) == pytest.approx(manual)


@pytest.mark.parametrize("logits, labels", [(torch.zeros(4), torch.zeros(4)), (torch.zeros(4, 3), torch.zeros(3)),
                                             (torch.zeros(4, 3), torch.zeros(4, 1))])
def test_accuracy_bad_shapes(logits, labels):
    with pytest.raises(ValueError, match=r"accuracy expects logits \(N, K\) and labels \(N,\)"):
        accuracy(logits, labels)


def test_box_masks_vs_loop():
    boxes = torch.tensor([[0, 0, 3, 2], [2, 1, 5, 4], [4, 3, 5, 4], [1, 1, 1, 3]])  # last one is empty
    masks = box_masks(boxes, 4, 5)
    assert masks.shape == (4, 4, 5) and masks.dtype == torch.bool
    for n, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        for y in range(4):
            for x in range(5):
                assert masks[n, y, x] == (x0 <= x < x1 and y0 <= y < y1)
    assert masks.sum((1, 2)).tolist() == [6, 9, 1, 0]


def test_pointing_game_hand_example():
    maps = torch.zeros(4, 6, 6)
    boxes = torch.tensor([[1, 1, 3, 3]] * 4)  # x in {1, 2}, y in {1, 2}
    maps[0, 2, 2] = 1  # inside: hit
    maps[1, 1, 3] = 1  # x = 3 = x1, end exclusive: miss
    maps[2, 3, 1] = 1  # y = 3 = y1: miss
    maps[3, 1, 1] = 1  # the box's first pixel: hit
    assert pointing_game(maps, boxes) == 0.5
    # (y, x) order matters: a peak at row 0, column 2 is outside a box spanning rows 1-2.
    m = torch.zeros(1, 6, 6)
    m[0, 0, 2] = 1
    assert pointing_game(m, torch.tensor([[2, 1, 3, 6]])) == 0.0
    assert pointing_game(m, torch.tensor([[2, 0, 3, 1]])) == 1.0


def test_pointing_game_ties_take_the_first_maximum():
    maps = torch.ones(2, 4, 4)  # every pixel ties; the first one is (0, 0)
    assert pointing_game(maps, torch.tensor([[0, 0, 1, 1], [1, 1, 4, 4]])) == 0.5


def test_pointing_game_vs_loop():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(40, 9, 11, generator=g)
    x0, y0 = torch.randint(0, 6, (40,), generator=g), torch.randint(0, 5, (40,), generator=g)
    boxes = torch.stack([x0, y0, x0 + 5, y0 + 4], 1)
    hits = 0
    for n in range(40):
        y, x = np.unravel_index(np.argmax(maps[n].numpy()), (9, 11))
        bx0, by0, bx1, by1 = boxes[n].tolist()
        hits += bx0 <= x < bx1 and by0 <= y < by1
    assert pointing_game(maps, boxes) == pytest.approx(hits / 40)


def test_energy_in_box_hand_example():
    m = torch.tensor([[[1.0, 2.0, 0.0],
                       [3.0, -5.0, 4.0]]])  # the -5 is clipped to 0: total mass 10
    box = torch.tensor([[0, 0, 2, 2]])  # the left 2 x 2 block: 1 + 2 + 3 + 0 = 6
    assert energy_in_box(m, box) == pytest.approx(0.6)
    # Two maps: the mean of the shares. An all-zero map scores 0.
    maps = torch.cat([m, torch.zeros(1, 2, 3)])
    assert energy_in_box(maps, box.repeat(2, 1)) == pytest.approx(0.3)
    # An all-negative map has no mass either.
    assert energy_in_box(-torch.ones(1, 2, 3), box) == 0.0


def test_energy_in_box_vs_loop():
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(20, 8, 8, generator=g)
    x0, y0 = torch.randint(0, 5, (20,), generator=g), torch.randint(0, 5, (20,), generator=g)
    boxes = torch.stack([x0, y0, x0 + 3, y0 + 2], 1)
    shares = []
    for n in range(20):
        m = np.clip(maps[n].numpy(), 0, None)
        bx0, by0, bx1, by1 = boxes[n].tolist()
        shares.append(m[by0:by1, bx0:bx1].sum() / m.sum())
    assert energy_in_box(maps, boxes) == pytest.approx(float(np.mean(shares)), rel=1e-5)


def test_uniform_map_scores_the_box_area_fraction():
    boxes = torch.tensor([[0, 0, 4, 2], [1, 1, 3, 3]])  # areas 8 and 4 on a 4 x 8 canvas of 32
    assert box_area_fraction(boxes, 4, 8) == pytest.approx((8 / 32 + 4 / 32) / 2)
    assert energy_in_box(torch.ones(2, 4, 8), boxes) == pytest.approx(box_area_fraction(boxes, 4, 8))


def test_map_checks():
    with pytest.raises(ValueError, match=r"attention maps must be \(N, H, W\), got shape \(2, 1, 4, 4\); squeeze"):
        pointing_game(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\) = \(x0, y0, x1, y1\) with N = 2 maps, got \(3, 4\)"):
        energy_in_box(torch.zeros(2, 4, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="boxes must be"):
        pointing_game(torch.zeros(2, 4, 4), torch.zeros(2, 2))


def test_resize_maps():
    maps = torch.rand(3, 8, 8)
    assert resize_maps(maps, (8, 8)) is maps
    big = resize_maps(maps, (32, 32))
    assert big.shape == (3, 32, 32)
    torch.testing.assert_close(resize_maps(torch.full((2, 4, 4), 0.7), (16, 12)), torch.full((2, 16, 12), 0.7))
    # Bilinear, corners not aligned: output column j samples source x = (j + 0.5) / 2 - 0.5, i.e.
    # -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1), so [0, 4] becomes [0, 1, 3, 4].
    small = torch.tensor([[[0.0, 4.0]]])
    torch.testing.assert_close(resize_maps(small, (1, 4)), torch.tensor([[[0.0, 1.0, 3.0, 4.0]]]))
    with pytest.raises(ValueError, match=r"maps must be \(N, h, w\), got shape \(8, 8\)"):
        resize_maps(torch.rand(8, 8), (32, 32))


def test_confusion_matrix_hand_example():
    target = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 0, 2])
    expected = torch.tensor([[1, 1, 0],
                             [0, 1, 0],
                             [1, 0, 2]])  # row = true, column = predicted
    assert torch.equal(confusion_matrix(pred, target, 3), expected)


def test_confusion_matrix_vs_loop_on_images():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randint(0, 4, (3, 5, 6), generator=g), torch.randint(0, 4, (3, 5, 6), generator=g)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        expected[t, p] += 1
    assert torch.equal(confusion_matrix(pred, target, 4), expected)
    with pytest.raises(ValueError, match=r"pred and target must have the same shape, got \(3, 5, 6\) and \(3, 30\)"):
        confusion_matrix(pred, target.reshape(3, 30), 4)


def test_iou_hand_example():
    target = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 0, 2])
    # class 0: intersection 1, union |{0,1,4}| = 3; class 1: 1 / |{1,2}| = 1/2; class 2: 2 / 3;
    # class 3 is absent from both: NaN, and left out of the mean.
    iou = iou_per_class(pred, target, 4)
    torch.testing.assert_close(iou[:3], torch.tensor([1 / 3, 1 / 2, 2 / 3], dtype=torch.float64))
    assert math.isnan(iou[3].item())
    assert mean_iou(pred, target, 4) == pytest.approx((1 / 3 + 1 / 2 + 2 / 3) / 3)


def test_iou_vs_sets():
    g = torch.Generator().manual_seed(4)
    pred, target = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 4, (200,), generator=g)
    ious = []
    for c in range(6):
        p, t = set(np.flatnonzero(pred.numpy() == c)), set(np.flatnonzero(target.numpy() == c))
        if p | t:
            ious.append(len(p & t) / len(p | t))
    assert len(ious) == 5  # class 5 absent from both
    assert mean_iou(pred, target, 6) == pytest.approx(float(np.mean(ious)))
    assert mean_iou(target, target, 6) == 1.0


def test_a_nan_pixel_makes_the_scores_nan_with_a_warning():
    # One NaN pixel used to move the pointing game from 1.0 to 0.5 without a word.
    maps = torch.zeros(2, 8, 8)
    maps[:, 2, 2] = 1.0
    boxes = torch.tensor([[1, 1, 4, 4]] * 2)
    assert pointing_game(maps, boxes) == 1.0
    maps[1, 7, 7] = float("nan")
    with pytest.warns(RuntimeWarning, match="1 of 2 maps contain NaN"):
        assert math.isnan(pointing_game(maps, boxes))
    with pytest.warns(RuntimeWarning, match="energy_in_box: 1 of 2 maps contain NaN"):
        assert math.isnan(energy_in_box(maps, boxes))
    with pytest.warns(RuntimeWarning, match="the logits contain NaN"):
        assert math.isnan(accuracy(torch.tensor([[0.0, float("nan")]]), torch.tensor([1])))


def test_box_area_fraction_counts_only_the_canvas_and_refuses_inverted_boxes():
    assert box_area_fraction(torch.tensor([[-4, -4, 12, 12]]), 8, 8) == 1.0  # was 4.0
    assert box_area_fraction(torch.tensor([[6, 6, 10, 10]]), 8, 8) == pytest.approx(4 / 64)
    assert box_area_fraction(torch.tensor([[1, 1, 1, 5]]), 8, 8) == 0.0  # empty, not inverted
    with pytest.raises(ValueError, match=r"x0 <= x1 and y0 <= y1.*box 0 = \[4, 4, 1, 1\]"):
        box_area_fraction(torch.tensor([[4, 4, 1, 1]]), 8, 8)
    with pytest.raises(ValueError, match="x0 <= x1"):
        pointing_game(torch.zeros(1, 8, 8), torch.tensor([[4, 4, 1, 1]]))
    with pytest.raises(ValueError, match="height must be a positive int"):
        box_area_fraction(torch.tensor([[0, 0, 1, 1]]), 0, 8)
    assert box_area_fraction(torch.tensor([[0, 0, 4, 4]]), np.int64(8), 8) == 0.25


def test_confusion_matrix_refuses_classes_out_of_range():
    # confusion_matrix([3], [0], 3) used to count class 3 into another cell.
    with pytest.raises(ValueError, match=r"pred holds classes from 3 to 3, outside 0 \.\. 2"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)
    with pytest.raises(ValueError, match="target holds classes from -1"):
        mean_iou(torch.tensor([0]), torch.tensor([-1]), 3)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
    assert confusion_matrix(torch.tensor([2]), torch.tensor([0]), np.int64(3))[0, 2] == 1
