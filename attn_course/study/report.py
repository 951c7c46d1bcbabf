"""Summaries of the study's rows: means with Student-t 95% intervals, and paired differences.

Over n seeds the 95% interval of a mean is ``mean +- t(0.975, n - 1) * s / sqrt(n)`` (n = 5:
t = 2.776, not 1.96). A mechanism's effect is the *paired* difference from the plain ResNet,
seed by seed: the two runs of a seed share their data and its order, and the difference cancels
what that shares. How much this narrows the interval depends on how closely the two runs follow
each other; two architectures start from different weights, and in this study the paired interval
is often no narrower than the models' own.

The metrics stored as fractions (accuracy, IoU, Dice, AP, pointing game, energy in box) cannot
leave [0, 1], but a t-interval can: :func:`summarise` clips their intervals to it.
"""

import math
import statistics
from collections import defaultdict

from scipy import stats

BASELINE = "resnet"
# Two runs of one row agree bit for bit on one CPU machine (same CPU kind, thread count and torch).
# Elsewhere, other kernels sum in another order; the rounding differences grow over training and
# move a few test predictions. Measured here between 1 and 2 threads: see results/README.md.
CROSS_MACHINE_TOLERANCE = 0.01
# A GPU does not repeat a run bit for bit: some of its kernels (cuDNN's backward passes among them)
# add in an order that changes from run to run. Two runs of one CBAM row on one H200 differed by up
# to 1.2 points of accuracy (results/README.md), like runs on two machines, but more.
GPU_TOLERANCE = 0.02


def rerun_tolerance(values, gpu=False):
    """How far a rerun of one row may land from it on another machine kind (or any GPU), given
    ``values``: the stored results of that row's model, setting and budget over its seeds.

    Rounding differences grow over training. Over a long budget they move a few test predictions
    (:data:`CROSS_MACHINE_TOLERANCE`, :data:`GPU_TOLERANCE`); over a short one they can move a run
    as far as a new seed would: chapter 07's GC run at the chapter budget ends 6.5 points from its
    row with two CPU threads instead of one. So the tolerance is the larger of the fixed one and
    the 95% range of the difference of two seeds, ``1.96 * sqrt(2) * sd``.
    """
    floor = GPU_TOLERANCE if gpu else CROSS_MACHINE_TOLERANCE
    values = [float(v) for v in values]
    if len(values) < 2:
        return floor
    return max(floor, 1.96 * math.sqrt(2) * statistics.stdev(values))


# The fewest paired seeds behind a verdict. Two seeds give an interval (t = 12.7), but one lucky
# pair decides it; from three on, the course says better, worse or no measurable difference.
MIN_SEEDS = 3


