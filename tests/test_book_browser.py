"""The built smoke-profile book as a reader sees it, in headless Chromium.

Every page of the book that the ``smoke_book`` fixture (``conftest.py``) builds, shared with
``tests/test_book.py``, is opened once in the system's Chromium (Debian's ``chromium`` or
``chromium-headless-shell``; ``.ci/run`` installs it when missing), driven by Playwright, after
MathJax has typeset it. The tests then check what the reader gets:

* no broken image (every local ``<img>`` decoded, ``naturalWidth > 0``; the Colab badge is remote);
* no broken internal link (the file exists; a ``#fragment`` names an element of that page);
* MathJax rendered (every math element holds an ``mjx-container``; no ``$…$`` left in the prose);
* no ``name = value`` dump of glued values and no object repr in a cell's output;
* every figure numbered and captioned (each image of a cell output inside a ``<figure>`` with a
  ``Fig. N`` caption);
* every ``{py:…}`` reference of the book's pages and notebooks linked to the API pages.

Skipped when Playwright or the browser is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.book

#: Browser programs tried in order (``SWIG_CHROMIUM`` names another).
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
#: Pages of Sphinx's own (index and search), not of the book.
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
#: A line that :func:`swig_lib.book.notebook.glue_value` prints: ``name = value``.
GLUE_LINE = re.compile(r"^[A-Za-z_]\w* = \S")
#: An object's repr in a cell's output: ``<... object at 0x...>``, a figure's, a torch module's.
OBJECT_REPR = re.compile(r"object at 0x[0-9a-f]+|<Figure size \d+x\d+|^[A-Z]\w*\($")
#: Inline math that MyST left as text.
RAW_MATH = re.compile(r"(?<![\w$\\])\$[^\s$][^$]*\$(?![\w$])")

#: Runs in the page once it is loaded: waits for MathJax and the images, then reports.
REPORT_JS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const article = document.querySelector('article') || document.body;
  const ancestor = (node, selector) => node.closest(selector) !== null;
  return {
    broken_images: [...document.images].filter(i => !/^https?:/.test(i.getAttribute('src')))
                     .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    figures: article.querySelectorAll('figure').length,
    math: [...article.querySelectorAll('.math')].length,
    unrendered_math: [...article.querySelectorAll('.math')]
                       .filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    prose: [...article.querySelectorAll('p, li, td')].filter(e => !ancestor(e, '.cell_output, pre, code, .math'))
             .map(e => e.textContent),
    outputs: [...article.querySelectorAll('div.cell_output pre')].map(p => p.textContent),
    uncaptioned: [...article.querySelectorAll('div.cell_output img, figure')].filter(e => {
        const figure = e.closest('figure');
        const number = figure && figure.querySelector('figcaption .caption-number');
        const text = figure && figure.querySelector('figcaption .caption-text');
        return !(number && /^Fig\\. \\d+/.test(number.textContent) && text && text.textContent.trim());
      }).map(e => (e.getAttribute('src') || e.id || e.outerHTML.slice(0, 80))),
    unresolved_xrefs: [...article.querySelectorAll('.xref.py')].filter(x => !ancestor(x, 'a'))
                        .map(x => x.textContent),
  };
}
"""


@dataclass
class PageReport:
    """What :data:`REPORT_JS` found on one page."""

    broken_images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    figures: int = 0
    math: int = 0
    unrendered_math: list[str] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    uncaptioned: list[str] = field(default_factory=list)
    unresolved_xrefs: list[str] = field(default_factory=list)


class _Ids(HTMLParser):
    """Collect the ``id`` attributes of an HTML file."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)


def _browser() -> str | None:
    """Return the Chromium program to drive, or None."""
    names = [os.environ["SWIG_CHROMIUM"]] if os.environ.get("SWIG_CHROMIUM") else BROWSERS
    return next((shutil.which(name) for name in names if shutil.which(name)), None)


def _pages(html: Path) -> list[Path]:
    """Return the book's HTML pages (not the redirect that ``index.html`` is)."""
    return sorted(
        path for path in html.rglob("*.html")
        if path.name not in SKIPPED_PAGES and not {"_static", "_sources", "_images"} & set(path.parts)
        and 'http-equiv="Refresh"' not in path.read_text(encoding="utf-8")[:1000]
    )


