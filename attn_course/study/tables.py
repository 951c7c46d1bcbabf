"""What a chapter shows of the study: a mechanism's rows as a table, and sentences that say what they support.

A chapter calls, for its mechanism::

    rows = load_results("zoo")
    Markdown(effect_table(rows, "se"))                  # both settings, both budgets, with intervals
    sentence = describe_effect(rows, "se", "default", "long")
    glue("se_default_long", sentence, display=False)   # and print(sentence) for Jupyter and Colab

Every number comes from the committed rows, so the prose cannot drift from them; where the study
has fewer runs than planned, the sentences say how many there are.
"""

from .report import CROSS_MACHINE_TOLERANCE, MIN_SEEDS, paired_differences, summarise

SETTING_ORDER = ("default", "headroom")
BUDGET_ORDER = ("chapter", "long", "segmentation")


def _present(rows, key, order):
    """The values of ``key`` in ``rows``: those of ``order`` first, in its order, then any others."""
    values = {row[key] for row in rows}
    return [v for v in order if v in values] + sorted(values - set(order))


def _signed(value, digits=1, bound=False):
    """``value`` with its sign and ``digits`` decimals. An interval's ``bound`` gets more decimals
    where it would read 0 but is not: +0.04 must not print as 0.0 next to a verdict that says the
    interval excludes 0. Never a signed zero."""
    for places in range(digits, digits + (3 if bound else 1)):
        text = f"{value:+.{places}f}"
        if float(text) != 0:
            return text
    return f"{0:.{digits}f}"  # no signed zero


