"""The study's results files: one CSV per grid, one row per run, appended and flushed run by run.

A file is only ever appended to. Reading checks it whole first (header, field counts, grid
name, duplicate runs), and any problem is a :class:`ResultsFileError` naming the file, the line
and what is wrong; nothing is rewritten to repair it.
"""

import csv
import io
import os
from importlib import resources
from pathlib import Path

from .settings import UnknownNameError, definition

# The columns of every results file, in order. ``*_curve`` columns hold one value per epoch,
# separated by spaces. Scores of the gates are empty for models without spatial gates. For the
# segmentation grid, ``test_accuracy`` is the pixel accuracy and ``test_miou`` the mean IoU
# (empty for classification); Grad-CAM columns are empty there. ``test_dice`` (the attention-gates
# grid) and ``test_ap50`` / ``test_ap`` (the detection grid, whose ``test_miou`` is the mean box
# IoU and ``test_accuracy`` the class accuracy) are empty for the other grids.
COLUMNS = (
    "grid", "setting", "mechanism", "budget", "seed", "definition",
    "test_accuracy", "test_miou", "test_dice", "test_ap50", "test_ap", "final_train_loss",
    "test_accuracy_curve", "train_loss_curve",
    "train_seconds", "params", "mflops",
    "gate_pointing_game", "gate_energy_in_box", "gradcam_pointing_game", "gradcam_energy_in_box",
    "torch", "device", "cpu", "threads", "commit", "dirty", "finished_utc",
)
KEY = ("setting", "mechanism", "budget", "seed")
INTEGER_COLUMNS = ("seed", "params", "threads")
FLOAT_COLUMNS = ("test_accuracy", "test_miou", "test_dice", "test_ap50", "test_ap", "final_train_loss", "train_seconds",
                 "mflops", "gate_pointing_game",
                 "gate_energy_in_box", "gradcam_pointing_game", "gradcam_energy_in_box")


class ResultsFileError(ValueError):
    """A results file that cannot be read as the study wrote it; the message says where and why."""


def results_path(grid, directory="results"):
    """Where a grid's results live: ``<directory>/<grid>.csv``."""
    return Path(directory) / f"{grid}.csv"


def packaged_results(grid):
    """The committed results of ``grid`` shipped inside the package (what a chapter reads, in Colab too)."""
    return resources.files("attn_course.results").joinpath(f"{grid}.csv")


def _parse(row, where):
    parsed = dict(row)
    try:
        for column in INTEGER_COLUMNS:
            parsed[column] = int(row[column])
        for column in FLOAT_COLUMNS:
            parsed[column] = float(row[column]) if row[column] != "" else float("nan")
        for column in ("test_accuracy_curve", "train_loss_curve"):
            parsed[column] = [float(v) for v in row[column].split()]
    except ValueError as error:
        raise ResultsFileError(f"{where}: a value does not parse ({error}).") from None
    parsed["dirty"] = row["dirty"] == "True"
    return parsed


def read_results(path, grid=None, check_definitions=True):
    """Read and check a results file; return its rows as dicts with numbers parsed.

    Args:
        path: a path, or a :mod:`importlib.resources` traversable.
        grid: if given, every row must belong to this grid.
        check_definitions: refuse stale rows (below). The runner turns it off only to see which
            runs a file holds while it works, so that a process started before a new model was
            added does not stop at that model's rows; every reader of the numbers keeps it on.

    Raises:
        ResultsFileError: a missing or wrong header, a row with too few or too many fields (a
            truncated write), a row of another grid, the same run twice, or a stale row: one
            computed with another definition of its setting, model or budget than
            :mod:`attn_course.study.settings` gives now (see :func:`~attn_course.study.settings.definition`).
    """
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{name}: no such results file. Run the grid first "
                               f"(python -m attn_course.study run GRID).") from None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        raise ResultsFileError(f"{name}: the file is empty; it should start with the header {','.join(COLUMNS)}.")
    if tuple(lines[0]) != COLUMNS:
        raise ResultsFileError(f"{name}: the header is {','.join(lines[0])!r}, not the study's columns "
                               f"{','.join(COLUMNS)!r}. Was it written by another version, or by hand?")
    if text and not text.endswith("\n"):
        raise ResultsFileError(f"{name}: the last line is cut short (no line end): a run was interrupted "
                               f"while it was written. Remove the incomplete last line by hand, then resume.")
    rows, seen = [], set()
    for number, fields in enumerate(lines[1:], start=2):
        where = f"{name}, line {number}"
        if len(fields) != len(COLUMNS):
            raise ResultsFileError(f"{where}: {len(fields)} fields, expected {len(COLUMNS)}: the row is "
                                   f"truncated or was edited. Fix or remove that line by hand.")
        row = _parse(dict(zip(COLUMNS, fields)), where)
        if grid is not None and row["grid"] != grid:
            raise ResultsFileError(f"{where}: a row of grid {row['grid']!r} in the file of grid {grid!r}.")
        key = tuple(row[k] for k in KEY)
        if key in seen:
            raise ResultsFileError(f"{where}: the run {dict(zip(KEY, key))} appears twice.")
        seen.add(key)
        if check_definitions:
            _check_definition(row, where)
        rows.append(row)
    return rows


def _check_definition(row, where):
    try:
        now = definition(row["setting"], row["mechanism"], row["budget"])
    except UnknownNameError as error:
        raise ResultsFileError(f"{where}: {error} The study no longer defines this run; remove the row.") from None
    if row["definition"] != now:
        raise ResultsFileError(
            f"{where}: the run {row['mechanism']} / {row['setting']} / {row['budget']} / seed {row['seed']} was "
            f"computed with another definition of its setting, model or budget (stored {row['definition']}, "
            f"attn_course.study.settings now gives {now}), so its numbers are not those of the study as "
            f"defined now. Remove the file's stale rows (or the file) and run the grid again.")


def _format(value):
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"  # NaN (no such score) is an empty cell
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:.6g}" for v in value)
    return str(value)


def as_stored(value):
    """``value`` as a results file stores it (6 significant digits): compare recomputed values in this form."""
    return float(_format(float(value)))


def append_result(path, row):
    """Append one run to ``path`` (creating it with the header) and flush it to disk at once."""
    append_results(path, [row])


def append_results(path, rows):
    """Append several rows to ``path`` together: one write, then flushed to disk (the shift grid's
    rows of one training). A crash within the write leaves a cut-short last line, which
    :func:`read_results` refuses by name; the runner completes a set of rows found incomplete."""
    path = Path(path)
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"append_result: the row lacks the columns {missing}.")
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if new:
        writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_format(row[c]) for c in COLUMNS])
    with open(path, "a", newline="", encoding="utf-8") as file:
        file.write(text.getvalue())
        file.flush()
        os.fsync(file.fileno())
