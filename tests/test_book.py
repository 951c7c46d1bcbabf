"""The book's configuration, its table of contents and the notebooks' frame agree with each other."""

import re
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def toc_files(toc):
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found in notebooks/"


def test_every_toc_entry_exists():
    for entry in toc_files(TOC):
        matches = list(ROOT.glob(entry + ".*"))
        assert matches, f"_toc.yml lists {entry}, which has no .md or .ipynb file"


def test_every_notebook_and_page_is_in_the_toc():
    listed = set(toc_files(TOC))
    pages = [p for p in (ROOT / "book").glob("*.md")] + NOTEBOOKS
    for page in pages:
        entry = page.relative_to(ROOT).with_suffix("").as_posix()
        assert entry in listed, f"{entry} is missing from _toc.yml"


def test_jupyter_book_is_pinned_below_2():
    # Jupyter Book 2 ignores _config.yml and _toc.yml.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    book = [d for d in project["project"]["optional-dependencies"]["book"] if d.startswith("jupyter-book")]
    assert book == ["jupyter-book>=1.0.4,<2"]


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += [d for d in extra if not d.startswith("attn_course")]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for requirement in wanted:
        assert requirement in pip, f"{requirement} is in pyproject.toml but not in environment.yml"


def test_config_executes_notebooks_and_fails_on_errors():
    assert CONFIG["execute"]["execute_notebooks"] == "force"
    assert CONFIG["execute"]["allow_errors"] is False
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    for bib in CONFIG["bibtex_bibfiles"]:
        assert (ROOT / bib).exists()


