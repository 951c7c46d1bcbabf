"""One time budget for the chapters, in one place (conftest.py), quoted alike by the README and the
instructors' guide."""

import re
from pathlib import Path

import conftest

ROOT = Path(__file__).resolve().parents[1]


def test_the_budget_is_45_s_with_a_hard_limit_of_60_s():
    assert (conftest.CHAPTER_SECONDS, conftest.HARD_LIMIT_SECONDS) == (45, 60)


def test_readme_and_instructors_guide_quote_the_same_budget():
    for page in ("README.md", "book/instructors.md"):
        text = (ROOT / page).read_text()
        assert f"{conftest.CHAPTER_SECONDS} s" in text, f"{page} does not state the {conftest.CHAPTER_SECONDS} s budget"
        assert f"{conftest.HARD_LIMIT_SECONDS} s" in text, f"{page} does not state the hard limit"
        other = {int(s) for s in re.findall(r"\b(\d+) s(?:econds)?\b(?= (?:per|on|each|budget|at most))", text)}
        assert other <= {conftest.CHAPTER_SECONDS, conftest.HARD_LIMIT_SECONDS}, (page, other)
