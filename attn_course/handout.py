"""Student copies of the chapters (solutions removed) and an answer key (solutions kept, executed fresh).

Solutions live in code cells tagged ``hide-input`` whose source starts with ``# Solution``: the
book folds them away and the tests run them. For a hand-out without them, and a separate answer
key whose outputs come from running today's code::

    python -m attn_course.handout notebooks/*.ipynb --out handouts/                    # student copies
    python -m attn_course.handout notebooks/*.ipynb --out handouts/ --answers answers/  # and the key
    python -m attn_course.handout notebooks/*.ipynb --answers answers/                 # the key only

The command checks every input and every output path before it writes anything, and never
writes over one of its inputs or over a notebook that still holds solutions. The answer key is
executed first, every notebook in its own kernel from the notebook's folder (so relative paths
work), and written only if every notebook ran: a failing cell stops the command with the
notebook, the cell and the error, and nothing at all is written (neither key nor student copies).
The key never overwrites a file, and never goes into the folder of the student copies.
"""

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import nbformat

SOLUTION_PREFIX = "# Solution"
STUDENT_CELL = (
    "# Your solution here: define what the checker in the next cell uses,\n"
    "# then run the checker.\n"
)
_SOLUTION_LINE = re.compile(r"^\s*#\s*solution\b", re.IGNORECASE | re.MULTILINE)
# Written into the metadata of every answer key, so that a later call can tell a key from a chapter.
KEY_METADATA = "attn_course_answer_key"


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
    problems, plan = [], []
    for path, target, notebook in _inputs(
            notebooks, out, problems, "both copies", "make one hand-out folder per input folder",
            "the student copy of {path} would overwrite {target}, one of the inputs, and its solutions would be "
            "lost: choose another --out folder, such as handouts/."):
        if target.is_file() and _holds_solutions(target):
            problems.append(f"{target} exists and holds solution cells: it is not a hand-out, so it is not "
                            f"overwritten. Choose another --out folder, or remove it yourself.")
            continue
        plan.append((path, target, notebook))
    if problems:
        raise ValueError("nothing was written:\n  " + "\n  ".join(problems))
    return plan


def _inputs(notebooks, folder, problems, both, one_folder_each, overwrites):
    """Yield ``(source, target in folder, notebook)`` for every input that can be written to ``folder``.

    The checks both tools share: a notebook file, no two inputs of one file name, a target that is not
    an input, a readable notebook. Each failure is appended to ``problems`` (``both``,
    ``one_folder_each`` and ``overwrites``, with ``{path}`` and ``{target}``, word the messages) and
    that input is skipped.
    """
    names, sources = {}, {Path(path).resolve() for path in notebooks}
    for path in map(Path, notebooks):
        if path.suffix != ".ipynb" or not path.is_file():
            problems.append(f"{path} is not a notebook file (.ipynb).")
            continue
        if path.name in names:
            problems.append(f"{names[path.name]} and {path} have the same file name, so {both} would be "
                            f"written to {folder / path.name}: {one_folder_each}.")
            continue
        names[path.name] = path
        target = folder / path.name
        if target.resolve() in sources:
            problems.append(overwrites.format(path=path, target=target))
            continue
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception as error:  # any reading or JSON error: report it with the others
            problems.append(f"{path} could not be read as a notebook: {error}")
            continue
        yield path, target, notebook


def _holds_solutions(path):
    try:
        return any(is_solution(cell) for cell in nbformat.read(path, as_version=4).cells)
    except Exception:  # not a readable notebook: not ours to overwrite either
        return True


def _read_or_none(path):
    try:
        return nbformat.read(path, as_version=4)
    except Exception:
        return None


def is_student_copy(notebook):
    """A notebook this module wrote as a student copy: a code cell ends with the empty exercise text."""
    return any(cell.cell_type == "code" and cell.source.endswith(STUDENT_CELL) for cell in notebook.cells)


def is_answer_key(notebook):
    """A notebook this module wrote as an answer key (marked in its metadata)."""
    return bool(notebook.metadata.get(KEY_METADATA))


def plan_answers(notebooks, answers, out=None):
    """Check the inputs and the answer-key folder; return ``[(source, target, notebook), ...]``.

    Raises a ValueError naming every problem before anything is written or executed: what
    :func:`plan_handouts` refuses for its inputs, an answer-key folder that is a file, that is the
    folder of the student copies (``out``) or already holds student copies, and a target that
    exists (the key never overwrites a file: remove the old key yourself or choose a new folder).
    """
    answers = Path(answers)
    if answers.exists() and not answers.is_dir():
        raise ValueError(f"--answers {answers} is a file, not a folder: name a folder for the answer key.")
    problems, plan = [], []
    if out is not None and Path(out).resolve() == answers.resolve():
        problems.append(f"--answers and --out are the same folder ({answers}): the answer key must not sit "
                        f"beside the student copies. Choose another folder, such as answers/.")
    elif answers.is_dir():
        copies = sorted(p.name for p in answers.glob("*.ipynb")
                        if (nb := _read_or_none(p)) is not None and is_student_copy(nb))
        if copies:
            problems.append(f"{answers} holds student copies ({', '.join(copies)}): the answer key must not sit "
                            f"beside them. Choose another folder for --answers.")
    for path, target, notebook in _inputs(
            notebooks, answers, problems, "both keys", "make one answer-key folder per input folder",
            "the answer key of {path} would overwrite {target}, one of the inputs: choose another --answers "
            "folder, such as answers/."):
        if is_student_copy(notebook):
            problems.append(f"{path} is a student copy (its solutions were removed): make the key from the "
                            f"chapter itself.")
            continue
        if target.exists():
            problems.append(f"{target} exists, and the answer key never overwrites a file: remove the old key "
                            f"yourself, or choose another --answers folder.")
            continue
        plan.append((path, target, notebook))
    if problems:
        raise ValueError("nothing was written:\n  " + "\n  ".join(problems))
    return plan


