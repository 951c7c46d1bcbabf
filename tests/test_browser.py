"""The built book as readers see it: every page of _toc.yml opened in a real browser.

Debian's Chromium, driven by Playwright, opens each page of _build/html (served on 127.0.0.1)
and checks what a reader would notice: requests that fail or leave the book (it must be
self-contained and read offline), console errors, images that do not load or have no alt text,
math left unrendered, tables left as run-on paragraphs of pipes, widgets that show an error,
raw {cite} or {glue} roles, and the licence in the footer.

Run it after `make book` with `make browser-test`. It is skipped, with the reason, when there is
no built book, no Chromium (`apt-get install chromium`) or no Playwright (`pip install -e
".[browser]"`; never `playwright install`: the book's machines cannot download browsers).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("ATTN_BOOK_HTML", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 30_000

# Figures that notebooks make (matplotlib outputs) get their alt text from the notebook cell
# (metadata "mystnb": {"image": {"alt": ...}}); without it the book writes the image's file name.

# `make browser-test` (CI) sets ATTN_REQUIRE_BROWSER=1: there, a missing book, browser or
# Playwright fails the run instead of skipping it silently.
REQUIRED = os.environ.get("ATTN_REQUIRE_BROWSER") == "1"


def _missing():
    if not (HTML / "index.html").exists():
        return f"no built book at {HTML}: run `make book` first"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set CHROMIUM=/path/to/chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'Playwright is not installed: pip install -e ".[browser]" (never `playwright install`)'
    return None


if (_reason := _missing()) is not None:
    if REQUIRED:
        raise RuntimeError(f"the browser test cannot run: {_reason}")
    pytest.skip(_reason, allow_module_level=True)

import playwright.sync_api as playwright_sync  # noqa: E402


def toc_pages():
    """index.html, then every file of _toc.yml, as paths relative to the built book."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files += [section["file"] for section in chapter.get("sections", [])]
    return ["index.html"] + [f"{f}.html" for f in files]


# What the page itself reports, measured after MathJax has typeset and the widgets have rendered.
PAGE_REPORT_JS = r"""
() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const visibleText = (root) => {
    const copy = root.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml, .highlight')
        .forEach((n) => n.remove());
    return copy.textContent;
  };
  const text = visibleText(article);
  const images = Array.from(document.images).map((img) => ({
    src: img.getAttribute('src'),
    alt: (img.getAttribute('alt') || '').trim(),
    loaded: img.complete && img.naturalWidth > 0,
    notebook_figure: !!img.closest('.cell_output, .output'),
    section: ((img.closest('section') || document).querySelector('h1, h2, h3') || {textContent: ''})
        .textContent.replace('#', '').trim(),
  }));
  const math = Array.from(article.querySelectorAll('span.math, div.math'));
  const unrenderedMath = math.filter((m) => !m.querySelector('mjx-container'))
      .map((m) => m.textContent.trim().slice(0, 80));
  const mathErrors = Array.from(article.querySelectorAll('mjx-merror, [data-mjx-error]'))
      .map((m) => (m.getAttribute('data-mjx-error') || m.textContent).slice(0, 80));
  const rawMath = [];
  const rawPatterns = [/\\\(.{0,60}/g, /\\\[.{0,60}/g, /\$\$.{0,60}/g,
                       /\$[^$\s][^$\n]{0,60}?\\[A-Za-z]+[^$\n]{0,60}?\$/g];
  for (const pattern of rawPatterns) {
    for (const m of text.matchAll(pattern)) rawMath.push(m[0]);
  }
  const pipeParagraphs = Array.from(article.querySelectorAll('p'))
      .map((p) => p.textContent.trim())
      .filter((t) => t.length > 1 && t.startsWith('|') && t.endsWith('|'))
      .map((t) => t.slice(0, 80));
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  const widgetsRendered = views.filter((v) => v.parentElement &&
      v.parentElement.querySelector('.jupyter-widgets, .widget-subarea')).length;
  const widgetErrors = Array.from(document.querySelectorAll('.jupyter-widgets-error-widget'))
      .map((w) => w.textContent.trim().slice(0, 80));
  if (document.body.textContent.includes('Error displaying widget')) widgetErrors.push('Error displaying widget');
  const rawRoles = Array.from(text.matchAll(/\{(cite|glue)[^}]{0,20}\}`?[^`\s]{0,40}/g)).map((m) => m[0]);
  const footer = document.querySelector('.extra_footer');
  return {
    title: document.title,
    images, unrenderedMath, mathErrors, rawMath, pipeParagraphs,
    math: math.length,
    tables: article.querySelectorAll('table').length,
    widgets: views.length, widgetsRendered, widgetErrors, rawRoles,
    footerLicence: !!(footer && /CC BY 4\.0/.test(footer.textContent)),
  };
}
"""


