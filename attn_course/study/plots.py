"""Plots of the study's rows; like :mod:`attn_course.viz`, each takes an axis and returns it."""

from .report import MIN_SEEDS, paired_differences
from .tables import BUDGET_ORDER, SETTING_ORDER, _present


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
