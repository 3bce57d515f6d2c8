"""End to end: every notebook runs in the smoke profile and the book builds offline with -W.

This is what CI runs on every submission (through `make test`): a notebook that fails, or a book
warning, fails the suite. It takes a few minutes; deselect it with ``-m "not book"`` while
iterating on the package.
"""

from pathlib import Path

import pytest

from swig_lib.book.reproduce import reproduce

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.book
def test_smoke_profile_executes_every_notebook_and_builds_the_book(tmp_path):
    results = tmp_path / "results"
    status = reproduce(
        "smoke", force=True, data_dir=str(tmp_path / "data"), results_dir=str(results), root=ROOT, progress=False
    )
    assert status == 0
    for name in NOTEBOOKS:
        assert (results / "smoke" / "executed" / f"{name}.ipynb").is_file(), name
        page = ROOT / "_build" / "html" / "notebooks" / f"{name}.html"
        assert page.is_file(), page
        assert "has not been executed" not in page.read_text(encoding="utf-8"), f"{name} rendered unexecuted"
    assert (results / "smoke" / "provenance.json").is_file()
    assert (ROOT / "_build" / "html" / "index.html").is_file()
