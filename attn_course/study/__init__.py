"""The study: seeded multi-run experiments that the chapters' comparisons come from.

- :mod:`.settings` the data settings, training budgets, the zoo table and the named grids;
- :mod:`.runner` one run, and grids of runs appended to ``results/<grid>.csv`` resumably;
- :mod:`.results` reading and writing those files, with checks;
- :mod:`.report` means with Student-t 95% intervals and paired differences from the plain ResNet.

The command line is ``python -m attn_course.study --help``. The committed results ship with the
package (``attn_course.results``), so a chapter opened in Colab reads the same numbers.
"""

from .plots import label_points, plot_accuracy_cost, plot_by_training_size, plot_effects, plot_paired_differences
from .report import MIN_SEEDS, format_report, mean_interval, paired_differences, summarise
from .results import COLUMNS, ResultsFileError, packaged_results, read_results, results_path
from .runner import build_model, distinct_training_glyphs, run_grid, run_one, run_shift
from .settings import (
    BUDGETS,
    GRIDS,
    MODELS,
    SEGMENTATION_HEADS,
    SETTINGS,
    VARIANTS,
    ZOO,
    Budget,
    Grid,
    Setting,
    UnknownNameError,
    ZooEntry,
    definition,
    get_budget,
    get_grid,
    get_model,
    get_setting,
    missing_from_zoo,
)
from .tables import (
    change_from_setting,
    compare_with_study,
    comparison_table,
    describe_effect,
    describe_verdicts,
    effect_table,
    pareto_front,
    study_verdict,
    verdicts,
)


def load_results(grid, missing_ok=False):
    """The committed rows of ``grid`` (the package's copy of ``results/<grid>.csv``), checked.

    ``missing_ok=True`` gives no rows, instead of an error, for a grid that has no results yet.
    """
    get_grid(grid)
    if missing_ok and not packaged_results(grid).is_file():
        return []
    return read_results(packaged_results(grid), grid)


__all__ = ["SEGMENTATION_HEADS", "BUDGETS", "GRIDS", "MODELS", "SETTINGS", "VARIANTS", "ZOO", "COLUMNS",
           "Budget", "Grid", "Setting",
           "ZooEntry", "UnknownNameError", "ResultsFileError", "get_budget", "get_grid", "get_model", "get_setting",
           "missing_from_zoo", "definition", "MIN_SEEDS", "build_model", "run_one", "run_shift", "run_grid",
           "distinct_training_glyphs", "read_results",
           "results_path",
           "packaged_results", "load_results", "summarise", "paired_differences", "mean_interval", "format_report",
           "effect_table", "describe_effect", "study_verdict", "compare_with_study", "plot_paired_differences",
           "comparison_table", "pareto_front", "change_from_setting", "verdicts", "describe_verdicts",
           "plot_effects", "plot_by_training_size", "plot_accuracy_cost", "label_points"]