@dataclass
class Crawl:
    pages: list = field(default_factory=list)
    failed_requests: list = field(default_factory=list)  # local 4xx/5xx and failed loads
    offhost_requests: list = field(default_factory=list)  # blocked: the book must be self-contained
    console_errors: list = field(default_factory=list)
    reports: dict = field(default_factory=dict)  # page -> PAGE_REPORT_JS result
    checks: int = 0
    seconds: float = 0.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def crawl(request):
    start = time.monotonic()
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    base = f"http://{host}:{port}/"
    result = Crawl(pages=toc_pages())
    try:
        with playwright_sync.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            for path in result.pages:
                # A fresh context per page: each page is checked as a reader's first visit
                # (nothing in localStorage or the cache), since search engines link to any page.
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                result.reports[path] = _visit(context, base, path, result)
                context.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    result.seconds = time.monotonic() - start
    result.checks = _count_checks(result)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    images = sum(len(r["images"]) for r in result.reports.values())
    summary = (
        f"browser test: {len(result.pages)} pages, {result.checks} checks "
        f"({images} images, {sum(r['math'] for r in result.reports.values())} math elements, "
        f"{sum(r['tables'] for r in result.reports.values())} tables, "
        f"{sum(r['widgets'] for r in result.reports.values())} widgets) in {result.seconds:.1f} s"
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(summary)
    else:
        print(summary)
    return result


def _visit(context, base, path, result):
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)

    def route(route_):
        url = route_.request.url
        if url.startswith(base) or url.startswith(("data:", "blob:", "about:")):
            route_.continue_()
        else:
            result.offhost_requests.append(f"{path}: {route_.request.resource_type} {url}")
            route_.abort("blockedbyclient")

    def on_response(response):
        if response.url.startswith(base) and response.status >= 400:
            result.failed_requests.append(f"{path}: HTTP {response.status} {response.url[len(base):]}")

    def on_request_failed(req):
        if req.url.startswith(base):
            result.failed_requests.append(f"{path}: {req.failure} {req.url[len(base):]}")

    def on_console(message):
        if message.type == "error":
            result.console_errors.append(f"{path}: {message.text}")

    page.route("**/*", route)
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.on("console", on_console)
    page.on("pageerror", lambda error: result.console_errors.append(f"{path}: uncaught {error}"))

    page.goto(base + path, wait_until="load")
    if page.locator("meta[http-equiv=Refresh i]").count():  # index.html redirects to the first page
        page.wait_for_url(lambda url: not url.endswith("/" + path))
        page.wait_for_load_state("load")
    # MathJax typesets after load; wait for it, then for the widget manager to render the views.
    # A MathJax that never starts (blocked, missing) leaves its math untypeset: test_math_renders.
    try:
        page.wait_for_function(
            "() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)", timeout=15_000
        )
        page.evaluate("() => (window.MathJax && MathJax.startup) ? MathJax.startup.promise.then(() => true) : null")
    except playwright_sync.TimeoutError:
        pass
    try:
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll(
                       'script[type="application/vnd.jupyter.widget-view+json"]'))
                   .every((v) => v.parentElement
                                 && v.parentElement.querySelector('.jupyter-widgets, .widget-subarea'))""",
            timeout=10_000,
        )
    except playwright_sync.TimeoutError:
        pass  # reported below as widgets not rendered
    try:
        page.wait_for_load_state("networkidle", timeout=10_000)
    except playwright_sync.TimeoutError:
        pass
    report = page.evaluate(PAGE_REPORT_JS)
    page.close()
    return report


CHECKS_PER_PAGE = 9  # requests, off-host, console, images load, math, tables, widgets, roles, footer


def _count_checks(result):
    images = sum(len(r["images"]) for r in result.reports.values())
    return len(result.reports) * CHECKS_PER_PAGE + 2 * images  # each image: loads, has alt text


def _listing(problems, limit=40):
    shown = problems[:limit]
    more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    return "\n  ".join(shown + more)


def _fail_if(problems, what):
    if problems:
        pytest.fail(f"{len(problems)} {what}:\n  {_listing(problems)}", pytrace=False)


def test_every_page_was_opened(crawl):
    assert set(crawl.reports) == set(crawl.pages)
    assert len(crawl.pages) >= 2


def test_no_local_request_fails(crawl):
    _fail_if(crawl.failed_requests, "requests to the book failed")


def test_no_request_leaves_the_book(crawl):
    # MathJax, the widget manager and every image are served from the book itself.
    _fail_if(crawl.offhost_requests, "requests went to another host (blocked)")


def test_no_console_errors(crawl):
    _fail_if(crawl.console_errors, "console errors")


def test_images_load(crawl):
    broken = [f"{page}: {img['src']}" for page, r in crawl.reports.items() for img in r["images"] if not img["loaded"]]
    _fail_if(broken, "images did not load")


def _without_alt(crawl, notebook_figures):
    missing = []
    for page, r in crawl.reports.items():
        for img in r["images"]:
            if img["notebook_figure"] != notebook_figures:
                continue
            # docutils writes the file name when an image has no alt text: that is not alt text.
            name = (img["src"] or "").rsplit("/", 1)[-1]
            if not img["alt"] or img["alt"].rsplit("/", 1)[-1] == name:
                missing.append(f"{page}, section \"{img['section']}\": {img['src']}")
    return missing


def test_page_images_have_alt_text(crawl):
    _fail_if(_without_alt(crawl, notebook_figures=False), "images without alt text")


def test_notebook_figures_have_alt_text(crawl):
    _fail_if(_without_alt(crawl, notebook_figures=True),
             "notebook figures without alt text (set mystnb.image.alt in the cell's metadata)")


def test_math_renders(crawl):
    problems = []
    for page, r in crawl.reports.items():
        problems += [f"{page}: not typeset: {m}" for m in r["unrenderedMath"]]
        problems += [f"{page}: MathJax error: {m}" for m in r["mathErrors"]]
        problems += [f"{page}: raw TeX in the text: {m}" for m in r["rawMath"]]
    _fail_if(problems, "math problems")
    assert sum(r["math"] for r in crawl.reports.values()) > 0, "no math found on any page"


def test_tables_render(crawl):
    problems = [f"{page}: {p}" for page, r in crawl.reports.items() for p in r["pipeParagraphs"]]
    _fail_if(problems, "paragraphs that are Markdown tables left unrendered")
    assert sum(r["tables"] for r in crawl.reports.values()) > 0, "no tables found on any page"


def test_widgets_render(crawl):
    problems = []
    for page, r in crawl.reports.items():
        if r["widgetsRendered"] < r["widgets"]:
            problems.append(f"{page}: {r['widgets'] - r['widgetsRendered']} of {r['widgets']} widgets not displayed")
        problems += [f"{page}: {e}" for e in r["widgetErrors"]]
    _fail_if(problems, "widget problems")


def test_no_raw_roles(crawl):
    problems = [f"{page}: {role}" for page, r in crawl.reports.items() for role in r["rawRoles"]]
    _fail_if(problems, "{cite} or {glue} roles shown as raw text")


def test_footer_shows_the_licence(crawl):
    missing = [page for page, r in crawl.reports.items() if not r["footerLicence"]]
    _fail_if(missing, "pages without the licence (CC BY 4.0) in the footer")


def test_toc_pages_parse():
    # Cheap check of the page list itself, so a typo in _toc.yml names the page.
    pages = toc_pages()
    assert pages[0] == "index.html" and all(re.fullmatch(r"[\w/.-]+\.html", p) for p in pages)