def _repository():
    url = CONFIG["repository"]["url"].rstrip("/")
    owner_repo = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url)
    assert owner_repo, f"repository.url must be a GitHub URL, got {url}"
    return url, owner_repo.group(1), CONFIG["repository"]["branch"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_frame(path):
    """Title, Colab badge and install cell use the one repository URL of _config.yml."""
    url, owner_repo, branch = _repository()
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} · ")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{path.name}"
    assert badge in first.source, f"{path.name}: the Colab badge must link to {badge}"

    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert f"attn_course @ git+{url}" in setup.source, f"{path.name}: the setup cell must install from {url}"
    assert "hide-input" in setup.metadata.get("tags", [])
    assert "set_seed(" in setup.source and "get_device(" in setup.source

    sources = [c.source for c in nb.cells]
    assert any(s.startswith("# Solution") for s in sources), f"{path.name} has no exercise solution"
    for cell in nb.cells:
        if cell.source.startswith("# Solution"):
            assert "hide-input" in cell.metadata.get("tags", []), f"{path.name}: solutions must be hidden"
    assert any("report.passed" in s for s in sources), f"{path.name}: no exercise is graded by the checker"
    assert any("## References" in s for s in sources if s), f"{path.name} has no references"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_bibliography_directive(path):
    # book/references.md holds the one bibliography; a second one in a chapter makes Sphinx warn
    # "duplicate citation" for every key both list, which fails the -W build. Chapters cite with
    # {cite} (linking to that page) and list their papers in plain Markdown for Colab readers.
    nb = nbformat.read(path, as_version=4)
    assert not any("{bibliography}" in c.source for c in nb.cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_some_output_and_stores_it(path):
    # nbval --nbval-lax compares only the cells marked NBVAL_CHECK_OUTPUT, against the outputs
    # stored in the notebook: each chapter has at least one, and its stored output is not empty.
    nb = nbformat.read(path, as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, f"{path.name} has no cell marked # NBVAL_CHECK_OUTPUT"
    assert all(c.outputs for c in checked), f"{path.name}: a checked cell has no stored output to compare"


def test_markdown_outputs_render_as_tables_and_math():
    # format_table's pipe tables: CommonMark (myst-nb's default) has no tables, GFM no $math$.
    assert CONFIG["sphinx"]["config"]["nb_render_markdown_format"] == "myst"


def test_mathjax_and_widget_manager_are_served_by_the_book():
    """The book reads offline: MathJax 3 and the widget manager come from book/_static, with licences."""
    sphinx = CONFIG["sphinx"]["config"]
    static = [ROOT / p for p in sphinx["html_static_path"]]
    mathjax = sphinx["mathjax_path"]
    assert "://" not in mathjax and re.search(r"mathjax-3\.2\.\d+/", mathjax), mathjax
    scripts = [mathjax, *sphinx["nb_ipywidgets_js"]]
    for script in scripts:
        assert "://" not in script, f"{script} is not served by the book"
        found = [s / script for s in static if (s / script).is_file()]
        assert found, f"{script} is not in {sphinx['html_static_path']}"
        assert (found[0].parent / "LICENSE").is_file(), f"no LICENSE beside {script}"


def test_local_extension_is_registered():
    extensions = CONFIG["sphinx"]["local_extensions"]
    for name, path in extensions.items():
        assert (ROOT / path / f"{name}.py").is_file()


def test_citations_of_the_same_authors_and_year_differ():
    pybtex = pytest.importorskip("pybtex.database", reason="the book's dependencies are not installed")
    import sys

    sys.path.insert(0, str(ROOT / CONFIG["sphinx"]["local_extensions"]["attn_book"]))
    try:
        attn_book = pytest.importorskip("attn_book")
    finally:
        sys.path.pop(0)
    entries = pybtex.parse_file(str(ROOT / CONFIG["bibtex_bibfiles"][0])).entries
    attn_book.disambiguate_years(entries)
    texts = {key: f"{attn_book.citation_authors(e)}, {e.fields['year']}" for key, e in entries.items()}
    assert len(set(texts.values())) == len(texts), texts
    assert texts["hu2018ge"] == "Hu et al., 2018a" and texts["hu2018se"] == "Hu et al., 2018b"
    attn_book.disambiguate_years(entries)  # idempotent: a rebuild adds no second suffix
    assert entries["hu2018se"].fields["year"] == "2018b"


def test_licence_citation_and_footer():
    licence = (ROOT / "LICENSE").read_text()
    assert "MIT License" in licence and "CC BY 4.0" in licence and "creativecommons.org/licenses/by/4.0" in licence
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["message"] and cff["title"]
    assert cff["authors"] == [{"name": "The attn-course contributors"}]
    assert cff["repository-code"] == CONFIG["repository"]["url"]
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}
    footer = CONFIG["html"]["extra_footer"]
    assert "CC BY 4.0" in footer and "LICENSE" in footer and "MIT" in footer


def _make_targets(text):
    return re.findall(r"^\s*(?:-\s*run:\s*)?(?:[A-Z_]+=\S+\s+)*make\s+([\w-]+)", text, flags=re.M)


def test_publishing_workflow_runs_the_ci_make_targets():
    ci = _make_targets((ROOT / ".ci" / "run").read_text())
    workflow_text = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    workflow = yaml.safe_load(workflow_text)
    assert ci and _make_targets(workflow_text) == ci, "book.yml must run the make targets of .ci/run, in order"
    steps = workflow["jobs"]["build"]["steps"]
    uses = [s.get("uses", "") for s in steps] + [s.get("uses", "") for s in workflow["jobs"]["deploy"]["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"


def _ext_module(name):
    import importlib
    import sys

    pytest.importorskip("sphinx", reason="the book's dependencies are not installed")
    sys.path.insert(0, str(ROOT / CONFIG["sphinx"]["local_extensions"]["attn_book"]))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_ci_executes_each_notebook_once():
    # make test saves nbval's executed notebooks there, and make book shows them (book/_ext).
    executed = _ext_module("executed_notebooks")
    ci = (ROOT / ".ci" / "run").read_text()
    setting = re.search(rf"^export {executed.ENV}=(\S+)$", ci, flags=re.M)
    assert setting, f".ci/run must export {executed.ENV}"
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    assert workflow["jobs"]["build"]["env"][executed.ENV] == setting.group(1)
    assert setting.start() < re.search(r"^make test$", ci, flags=re.M).start()


def test_book_uses_an_executed_copy_only_while_it_is_current(tmp_path, monkeypatch):
    executed = _ext_module("executed_notebooks")
    attn_book = _ext_module("attn_book")
    notebook = NOTEBOOKS[0]
    docname = notebook.relative_to(ROOT).with_suffix("").as_posix()

    class Env:
        def doc2path(self, name):
            return ROOT / f"{name}.ipynb"

    class App:
        confdir = str(ROOT)
        env = Env()

    app = App()
    attn_book.init_executed(app)
    monkeypatch.setenv(executed.ENV, str(tmp_path))
    copy = executed.copy_path(tmp_path, ROOT, notebook)
    copy.parent.mkdir(parents=True)
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata[executed.METADATA_KEY] = {"by": "nbval", "inputs_sha256": executed.inputs_digest(ROOT, notebook)}
    nbformat.write(nb, copy)

    source = [notebook.read_text()]
    attn_book.use_executed_notebook(app, docname, source)
    shown = yaml.safe_load(source[0])  # JSON is YAML
    assert shown["metadata"]["mystnb"]["execution_mode"] == "off"

    nb.metadata[executed.METADATA_KEY]["inputs_sha256"] = "stale"
    nbformat.write(nb, copy)
    source = [notebook.read_text()]
    attn_book.use_executed_notebook(app, docname, source)
    assert source == [notebook.read_text()], "a stale copy must not be shown: the book executes the notebook"

    monkeypatch.delenv(executed.ENV)
    attn_book.use_executed_notebook(app, docname, source)
    assert source == [notebook.read_text()]


def test_nbval_saves_what_nbclient_would_have_computed(tmp_path):
    """The plugin's copy of an nbval run has the outputs and widget state the book's nbclient gives."""
    import os
    import subprocess
    import sys

    nbclient = pytest.importorskip("nbclient", reason="the book's dependencies are not installed")
    pytest.importorskip("nbval")
    pytest.importorskip("tqdm")
    executed = _ext_module("executed_notebooks")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a notebook"),
        nbformat.v4.new_code_cell("import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint('out again')"),
        nbformat.v4.new_code_cell(
            "from IPython.display import Markdown, display\ndisplay(Markdown('| a |\\n|---|\\n| 1 |'))\n1 + 1"
        ),
        nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfor i in tqdm(range(3)):\n    pass"),
    ]
    path = tmp_path / "notebooks" / "tiny.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    env = {**os.environ, executed.ENV: str(tmp_path / "executed"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.nbval_executed", "--nbval-lax", "--nbval-current-env",
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-o", "addopts=", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ours = nbformat.read(tmp_path / "executed" / "notebooks" / "tiny.ipynb", as_version=4)
    theirs = nbclient.NotebookClient(nbformat.read(path, as_version=4), kernel_name="python3").execute()

    def outputs(notebook):
        return [
            (c.execution_count, [(o.output_type, o.get("name"), o.get("text"), o.get("data", {}).get("text/markdown"),
                                  o.get("execution_count")) for o in c.outputs])
            for c in notebook.cells if c.cell_type == "code"
        ]

    def widgets(notebook):
        state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        # names of all models, and where each progress bar ended (the rate in its text varies)
        return sorted((w["model_name"], w["state"].get("value") if "Progress" in w["model_name"] else None)
                      for w in state.values())

    assert outputs(ours) == outputs(theirs)
    assert widgets(ours) == widgets(theirs)
    assert ours.metadata[executed.METADATA_KEY]["by"] == "nbval"


# The book's text column is 688 px wide. Matplotlib draws at 100 dpi, so a figure w inches wide
# is shown at 688 / (100 w) of its size and text of s points (s * 100 / 72 px) ends up
# s * 688 / (72 w) px tall: at most 9 inches and at least 9 points keep it at 9.5 px or more.
MAX_FIGURE_INCHES, MIN_FONT_POINTS = 9, 9


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_fit_the_text_column_with_readable_text(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for width in re.findall(r"figsize=\(([0-9.]+)\s*\*?\s*([0-9.]*)", cell.source):
            inches = float(width[0]) * (8 if width[1] else 1)  # "1.25 * len(x)": at most 8 panels
            assert inches <= MAX_FIGURE_INCHES, f"{path.name}: a figure {inches} in wide: {cell.source[:80]!r}"
        small = [int(s) for s in re.findall(r"fontsize=(\d+)", cell.source) if int(s) < MIN_FONT_POINTS]
        assert not small, f"{path.name}: text of {small} pt is under 9 px in the book: {cell.source[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_have_alternative_text(path):
    # myst-nb writes a cell's metadata "mystnb": {"image": {"alt": ...}} as the alt text of its figures.
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt) > 30, f"{path.name}: a figure without alternative text: {cell.source[:80]!r}"
