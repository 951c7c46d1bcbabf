"""Local Sphinx extension of the attn-course book (registered in _config.yml, sphinx.local_extensions).

1. Each script of a page is written once. sphinx-thebe adds its inline configuration
   (``const THEBE_JS_URL = ...``) twice, and the second ``const`` declaration is a console error
   on every page ("Identifier 'THEBE_JS_URL' has already been declared").
2. No image comes from another host. The notebooks' "Open in Colab" badge (which Colab and
   GitHub readers need) is an image on colab.research.google.com; the book shows a copy of
   its own, book/_static/images/colab-badge.svg, so that it reads offline and requests nothing
   from Google. The badge still links to Colab.
3. Author-year citations a reader can tell apart: when two entries would be cited with the same
   text ("Hu et al., 2018" for both Squeeze-and-Excitation and Gather-Excite), their years get
   the suffixes a, b, ... in the order of their titles, in the text and in the bibliography alike.
   The bibliography style ``authoryear`` labels each entry with that same citation text.
4. book/_static/attn_book.css: long lines of cell outputs wrap instead of scrolling sideways.
5. Each notebook executes once in CI: with ATTN_EXECUTED_NOTEBOOKS set, a notebook that nbval
   executed in this run (`make test`, see executed_notebooks.py and conftest.py) is rendered
   from that executed copy, with execution off for it alone; any other notebook is executed by
   the book as usual. Without the variable, every notebook is executed (execute_notebooks: force).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from string import ascii_lowercase

import executed_notebooks
from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting
from sphinx.util import logging

logger = logging.getLogger(__name__)

PLAIN_YEAR = "year_without_suffix"  # where the entry's own year is kept, so rebuilds add no second suffix


# --- 1. one copy of each script ----------------------------------------------------------------


def _script_key(script):
    attributes = tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items()))
    # sphinx-thebe's two copies differ only in filename: None in one, "" in the other
    return getattr(script, "filename", str(script)) or None, attributes


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# --- 2. local copies of remote images -----------------------------------------------------------

LOCAL_IMAGES = {
    "https://colab.research.google.com/assets/colab-badge.svg": "_static/images/colab-badge.svg",
}


def use_local_images(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if not body:
        return
    for remote, local in LOCAL_IMAGES.items():
        if f'src="{remote}"' in body:
            body = body.replace(f'src="{remote}"', f'src="{context["pathto"](local, 1)}"')
    context["body"] = body


# --- 3. author-year citations with a, b suffixes ------------------------------------------------


def _plain(text):
    """A BibTeX name or title as plain text: LaTeX accents decoded, braces dropped."""
    return str(Text.from_latex(text)) if "\\" in text or "{" in text else text


def citation_authors(entry):
    """The author part of an author-year citation, as sphinxcontrib-bibtex's author_year writes it."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if not last:
        return _plain(entry.fields.get("title", entry.key))
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


def disambiguate_years(entries):
    """Give entries that share author text and year the year suffixes a, b, ...; idempotent."""
    groups = defaultdict(list)
    for entry in entries.values():
        if PLAIN_YEAR in entry.fields:  # restore, in case the bib data was kept from a previous build
            entry.fields["year"] = entry.fields[PLAIN_YEAR]
        year = entry.fields.get("year")
        if year:
            groups[(citation_authors(entry), year)].append(entry)
    changed = {}
    for (_, year), group in groups.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda e: (_plain(e.fields.get("title", "")).lower(), e.key))
        for suffix, entry in zip(ascii_lowercase, group):
            entry.fields[PLAIN_YEAR] = year
            entry.fields["year"] = f"{year}{suffix}"
            changed[entry.key] = entry.fields["year"]
    return changed


def suffix_bibliography_years(app):
    domain = app.env.get_domain("cite")
    disambiguate_years(domain.bibdata.data.entries)


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels the bibliography with the citation text, e.g. 'Hu et al., 2018b'."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield f"{citation_authors(entry)}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    """pybtex's unsrt entries, sorted by author, year and title, labelled with the citation text."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearTitleSorting


register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


# --- 5. notebooks executed once in CI -------------------------------------------------------------


def use_executed_notebook(app, docname, source):
    directory = executed_notebooks.folder(app.confdir)
    path = Path(app.env.doc2path(docname))
    if directory is None or path.suffix != ".ipynb":
        return
    copy = executed_notebooks.copy_path(directory, app.confdir, path)
    why_not = None
    if not copy.is_file():
        why_not = f"no executed copy at {copy}"
    else:
        nb = json.loads(copy.read_text(encoding="utf-8"))
        recorded = nb.get("metadata", {}).get(executed_notebooks.METADATA_KEY, {}).get("inputs_sha256")
        if recorded != executed_notebooks.inputs_digest(app.confdir, path):
            why_not = f"{copy} is stale (the notebook or attn_course changed since)"
    if why_not is not None:
        logger.info(f"[attn_book] {docname}: executing it ({why_not})")
        app.env.attn_executed.setdefault("executed", []).append(docname)
        return
    nb["metadata"].setdefault("mystnb", {})["execution_mode"] = "off"
    source[0] = json.dumps(nb)
    logger.info(f"[attn_book] {docname}: shown as nbval executed it ({copy})")
    app.env.attn_executed.setdefault("from nbval", []).append(docname)


def init_executed(app):
    app.env.attn_executed = {}


def report_executed(app, exception):
    done = getattr(app.env, "attn_executed", {}) if app.env else {}
    if exception is None and executed_notebooks.folder(app.confdir) is not None and done:
        logger.info(
            f"[attn_book] notebooks from nbval's run: {len(done.get('from nbval', []))}, "
            f"executed by the book: {len(done.get('executed', []))} {done.get('executed', [])}"
        )


def setup(app):
    app.setup_extension("sphinxcontrib.bibtex")
    # after sphinxcontrib-bibtex has read the .bib files (its own builder-inited handler, priority 500)
    app.connect("builder-inited", suffix_bibliography_years, priority=900)
    # after every other handler (myst-nb adds the widget scripts in its own)
    app.connect("html-page-context", drop_duplicate_scripts, priority=999)
    app.connect("html-page-context", use_local_images)
    app.add_css_file("attn_book.css")  # book/_static, the html_static_path of _config.yml
    app.connect("builder-inited", init_executed)
    app.connect("source-read", use_executed_notebook)
    app.connect("build-finished", report_executed)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

