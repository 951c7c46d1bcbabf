"""The study's data-size and shift grids (issue 13): fixed-step budgets, test-only settings, one
training per shift group, resuming, and the definitions of the existing rows left unchanged."""

import dataclasses

import pytest
import torch

from attn_course.data import glyph_pools, make_cluttered_digits
from attn_course.study import (
    BUDGETS,
    GRIDS,
    SETTINGS,
    Budget,
    Grid,
    UnknownNameError,
    definition,
    distinct_training_glyphs,
    format_report,
    get_budget,
    get_grid,
    read_results,
    run_grid,
    run_one,
    run_shift,
)
from attn_course.study import runner as runner_module
from attn_course.study.__main__ import main

SHIFT_SETTINGS = ("default", "shift-clutter", "shift-canvas", "shift-fragment", "shift-noise")

# --- the tables ---------------------------------------------------------------------------------


def test_existing_definitions_are_unchanged():
    # Hashes of rows committed before the new grids (results/*.csv): a changed hash would refuse them.
    assert definition("default", "resnet", "chapter") == "93800b685f68"
    # the headroom setting of 2026-11-26 (digits at half size); the faint noisy digit's were 50c05b933ec1,
    # e9059910390b (CBAM revision 1) and 8fc8f349322b
    assert definition("headroom", "se", "long") == "26fa95c07022"
    assert definition("headroom", "cbam", "long") == "83a650a2fab1"
    assert definition("default", "seg-psa", "segmentation") == "e7736c2e1edf"
    assert definition("headroom", "sk-sum", "chapter") == "4373c4707381"


def test_the_new_grids_are_listed_with_their_models_and_no_psa(capsys):
    for name in ("data-size", "shift"):
        grid = get_grid(name)
        assert grid.description and "psa" not in grid.models
        assert grid.models == ("resnet", "se", "cbam", "coord") and grid.seeds == tuple(range(5))
    assert GRIDS["shift"].settings == SHIFT_SETTINGS and GRIDS["shift"].budgets == ("long",)
    assert all(SETTINGS[s].train_on == "default" for s in SHIFT_SETTINGS[1:])
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "data-size  120 runs" in out and "shift      100 runs" in out and "625 steps" in out


def test_data_size_budgets_share_one_number_of_steps():
    budgets = [get_budget(b) for b in GRIDS["data-size"].budgets]
    assert [b.n_train for b in budgets] == [250, 500, 1000, 2000, 4000, 8000]
    assert {(b.steps, b.epochs, b.batch_size, b.lr, b.n_test) for b in budgets} == {(625, 25, 64, 3e-3, 1000)}
    assert BUDGETS["long"].steps is None and BUDGETS["chapter"].steps is None
    with pytest.raises(ValueError, match="multiple of epochs"):
        Budget("bad", "", epochs=3, n_train=10, n_test=10, steps=10)


def test_a_shift_definition_includes_the_training_setting(monkeypatch):
    before = definition("shift-noise", "se", "long")
    assert before != definition("default", "se", "long")
    same_data = dataclasses.replace(SETTINGS["shift-noise"], train_on=None)  # tested where it trains
    monkeypatch.setitem(SETTINGS, "noisy", dataclasses.replace(same_data, name="noisy"))
    assert definition("noisy", "se", "long") != before
    monkeypatch.setitem(SETTINGS, "default", dataclasses.replace(SETTINGS["default"], data={"n_clutter": 7}))
    assert definition("shift-noise", "se", "long") != before


def test_bad_names_give_the_valid_ones():
    with pytest.raises(UnknownNameError, match="data-size.*shift|shift.*data-size"):
        get_grid("data")
    with pytest.raises(UnknownNameError, match="data-250"):
        get_budget("data-300")


def test_distinct_glyphs_saturate_at_the_training_pool():
    pool = len(glyph_pools()["train"][0])
    assert 1200 < pool < 1300
    counts = [distinct_training_glyphs(b, 0) for b in GRIDS["data-size"].budgets]
    assert counts == sorted(counts) and counts[0] < 250 and pool - 10 <= counts[-1] <= pool
    data = make_cluttered_digits(50, "train", seed=3)
    assert torch.equal(data.labels, torch.from_numpy(glyph_pools()["train"][1])[data.glyphs])


# --- runs ---------------------------------------------------------------------------------------


@pytest.fixture
def tiny(monkeypatch):
    """Tiny budgets and grids for tests: a shift grid and a data-size grid of two sizes."""
    budgets = dict(BUDGETS,
                   tiny=Budget("tiny", "for tests", epochs=2, n_train=256, n_test=96, batch_size=32, lr=0.02),
                   **{f"tiny-{n}": Budget(f"tiny-{n}", "for tests", epochs=2, n_train=n, n_test=32, batch_size=16,
                                          steps=6) for n in (24, 160)})
    grids = dict(GRIDS,
                 **{"tiny-shift": Grid("tiny-shift", "for tests", models=("resnet", "se"),
                                       settings=("default", "shift-clutter", "shift-canvas", "shift-noise"),
                                       budgets=("tiny",), seeds=(0, 1)),
                    "tiny-data": Grid("tiny-data", "for tests", models=("resnet", "cbam"), settings=("default",),
                                      budgets=("tiny-24", "tiny-160"), seeds=(0,))})
    monkeypatch.setattr("attn_course.study.settings.BUDGETS", budgets)
    monkeypatch.setattr("attn_course.study.settings.GRIDS", grids)
    return grids