def _points(value, bound=False):
    return _signed(100 * value, bound=bound)


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
                    cells.append(f"{_points(d['mean'])} [{_points(d['ci_low'], True)}, {_points(d['ci_high'], True)}]: "
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
    interval = (f"{_points(d['mean'])} points (95% CI {_points(d['ci_low'], True)} to {_points(d['ci_high'], True)}, "
                f"{d['n']} seeds)")
    label = baseline_label or ("the plain ResNet" if baseline == "resnet" else baseline)
    verdict = {"no measurable difference": f"no measurable difference from {label}",
               "better": f"better than {label}", "worse": f"worse than {label}"}[d["verdict"]]
    return f"{where[0].upper()}{where[1:]}, {name} changes {what} by {interval}: {verdict}."


def compare_with_study(run, stored):
    """A sentence comparing a chapter's run with the study's stored rows of the same models and seed.

    ``run`` and ``stored`` map a model's name to its test accuracy (``stored`` may lack models the
    study has not run). The study's rows used one CPU thread; a chapter usually runs with more, or
    on a GPU, and the difference that makes is named for what it is.
    """
    if not run or any(name not in stored for name in run):
        return "The study has no stored run of every model here yet to compare this run with."
    differ = max(abs(run[name] - stored[name]) for name in run)
    if differ < 1e-6:
        return ("The study's stored runs give the same numbers (to the precision the file stores): the same "
                "computation on the kind of machine that made them.")
    text = f"The study's stored runs of this seed differ from this run by up to {100 * differ:.1f} points"
    if differ <= CROSS_MACHINE_TOLERANCE + 1e-9:  # 0.913 - 0.903 is a hair above 0.01 in floating point
        return (text + ": the same computation, rounded differently with another thread count, machine or "
                "device (the study's rows used one CPU thread).")
    return (text + f", more than the {100 * CROSS_MACHINE_TOLERANCE:.0f} point that rounding alone usually "
            "moves a run. Over a few epochs a tiny rounding difference (the study's rows used one CPU thread, "
            "this run perhaps more, or a GPU) can grow the way a change of seed does: one reason the verdicts "
            "below rest on several seeds, not on this run.")


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
    mine = {(d["setting"], d["budget"]): d for d in paired_differences(rows, metric, baseline)
            if d["mechanism"] == mechanism and d["n"] >= MIN_SEEDS}
    if not mine:
        return (f"The study has too few paired runs of {name} yet to say anything, for or against {paper}; "
                f"a single run cannot settle it either.")
    found = {v: [cell for cell, d in mine.items() if d["verdict"] == v]
             for v in ("better", "worse", "no measurable difference")}
    parts = []
    if found["better"]:
        parts.append(f"{name} is better than {label} in {_where(found['better'])}: the direction of "
                     f"{paper}'s gains.")
    if found["worse"]:
        parts.append(f"{name} is worse than {label} in {_where(found['worse'])}, against {paper}. A "
                     f"three-stage network of 16 to 64 channels on upscaled 8×8 digits, trained briefly, is "
                     f"far from the paper's setting: this says {name} does not help there, not that {paper} "
                     f"is wrong.")
    if found["no measurable difference"]:
        cells = found["no measurable difference"]
        low, high = min(mine[cell]["ci_low"] for cell in cells), max(mine[cell]["ci_high"] for cell in cells)
        parts.append(f"The study finds no measurable difference in {_where(cells)}: "
                     f"{'each interval straddles' if len(cells) > 1 else 'the interval straddles'} zero, so the rows "
                     f"cannot tell a gain from a loss, and effects "
                     f"from {_points(low, True)} to {_points(high, True)} points remain compatible with them.")
    return " ".join(part[0].upper() + part[1:] for part in parts)  # "the non-local ResNet is ..." starts a sentence


# --- many models side by side (chapter 13, the zoo) -------------------------------------------------


def _size_key(name):
    """Budgets such as ``data-250``, ``data-8000`` by their number, so that 250 comes before 1000."""
    prefix, _, number = name.rpartition("-")
    return (prefix, int(number)) if number.isdigit() else (name, -1)


def _columns(rows):
    """The (setting, budget) pairs present in ``rows``: study order first, others by name (budgets by size)."""
    settings = _present(rows, "setting", SETTING_ORDER)
    budgets = [b for b in BUDGET_ORDER if b in {r["budget"] for r in rows}]
    budgets += sorted({r["budget"] for r in rows} - set(budgets), key=_size_key)
    present = {(r["setting"], r["budget"]) for r in rows}
    return [(s, b) for s in settings for b in budgets if (s, b) in present]


def _interval(mean, low, high, scale, digits, signed=False):
    if signed:
        return (f"{_signed(scale * mean, digits)} [{_signed(scale * low, digits, bound=True)}, "
                f"{_signed(scale * high, digits, bound=True)}]")
    return f"{scale * mean:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def comparison_table(rows, models, metric="test_accuracy", baseline="resnet", difference=False, scale=100.0,
                     digits=1, labels=None):
    """A Markdown table of many models: one line per model, one column per (setting, budget) in ``rows``.

    Each cell is the mean of ``metric`` over seeds with its 95% interval, times ``scale`` (accuracy
    in %), or, with ``difference=True``, the paired difference from ``baseline`` with its interval,
    followed by "better" or "worse" where the interval excludes 0 (nothing where it straddles 0).
    Fewer than :data:`~attn_course.study.report.MIN_SEEDS` seeds give the mean and n only; a model
    with no row there reads "not run yet". ``labels`` maps model names to the names shown.
    """
    models = [models] if isinstance(models, str) else list(models)
    labels = labels or {}
    summaries, diffs = _lookup(rows, metric, baseline)
    columns = _columns(rows)
    one_setting = len({s for s, _ in columns}) == 1
    one_budget = len({b for _, b in columns}) == 1
    names = [b if one_setting else s if one_budget else f"{s}, {b}" for s, b in columns]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(columns)]
    for model in models:
        cells = []
        for setting, budget in columns:
            if difference:
                d = diffs.get((setting, budget, model))
                if model == baseline:
                    cells.append("(baseline)")
                elif d is None:
                    cells.append("not run yet")
                elif d["n"] < MIN_SEEDS:
                    cells.append(f"{scale * d['mean']:+.{digits}f} (n = {d['n']})")
                else:
                    verdict = {"better": " better", "worse": " worse"}.get(d["verdict"], "")
                    cells.append(_interval(d["mean"], d["ci_low"], d["ci_high"], scale, digits, signed=True) + verdict)
            else:
                s = summaries.get((setting, budget, model))
                if s is None:
                    cells.append("not run yet")
                elif s["n"] < MIN_SEEDS:
                    cells.append(f"{scale * s['mean']:.{digits}f} (n = {s['n']})")
                else:
                    cells.append(_interval(s["mean"], s["ci_low"], s["ci_high"], scale, digits))
        lines.append(f"| {labels.get(model, model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto_front(points):
    """The names of ``points`` (name -> (cost, score)) that no other point dominates, cheapest first.

    A point dominates another when it costs no more and scores at least as much, and is strictly
    better in one of the two. Points with a NaN are left out.
    """
    points = {name: (float(c), float(s)) for name, (c, s) in points.items() if c == c and s == s}
    front = [name for name, (c, s) in points.items()
             if not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in points.values())]
    return sorted(front, key=lambda name: (points[name][0], -points[name][1]))


