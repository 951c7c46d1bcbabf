"""Print how long each notebook took under nbval, against the course's one time budget.

The budget, quoted by the README and the instructors' guide (tests/test_time_budget.py checks
that they agree): a chapter executes in at most CHAPTER_SECONDS on a 2-core CPU with no GPU;
machines of that class differ by up to 1.5x, so HARD_LIMIT_SECONDS is the limit anywhere.
"""

from collections import defaultdict

import pytest

CHAPTER_SECONDS = 45
HARD_LIMIT_SECONDS = 60
_notebook_seconds = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration  # setup (kernel start), call and teardown


@pytest.hookimpl(trylast=True)  # after the --durations list, so it is the last thing printed
def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section(f"notebook execution times (budget: {CHAPTER_SECONDS} s each on a 2-core CPU, "
                             f"{HARD_LIMIT_SECONDS} s at most anywhere)")
    for path, seconds in sorted(_notebook_seconds.items()):
        flag = ""
        if seconds > HARD_LIMIT_SECONDS:
            flag = "   OVER THE HARD LIMIT"
        elif seconds > CHAPTER_SECONDS:
            flag = "   over budget"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")


# With ATTN_EXECUTED_NOTEBOOKS set (CI), also save the notebooks nbval executed, for the book.
pytest_plugins = ["tests.nbval_executed"]