def counting_fit(monkeypatch):
    calls, real_fit = [], runner_module.fit

    def fit(model, train_loader, *args, **kwargs):
        steps = []
        model.register_forward_pre_hook(lambda module, inputs: steps.append(1) if module.training else None)
        history = real_fit(model, train_loader, *args, **kwargs)
        calls.append(len(steps))
        return history

    monkeypatch.setattr(runner_module, "fit", fit)
    return calls


def test_data_size_runs_take_the_same_steps_at_every_size(tiny, tmp_path, monkeypatch):
    calls = counting_fit(monkeypatch)
    assert run_grid("tiny-data", tmp_path, device="cpu", progress=False) == 4
    assert calls == [6, 6, 6, 6]  # 24 images: 4 passes of 1.5 batches; 160 images: 0.6 of a pass
    rows = read_results(tmp_path / "tiny-data.csv", "tiny-data")
    assert all(len(r["test_accuracy_curve"]) == 2 and r["test_accuracy"] == r["test_accuracy_curve"][-1]
               for r in rows)
    assert run_one("default", "resnet", "tiny-24", 0, device="cpu")["test_accuracy"] == rows[0]["test_accuracy"]


def test_shift_rows_come_from_one_training_per_model_and_seed(tiny, tmp_path, monkeypatch, capsys):
    calls = counting_fit(monkeypatch)
    assert run_grid("tiny-shift", tmp_path, device="cpu", progress=False) == 16
    assert len(calls) == 4  # 2 models x 2 seeds, not x 4 test settings
    path = tmp_path / "tiny-shift.csv"
    rows = read_results(path, "tiny-shift")
    assert len(rows) == 16 and {r["setting"] for r in rows} == set(GRIDS["shift"].settings) - {"shift-fragment"}
    by_training = {}
    for row in rows:
        by_training.setdefault((row["mechanism"], row["seed"]), {})[row["setting"]] = row
        assert len(row["test_accuracy_curve"]) == 2 and row["test_accuracy"] == row["test_accuracy_curve"][-1]
    for group in by_training.values():  # one training: one loss curve, several test accuracies
        assert len({tuple(r["train_loss_curve"]) for r in group.values()}) == 1
    assert any(len({r["test_accuracy"] for r in group.values()}) > 1 for group in by_training.values())
    # the training setting's own row is the one run_one computes
    alone = run_one("default", "se", "tiny", 1, device="cpu")
    assert alone["test_accuracy_curve"] == pytest.approx(by_training[("se", 1)]["default"]["test_accuracy_curve"],
                                                         abs=1e-6)
    # resuming: nothing left, nothing trained
    assert run_grid("tiny-shift", tmp_path, device="cpu", progress=False) == 0 and len(calls) == 5  # 5: run_one's
    # a partial set (e.g. written by a process that was stopped) is detected and completed, not duplicated
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))
    assert run_grid("tiny-shift", tmp_path, device="cpu", progress=False) == 2 and len(calls) == 6
    printed = capsys.readouterr()
    assert "an incomplete set, completed now" in printed.out + printed.err
    again = read_results(path, "tiny-shift")
    assert len(again) == 16
    key = lambda r: (r["setting"], r["mechanism"], r["seed"])  # noqa: E731
    assert {key(r): r["test_accuracy"] for r in again} == {key(r): r["test_accuracy"] for r in rows}
    # the report groups the rows per test setting
    text = format_report(again, order=("resnet", "se"), settings_order=tuple(SETTINGS))
    assert text.index("setting default,") < text.index("setting shift-clutter,") < text.index("setting shift-canvas,")


def test_a_shift_grid_cannot_be_sliced_by_setting(tiny, tmp_path, capsys):
    with pytest.raises(UnknownNameError, match="cannot be sliced by setting"):
        run_grid("tiny-shift", tmp_path, device="cpu", settings=["shift-noise"], progress=False)
    assert main(["run", "tiny-shift", "--results", str(tmp_path), "--setting", "shift-noise"]) == 2


def test_a_model_that_cannot_take_a_test_setting_is_refused_before_training(tiny, monkeypatch):
    calls = counting_fit(monkeypatch)
    with pytest.raises(ValueError, match=r"'psa' cannot take the \(48, 48\) images of setting 'shift-canvas'"):
        run_shift(["default", "shift-canvas"], "psa", "tiny", 0, device="cpu")
    assert calls == []
    with pytest.raises(ValueError, match="train on different settings"):
        run_shift(["headroom", "shift-noise"], "se", "tiny", 0, device="cpu")
