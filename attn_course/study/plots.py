"""Plots of the study's rows; like :mod:`attn_course.viz`, each takes an axis and returns it."""

from .report import MIN_SEEDS, paired_differences, summarise
from .settings import get_budget
from .tables import BUDGET_ORDER, SETTING_ORDER, _present, pareto_front


def plot_paired_differences(rows, mechanisms, ax, baseline="resnet", metric="test_accuracy"):
    """Each seed's difference from ``baseline`` (dots) and the mean with its 95% interval (bars), in points.

    One group per (setting, budget) present in ``rows``, one colour per mechanism; the line at 0
    is "no difference". A bar that crosses it is "no measurable difference".
    """
    mechanisms = [mechanisms] if isinstance(mechanisms, str) else list(mechanisms)
    cells = [(s, b) for s in _present(rows, "setting", SETTING_ORDER) for b in _present(rows, "budget", BUDGET_ORDER)]
    value = {(r["setting"], r["budget"], r["mechanism"], r["seed"]): r[metric] for r in rows}
    diffs = {(d["setting"], d["budget"], d["mechanism"]): d for d in paired_differences(rows, metric, baseline)}
    width = 0.6 / max(len(mechanisms), 1)
    for j, mechanism in enumerate(mechanisms):
        ax.plot([], [], "o", color=f"C{j}", label=f"{mechanism} − {baseline}")
        for i, (setting, budget) in enumerate(cells):
            x = i + width * (j - (len(mechanisms) - 1) / 2)
            seeds = [k for (s, b, m, k) in value if (s, b, m) == (setting, budget, mechanism)
                     and (setting, budget, baseline, k) in value]
            points = [100 * (value[setting, budget, mechanism, k] - value[setting, budget, baseline, k]) for k in seeds]
            ax.plot([x] * len(points), points, ".", color=f"C{j}", alpha=0.5)
            d = diffs.get((setting, budget, mechanism))
            if d is not None and d["n"] >= MIN_SEEDS:
                mean = 100 * d["mean"]
                ax.errorbar(x, mean, yerr=[[mean - 100 * d["ci_low"]], [100 * d["ci_high"] - mean]], fmt="o",
                            color=f"C{j}", capsize=4)
    ax.axhline(0, color="gray", linewidth=1)
    ax.set_xticks(range(len(cells)), [f"{s}\n{b} budget" for s, b in cells])
    ax.set_ylabel("difference (points)")
    ax.legend(fontsize=9)
    return ax


VERDICT_COLOURS = {"better": "C2", "worse": "C3", "no measurable difference": "C7", "too few seeds": "C7"}


def plot_effects(rows, models, ax, setting, budget, baseline="resnet", metric="test_accuracy", labels=None):
    """One line per model: each seed's difference from ``baseline`` (dots) and the mean with its 95%
    interval (bar), in points, for one setting and budget; green "better", red "worse", grey neither.

    Models without paired runs there are left out. The line at 0 is "no difference".
    """
    labels = labels or {}
    value = {(r["mechanism"], r["seed"]): r[metric] for r in rows if (r["setting"], r["budget"]) == (setting, budget)}
    diffs = {d["mechanism"]: d for d in paired_differences(rows, metric, baseline)
             if (d["setting"], d["budget"]) == (setting, budget)}
    shown = [m for m in models if m in diffs]
    for y, model in enumerate(shown):
        d = diffs[model]
        colour = VERDICT_COLOURS[d["verdict"]]
        points = [100 * (value[model, k] - value[baseline, k]) for (m, k) in value
                  if m == model and (baseline, k) in value]
        ax.plot(points, [y] * len(points), ".", color=colour, alpha=0.5)
        if d["n"] >= MIN_SEEDS:
            mean = 100 * d["mean"]
            ax.errorbar(mean, y, xerr=[[mean - 100 * d["ci_low"]], [100 * d["ci_high"] - mean]], fmt="o",
                        color=colour, capsize=3)
    ax.axvline(0, color="gray", linewidth=1)
    ax.set_yticks(range(len(shown)), [labels.get(m, m) for m in shown], fontsize=9)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the first model on top
    ax.set_xlabel(f"difference from {labels.get(baseline, baseline)} (points)")
    return ax