class ExecutionFailed(RuntimeError):
    """A notebook of the answer key did not run; the message names the notebook and the cell."""


def execute_answer_key(notebook, path, kernel_name="python3", timeout=600):
    """Return a copy of ``notebook`` with its solutions, outputs cleared, executed fresh in a new kernel.

    The kernel starts in the notebook's folder (``path``'s parent), so relative paths resolve as
    they do in Jupyter. Raises :class:`ExecutionFailed` naming the notebook, the cell (index, id and
    first line) and the error when a cell fails, times out or the kernel dies.
    """
    try:
        from nbclient import NotebookClient
    except ImportError as error:  # nbclient comes with the notebooks extra
        raise ExecutionFailed("the answer key executes the notebooks with nbclient, which is not installed: "
                              "pip install 'attn_course[notebooks]' (or pip install nbclient ipykernel).") from error
    path = Path(path)
    key = nbformat.from_dict(notebook)
    for cell in key.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    current = {"index": None}
    client = NotebookClient(key, kernel_name=kernel_name, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}},
                            on_cell_start=lambda cell, cell_index: current.update(index=cell_index))
    try:
        client.execute()
    except Exception as error:  # CellExecutionError, CellTimeoutError, DeadKernelError, a missing kernel
        index = current["index"]
        if index is None:
            raise ExecutionFailed(f"{path}: the kernel {kernel_name!r} did not start: "
                                  f"{type(error).__name__}: {error}") from error
        cell = key.cells[index]
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else "(empty)"
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        what = f"{errors[0].ename}: {errors[0].evalue}" if errors else f"{type(error).__name__}: {error}"
        raise ExecutionFailed(f"{path}, cell {index} (id {cell.get('id', '?')}, {first!r}) failed: "
                              f"{what.strip()}") from error
    key.metadata[KEY_METADATA] = True
    return key


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb)")
    parser.add_argument("--out", type=Path, help="folder for the student copies (solutions removed)")
    parser.add_argument("--answers", type=Path,
                        help="folder for the answer key (solutions kept, executed fresh); never the --out folder")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel that executes the answer key")
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell of the answer key may take")
    args = parser.parse_args(argv)
    if args.out is None and args.answers is None:
        parser.error("name --out (student copies), --answers (answer key) or both.")
    try:
        plan = plan_handouts(args.notebooks, args.out) if args.out is not None else []
        key_plan = plan_answers(args.notebooks, args.answers, args.out) if args.answers is not None else []
        if args.out is not None and Path(args.out).is_dir():
            keys = sorted(p.name for p in Path(args.out).glob("*.ipynb")
                          if (nb := _read_or_none(p)) is not None and is_answer_key(nb))
            if keys:
                raise ValueError(f"nothing was written:\n  {args.out} holds an answer key ({', '.join(keys)}): "
                                 f"the student copies must not sit beside it. Choose another --out folder.")
    except ValueError as error:
        parser.error(str(error))
    # The answer key runs first, all of it: a failure leaves nothing written, key or student copy.
    keys, failures = [], []
    for path, target, notebook in key_plan:
        start = time.perf_counter()
        print(f"{path.name}: executing the answer key ...", flush=True)
        try:
            keys.append((path, target, execute_answer_key(notebook, path, args.kernel, args.timeout)))
        except ExecutionFailed as error:
            failures.append(str(error))
            continue
        print(f"{path.name}: executed in {time.perf_counter() - start:.1f} s", flush=True)
    if failures:
        print("error: nothing was written: the answer key did not run:\n  " + "\n  ".join(failures),
              file=sys.stderr)
        raise SystemExit(1)
    if args.out is not None:
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
    if args.answers is not None:
        args.answers.mkdir(parents=True, exist_ok=True)
    for path, target, key in keys:
        with open(target, "x", encoding="utf-8") as stream:  # "x": never over a file made since the check
            nbformat.write(key, stream)
        count = sum(is_solution(cell) for cell in key.cells)
        print(f"{path.name}: answer key with {count} solution cell(s), executed -> {target}")


if __name__ == "__main__":
    main()
