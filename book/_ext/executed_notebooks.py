"""Notebooks executed once in CI: nbval's run under `make test` is the one the book shows.

When the environment variable ATTN_EXECUTED_NOTEBOOKS names a folder (.ci/run sets it to
_build/executed):

- `make test` (conftest.py) writes each notebook that nbval executed completely and without a
  failure to FOLDER/notebooks/NAME.ipynb: the source notebook with the outputs, execution counts
  and widget state of that run, and a digest of what produced them (the notebook and every file
  of attn_course/).
- `make book` (attn_book.py) renders such a copy, instead of executing the notebook again, when
  the digest still matches; a notebook without a matching copy is executed by the book as usual.

Without the variable nothing is written or read, and `make book` executes every notebook.
Standard library only: conftest.py imports it without the book's dependencies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV = "ATTN_EXECUTED_NOTEBOOKS"
METADATA_KEY = "attn_course_execution"  # notebook metadata of a copy: {"by": "nbval", "inputs_sha256": ...}


def folder(root) -> Path | None:
    """The folder of executed copies, or None when the variable is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(root) / path


def copy_path(directory, root, notebook) -> Path:
    return Path(directory) / Path(notebook).resolve().relative_to(Path(root).resolve())


def inputs_digest(root, notebook) -> str:
    """sha256 of the notebook file and of every file of the attn_course package it imports."""
    root = Path(root)
    digest = hashlib.sha256()
    files = [Path(notebook)] + sorted(p for p in (root / "attn_course").rglob("*.py") if p.is_file())
    for path in files:
        name = Path(path).resolve().relative_to(root.resolve()).as_posix()
        digest.update(name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()
