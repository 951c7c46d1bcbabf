"""The study's views for many models (chapter 13): tables, fronts, shift changes, verdicts and plots,
each checked against an independent computation on hand-made rows."""

import math
import statistics

import matplotlib
import pytest
from scipy import stats

from attn_course.study import (
    change_from_setting,
    comparison_table,
    describe_verdicts,
    pareto_front,
    plot_accuracy_cost,
    plot_by_training_size,
    plot_effects,
    verdicts,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASE = [0.90, 0.80, 0.95, 0.85, 0.70]
NOISE = [0.02, -0.03, 0.01, -0.02, 0.015]


def _rows(values, setting="default", budget="chapter", metric="test_accuracy"):
    return [{"setting": setting, "budget": budget, "mechanism": m, "seed": s, metric: v}
            for m, by_seed in values.items() for s, v in enumerate(by_seed)]


def _by_hand(values, confidence=0.95):
    """Mean and Student-t interval computed from scratch, not with the package's mean_interval."""
    n = len(values)
    mean = statistics.mean(values)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def _zoo_like():
    rows = _rows({"resnet": BASE, "se": [b + 0.01 for b in BASE], "eca": [b - 0.02 for b in BASE],
                  "ge": [b + d for b, d in zip(BASE, NOISE)]})
    rows += _rows({"resnet": BASE, "se": [b + d for b, d in zip(BASE, NOISE)]}, setting="headroom", budget="long")
    return rows


# --- pareto_front ------------------------------------------------------------------------------


def test_pareto_front_of_hand_made_points():
    points = {"a": (1, 0.5), "b": (2, 0.7), "c": (3, 0.6), "d": (2, 0.4), "e": (4, 0.9)}
    # c is dominated by b (cheaper, better), d by b (same cost, better); a, b and e trade cost for score
    assert pareto_front(points) == ["a", "b", "e"]


@pytest.mark.parametrize("points, front", [
    ({"a": (1, 0.9), "b": (2, 0.8), "c": (3, 0.7)}, ["a"]),  # the cheapest is the best: it alone
    ({"x": (3, 0.3), "y": (2, 0.2), "z": (1, 0.1)}, ["z", "y", "x"]),  # each dearer and better: all, cheapest first
    ({"a": (1, 0.5), "b": (1, 0.6)}, ["b"]),  # the same cost: the better dominates
    ({"a": (1, 0.5), "b": (2, 0.5)}, ["a"]),  # the same score: the cheaper dominates
    ({"a": (1, 0.5), "b": (1, 0.5)}, ["a", "b"]),  # identical points: neither is strictly better
    ({"a": (1, float("nan")), "b": (2, 0.5)}, ["b"]),  # a NaN is left out
    ({}, []),
])
def test_pareto_front_edge_cases(points, front):
    assert pareto_front(points) == front


def test_pareto_front_agrees_with_brute_force_on_random_points():
    import random

    rng = random.Random(0)
    for _ in range(50):
        points = {f"p{i}": (rng.randint(0, 5), rng.randint(0, 5) / 5) for i in range(8)}
        # brute force: a point is on the front if no point is >= in score and <= in cost with one strict
        expected = set()
        for name, (c, s) in points.items():
            if all(not (c2 <= c and s2 >= s and (c2, s2) != (c, s)) for c2, s2 in points.values()):
                expected.add(name)
        assert set(pareto_front(points)) == expected
        costs = [points[n][0] for n in pareto_front(points)]
        assert costs == sorted(costs)


# --- comparison_table --------------------------------------------------------------------------


def test_comparison_table_cells_are_means_and_student_t_intervals():
    rows = _zoo_like()
    lines = comparison_table(rows, ["resnet", "se", "eca", "ge"]).splitlines()
    assert lines[0] == "| model | default, chapter | headroom, long |"
    assert lines[1] == "|---|---|---|"
    mean, low, high = _by_hand(BASE)
    assert lines[2] == f"| resnet | {100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}] | " \
                       f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}] |"
    eca = [b - 0.02 for b in BASE]
    mean, low, high = _by_hand(eca)
    assert lines[4].startswith(f"| eca | {100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}] | not run yet |")


