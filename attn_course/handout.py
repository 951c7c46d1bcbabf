"""Student copies of the chapters: solutions replaced by empty exercise cells, outputs cleared.

Solutions live in code cells tagged ``hide-input`` whose source starts with ``# Solution``: the
book folds them away and the tests run them. For a hand-out without them::

    python -m attn_course.handout notebooks/*.ipynb --out handouts/

The command checks every input and every output path before it writes anything, and never
writes over one of its inputs or over a notebook that still holds solutions.
"""

import argparse
import re
import sys
import warnings
from pathlib import Path

import nbformat

SOLUTION_PREFIX = "# Solution"
STUDENT_CELL = (
    "# Your solution here: define what the checker in the next cell uses,\n"
    "# then run the checker.\n"
)
_SOLUTION_LINE = re.compile(r"^\s*#\s*solution\b", re.IGNORECASE | re.MULTILINE)


def is_solution(cell):
    """A solution cell: a code cell tagged ``hide-input`` whose source, after any blank lines, starts
    with '# Solution'."""
    return (cell.cell_type == "code" and cell.source.lstrip().startswith(SOLUTION_PREFIX)
            and "hide-input" in cell.metadata.get("tags", []))


def looks_like_solution(cell):
    """A code cell with a '# Solution' comment line that :func:`is_solution` does not recognise
    (not tagged ``hide-input``, or the comment is not its first line): it would leak."""
    return (cell.cell_type == "code" and not is_solution(cell) and not cell.source.endswith(STUDENT_CELL)
            and bool(_SOLUTION_LINE.search(cell.source)))


def strip_solutions(notebook):
    """Return a copy of ``notebook`` with each solution cell emptied and every output cleared.

    Warns (``UserWarning``) about cells that look like solutions but are not marked as such:
    they are kept, so the hand-out would show them.
    """
    student = nbformat.from_dict(notebook)
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        if is_solution(cell):
            cell.source = cell.source.lstrip().splitlines()[0] + " goes here.\n" + STUDENT_CELL
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "hide-input"]
        elif looks_like_solution(cell):
            warnings.warn(f"cell {index} has a '# Solution' comment but is not a solution cell (a code cell "
                          f"tagged hide-input whose source starts with '# Solution'), so it is kept in the "
                          f"hand-out: tag it and move the comment to its first line.", UserWarning, stacklevel=2)
        cell.outputs, cell.execution_count = [], None
    return student


def plan_handouts(notebooks, out):
    """Check the inputs and the output folder; return ``[(source, target, notebook), ...]``.

    Raises a ValueError naming what is wrong before anything is written: a path that is not a
    notebook file, two inputs with the same file name, a target that is one of the inputs (the
    solutions would be lost), an output folder that is a file, or a target that exists and still
    holds solutions (an instructor's notebook, not an earlier hand-out).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: name a folder for the student copies.")
    problems, plan, names = [], [], {}
    sources = {Path(path).resolve() for path in notebooks}
    for path in map(Path, notebooks):
        if path.suffix != ".ipynb" or not path.is_file():
            problems.append(f"{path} is not a notebook file (.ipynb).")
            continue
        if path.name in names:
            problems.append(f"{names[path.name]} and {path} have the same file name, so both copies would be "
                            f"written to {out / path.name}: make one hand-out folder per input folder.")
            continue
        names[path.name] = path
        target = out / path.name
        if target.resolve() in sources:
            problems.append(f"the student copy of {path} would overwrite {target}, one of the inputs, and its "
                            f"solutions would be lost: choose another --out folder, such as handouts/.")
            continue
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception as error:  # any reading or JSON error: report it with the others
            problems.append(f"{path} could not be read as a notebook: {error}")
            continue
        if target.is_file() and _holds_solutions(target):
            problems.append(f"{target} exists and holds solution cells: it is not a hand-out, so it is not "
                            f"overwritten. Choose another --out folder, or remove it yourself.")
            continue
        plan.append((path, target, notebook))
    if problems:
        raise ValueError("nothing was written:\n  " + "\n  ".join(problems))
    return plan


def _holds_solutions(path):
    try:
        return any(is_solution(cell) for cell in nbformat.read(path, as_version=4).cells)
    except Exception:  # not a readable notebook: not ours to overwrite either
        return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the student copies")
    args = parser.parse_args(argv)
    try:
        plan = plan_handouts(args.notebooks, args.out)
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    for path, target, notebook in plan:
        count = sum(is_solution(cell) for cell in notebook.cells)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            student = strip_solutions(notebook)
        for warning in caught:
            print(f"warning: {path.name}: {warning.message}", file=sys.stderr)
        nbformat.write(student, target)
        print(f"{path.name}: {count} solution cell(s) removed -> {target}")


if __name__ == "__main__":
    main()