def plot_by_training_size(rows, models, ax, metric="test_accuracy", scale=100.0, labels=None):
    """Each model's mean ``metric`` (times ``scale``) with its 95% interval against the number of
    training images of its budget (log scale): the learning curves of the ``data-size`` grid."""
    labels = labels or {}
    summaries = summarise(rows, metric)
    for j, model in enumerate(models):
        points = sorted((get_budget(s["budget"]).n_train, s) for s in summaries if s["mechanism"] == model)
        if not points:
            continue
        sizes = [n * (1 + 0.04 * (j - (len(models) - 1) / 2)) for n, _ in points]  # side by side, not on top
        means = [scale * s["mean"] for _, s in points]
        low = [scale * (s["mean"] - s["ci_low"]) if s["n"] >= MIN_SEEDS else 0 for _, s in points]
        high = [scale * (s["ci_high"] - s["mean"]) if s["n"] >= MIN_SEEDS else 0 for _, s in points]
        ax.errorbar(sizes, means, yerr=[low, high], fmt="o-", color=f"C{j}", capsize=3, label=labels.get(model, model))
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.legend(fontsize=9)
    return ax


def plot_accuracy_cost(rows, costs, ax, setting, budget, metric="test_accuracy", scale=100.0, labels=None):
    """Each model's mean ``metric`` (with its 95% interval) against its cost, the Pareto front joined.

    ``costs`` maps model names to a cost (parameters, FLOPs, seconds: lower is better); only models
    with both a cost and rows in ``setting`` and ``budget`` are drawn. The front is
    :func:`~attn_course.study.tables.pareto_front` of the means: no model is cheaper and better.
    """
    labels = labels or {}
    summary = {s["mechanism"]: s for s in summarise(rows, metric) if (s["setting"], s["budget"]) == (setting, budget)}
    shown = [m for m in costs if m in summary]
    front = pareto_front({m: (costs[m], summary[m]["mean"]) for m in shown})
    for model in shown:
        s, on_front = summary[model], model in front
        mean = scale * s["mean"]
        err = [[mean - scale * s["ci_low"]], [scale * s["ci_high"] - mean]] if s["n"] >= MIN_SEEDS else None
        ax.errorbar(costs[model], mean, yerr=err, fmt="o", color="C3" if on_front else "C0", capsize=3,
                    alpha=1.0 if on_front else 0.6)
    ax.plot([costs[m] for m in front], [scale * summary[m]["mean"] for m in front], "-", color="C3",
            label="Pareto front")
    ax.legend(fontsize=9)
    label_points(ax, {labels.get(m, m): (costs[m], scale * summary[m]["mean"]) for m in shown})
    return ax


def label_points(ax, points, fontsize=9):
    """Write each label of ``points`` (label -> (x, y)) beside its point: to the upper right, else the
    upper left, lower right or lower left, whichever overlaps no label written before it, else further
    down. Call it after plotting, when the limits are set."""
    ax.autoscale_view()
    get_renderer = getattr(ax.figure.canvas, "get_renderer", None)
    renderer = get_renderer() if get_renderer else None  # no renderer (some backends): labels may overlap
    step = fontsize + 2
    places = [(4, 3, "left"), (-4, 3, "right"), (4, -step, "left"), (-4, -step, "right")]
    places += [(dx, -step * line, ha) for line in range(2, len(points) + 2) for dx, ha in ((4, "left"), (-4, "right"))]
    placed = []
    for label, (x, y) in points.items():
        for dx, dy, ha in places:
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha)
            if renderer is None:
                break
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()
        else:
            ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=fontsize)
    return ax
