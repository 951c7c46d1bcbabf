"""The study: settings and zoo table, results files, the runner (resumable), the report and the CLI."""

import dataclasses
import math
import statistics

import numpy as np
import pytest
import torch

from attn_course.attention import ATTENTION
from attn_course.study import (
    BUDGETS,
    GRIDS,
    MODELS,
    SETTINGS,
    ZOO,
    Budget,
    Grid,
    ResultsFileError,
    UnknownNameError,
    build_model,
    definition,
    describe_effect,
    format_report,
    get_budget,
    get_grid,
    get_model,
    get_setting,
    mean_interval,
    missing_from_zoo,
    paired_differences,
    read_results,
    run_grid,
    run_one,
    summarise,
)
from attn_course.study import runner as runner_module
from attn_course.study.__main__ import main
from attn_course.study.results import COLUMNS, append_result

# --- settings and the zoo table ---------------------------------------------------------------


def test_every_registered_mechanism_has_a_zoo_row():
    assert missing_from_zoo() == [], "add a row for each new mechanism to attn_course/study/settings.py ZOO"
    assert ZOO["resnet"].attention is None


@pytest.mark.parametrize("name", [m for m in MODELS if not m.startswith("seg-") and get_model(m).task is None])
def test_every_study_model_builds_and_keeps_the_image_shape(name):
    torch.manual_seed(0)
    model = build_model(name)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    entry = get_model(name)
    kinds = {type(block.attention).__name__ for stage in model.stages for block in stage}
    if entry.attention is None:
        assert kinds == {"Identity"}
    else:
        assert ATTENTION[entry.attention].__name__ in kinds


@pytest.mark.parametrize("name, head", [("seg-none", "Identity"), ("seg-psa", "PointwiseSpatialAttention"),
                                        ("seg-conv", "BasicBlock")])
def test_segmentation_heads_build(name, head):
    model = build_model(name)
    assert type(model.head).__name__ == head
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 11, 32, 32)


def test_psa_sits_in_the_last_stage_only():
    model = build_model("psa")
    assert [type(stage[0].attention).__name__ for stage in model.stages] == \
        ["Identity", "Identity", "PointwiseSpatialAttention"]


def test_budgets_and_settings_are_valid():
    assert BUDGETS["long"].epochs > BUDGETS["chapter"].epochs and "segmentation" in BUDGETS
    # The two budgets differ only in how long they train: the same images.
    chapter, long = BUDGETS["chapter"], BUDGETS["long"]
    assert chapter.loader_kwargs() == long.loader_kwargs() and chapter.lr == long.lr
    from attn_course.data import make_cluttered_digits

    for setting in SETTINGS.values():  # the models train on 32 x 32; the shift grid also tests on 48 x 48
        size = 48 if setting.name == "shift-canvas" else 32
        assert make_cluttered_digits(4, seed=0, **setting.data).images.shape == (4, 1, size, size)


@pytest.mark.parametrize("lookup, kind", [(get_setting, "setting"), (get_budget, "budget"), (get_model, "model"),
                                          (get_grid, "grid")])
def test_unknown_names_raise_with_the_valid_ones(lookup, kind):
    with pytest.raises(UnknownNameError, match=rf"Unknown {kind} 'nope'\. Valid names: .+"):
        lookup("nope")
    assert issubclass(UnknownNameError, ValueError)


def test_grid_order_puts_every_model_of_a_seed_before_the_next_seed():
    grid = GRIDS["zoo"]
    runs = grid.runs()
    assert len(runs) == len(set(runs)) == len(grid.models) * len(grid.settings) * len(grid.budgets) * len(grid.seeds)
    assert len(grid.seeds) >= 5 and set(grid.models) == set(ZOO)
    first = runs[: len(grid.models) * len(grid.settings)]
    assert {r[3] for r in first} == {0} and {r[2] for r in first} == {"chapter"}
    assert runs[-1][2] == "long"


# --- statistics -------------------------------------------------------------------------------


def test_mean_interval_uses_student_t():
    values = [0.91, 0.93, 0.92, 0.95, 0.90]
    mean, sd, low, high, n = mean_interval(values)
    assert n == 5 and math.isclose(mean, np.mean(values)) and math.isclose(sd, np.std(values, ddof=1))
    half = 2.7764451051977934 * sd / math.sqrt(5)  # t(0.975, 4), not 1.96
    assert math.isclose(low, mean - half) and math.isclose(high, mean + half)
    assert math.isnan(mean_interval([0.5])[2])


