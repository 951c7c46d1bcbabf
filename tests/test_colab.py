"""The Colab path: the setup cell installs the release of these notebooks, and a chapter runs from a wheel.

Colab has torch but not attn_course, so the setup cell's pip install runs there. This test builds the
package as a wheel, installs it with --no-deps into a fresh virtual environment that sees torch and the
other dependencies but not the editable attn_course of the checkout, and executes one chapter there, in
a folder outside the repository, with that environment's python as the kernel. The setup cell must then
find attn_course installed and skip its pip install (pip may use no index and git no https, so an
attempt would fail at once), and the chapter's study rows must come from the CSVs shipped in the wheel.

Where torch comes from. ``python -m venv --system-site-packages`` gives the new environment the packages of
the *base* interpreter. A virtual environment made from inside another one is made from that base
interpreter, so the packages of the environment running the tests (torch, ipykernel, ... in .venv) are not
among them (and on Colab or in a conda image the base has them anyway). So the new environment also gets,
through a .pth file, a folder of links to every entry of the running environment's site-packages except
attn_course's: its dist-info, and the ``__editable__`` .pth and finder through which ``pip install -e``
exposes the checkout. Python processes that folder like a site-packages folder, after the new
environment's own site-packages, so the wheel installed there is the only attn_course it can import.
"""

import json
import re
import shutil
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# The chapter executed from the wheel: among the fastest (about 35 s on two cores), and it reads the
# study's rows through attn_course.results.
CHAPTER = ROOT / "notebooks" / "00_where_does_a_cnn_look.ipynb"


def _version():
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)
    return tomllib.loads(text)["project"]["version"]


def _install_line():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    return f'"attn_course @ git+{url}@v{_version()}"'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_the_release_tag(path):
    setup = next(cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    assert "hide-input" in setup.metadata.get("tags", []), f"{path.name}: the setup cell must be tagged hide-input"
    assert 'find_spec("attn_course") is None' in setup.source, f"{path.name}: install only when attn_course is missing"
    assert _install_line() in setup.source, (
        f"{path.name}: the setup cell must install {_install_line()}: the repository of _config.yml at the tag "
        f"of pyproject.toml's version (README, 'Cutting a release')")


def _is_attn_course(name):
    name = name.lower().replace("-", "_")
    return name.startswith("attn_course") or (name.startswith("__editable__") and "attn_course" in name)


def _run(args, cwd, **kwargs):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _build_wheel(tmp_path):
    """Build from a copy of the sources (no build/ or egg-info left in the checkout), offline."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in ("attn_course", "results"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp_path / "dist"), str(source)], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("attn_course-*.whl")
    return wheel


def _fresh_environment(tmp_path):
    """A venv with --system-site-packages plus the running environment's packages minus attn_course."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).strip())
    lines = []
    for number, directory in enumerate(dict.fromkeys(site.getsitepackages())):
        if not Path(directory).is_dir():
            continue
        view = tmp_path / f"parent-site-{number}"
        view.mkdir()
        for entry in Path(directory).iterdir():
            if not _is_attn_course(entry.name):
                (view / entry.name).symlink_to(entry)
        lines.append(f"import site; site.addsitedir({str(view)!r})")
    (purelib / "_attn_course_test_parent_env.pth").write_text("\n".join(lines) + "\n")
    return python, purelib


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    # The setup cell's pip install, if it were reached, would fail at once: no index, and git may not
    # fetch over https (its requirement is a git+https URL).
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def test_a_chapter_runs_from_the_wheel_in_a_fresh_environment(tmp_path, offline_env):
    nbclient = pytest.importorskip("nbclient", reason="nbclient (the notebooks extra) is not installed")
    start = time.perf_counter()
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert {"attn_course/results/zoo.csv", "attn_course/results/README.md"} <= shipped, sorted(shipped)

    python, purelib = _fresh_environment(tmp_path)
    probe = ("import importlib.util as u; print(u.find_spec('attn_course') is None, "
             "u.find_spec('torch') is not None, u.find_spec('ipykernel') is not None)")
    assert _run([str(python), "-c", probe], cwd=tmp_path).split() == ["True", "True", "True"], (
        "the fresh environment must see torch and ipykernel but not attn_course")

    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path)
    where = _run([str(python), "-c", "import attn_course; print(attn_course.__file__)"], cwd=tmp_path).strip()
    assert Path(where).is_relative_to(purelib), f"attn_course imported from {where}, not from the wheel"
    installed = time.perf_counter() - start

    kernels = tmp_path / "jupyter" / "kernels" / "attn-colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "attn_course from the wheel", "language": "python"}))

    # The chapter alone, in a folder outside the checkout (as on Colab), plus one cell that reports
    # where attn_course and the chapter's study rows came from.
    colab = tmp_path / "colab"
    colab.mkdir()
    notebook = nbformat.read(CHAPTER, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import attn_course\nprint('attn_course from', attn_course.__file__)\n"
        "print('study rows', len(study_rows), 'from', packaged_results('zoo'))"))
    client = nbclient.NotebookClient(notebook, kernel_name="attn-colab", timeout=600,
                                     resources={"metadata": {"path": str(colab)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{CHAPTER.name} failed in the fresh environment:\n{error}")
    setup = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert not [o for o in setup.outputs if o.output_type == "error"]
    report = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    assert f"attn_course from {purelib}" in report, report
    rows = int(re.search(r"study rows (\d+) from (\S+)", report).group(1))
    assert rows > 0 and f"from {purelib}" in report.splitlines()[-1], report
    print(f"wheel built and installed in {installed:.1f} s; {CHAPTER.name} ran from it in "
          f"{time.perf_counter() - start - installed:.1f} s; {rows} study rows read from the wheel")
