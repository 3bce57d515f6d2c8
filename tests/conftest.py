"""Shared test set-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: on shared CPUs OpenMP barriers make 2 threads many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class SmokeBook:
    """The smoke-profile run of :func:`smoke_book`: exit status, results folder, built HTML."""

    status: int
    results: Path
    html: Path


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory: pytest.TempPathFactory) -> SmokeBook:
    """Execute every notebook in the smoke profile and build the book, once per session.

    Data, results and the book go to a temporary folder (the repository's ``_build`` is left
    alone); ``tests/test_book.py`` and ``tests/test_book_browser.py`` share the build.
    """
    from swig_lib.book.reproduce import reproduce

    folder = tmp_path_factory.mktemp("smoke-book")
    status = reproduce("smoke", force=True, data_dir=str(folder / "data"), results_dir=str(folder / "results"),
                       root=ROOT, progress=False, book_dir=folder)
    return SmokeBook(status=status, results=folder / "results", html=folder / "_build" / "html")