def mean_interval(values, confidence=0.95):
    """``(mean, sd, low, high, n)`` of ``values`` with a Student-t interval (NaN bounds for n < 2)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value.")
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float("nan"), float("nan"), float("nan"), n
    sd = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)  # a Python float, ready to glue
    return mean, sd, mean - half, mean + half, n


def _groups(rows, metric):
    groups = defaultdict(dict)
    for row in rows:
        value = row[metric]
        if value == value:  # skip NaN (a score the model does not have)
            groups[(row["setting"], row["budget"], row["mechanism"])][row["seed"]] = value
    return groups


# Metrics stored as fractions, in [0, 1] by construction: their intervals are clipped to it.
FRACTIONS = ("test_accuracy", "test_miou", "test_dice", "test_ap50", "test_ap", "gate_pointing_game",
             "gate_energy_in_box", "gradcam_pointing_game", "gradcam_energy_in_box")


def summarise(rows, metric="test_accuracy"):
    """One dict per (setting, budget, mechanism): n, mean, sd and the 95% interval of ``metric``
    (clipped to [0, 1] for the metrics in :data:`FRACTIONS`: a t-interval of 5 seeds near 1 can
    pass 1, a value no run can reach)."""
    out = []
    for (setting, budget, mechanism), by_seed in _groups(rows, metric).items():
        mean, sd, low, high, n = mean_interval(by_seed.values())
        if metric in FRACTIONS and n >= 2:
            low, high = max(low, 0.0), min(high, 1.0)
        out.append({"setting": setting, "budget": budget, "mechanism": mechanism, "n": n,
                    "mean": mean, "sd": sd, "ci_low": low, "ci_high": high})
    return out


def paired_differences(rows, metric="test_accuracy", baseline=BASELINE):
    """Each mechanism's difference from ``baseline``, seed by seed, with its 95% interval.

    Only seeds that both have are paired. ``verdict`` says what the interval supports:
    ``"better"`` or ``"worse"`` when it excludes 0, ``"no measurable difference"`` when it
    straddles 0, ``"too few seeds"`` below :data:`MIN_SEEDS` pairs.
    """
    groups = _groups(rows, metric)
    out = []
    for (setting, budget, mechanism), by_seed in groups.items():
        base = groups.get((setting, budget, baseline))
        if mechanism == baseline or base is None:
            continue
        seeds = sorted(set(by_seed) & set(base))
        if not seeds:
            continue
        diffs = [by_seed[s] - base[s] for s in seeds]
        mean, sd, low, high, n = mean_interval(diffs)
        if n < MIN_SEEDS:
            verdict = "too few seeds"
        elif low > 0:
            verdict = "better"
        elif high < 0:
            verdict = "worse"
        else:
            verdict = "no measurable difference"
        out.append({"setting": setting, "budget": budget, "mechanism": mechanism, "n": n, "mean": mean,
                    "sd": sd, "ci_low": low, "ci_high": high, "verdict": verdict})
    return out


def _order(rows, order, settings_order=(), budgets_order=()):
    """Rows by setting, budget and model; each in the given order, names not in it after, alphabetically."""
    def rank(names, name):
        names = list(names)
        return (names.index(name), "") if name in names else (len(names), name)
    return sorted(rows, key=lambda r: (rank(settings_order, r["setting"]), rank(budgets_order, r["budget"]),
                                       rank(order, r["mechanism"])))


def format_report(rows, metric="test_accuracy", scale=100.0, unit="points", order=(), baseline=BASELINE,
                  settings_order=(), budgets_order=()):
    """The text of ``report``: per setting and budget, every model's mean and interval, then the paired
    differences from ``baseline``. Values are multiplied by ``scale`` (accuracy in percent). Models,
    settings and budgets come in the orders given (e.g. the study's tables), others alphabetically."""
    fmt = lambda v: "   n/a" if v != v else f"{scale * v:6.2f}"  # noqa: E731
    signed = lambda v: "   n/a" if v != v else f"{scale * v:+6.2f}"  # noqa: E731
    lines = [f"{metric} in {unit if scale != 1 else 'units'}: mean, sd and Student-t 95% interval over seeds"]
    summary = _order(summarise(rows, metric), order, settings_order, budgets_order)
    diffs = {(d["setting"], d["budget"], d["mechanism"]): d for d in paired_differences(rows, metric, baseline)}
    current = None
    for row in summary:
        if (row["setting"], row["budget"]) != current:
            current = (row["setting"], row["budget"])
            lines += ["", f"setting {current[0]}, budget {current[1]}",
                      f"  {'model':15s} {'n':>2s} {'mean':>6s} {'sd':>6s} {'95% CI':>17s}   "
                      f"paired difference from {baseline}, 95% CI"]
        text = (f"  {row['mechanism']:15s} {row['n']:2d} {fmt(row['mean'])} {fmt(row['sd'])} "
                f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]")
        d = diffs.get((row["setting"], row["budget"], row["mechanism"]))
        if d is not None:
            text += (f"   {signed(d['mean'])} [{signed(d['ci_low'])}, {signed(d['ci_high'])}]"
                     f" n={d['n']}: {d['verdict']}")
        lines.append(text)
    return "\n".join(lines)