def test_comparison_table_differences_are_paired_with_verdicts():
    rows = _zoo_like()
    lines = comparison_table(rows, ["resnet", "se", "eca", "ge"], difference=True, labels={"se": "SE"}).splitlines()
    assert lines[2] == "| resnet | (baseline) | (baseline) |"
    assert lines[3].startswith("| SE | +1.0 [+1.0, +1.0] better | ")  # always one point better: a zero-width interval
    assert lines[4].startswith("| eca | -2.0 [-2.0, -2.0] worse | not run yet |")
    mean, low, high = _by_hand([100 * d for d in NOISE])
    assert lines[5] == f"| ge | {mean:+.1f} [{low:+.1f}, {high:+.1f}] | not run yet |"  # straddles 0: no word
    assert low < 0 < high


def test_comparison_table_orders_data_size_budgets_by_size_and_shows_n_below_min_seeds():
    rows = []
    for n in (8000, 250, 1000):
        rows += _rows({"resnet": BASE[:2], "se": BASE[:2]}, budget=f"data-{n}")
    lines = comparison_table(rows, ["se"]).splitlines()
    assert lines[0] == "| model | data-250 | data-1000 | data-8000 |"  # one setting: budgets only, 250 first
    assert lines[2] == f"| se | {100 * statistics.mean(BASE[:2]):.1f} (n = 2) |" + \
        f" {100 * statistics.mean(BASE[:2]):.1f} (n = 2) |" * 2


def test_comparison_table_takes_another_metric_and_scale():
    rows = _rows({"resnet": [0.2, 0.3, 0.25], "cbam": [0.5, 0.55, 0.6]}, metric="score")
    table = comparison_table(rows, ["cbam"], metric="score", scale=1, digits=3)
    assert f"| cbam | {statistics.mean([0.5, 0.55, 0.6]):.3f} [" in table


# --- change_from_setting -----------------------------------------------------------------------


def test_change_from_setting_subtracts_the_same_model_and_seed_on_the_reference_setting():
    rows = _rows({"resnet": [0.99, 0.98, 0.97], "se": [0.98, 0.99, 0.96]}, setting="default", budget="long")
    rows += _rows({"resnet": [0.80, 0.70, 0.75], "se": [0.60, 0.65, 0.70]}, setting="shift-noise", budget="long")
    rows += _rows({"se": [0.5]}, setting="shift-canvas", budget="chapter")  # no reference row: left out
    change = change_from_setting(rows)
    assert {r["setting"] for r in change} == {"shift-noise"}
    got = {(r["mechanism"], r["seed"]): r["test_accuracy"] for r in change}
    assert got[("resnet", 1)] == pytest.approx(0.70 - 0.98)
    assert got[("se", 2)] == pytest.approx(0.70 - 0.96)
    assert len(change) == 6
    assert rows[0]["test_accuracy"] == 0.99  # the input rows are not changed


# --- verdicts and their sentence ----------------------------------------------------------------


def test_verdicts_sort_models_by_their_paired_verdict():
    found = verdicts(_zoo_like(), "default", "chapter", models=["eca", "se", "ge", "psa"])
    assert found == {"better": ["se"], "worse": ["eca"], "no measurable difference": ["ge"], "too few seeds": []}


def test_describe_verdicts_counts_and_names_them():
    rows = _zoo_like()
    text = describe_verdicts(rows, "default", "chapter", ["se", "eca", "ge"], labels={"se": "SE", "eca": "ECA"})
    assert text == ("In the default setting at the chapter budget, of 3 mechanisms, 1 is better than the plain "
                    "ResNet (SE), 1 is worse than the plain ResNet (ECA) and 1 shows no measurable difference (ge).")
    assert describe_verdicts(rows, "headroom", "chapter") == \
        "In the headroom setting at the chapter budget, the study has no paired runs yet."
    two = describe_verdicts(rows + _rows({"resnet": BASE, "eca": [b + 0.01 for b in BASE]}, setting="headroom",
                                         budget="long"), "headroom", "long", what="gate")
    assert two == ("In the headroom setting at the long budget, of 2 gates, 1 is better than the plain ResNet (eca) "
                   "and 1 shows no measurable difference (se).")