def _rows(values, setting="default", budget="chapter"):
    return [{"setting": setting, "budget": budget, "mechanism": m, "seed": s, "test_accuracy": v}
            for m, by_seed in values.items() for s, v in enumerate(by_seed)]


def test_paired_differences_are_seed_by_seed():
    base = [0.90, 0.80, 0.95, 0.85, 0.70]
    better = [b + 0.01 + 0.001 * i for i, b in enumerate(base)]  # always one point better, seeds vary a lot
    noise = [b + d for b, d in zip(base, [0.02, -0.03, 0.01, -0.02, 0.015])]
    diffs = {d["mechanism"]: d for d in paired_differences(_rows({"resnet": base, "se": better, "cbam": noise}))}
    expected = np.array(better) - np.array(base)
    assert math.isclose(diffs["se"]["mean"], expected.mean())
    assert diffs["se"]["verdict"] == "better" and diffs["se"]["ci_low"] > 0
    assert diffs["cbam"]["verdict"] == "no measurable difference"
    # Unpaired, the same effect would be invisible: the seeds' spread swamps one point.
    se_summary = [s for s in summarise(_rows({"resnet": base, "se": better})) if s["mechanism"] == "se"][0]
    assert se_summary["ci_high"] - se_summary["ci_low"] > 0.1


def test_paired_differences_pair_only_shared_seeds_and_say_when_too_few():
    rows = _rows({"resnet": [0.9, 0.8], "se": [0.95]})
    (d,) = paired_differences(rows)
    assert d["n"] == 1 and d["verdict"] == "too few seeds"


def test_a_verdict_needs_three_paired_seeds():
    base = [0.90, 0.80, 0.95]
    (two,) = paired_differences(_rows({"resnet": base[:2], "se": [0.92, 0.81]}))
    assert two["n"] == 2 and two["ci_low"] == two["ci_low"] and two["verdict"] == "too few seeds"
    (three,) = paired_differences(_rows({"resnet": base, "se": [0.92, 0.82, 0.97]}))
    assert three["n"] == 3 and three["verdict"] == "better"
    assert "too few to say anything yet" in describe_effect(_rows({"resnet": base[:2], "se": [0.92, 0.81]}),
                                                            "se", "default", "chapter")


def test_report_text_names_models_and_intervals():
    text = format_report(_rows({"resnet": [0.9, 0.8, 0.85], "se": [0.92, 0.83, 0.86]}), order=("resnet", "se"))
    assert "setting default, budget chapter" in text and "resnet" in text and "paired difference" in text
    assert "+2.00" in text  # (2 + 3 + 1) / 3 points


# --- results files ----------------------------------------------------------------------------


def _row(**changes):
    row = {c: "x" for c in COLUMNS if c != "definition"}
    row.update(grid="g", setting="default", mechanism="resnet", budget="chapter", seed=0, test_accuracy=0.5,
               test_miou=float("nan"), test_dice=float("nan"), test_ap50=float("nan"), test_ap=float("nan"),
               final_train_loss=1.0, test_accuracy_curve=[0.4, 0.5], train_loss_curve=[2.0, 1.0], train_seconds=1.0,
               params=10, mflops=1.0, gate_pointing_game=float("nan"), gate_energy_in_box=float("nan"),
               gradcam_pointing_game=0.9, gradcam_energy_in_box=0.5, threads=2, dirty=False)
    row.update(changes)
    if "definition" not in row:
        row["definition"] = definition(row["setting"], row["mechanism"], row["budget"])
    return row


def test_a_row_computed_under_another_definition_is_refused_by_name(tmp_path, monkeypatch):
    path = tmp_path / "g.csv"
    append_result(path, _row())
    append_result(path, _row(seed=1))
    assert len(read_results(path)) == 2
    changed = dataclasses.replace(BUDGETS["chapter"], epochs=BUDGETS["chapter"].epochs + 1)
    monkeypatch.setitem(BUDGETS, "chapter", changed)
    stale = r"line 2: the run resnet / default / chapter / seed 0 .*another definition"
    with pytest.raises(ResultsFileError, match=stale):
        read_results(path)


