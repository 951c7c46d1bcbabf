"""The study's grids of the application chapters: chapter 11's detectors and chapter 12's U-Nets.

Tiny budgets train each kind once; the rows carry the task's own scores and leave the others empty."""

import math

import pytest

from attn_course.detection import Detector
from attn_course.study import BUDGETS, GRIDS, Budget, Grid, build_model, definition, read_results, run_grid, run_shift
from attn_course.study.__main__ import main
from attn_course.unet import UNet


def test_the_grids_name_their_models_settings_and_budgets(capsys):
    assert GRIDS["detection"].models == ("det-none", "det-se", "det-cbam", "det-coord")
    assert GRIDS["attention-gates"].models == ("unet", "unet-gates")
    for name in ("detection", "attention-gates"):
        assert GRIDS[name].settings == ("default", "headroom") and GRIDS[name].seeds == tuple(range(5))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "detection" in out and "attention-gates" in out


def test_models_build_as_their_chapters_build_them():
    plain, cbam = build_model("det-none"), build_model("det-cbam")
    assert isinstance(plain, Detector) and isinstance(cbam, Detector)
    names = {type(m).__name__ for m in cbam.modules()}
    assert "CBAM" in names and "CBAM" not in {type(m).__name__ for m in plain.modules()}
    gated, plain = build_model("unet-gates"), build_model("unet")
    assert isinstance(gated, UNet) and isinstance(plain, UNet)
    assert sum(p.numel() for p in gated.parameters()) > sum(p.numel() for p in plain.parameters())


def test_a_detector_definition_differs_from_the_classifier_with_the_same_attention():
    assert definition("default", "det-se", "detection") != definition("default", "se", "detection")


@pytest.fixture
def tiny(monkeypatch):
    budgets = dict(BUDGETS, tiny=Budget("tiny", "for tests", epochs=1, n_train=64, n_test=32, batch_size=32, lr=0.01))
    grids = dict(GRIDS,
                 **{"tiny-det": Grid("tiny-det", "for tests", models=("det-none", "det-cbam"), settings=("default",),
                                     budgets=("tiny",), seeds=(0,)),
                    "tiny-unet": Grid("tiny-unet", "for tests", models=("unet", "unet-gates"), settings=("default",),
                                      budgets=("tiny",), seeds=(0,))})
    monkeypatch.setattr("attn_course.study.settings.BUDGETS", budgets)
    monkeypatch.setattr("attn_course.study.settings.GRIDS", grids)


def _in_unit(value):
    return 0 <= value <= 1


def test_detection_rows_hold_box_scores_and_the_gate_scores_where_there_are_gates(tiny, tmp_path):
    assert run_grid("tiny-det", tmp_path, device="cpu", progress=False) == 2
    rows = {r["mechanism"]: r for r in read_results(tmp_path / "tiny-det.csv", "tiny-det")}
    for row in rows.values():
        for column in ("test_accuracy", "test_miou", "test_ap50", "test_ap"):
            assert _in_unit(row[column]), (column, row[column])
        assert row["test_ap"] <= row["test_ap50"]  # AP over 0.5:0.95 cannot exceed AP at 0.5
        assert math.isnan(row["test_dice"]) and math.isnan(row["gradcam_pointing_game"])
        assert len(row["test_accuracy_curve"]) == 1 and row["test_accuracy_curve"][-1] == row["test_accuracy"]
    assert _in_unit(rows["det-cbam"]["gate_pointing_game"])  # CBAM's spatial gates, scored against the boxes
    assert math.isnan(rows["det-none"]["gate_pointing_game"])


def test_unet_rows_hold_miou_and_dice(tiny, tmp_path):
    assert run_grid("tiny-unet", tmp_path, device="cpu", progress=False) == 2
    for row in read_results(tmp_path / "tiny-unet.csv", "tiny-unet"):
        assert _in_unit(row["test_miou"]) and _in_unit(row["test_dice"]) and _in_unit(row["test_accuracy"])
        assert math.isnan(row["test_ap50"]) and math.isnan(row["gradcam_pointing_game"])


def test_the_shift_grid_refuses_detectors_and_unets():
    for model in ("det-se", "unet-gates"):
        with pytest.raises(ValueError, match="is not a classifier"):
            run_shift(["default", "shift-noise"], model, "long", 0)
