"""Student hand-outs keep every cell but the solutions, and lose every output."""

from pathlib import Path

import nbformat
import pytest

from attn_course.handout import is_solution, main, strip_solutions

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_strip_solutions_on_every_chapter(path):
    original = nbformat.read(path, as_version=4)
    solutions = [i for i, cell in enumerate(original.cells) if is_solution(cell)]
    assert solutions, f"{path.name} has no solution cell to strip"
    student = strip_solutions(original)
    assert len(student.cells) == len(original.cells)
    for i, (before, after) in enumerate(zip(original.cells, student.cells)):
        if i in solutions:
            assert after.source.startswith("# Solution") and "goes here" in after.source
            assert len(after.source.splitlines()) == 3  # no line of the solution is left
            assert "hide-input" not in after.metadata.get("tags", [])
        else:
            assert after.source == before.source
        if after.cell_type == "code":
            assert after.outputs == [] and after.execution_count is None
    assert any(c.get("outputs") for c in original.cells if c.cell_type == "code"), "the original is untouched"


def test_command_line_writes_the_copies(tmp_path, capsys):
    main([str(NOTEBOOKS[0]), "--out", str(tmp_path / "handouts")])
    written = nbformat.read(tmp_path / "handouts" / NOTEBOOKS[0].name, as_version=4)
    assert not any(is_solution(c) and "goes here" not in c.source for c in written.cells)
    assert "solution cell(s) removed" in capsys.readouterr().out


def test_command_line_refuses_a_non_notebook(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.ipynb"), "--out", str(tmp_path)])
