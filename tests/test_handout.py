"""Student hand-outs keep every cell but the solutions, and lose every output."""

from pathlib import Path

import nbformat
import pytest

from attn_course.handout import ExecutionFailed, execute_answer_key, is_answer_key, is_solution, main, strip_solutions

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


def _notebook(path, solution="# Solution to exercise 1\nanswer = 42\n"):
    """A small chapter: one exercise cell with its solution, tagged hide-input, and an output."""
    cells = [nbformat.v4.new_markdown_cell("## Exercise 1"),
             nbformat.v4.new_code_cell(solution, metadata={"tags": ["hide-input"]}),
             nbformat.v4.new_code_cell("print(answer)", outputs=[nbformat.v4.new_output("stream", text="42\n")])]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_command_line_refuses_to_overwrite_its_input(tmp_path):
    # `handout notebooks/*.ipynb --out notebooks` once replaced the instructor's notebooks.
    source = _notebook(tmp_path / "notebooks" / "01_x.ipynb")
    before = source.read_text()
    with pytest.raises(SystemExit):
        main([str(source), "--out", str(tmp_path / "notebooks")])
    assert source.read_text() == before


def test_command_line_refuses_two_inputs_with_one_name(tmp_path, capsys):
    a, b = _notebook(tmp_path / "a" / "01_x.ipynb"), _notebook(tmp_path / "b" / "01_x.ipynb")
    with pytest.raises(SystemExit):
        main([str(a), str(b), "--out", str(tmp_path / "handouts")])
    assert "have the same file name" in capsys.readouterr().err
    assert not (tmp_path / "handouts").exists()


def test_command_line_writes_nothing_when_one_input_is_missing(tmp_path, capsys):
    # The first notebook used to be written before the missing second one was noticed, and a
    # rejected call still created the output folder.
    good = _notebook(tmp_path / "01_x.ipynb")
    with pytest.raises(SystemExit):
        main([str(good), str(tmp_path / "02_missing.ipynb"), "--out", str(tmp_path / "handouts")])
    assert "02_missing.ipynb is not a notebook file" in capsys.readouterr().err
    assert not (tmp_path / "handouts").exists()


def test_command_line_refuses_to_overwrite_a_notebook_with_solutions(tmp_path, capsys):
    source = _notebook(tmp_path / "01_x.ipynb")
    other = _notebook(tmp_path / "instructor" / "01_x.ipynb", "# Solution to exercise 1\nanswer = 41\n")
    before = other.read_text()
    with pytest.raises(SystemExit):
        main([str(source), "--out", str(tmp_path / "instructor")])
    assert "holds solution cells" in capsys.readouterr().err and other.read_text() == before
    main([str(source), "--out", str(tmp_path / "handouts")])  # an earlier hand-out is overwritten
    main([str(source), "--out", str(tmp_path / "handouts")])


def test_a_solution_after_a_blank_line_is_stripped(tmp_path):
    source = _notebook(tmp_path / "01_x.ipynb", "\n\n# Solution to exercise 1\nanswer = 42\n")
    main([str(source), "--out", str(tmp_path / "handouts")])
    student = nbformat.read(tmp_path / "handouts" / "01_x.ipynb", as_version=4)
    assert "answer = 42" not in student.cells[1].source
    assert student.cells[1].source.startswith("# Solution to exercise 1 goes here.")


def test_an_untagged_solution_is_warned_about(tmp_path, capsys):
    notebook = nbformat.read(_notebook(tmp_path / "01_x.ipynb"), as_version=4)
    notebook.cells[1].metadata["tags"] = []
    with pytest.warns(UserWarning, match="cell 1 has a '# Solution' comment but is not a solution cell"):
        strip_solutions(notebook)
    nbformat.write(notebook, tmp_path / "01_x.ipynb")
    main([str(tmp_path / "01_x.ipynb"), "--out", str(tmp_path / "handouts")])
    assert "warning: 01_x.ipynb: cell 1" in capsys.readouterr().err


# The answer key: the chapters with their solutions, executed fresh by the tool, never beside the
# student copies. Each test notebook is tiny (one kernel start, about a second).