def test_a_definition_follows_what_a_run_computes_not_its_descriptions(monkeypatch):
    before = definition("default", "se", "chapter")
    assert before == definition("default", "se", "chapter") and len(before) == 12
    fingerprints = {definition(s, m, b) for s in SETTINGS for m in ZOO for b in ("chapter", "long")}
    assert len(fingerprints) == len(SETTINGS) * len(ZOO) * 2
    monkeypatch.setitem(BUDGETS, "chapter", dataclasses.replace(BUDGETS["chapter"], description="reworded"))
    monkeypatch.setitem(ZOO, "se", dataclasses.replace(ZOO["se"], why="reworded"))
    monkeypatch.setitem(MODELS, "se", ZOO["se"])
    assert definition("default", "se", "chapter") == before
    monkeypatch.setitem(MODELS, "se", dataclasses.replace(ZOO["se"], kwargs={"reduction": 8}))
    assert definition("default", "se", "chapter") != before
    monkeypatch.setitem(BUDGETS, "chapter", dataclasses.replace(BUDGETS["chapter"], lr=1e-3))
    monkeypatch.setitem(MODELS, "se", ZOO["se"])
    assert definition("default", "se", "chapter") != before


def test_a_row_of_a_model_the_study_no_longer_defines_is_refused(tmp_path):
    path = tmp_path / "g.csv"
    append_result(path, _row(mechanism="no-such-model", definition="0123456789ab"))
    with pytest.raises(ResultsFileError, match=r"line 2: Unknown model 'no-such-model'.*no longer defines"):
        read_results(path)


def test_results_round_trip(tmp_path):
    path = tmp_path / "g.csv"
    append_result(path, _row())
    append_result(path, _row(seed=1, test_accuracy=0.75))
    rows = read_results(path, "g")
    assert [r["seed"] for r in rows] == [0, 1] and rows[1]["test_accuracy"] == 0.75
    assert rows[0]["test_accuracy_curve"] == [0.4, 0.5] and math.isnan(rows[0]["gate_pointing_game"])
    assert path.read_text().count("\n") == 3


@pytest.mark.parametrize("damage, match", [
    (lambda text: text[:-5], r"last line is cut short"),
    (lambda text: text.replace("default", "default,extra", 1), r"line 2: 29 fields, expected 28"),
    (lambda text: "a,b\n" + text.split("\n", 1)[1], r"the header is"),
    (lambda text: "", r"the file is empty"),
    (lambda text: text + text.split("\n", 1)[1], r"appears twice"),
    (lambda text: text.replace(",0.5,", ",half,", 1), r"does not parse"),
])
def test_damaged_results_files_are_refused_and_left_as_they_are(tmp_path, damage, match):
    path = tmp_path / "g.csv"
    append_result(path, _row())
    path.write_text(damage(path.read_text()))
    before = path.read_bytes()
    with pytest.raises(ResultsFileError, match=match) as error:
        read_results(path, "g")
    assert str(path) in str(error.value)
    assert path.read_bytes() == before


def test_rows_of_another_grid_are_refused(tmp_path):
    path = tmp_path / "g.csv"
    append_result(path, _row(grid="other"))
    with pytest.raises(ResultsFileError, match=r"a row of grid 'other' in the file of grid 'g'"):
        read_results(path, "g")


def test_a_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ResultsFileError, match=r"no such results file.*run GRID"):
        read_results(tmp_path / "none.csv")


# --- the runner -------------------------------------------------------------------------------


@pytest.fixture
def tiny(monkeypatch):
    """A budget and a grid small enough for a unit test (a few seconds on a CPU)."""
    budgets = dict(BUDGETS, tiny=Budget("tiny", "for tests", epochs=1, n_train=64, n_test=32, batch_size=32))
    grids = dict(GRIDS, tiny=Grid("tiny", "for tests", models=("resnet", "cbam", "psa"), settings=("default",),
                                  budgets=("tiny",), seeds=(0, 1)))
    monkeypatch.setattr("attn_course.study.settings.BUDGETS", budgets)
    monkeypatch.setattr("attn_course.study.settings.GRIDS", grids)
    return grids["tiny"]