def change_from_setting(rows, reference="default", metric="test_accuracy"):
    """Copies of ``rows`` whose ``metric`` is its change from the ``reference`` setting's row of the same
    model, budget and seed (the ``shift`` grid: what each model loses on a shifted test set).

    The reference setting's own rows, and rows without a reference row, are left out. Paired
    differences of the result compare each model's change with the baseline's, seed by seed.
    """
    ref = {(r["mechanism"], r["budget"], r["seed"]): r[metric] for r in rows if r["setting"] == reference}
    out = []
    for row in rows:
        key = (row["mechanism"], row["budget"], row["seed"])
        if row["setting"] != reference and key in ref:
            out.append({**row, metric: row[metric] - ref[key]})
    return out


def verdicts(rows, setting, budget, models=None, baseline="resnet", metric="test_accuracy"):
    """``{"better": [...], "worse": [...], "no measurable difference": [...], "too few seeds": [...]}``:
    the models (all in ``rows``, or ``models`` in their order) by the verdict of their paired difference."""
    found = {d["mechanism"]: d["verdict"] for d in paired_differences(rows, metric, baseline)
             if (d["setting"], d["budget"]) == (setting, budget)}
    order = list(models) if models is not None else sorted(found)
    out = {v: [] for v in ("better", "worse", "no measurable difference", "too few seeds")}
    for model in order:
        if model in found:
            out[found[model]].append(model)
    return out


def describe_verdicts(rows, setting, budget, models=None, labels=None, baseline="resnet", metric="test_accuracy",
                      what="mechanism"):
    """One sentence counting the models better than, worse than or not measurably different from the baseline."""
    labels = labels or {}
    found = verdicts(rows, setting, budget, models, baseline, metric)
    total = sum(len(v) for v in found.values())
    where = f"In the {setting} setting at the {budget} budget"
    if total == 0:
        return f"{where}, the study has no paired runs yet."
    label = "the plain ResNet" if baseline == "resnet" else labels.get(baseline, baseline)
    parts = []
    for verdict, text in (("better", f"better than {label}"), ("worse", f"worse than {label}"),
                          ("no measurable difference", "no measurable difference"),
                          ("too few seeds", "too few seeds to say")):
        names = found[verdict]
        if names:
            verb = "shows" if verdict in ("no measurable difference", "too few seeds") else "is"
            verb = verb if len(names) == 1 else {"is": "are", "shows": "show"}[verb]
            if verdict == "too few seeds":
                verb = "has" if len(names) == 1 else "have"
            parts.append(f"{len(names)} {verb} {text} ({', '.join(labels.get(n, n) for n in names)})")
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{where}, of {total} {what}{'s' * (total != 1)}, {body}."