def _key_notebook(path, solution="# Solution to exercise 1\nanswer = 6 * 7\n"):
    """A chapter whose saved output is stale (41) and whose last cell reads a file beside the notebook."""
    cells = [nbformat.v4.new_markdown_cell("## Exercise 1"),
             nbformat.v4.new_code_cell(solution, metadata={"tags": ["hide-input"]}),
             nbformat.v4.new_code_cell("print(answer)", execution_count=7,
                                       outputs=[nbformat.v4.new_output("stream", text="41\n")]),
             nbformat.v4.new_code_cell("print(open('data.txt').read())")]
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "data.txt").write_text("read from the notebook's folder")
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def _stream(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_answer_key_has_the_solutions_and_fresh_outputs(tmp_path, capsys):
    source = _key_notebook(tmp_path / "notebooks" / "01_x.ipynb")
    before = source.read_text()
    main([str(source), "--out", str(tmp_path / "handouts"), "--answers", str(tmp_path / "answers")])
    key = nbformat.read(tmp_path / "answers" / "01_x.ipynb", as_version=4)
    assert key.cells[1].source == "# Solution to exercise 1\nanswer = 6 * 7\n" and is_solution(key.cells[1])
    assert _stream(key.cells[2]) == "42\n", "the key's outputs come from running the solution, not the saved 41"
    assert key.cells[2].execution_count == 2  # counted afresh
    assert _stream(key.cells[3]).strip() == "read from the notebook's folder"
    assert is_answer_key(key)
    student = nbformat.read(tmp_path / "handouts" / "01_x.ipynb", as_version=4)
    assert not any(is_solution(cell) for cell in student.cells) and "6 * 7" not in student.cells[1].source
    assert not any(cell.get("outputs") for cell in student.cells)
    assert source.read_text() == before
    out = capsys.readouterr().out
    assert "answer key with 1 solution cell(s), executed" in out and "solution cell(s) removed" in out


def test_a_failing_solution_writes_nothing_and_names_the_cell(tmp_path, capsys):
    # Decided: all or nothing. A key with one broken chapter is no key, and a partial set of
    # student copies beside no key invites a second, mismatched run.
    good = _key_notebook(tmp_path / "notebooks" / "01_good.ipynb")
    bad = _key_notebook(tmp_path / "notebooks" / "02_bad.ipynb",
                        "# Solution to exercise 1\nanswer = int('forty-two')\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(good), str(bad), "--out", str(tmp_path / "handouts"), "--answers", str(tmp_path / "answers")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err
    assert "02_bad.ipynb, cell 1" in err and "# Solution to exercise 1" in err
    assert "ValueError: invalid literal for int()" in err
    assert "01_good.ipynb" not in err
    assert not (tmp_path / "answers").exists() and not (tmp_path / "handouts").exists()


def test_execute_answer_key_names_a_failing_ordinary_cell(tmp_path):
    notebook = nbformat.read(_key_notebook(tmp_path / "01_x.ipynb"), as_version=4)
    notebook.cells[3].source = "print(undefined_name)"
    with pytest.raises(ExecutionFailed, match=r"01_x.ipynb, cell 3 .*NameError: name 'undefined_name'"):
        execute_answer_key(notebook, tmp_path / "01_x.ipynb")


def test_answer_key_never_overwrites_a_file(tmp_path, capsys):
    source = _key_notebook(tmp_path / "notebooks" / "01_x.ipynb")
    old = tmp_path / "answers" / "01_x.ipynb"
    old.parent.mkdir()
    old.write_text("an earlier key")
    with pytest.raises(SystemExit):
        main([str(source), "--answers", str(tmp_path / "answers")])
    assert "never overwrites a file" in capsys.readouterr().err and old.read_text() == "an earlier key"
    with pytest.raises(SystemExit):  # nor an input
        main([str(source), "--answers", str(source.parent)])
    assert "one of the inputs" in capsys.readouterr().err


def test_answer_key_never_sits_beside_the_student_copies(tmp_path, capsys):
    source = _key_notebook(tmp_path / "notebooks" / "01_x.ipynb")
    folder = tmp_path / "handouts"
    with pytest.raises(SystemExit):  # one call, one folder for both
        main([str(source), "--out", str(folder), "--answers", str(folder)])
    assert "the same folder" in capsys.readouterr().err and not folder.exists()
    main([str(source), "--out", str(folder)])
    other = _key_notebook(tmp_path / "more" / "02_y.ipynb")
    with pytest.raises(SystemExit):  # a later call: the folder already holds student copies
        main([str(other), "--answers", str(folder)])
    assert "holds student copies (01_x.ipynb)" in capsys.readouterr().err
    assert not (folder / "02_y.ipynb").exists()
    with pytest.raises(SystemExit):  # nor a key made from a student copy
        main([str(folder / "01_x.ipynb"), "--answers", str(tmp_path / "answers")])
    assert "is a student copy" in capsys.readouterr().err


def test_student_copies_never_sit_beside_an_answer_key(tmp_path, capsys):
    source = _key_notebook(tmp_path / "notebooks" / "01_x.ipynb")
    main([str(source), "--answers", str(tmp_path / "answers")])
    other = _key_notebook(tmp_path / "more" / "02_y.ipynb")
    with pytest.raises(SystemExit):
        main([str(other), "--out", str(tmp_path / "answers")])
    assert "holds an answer key (01_x.ipynb)" in capsys.readouterr().err
    assert not (tmp_path / "answers" / "02_y.ipynb").exists()


def test_the_command_needs_out_or_answers(tmp_path, capsys):
    source = _key_notebook(tmp_path / "01_x.ipynb")
    with pytest.raises(SystemExit):
        main([str(source)])
    assert "--out" in capsys.readouterr().err