def test_run_one_records_every_column_and_is_reproducible(tiny):
    row = run_one("default", "cbam", "tiny", seed=3, grid="tiny", device="cpu")
    assert set(COLUMNS) <= set(row)
    assert len(row["test_accuracy_curve"]) == 1 and 0 <= row["test_accuracy"] <= 1
    assert row["params"] == sum(p.numel() for p in build_model("cbam").parameters())
    assert 0 <= row["gate_pointing_game"] <= 1 and 0 <= row["gradcam_pointing_game"] <= 1
    again = run_one("default", "cbam", "tiny", seed=3, grid="tiny", device="cpu")
    assert again["test_accuracy"] == row["test_accuracy"] and again["train_loss_curve"] == row["train_loss_curve"]
    other = run_one("default", "cbam", "tiny", seed=4, grid="tiny", device="cpu")
    assert other["train_loss_curve"] != row["train_loss_curve"]


def test_a_segmentation_run_records_pixel_accuracy_and_miou(tiny):
    row = run_one("default", "seg-psa", "tiny", seed=0, device="cpu")
    assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["test_miou"] <= 1
    assert math.isnan(row["gradcam_pointing_game"]) and math.isnan(row["gate_pointing_game"])
    assert row["params"] == sum(p.numel() for p in build_model("seg-psa").parameters())


def test_models_without_spatial_gates_have_no_gate_scores(tiny):
    for name in ("resnet", "psa"):  # no gate at all; softmax maps between positions, not gates
        row = run_one("default", name, "tiny", seed=0, device="cpu")
        assert math.isnan(row["gate_pointing_game"]) and not math.isnan(row["gradcam_pointing_game"])


def test_a_grid_resumes_and_a_crash_loses_no_finished_row(tiny, tmp_path, monkeypatch):
    assert run_grid("tiny", tmp_path, device="cpu", limit=2, progress=False) == 2
    first = (tmp_path / "tiny.csv").read_text()
    real_run_one, calls = runner_module.run_one, []

    def crash_on_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real_run_one(*args, **kwargs)

    monkeypatch.setattr(runner_module, "run_one", crash_on_second)
    with pytest.raises(RuntimeError, match="power cut"):
        run_grid("tiny", tmp_path, device="cpu", progress=False)
    text = (tmp_path / "tiny.csv").read_text()
    assert text.startswith(first) and text.count("\n") == 1 + 3  # header, two old rows, one new
    monkeypatch.setattr(runner_module, "run_one", real_run_one)
    assert run_grid("tiny", tmp_path, device="cpu", progress=False) == 3
    rows = read_results(tmp_path / "tiny.csv", "tiny")
    assert sorted((r["mechanism"], r["seed"]) for r in rows) == sorted((m, s) for m in tiny.models for s in tiny.seeds)
    assert run_grid("tiny", tmp_path, device="cpu", progress=False) == 0  # nothing left, nothing rewritten
    assert (tmp_path / "tiny.csv").read_text().startswith(text)


def test_two_processes_on_one_file_never_store_a_run_twice(tiny, tmp_path, monkeypatch):
    # Two processes drew up the same list; while this one trains its first run, the other stores
    # that run and the next. This one must store neither again: the file stays readable.
    real_run_one, other_process = runner_module.run_one, []

    def meanwhile(setting, model, budget, seed, **kwargs):
        row = real_run_one(setting, model, budget, seed, **kwargs)
        if not other_process:
            other_process.append(True)
            append_result(tmp_path / "tiny.csv", row)  # the other process finished this run first
            append_result(tmp_path / "tiny.csv", real_run_one(*runner_module.pending_runs(
                "tiny", tmp_path / "tiny.csv")[0], grid="tiny", device="cpu"))  # and the next one
        return row

    monkeypatch.setattr(runner_module, "run_one", meanwhile)
    made = run_grid("tiny", tmp_path, device="cpu", limit=3, progress=False)
    rows = read_results(tmp_path / "tiny.csv", "tiny")  # no "appears twice"
    assert made == 1 and len(rows) == 3


