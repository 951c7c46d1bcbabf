"""What a chapter shows of the study: a mechanism's rows as a table, and sentences that say what they support.

A chapter calls, for its mechanism::

    rows = load_results("zoo")
    Markdown(effect_table(rows, "se"))                  # both settings, both budgets, with intervals
    sentence = describe_effect(rows, "se", "default", "long")
    glue("se_default_long", sentence, display=False)   # and print(sentence) for Jupyter and Colab

Every number comes from the committed rows, so the prose cannot drift from them; where the study
has fewer runs than planned, the sentences say how many there are.
"""

from .report import MIN_SEEDS, paired_differences, summarise

SETTING_ORDER = ("default", "headroom")
BUDGET_ORDER = ("chapter", "long", "segmentation")


def _present(rows, key, order):
    """The values of ``key`` in ``rows``: those of ``order`` first, in its order, then any others."""
    values = {row[key] for row in rows}
    return [v for v in order if v in values] + sorted(values - set(order))


def _points(value):
    text = f"{100 * value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text  # no signed zero


def _cell(summary):
    if summary is None:
        return "not run yet"
    if summary["n"] < MIN_SEEDS:  # an interval from 2 seeds is too wide to read (it can pass 100 %)
        return f"{100 * summary['mean']:.1f} (n = {summary['n']})"
    return f"{100 * summary['mean']:.1f} [{100 * summary['ci_low']:.1f}, {100 * summary['ci_high']:.1f}]"


def _lookup(rows, metric, baseline):
    summaries = {(s["setting"], s["budget"], s["mechanism"]): s for s in summarise(rows, metric)}
    diffs = {(d["setting"], d["budget"], d["mechanism"]): d for d in paired_differences(rows, metric, baseline)}
    return summaries, diffs


def effect_table(rows, mechanisms, baseline="resnet", metric="test_accuracy"):
    """A Markdown table: per setting and budget, the baseline's and each mechanism's ``metric``
    (mean and 95% interval over seeds, in %) and the paired difference in points, with its verdict."""
    mechanisms = [mechanisms] if isinstance(mechanisms, str) else list(mechanisms)
    summaries, diffs = _lookup(rows, metric, baseline)
    header = ["setting", "budget", "seeds", f"{baseline} (%)"]
    for m in mechanisms:
        header += [f"{m} (%)", f"{m} − {baseline} (points)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting in _present(rows, "setting", SETTING_ORDER):
        for budget in _present(rows, "budget", BUDGET_ORDER):
            base = summaries.get((setting, budget, baseline))
            if base is None and not any((setting, budget, m) in summaries for m in mechanisms):
                continue
            cells = [setting, budget, str(base["n"] if base else 0), _cell(base)]
            for m in mechanisms:
                d = diffs.get((setting, budget, m))
                cells.append(_cell(summaries.get((setting, budget, m))))
                if d is None or d["n"] < MIN_SEEDS:
                    cells.append("–")
                else:
                    cells.append(f"{_points(d['mean'])} [{_points(d['ci_low'])}, {_points(d['ci_high'])}]: "
                                 f"{d['verdict']}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_effect(rows, mechanism, setting, budget, name=None, baseline="resnet", metric="test_accuracy",
                    what="test accuracy", baseline_label=None):
    """One sentence on ``mechanism``'s paired difference from ``baseline`` in one setting and budget."""
    name = name or mechanism
    _, diffs = _lookup(rows, metric, baseline)
    d = diffs.get((setting, budget, mechanism))
    where = f"in the {setting} setting at the {budget} budget"
    if d is None or d["n"] < MIN_SEEDS:
        n = 0 if d is None else d["n"]
        return f"The study has {n} paired run{'s' if n != 1 else ''} of {name} {where}: too few to say anything yet."
    interval = f"{_points(d['mean'])} points (95% CI {_points(d['ci_low'])} to {_points(d['ci_high'])}, {d['n']} seeds)"
    label = baseline_label or ("the plain ResNet" if baseline == "resnet" else baseline)
    verdict = {"no measurable difference": "no measurable difference",
               "better": f"better than {label}", "worse": f"worse than {label}"}[d["verdict"]]
    return f"{where[0].upper()}{where[1:]}, {name} changes {what} by {interval}: {verdict}."


def _where(cells):
    """``[(setting, budget), ...]`` as prose: "the default setting at the chapter and long budgets"."""
    budgets = {}
    for setting, budget in cells:
        budgets.setdefault(setting, []).append(budget)
    return " and ".join(f"the {s} setting at the {' and '.join(bs)} budget{'s' * (len(bs) > 1)}"
                        for s, bs in budgets.items())


def study_verdict(rows, mechanism, name=None, baseline="resnet", metric="test_accuracy", paper="the paper"):
    """A paragraph on what the study supports for ``mechanism``, built from its verdicts, not typed.

    It says where the paired difference from ``baseline`` is better, worse or not measurable, and
    how that compares with the direction of ``paper``'s gains; with fewer than
    :data:`~attn_course.study.report.MIN_SEEDS` paired seeds
    anywhere it says that nothing can be concluded yet.
    """
    name = name or mechanism
    label = "the plain ResNet" if baseline == "resnet" else baseline
    verdicts = {(d["setting"], d["budget"]): d["verdict"] for d in paired_differences(rows, metric, baseline)
                if d["mechanism"] == mechanism and d["n"] >= MIN_SEEDS}
    if not verdicts:
        return (f"The study has too few paired runs of {name} yet to say anything, for or against {paper}; "
                f"a single run cannot settle it either.")
    found = {v: [cell for cell, x in verdicts.items() if x == v] for v in ("better", "worse",
                                                                          "no measurable difference")}
    parts = []
    if found["better"]:
        parts.append(f"{name} is better than {label} in {_where(found['better'])}: the direction of "
                     f"{paper}'s gains.")
    if found["worse"]:
        parts.append(f"{name} is worse than {label} in {_where(found['worse'])}, against {paper}. A "
                     f"three-stage network of 16 to 64 channels on upscaled 8×8 digits, trained briefly, is "
                     f"far from the paper's setting: this says {name} does not help here, not that {paper} "
                     f"is wrong.")
    if found["no measurable difference"]:
        parts.append(f"The study finds no measurable difference in {_where(found['no measurable difference'])}: "
                     f"the interval straddles zero, so any effect there is smaller than its half-width.")
    return " ".join(parts)
