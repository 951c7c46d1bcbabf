"""Student copies of the chapters: solutions replaced by empty exercise cells, outputs cleared.

Solutions live in code cells tagged ``hide-input`` whose source starts with ``# Solution``: the
book folds them away and the tests run them. For a hand-out without them::

    python -m attn_course.handout notebooks/*.ipynb --out handouts/
"""

import argparse
from pathlib import Path

import nbformat

SOLUTION_PREFIX = "# Solution"
STUDENT_CELL = (
    "# Your solution here: define what the checker in the next cell uses,\n"
    "# then run the checker.\n"
)


def is_solution(cell):
    """A solution cell: a code cell tagged ``hide-input`` whose source starts with '# Solution'."""
    return (cell.cell_type == "code" and cell.source.startswith(SOLUTION_PREFIX)
            and "hide-input" in cell.metadata.get("tags", []))


def strip_solutions(notebook):
    """Return a copy of ``notebook`` with each solution cell emptied and every output cleared."""
    student = nbformat.from_dict(notebook)
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        if is_solution(cell):
            cell.source = cell.source.splitlines()[0] + " goes here.\n" + STUDENT_CELL
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "hide-input"]
        cell.outputs, cell.execution_count = [], None
    return student


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the student copies")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file (.ipynb).")
        notebook = nbformat.read(path, as_version=4)
        count = sum(is_solution(cell) for cell in notebook.cells)
        nbformat.write(strip_solutions(notebook), args.out / path.name)
        print(f"{path.name}: {count} solution cell(s) removed -> {args.out / path.name}")


if __name__ == "__main__":
    main()