def test_a_grid_goes_on_when_another_process_stores_rows_of_a_model_it_does_not_know(tiny, tmp_path, monkeypatch):
    # A newer checkout added a model and stored its rows in the same file while this process ran.
    real_run_one, stored = runner_module.run_one, []

    def meanwhile(*args, **kwargs):
        row = real_run_one(*args, **kwargs)
        if not stored:
            stored.append(True)
            append_result(tmp_path / "tiny.csv", {**row, "mechanism": "newer-model", "definition": "0123456789ab"})
        return row

    monkeypatch.setattr(runner_module, "run_one", meanwhile)
    assert run_grid("tiny", tmp_path, device="cpu", limit=2, progress=False) == 2
    with pytest.raises(ResultsFileError, match="Unknown model 'newer-model'"):
        read_results(tmp_path / "tiny.csv", "tiny")  # readers of the numbers still refuse it
    assert len(read_results(tmp_path / "tiny.csv", "tiny", check_definitions=False)) == 3


# --- the command line -------------------------------------------------------------------------


def test_cli_report_and_reproduce(tiny, tmp_path, capsys):
    run_grid("tiny", tmp_path, device="cpu", limit=3, progress=False)
    assert main(["report", "tiny", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grid tiny: 3 runs" in out and "setting default, budget tiny" in out
    args = ["reproduce", "--grid", "tiny", "--mechanism", "cbam", "--budget", "tiny", "--seed", "0",
            "--results", str(tmp_path)]
    assert main(args) == 0
    assert "reproduced" in capsys.readouterr().out
    # A stored value that differs: the command says so and fails.
    path = tmp_path / "tiny.csv"
    lines = path.read_text().splitlines()
    fields = lines[2].split(",")
    fields[COLUMNS.index("test_accuracy")] = "0.0001"
    path.write_text("\n".join([lines[0], lines[1], ",".join(fields), *lines[3:]]) + "\n")
    assert main(args) == 1
    assert "NOT reproduced" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["report", "nope"], r"Unknown grid 'nope'\. Valid names: zoo"),
    (["run", "nope"], r"Unknown grid 'nope'"),
    (["bench", "resnet", "sqeeze"], r"Unknown model 'sqeeze'"),
])
def test_cli_unknown_names_exit_2_with_the_valid_names(argv, match, capsys):
    assert main(argv) == 2
    assert pytest.importorskip("re").search(match, capsys.readouterr().err)


def test_cli_report_of_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["report", "zoo", "--results", str(tmp_path)]) == 2
    assert "no such results file" in capsys.readouterr().err