@pytest.fixture(scope="module")
def reports(smoke_book) -> dict[Path, PageReport]:
    """Open every page of the smoke book once; return each page's report, keyed by its path."""
    assert smoke_book.status == 0, "the smoke book did not build (see tests/test_book.py)"
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    program = _browser()
    if program is None:
        pytest.skip(f"no headless Chromium ({', '.join(BROWSERS)}): apt-get install chromium")
    found: dict[Path, PageReport] = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=program, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for path in _pages(smoke_book.html):
            page.goto(path.as_uri(), wait_until="load")
            found[path] = PageReport(**page.evaluate(REPORT_JS))
        browser.close()
    assert len(found) > 10, f"only {len(found)} pages in {smoke_book.html}"
    return found


def _relative(path: Path, html: Path) -> str:
    return path.relative_to(html).as_posix()


def test_no_broken_image(reports, smoke_book):
    broken = {_relative(path, smoke_book.html): r.broken_images for path, r in reports.items() if r.broken_images}
    assert not broken, f"images that did not load: {broken}"


def test_no_broken_internal_link(reports, smoke_book):
    ids: dict[Path, set[str]] = {}
    broken = []
    for path, report in reports.items():
        for href in report.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue  # external: the repository, Colab, DOIs
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.is_file():
                broken.append(f"{_relative(path, smoke_book.html)}: {href} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in ids:
                    parser = _Ids()
                    parser.feed(target.read_text(encoding="utf-8"))
                    ids[target] = parser.ids
                if unquote(parts.fragment) not in ids[target]:
                    broken.append(f"{_relative(path, smoke_book.html)}: {href} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_mathjax_rendered_every_formula(reports, smoke_book):
    pages_with_math = [path for path, r in reports.items() if r.math]
    assert len(pages_with_math) >= 3  # the method page and the results chapters have math
    unrendered = {_relative(p, smoke_book.html): r.unrendered_math for p, r in reports.items() if r.unrendered_math}
    assert not unrendered, f"math MathJax did not typeset: {unrendered}"
    raw = {_relative(p, smoke_book.html): hits for p, r in reports.items()
           if (hits := [m.group() for text in r.prose for m in RAW_MATH.finditer(text)])}
    assert not raw, f"$…$ left as text: {raw}"


def test_no_glue_dump_in_cell_outputs(reports, smoke_book):
    dumps = {_relative(p, smoke_book.html): lines for p, r in reports.items()
             if (lines := [line for text in r.outputs for line in text.splitlines() if GLUE_LINE.match(line)])}
    assert not dumps, f"`name = value` lines of glued values shown on the pages: {dumps}"


def test_no_object_repr_in_cell_outputs(reports, smoke_book):
    reprs = {_relative(p, smoke_book.html): lines for p, r in reports.items()
             if (lines := [line for text in r.outputs for line in text.splitlines() if OBJECT_REPR.search(line)])}
    assert not reprs, f"object reprs shown on the pages: {reprs}"


def test_every_figure_is_numbered_and_captioned(reports, smoke_book):
    assert sum(r.figures for r in reports.values()) >= 10  # the results chapters have figures
    missing = {_relative(p, smoke_book.html): r.uncaptioned for p, r in reports.items() if r.uncaptioned}
    assert not missing, f"figures without a 'Fig. N' caption: {missing}"


def test_py_references_of_book_pages_resolve(reports, smoke_book):
    """The ``{py:func}`` and relatives of the prose pages and notebooks link to the API pages."""
    prose = {p: r for p, r in reports.items() if "api" not in p.relative_to(smoke_book.html).parts}
    assert sum(1 for _ in prose) > 5
    unresolved = {_relative(p, smoke_book.html): r.unresolved_xrefs for p, r in prose.items() if r.unresolved_xrefs}
    assert not unresolved, f"{{py:...}} references without a target: {unresolved}"