# --- plots ---------------------------------------------------------------------------------------


def test_plot_effects_draws_one_line_per_model_with_its_verdict_colour():
    rows = _zoo_like()
    fig, ax = plt.subplots()
    assert plot_effects(rows, ["se", "eca", "ge", "psa"], ax, "default", "chapter") is ax
    assert [t.get_text() for t in ax.get_yticklabels()] == ["se", "eca", "ge"]  # psa has no rows: left out
    bars = ax.containers
    assert len(bars) == 3
    means = [bar.lines[0].get_xdata()[0] for bar in bars]
    assert means == pytest.approx([1.0, -2.0, 100 * statistics.mean(NOISE)])
    colours = [bar.lines[0].get_color() for bar in bars]
    assert colours == ["C2", "C3", "C7"]  # better, worse, neither
    plt.close(fig)


def test_plot_by_training_size_puts_each_budget_at_its_number_of_images():
    rows = []
    for n, shift in ((250, 0.0), (1000, 0.05)):
        rows += _rows({"resnet": [b - shift for b in BASE]}, budget=f"data-{n}")
    fig, ax = plt.subplots()
    assert plot_by_training_size(rows, ["resnet"], ax) is ax
    line = ax.containers[0].lines[0]
    assert list(line.get_xdata()) == pytest.approx([250, 1000])  # one model: no sideways offset
    assert list(line.get_ydata()) == pytest.approx([100 * statistics.mean(BASE), 100 * statistics.mean(BASE) - 5])
    assert ax.get_xscale() == "log"
    plt.close(fig)


def test_plot_accuracy_cost_joins_the_pareto_front():
    rows = _rows({"resnet": BASE, "se": [b + 0.01 for b in BASE], "eca": [b - 0.02 for b in BASE]})
    costs = {"resnet": 100, "se": 110, "eca": 105, "psa": 50}  # eca: dearer and worse than resnet; psa: no rows
    fig, ax = plt.subplots()
    assert plot_accuracy_cost(rows, costs, ax, "default", "chapter") is ax
    front = next(line for line in ax.lines if line.get_label() == "Pareto front")
    assert list(front.get_xdata()) == [100, 110]
    assert list(front.get_ydata()) == pytest.approx([100 * statistics.mean(BASE), 100 * statistics.mean(BASE) + 1])
    assert sorted(t.get_text() for t in ax.texts) == ["eca", "resnet", "se"]
    plt.close(fig)


def test_label_points_moves_labels_off_each_other():
    from attn_course.study import label_points

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 10], [0, 0.01, 5], "o")
    points = {"first": (0, 0), "second": (0, 0.01), "third": (1, 0.01), "far": (10, 5)}
    assert label_points(ax, points) is ax
    renderer = fig.canvas.get_renderer()
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert sorted(boxes) == sorted(points)
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    plt.close(fig)


def test_compare_with_study_names_what_a_difference_means():
    from attn_course.study import compare_with_study
    from attn_course.study.report import CROSS_MACHINE_TOLERANCE

    stored = {"ResNet": 0.915, "SE": 0.890}
    assert "same numbers" in compare_with_study({"ResNet": 0.915, "SE": 0.890}, stored)
    small = compare_with_study({"ResNet": 0.910, "SE": 0.893}, stored)
    assert "up to 0.5 points" in small and "rounded differently" in small
    large = compare_with_study({"ResNet": 0.915, "SE": 0.890 - 2 * CROSS_MACHINE_TOLERANCE}, stored)
    assert "up to 2.0 points" in large and "more than the 1 point" in large and "several seeds" in large
    assert "no stored run" in compare_with_study({"ResNet": 0.9, "GC": 0.8}, stored)
    one_point = compare_with_study({"ResNet": 0.913}, {"ResNet": 0.903})  # 0.01 and a hair in floating point
    assert "up to 1.0 points" in one_point and "rounded differently" in one_point