def test_cli_bench_prints_ratios(capsys):
    assert main(["bench", "resnet", "se", "--batch-size", "4", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "1.00 x resnet" in out and "se" in out


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in [*SETTINGS, *BUDGETS, *MODELS, *GRIDS])


# --- what chapters show -----------------------------------------------------------------------


def test_effect_table_and_sentences_follow_the_rows():
    from attn_course.study import describe_effect, effect_table

    base = [0.90, 0.80, 0.95, 0.85, 0.70]
    rows = _rows({"resnet": base, "se": [b + 0.01 for b in base], "eca": [b - 0.02 for b in base]})
    table = effect_table(rows, ["se", "eca"])
    lines = table.splitlines()
    assert lines[0].startswith("| setting | budget | seeds | resnet (%) | se (%) | se − resnet (points)")
    assert len(lines) == 3 and "| default | chapter | 5 |" in lines[2]
    assert "+1.0 [+1.0, +1.0]: better" in lines[2] and "-2.0 [-2.0, -2.0]: worse" in lines[2]
    assert describe_effect(rows, "se", "default", "chapter", name="SE").startswith(
        "In the default setting at the chapter budget, SE changes test accuracy by +1.0 points (95% CI +1.0 to +1.0, "
        "5 seeds): better than the plain ResNet")
    assert "too few to say anything yet" in describe_effect(rows, "se", "headroom", "long")
    noisy = _rows({"resnet": base, "se": [b + d for b, d in zip(base, [0.02, -0.03, 0.01, -0.02, 0.015])]})
    sentence = describe_effect(noisy, "se", "default", "chapter")
    assert sentence.endswith(": no measurable difference from the plain ResNet.")


def test_effect_table_gives_no_interval_below_min_seeds():
    from attn_course.study import MIN_SEEDS, effect_table

    # Two seeds 20 points apart: a t-interval (t = 12.7 at 1 degree of freedom) would reach past 100 %.
    rows = _rows({"resnet": [0.70, 0.90], "se": [0.72, 0.93]})
    assert MIN_SEEDS == 3
    line = effect_table(rows, "se").splitlines()[2]
    assert line == "| default | chapter | 2 | 80.0 (n = 2) | 82.5 (n = 2) | – |", line


def test_effect_table_takes_another_metric_and_baseline():
    from attn_course.study import describe_effect, effect_table

    rows = [{"setting": "default", "budget": "segmentation", "mechanism": m, "seed": s, "test_miou": v}
            for m, values in {"seg-none": [0.2, 0.25, 0.22], "seg-psa": [0.6, 0.7, 0.65]}.items()
            for s, v in enumerate(values)]
    table = effect_table(rows, "seg-psa", baseline="seg-none", metric="test_miou")
    assert "| default | segmentation | 3 |" in table and ": better" in table
    sentence = describe_effect(rows, "seg-psa", "default", "segmentation", name="the PSA head", baseline="seg-none",
                               metric="test_miou", what="mIoU", baseline_label="no head")
    assert "the PSA head changes mIoU by +42.7 points" in sentence and sentence.endswith("better than no head.")


@pytest.mark.parametrize("grid", list(GRIDS))
def test_committed_results_are_readable_clean_and_belong_to_their_grid(grid):
    from attn_course.study import load_results, packaged_results

    if not packaged_results(grid).is_file():
        pytest.skip(f"results/{grid}.csv is not committed yet")
    rows = load_results(grid)
    runs = set(GRIDS[grid].runs())
    for row in rows:
        assert (row["setting"], row["mechanism"], row["budget"], row["seed"]) in runs, row
        assert not row["dirty"], f"a row computed from uncommitted code: {row}"
        assert len(row["test_accuracy_curve"]) == BUDGETS[row["budget"]].epochs
        assert row["test_accuracy"] == row["test_accuracy_curve"][-1]


def test_a_slice_of_a_grid_selects_runs_and_refuses_unknown_names(tiny, tmp_path):
    from attn_course.study.runner import pending_runs

    path = tmp_path / "tiny.csv"
    assert pending_runs("tiny", path, models=["psa"]) == [("default", "psa", "tiny", 0), ("default", "psa", "tiny", 1)]
    assert len(pending_runs("tiny", path, budgets=["tiny"])) == 6
    with pytest.raises(UnknownNameError, match=r"grid 'tiny' has no model 'se'\. Valid names: resnet, cbam, psa"):
        pending_runs("tiny", path, models=["se"])


def test_study_verdict_says_where_each_verdict_holds():
    from attn_course.study import study_verdict

    base = [0.90, 0.80, 0.95, 0.85, 0.70]
    rows = _rows({"resnet": base, "se": [b + 0.01 for b in base]}, budget="chapter")
    rows += _rows({"resnet": base, "se": [b + d for b, d in zip(base, [0.02, -0.03, 0.01, -0.02, 0.015])]},
                  budget="long")
    text = study_verdict(rows, "se", name="SE", paper="the SE paper")
    assert text.startswith("SE is better than the plain ResNet in the default setting at the chapter budget: "
                           "the direction of the SE paper's gains.")
    assert "no measurable difference in the default setting at the long budget" in text
    assert "too few paired runs of SE" in study_verdict(rows[:3], "se", name="SE")


def test_plot_paired_differences_draws_one_group_per_setting_and_budget():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attn_course.study import plot_paired_differences

    base = [0.90, 0.80, 0.95]
    rows = _rows({"resnet": base, "se": [b + 0.01 for b in base]}) + \
        _rows({"resnet": base, "se": [b - 0.02 for b in base]}, setting="headroom")
    fig, ax = plt.subplots()
    assert plot_paired_differences(rows, "se", ax) is ax
    assert [t.get_text() for t in ax.get_xticklabels()] == ["default\nchapter budget", "headroom\nchapter budget"]
    bars = [c for c in ax.containers]
    assert len(bars) == 2  # one interval bar per group
    dots = [line for line in ax.lines if line.get_marker() == "."]
    assert sorted(round(y, 6) for line in dots for y in line.get_ydata()) == [-2.0] * 3 + [1.0] * 3
    plt.close(fig)


def test_load_results_of_a_grid_without_results(monkeypatch, tmp_path):
    import attn_course.study as study

    monkeypatch.setattr(study, "packaged_results", lambda grid: tmp_path / f"{grid}.csv")
    assert study.load_results("zoo", missing_ok=True) == []
    with pytest.raises(ResultsFileError, match="no such results file"):
        study.load_results("zoo")


def test_a_tiny_difference_is_not_written_as_minus_zero():
    from attn_course.study import describe_effect

    rows = _rows({"resnet": [0.9, 0.8, 0.7], "se": [0.9004, 0.7997, 0.6998]})
    assert "by 0.0 points (95% CI" in describe_effect(rows, "se", "default", "chapter")


def test_recomputed_values_are_compared_as_the_file_stores_them(tiny, tmp_path, monkeypatch, capsys):
    from attn_course.study.results import as_stored

    assert as_stored(0.9685000000000001) == 0.9685 and as_stored(0.12345678) == 0.123457
    run_grid("tiny", tmp_path, device="cpu", limit=1, progress=False)
    real_run_one = runner_module.run_one

    def with_rounding_noise(*args, **kwargs):  # what summing a float accuracy batch by batch gives
        row = real_run_one(*args, **kwargs)
        row["test_accuracy"] += 1e-16
        return row

    monkeypatch.setattr("attn_course.study.__main__.run_one", with_rounding_noise)
    args = ["reproduce", "--grid", "tiny", "--mechanism", "resnet", "--budget", "tiny", "--seed", "0",
            "--results", str(tmp_path)]
    assert main(args) == 0
    assert "difference 0.000000, tolerance 0 (same machine kind: bit for bit): reproduced" in capsys.readouterr().out


def test_intervals_are_python_floats_ready_to_glue():
    mean, sd, low, high, n = mean_interval([0.9, 0.8, 0.85])
    assert all(type(v) is float for v in (mean, sd, low, high))


# --- the gate maps the study scores ------------------------------------------------------------


def _recorded(model, images):
    from attn_course.models import AttentionRecorder

    model.eval()
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(images)
    return recorder.stacked()


def test_the_scored_gate_is_the_deepest_spatial_gate_averaged_over_channels():
    from attn_course.metrics import resize_maps
    from attn_course.study.runner import spatial_gate_maps

    torch.manual_seed(0)
    images = torch.rand(6, 1, 32, 32)
    cbam = build_model("cbam")
    deepest = _recorded(cbam, images)["stages.2.0.attention.spatial.gate"]  # (6, 1, 8, 8)
    torch.testing.assert_close(spatial_gate_maps(cbam, images, "cpu"), resize_maps(deepest[:, 0], (32, 32)))
    assert spatial_gate_maps(build_model("se"), images, "cpu") is None  # channel gates only
    simam = build_model("simam")
    deepest = _recorded(simam, images)["stages.2.0.attention.gate"]  # (6, 64, 8, 8)
    torch.testing.assert_close(spatial_gate_maps(simam, images, "cpu"), resize_maps(deepest.mean(1), (32, 32)))


def test_coordinate_attention_is_scored_by_the_product_of_its_row_and_column_gates():
    from attn_course.metrics import resize_maps
    from attn_course.study.runner import spatial_gate_maps

    torch.manual_seed(0)
    images = torch.rand(6, 1, 32, 32)
    coord = build_model("coord")
    gates = _recorded(coord, images)
    rows = gates["stages.2.0.attention.h.gate"]  # (6, 64, 8, 1)
    columns = gates["stages.2.0.attention.w.gate"]  # (6, 64, 1, 8)
    expected = torch.einsum("nci,ncj->nij", rows[..., 0], columns[:, :, 0]) / rows.shape[1]  # mean over c of a_h a_w
    scored = spatial_gate_maps(coord, images, "cpu")
    torch.testing.assert_close(scored, resize_maps(expected, (32, 32)))
    assert not torch.allclose(scored[:, 0], scored[:, -1])  # it varies down the columns, not only across


def test_a_bound_that_excludes_zero_is_never_printed_as_zero():
    from attn_course.study import comparison_table, describe_effect, effect_table

    # SE better by 0.04 to 0.06 points, seed by seed: the interval's lower bound is about +0.04 points
    rows = _rows({"resnet": [0.9, 0.8, 0.7, 0.6], "se": [0.9004, 0.8006, 0.7005, 0.6005]})
    sentence = describe_effect(rows, "se", "default", "chapter")
    assert "better" in sentence and "CI 0.0 " not in sentence and "+0.0 " not in sentence
    low = sentence.split("CI ")[1].split(" to")[0]
    assert float(low) > 0, sentence
    for table in (effect_table(rows, "se"), comparison_table(rows, ["se"], difference=True)):
        assert "[0.0," not in table and "[+0.0," not in table, table


def test_intervals_of_fractions_stay_in_zero_one():
    from attn_course.study import summarise

    rows = _rows({"resnet": [1.0, 1.0, 0.99]})
    (s,) = summarise(rows)
    assert s["ci_high"] == 1.0 and s["ci_low"] < s["mean"] < 1.0
    for r in rows:
        r["train_seconds"] = r["test_accuracy"]  # not a fraction: no clipping
    (t,) = summarise(rows, "train_seconds")
    assert t["ci_high"] > 1.0


def test_study_verdict_with_mixed_cells_starts_sentences_with_capitals_and_does_not_contradict_itself():
    from attn_course.study import study_verdict

    rows = (_rows({"resnet": [0.9, 0.8, 0.7], "nl": [0.95, 0.86, 0.74]}, "headroom", "long")
            + _rows({"resnet": [0.9, 0.8, 0.7], "nl": [0.85, 0.74, 0.66]}, "default", "long")
            + _rows({"resnet": [0.9, 0.8, 0.7], "nl": [0.92, 0.77, 0.71]}, "default", "chapter"))
    text = study_verdict(rows, "nl", name="the non-local ResNet")
    assert text.startswith("The non-local ResNet is better") and "The non-local ResNet is worse" in text
    assert "does not help there" in text and "does not help here" not in text
    # the straddling cell: differences +2, -3, +1 points; its interval's ends are named as compatible effects
    from attn_course.study import paired_differences
    (d,) = [d for d in paired_differences(rows) if d["budget"] == "chapter"]
    assert f"from {100 * d['ci_low']:+.1f} to {100 * d['ci_high']:+.1f} points remain compatible" in text
    assert "the interval straddles zero" in text  # one such cell: not "each interval"


def test_reproduce_allows_a_gpu_row_its_run_to_run_spread(tiny, tmp_path, capsys):
    from attn_course.study.__main__ import CROSS_MACHINE_TOLERANCE, GPU_TOLERANCE

    run_grid("tiny", tmp_path, device="cpu", limit=1, progress=False)
    path = tmp_path / "tiny.csv"
    header, line = path.read_text().splitlines()[:2]
    fields = line.split(",")
    accuracy = float(fields[COLUMNS.index("test_accuracy")])
    shift = (CROSS_MACHINE_TOLERANCE + GPU_TOLERANCE) / 2  # beyond another CPU's tolerance, within a GPU's
    fields[COLUMNS.index("test_accuracy")] = f"{accuracy + shift:.6f}"
    fields[COLUMNS.index("device")] = "cuda"  # as if a GPU had stored it
    path.write_text(header + "\n" + ",".join(fields) + "\n")
    args = ["reproduce", "--grid", "tiny", "--mechanism", fields[COLUMNS.index("mechanism")], "--budget", "tiny",
            "--seed", "0", "--setting", fields[COLUMNS.index("setting")], "--results", str(tmp_path)]
    assert main(args) == 0
    assert f"tolerance {GPU_TOLERANCE} (a GPU: not bit for bit; the larger of" in capsys.readouterr().out


def test_rerun_tolerance_grows_with_the_rows_seed_to_seed_spread():
    from attn_course.study.report import CROSS_MACHINE_TOLERANCE, GPU_TOLERANCE, rerun_tolerance

    gc_chapter = [0.897, 0.86, 0.91, 0.85, 0.875]  # a short budget: seeds spread by points
    expected = 1.96 * math.sqrt(2) * statistics.stdev(gc_chapter)
    assert math.isclose(rerun_tolerance(gc_chapter), expected) and expected > 0.05
    assert rerun_tolerance([0.991, 0.992, 0.990]) == CROSS_MACHINE_TOLERANCE  # converged: the fixed floor
    assert rerun_tolerance([0.991, 0.992, 0.990], gpu=True) == GPU_TOLERANCE
    assert rerun_tolerance([0.9]) == CROSS_MACHINE_TOLERANCE  # one seed: no spread to measure
