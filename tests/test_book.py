"""End to end: every notebook runs in the smoke profile and the book builds offline with -W.

This is what CI runs on every submission (through `make test`): a notebook that fails, or a book
warning (a docstring that autodoc cannot read included), fails the suite. It takes a few minutes;
deselect it with ``-m "not book"`` while iterating on the package. The run and the book go to a
temporary folder (the ``smoke_book`` fixture of ``conftest.py``, shared with
``tests/test_book_browser.py``), not to the repository's ``_build``.

The checks of the book's configuration below need no build.
"""

import sys
from pathlib import Path

import pytest
import yaml
from docutils.nodes import make_id

from swig_lib.book.notebook import REPO_URL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.book
def test_smoke_profile_executes_every_notebook_and_builds_the_book(smoke_book):
    assert smoke_book.status == 0
    for name in NOTEBOOKS:
        assert (smoke_book.results / "smoke" / "executed" / f"{name}.ipynb").is_file(), name
        page = smoke_book.html / "notebooks" / f"{name}.html"
        assert page.is_file(), page
        assert "has not been executed" not in page.read_text(encoding="utf-8"), f"{name} rendered unexecuted"
    assert (smoke_book.results / "smoke" / "provenance.json").is_file()
    assert (smoke_book.html / "index.html").is_file()
    for page in ("book/availability", "book/api/core", "book/api/experiments", "book/api/book"):
        assert (smoke_book.html / f"{page}.html").is_file(), page


@pytest.mark.book
def test_api_pages_document_every_module(smoke_book):
    """Each module of the three layers has its section (id ``api-<module>``) on its layer's page."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from swig_api import package_modules
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    for layer in ("core", "experiments", "book"):
        html = (smoke_book.html / "book" / "api" / f"{layer}.html").read_text(encoding="utf-8")
        modules = package_modules(f"swig_lib.{layer}")
        assert modules[0] == f"swig_lib.{layer}" and len(modules) > 2
        for module in modules:
            assert f'id="{make_id(f"api-{module}")}"' in html, module


def test_config_names_the_repository_and_the_api_extensions():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == REPO_URL  # one repository for Colab cells and the book
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert not config["launch_buttons"]["binderhub_url"]
    assert {"sphinx.ext.autodoc", "sphinx.ext.napoleon"} <= set(config["sphinx"]["extra_extensions"])
    static = [ROOT / folder for folder in config["sphinx"]["config"]["html_static_path"]]
    for css in config["sphinx"]["config"]["html_css_files"]:
        assert any((folder / css).is_file() for folder in static), css


def test_toc_lists_the_furniture_pages_and_they_exist():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    for page in ("book/availability", "book/api/index", "book/api/package", "book/api/core",
                 "book/api/experiments", "book/api/book"):
        assert f"file: {page}\n" in toc, page
        assert any((ROOT / f"{page}{suffix}").is_file() for suffix in (".md", ".rst")), page
    for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md"):
        assert (ROOT / name).is_file(), name
