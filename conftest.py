"""Print how long each notebook took under nbval: the course's budget is 60 s per chapter on a 2-core CPU."""

from collections import defaultdict

import pytest

BUDGET_SECONDS = 60
_notebook_seconds = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration  # setup (kernel start), call and teardown


@pytest.hookimpl(trylast=True)  # after the --durations list, so it is the last thing printed
def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook execution times (budget: 60 s each on a 2-core CPU)")
    for path, seconds in sorted(_notebook_seconds.items()):
        flag = "" if seconds <= BUDGET_SECONDS else "   OVER BUDGET"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")


# With ATTN_EXECUTED_NOTEBOOKS set (CI), also save the notebooks nbval executed, for the book.
pytest_plugins = ["tests.nbval_executed"]
