"""A pytest plugin (registered by conftest.py): the notebooks nbval executed, saved for the book.

With ATTN_EXECUTED_NOTEBOOKS set (CI; see book/_ext/executed_notebooks.py), each notebook that
nbval executed completely and without a failure is written with the outputs and widget state of
this run, so `make book` shows them instead of executing every notebook a second time. The
outputs are assembled from the kernel's messages the way nbclient (which the book would use)
assembles them; a notebook whose output needs a front end's help (clear_output, display
updates, Output widgets, binary widget buffers) is not written, and the book executes it itself.
Without the variable the plugin does nothing.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import executed_notebooks  # noqa: E402  (standard library only)

sys.path.pop(0)

_OUTPUT_TYPES = {"stream", "display_data", "execute_result", "error"}
_UNSUPPORTED = {"clear_output", "update_display_data"}


class _NotebookRun:
    """What one notebook's kernel said while nbval ran it."""

    def __init__(self, nbfile):
        self.nbfile = nbfile
        self.widget_state = {}
        self.problems = []
        self.cells = {}  # cell_num -> outputs
        self.current = None  # (cell_num, source, messages) of the cell being run
        self.parent_id = None  # the kernel's id of the current cell's execute request
        self.failed = False
        self.items = 0
        self.done = 0

    def wrap(self):
        get_message = self.nbfile.get_kernel_message

        def get_kernel_message(*args, **kwargs):
            msg = get_message(*args, **kwargs)
            self.observe(msg)
            return msg

        self.nbfile.get_kernel_message = get_kernel_message

    def observe(self, msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind.startswith("comm"):
            data = content.get("data", {})
            if data.get("buffer_paths"):
                self.problems.append("a widget with binary buffers")
            if "state" in data:
                self.widget_state.setdefault(content["comm_id"], {}).update(data["state"])
                if data["state"].get("_model_name") == "OutputModel":
                    self.problems.append("an Output widget")
        if self.current is None:
            return
        cell_num, source, messages = self.current
        if kind == "execute_input" and content.get("code") == source and self.parent_id is None:
            self.parent_id = msg["parent_header"].get("msg_id")
        if self.parent_id is None or msg["parent_header"].get("msg_id") != self.parent_id:
            return
        if kind in _UNSUPPORTED:
            self.problems.append(f"{kind} in code cell {cell_num}")
        messages.append(msg)

    def start_cell(self, item):
        self.parent_id = None
        self.current = (item.cell_num, item.cell.source, [])

    def end_cell(self, passed):
        cell_num, _, messages = self.current
        self.current = None
        self.parent_id = None
        if not passed:
            self.failed = True
            return
        self.cells[cell_num] = [nbformat.v4.output_from_msg(m) for m in messages if m["msg_type"] in _OUTPUT_TYPES]

    def notebook(self, root):
        nb = nbformat.read(str(self.nbfile.path), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if self.failed or len(self.cells) != len(code):
            return None, "not every code cell ran and passed"
        if self.problems:
            return None, "needs a front end: " + ", ".join(sorted(set(self.problems)))
        for num, cell in enumerate(code):
            # nbval executes without storing history (every count is 1): number the cells as
            # nbclient does, 1, 2, ... in order
            cell.execution_count, cell.outputs = num + 1, self.cells[num]
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = num + 1
        state = {
            model_id: {
                "model_name": s.get("_model_name"),
                "model_module": s.get("_model_module"),
                "model_module_version": s.get("_model_module_version"),
                "state": s,
            }
            for model_id, s in self.widget_state.items()
            if "_model_name" in s
        }
        nb.metadata.pop("widgets", None)
        if state:
            nb.metadata["widgets"] = {
                "application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2, "version_minor": 0}
            }
        nb.metadata[executed_notebooks.METADATA_KEY] = {
            "by": "nbval",
            "inputs_sha256": executed_notebooks.inputs_digest(root, self.nbfile.path),
        }
        nbformat.validate(nb)
        return nb, None


_runs = {}  # notebook path -> _NotebookRun
_written = []  # (path, None or why not)


def _nbval_cell(item):
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    run = None
    if _nbval_cell(item) and executed_notebooks.folder(item.config.rootpath) is not None:
        run = _runs.get(item.parent.path)
        if run is None:
            run = _runs[item.parent.path] = _NotebookRun(item.parent)
            run.items = sum(1 for i in item.session.items if i.parent is item.parent)
            run.wrap()
        run.start_cell(item)
    outcome = yield
    if run is not None:
        run.end_cell(outcome.excinfo is None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    run = _runs.get(item.parent.path) if _nbval_cell(item) else None
    if run is None:
        return
    if report.failed or (report.when == "call" and report.skipped):
        run.failed = True
    if report.when == "teardown":
        run.done += 1
        if run.done == run.items:
            _write(item.config, run)


def _write(config, run):
    root = config.rootpath
    directory = executed_notebooks.folder(root)
    target = executed_notebooks.copy_path(directory, root, run.nbfile.path)
    nb, why_not = run.notebook(root)
    if nb is None:
        target.unlink(missing_ok=True)  # never leave an older copy behind
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    _written.append((target.relative_to(root) if target.is_relative_to(root) else target, why_not))


def pytest_terminal_summary(terminalreporter):
    if not _written:
        return
    terminalreporter.section(f"executed notebooks for the book ({executed_notebooks.ENV})")
    for target, why_not in _written:
        terminalreporter.write_line(f"written  {target}" if why_not is None else f"NOT written  {target}: {why_not}")
