"""Sphinx extension of the SWIG companion book: render notebooks from their executed copies.

The table of contents lists the notebook *sources* (``notebooks/NN_name.ipynb``, committed without
outputs). Papermill writes the executed copies to ``results/<profile>/executed/NN_name.ipynb``
(``swig reproduce``). When Sphinx reads a notebook page, this extension substitutes the executed
copy of the selected profile for the source text, so one ``_toc.yml`` serves every profile and
the repository holds no generated notebooks.

Configuration (``_config.yml`` → ``sphinx.config``, or environment variables, which win):

``swig_profile`` / ``SWIG_PROFILE``
    The profile whose executed notebooks the book shows (default ``quick``).
``swig_results_dir`` / ``SWIG_RESULTS_DIR``
    The results folder, relative to the book root or absolute (default ``results``).
``swig_notebooks_dir``
    The folder of the notebook sources, relative to the book root (default ``notebooks``).

A notebook without an executed copy is shown as its source, with a note saying how to execute
it; the build then runs in *preview* mode, where a prose page's ``{glue}`` paste from such a
notebook is dropped silently instead of failing the build. Changing the profile re-reads every
page; a newer executed copy re-reads its page and every page that may paste from it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

#: File names of the notebooks that form the results chapters: ``NN_name.ipynb``.
NOTEBOOK_NAME = re.compile(r"^\d{2}_\w+$")

#: Environment variables that override the configuration values of the same meaning.
ENV_OVERRIDES = {"swig_profile": "SWIG_PROFILE", "swig_results_dir": "SWIG_RESULTS_DIR"}


def executed_copy(app: Sphinx, name: str) -> Path:
    """Return where ``swig reproduce`` writes the executed copy of notebook ``name``."""
    results = Path(app.config.swig_results_dir)
    if not results.is_absolute():
        results = Path(app.srcdir) / results
    return results / app.config.swig_profile / "executed" / f"{name}.ipynb"


def notebook_name(app: Sphinx, docname: str) -> str | None:
    """Return the notebook name of a results-chapter page, or None for any other page."""
    folder, _, name = docname.rpartition("/")
    if folder != app.config.swig_notebooks_dir.strip("/") or not NOTEBOOK_NAME.match(name):
        return None
    return name


def apply_overrides(app: Sphinx, config: Config) -> None:
    """Apply the environment overrides; enter preview mode when an executed copy is missing."""
    for key, variable in ENV_OVERRIDES.items():
        if os.environ.get(variable):
            setattr(config, key, os.environ[variable])
    sources = sorted((Path(app.srcdir) / config.swig_notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    missing = [path.stem for path in sources if not executed_copy(app, path.stem).is_file()]
    if missing:
        LOGGER.info(
            f"swig_book: preview mode: no executed copy for profile {config.swig_profile!r} "
            f"of {', '.join(missing)}; pasted glue values from them are left out"
        )
        config.suppress_warnings = [*config.suppress_warnings, "mystnb.glue_ref", "mystnb.glue"]


def substitute_executed(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace a notebook page's source text by its executed copy (``source-read`` handler)."""
    name = notebook_name(app, docname)
    if name is None:
        return
    executed = executed_copy(app, name)
    # A dependency re-reads the page whenever the executed copy is newer, or is still missing.
    app.env.note_dependency(str(executed))
    if executed.is_file():
        source[0] = executed.read_text(encoding="utf-8")
        return
    notebook = nbformat.reads(source[0], as_version=4)
    profile = app.config.swig_profile
    note = nbformat.v4.new_markdown_cell(
        ":::{note}\n"
        f"This page shows the notebook source: it has not been executed for profile `{profile}` "
        f"yet. Run `swig reproduce --profile {profile}` to execute it and rebuild the book.\n"
        ":::"
    )
    notebook.cells.insert(1 if notebook.cells else 0, note)
    source[0] = nbformat.writes(notebook)


def reread_pasting_pages(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Re-read every page when a notebook page changes, so that glue pastes stay current."""
    if any(notebook_name(app, docname) for docname in added | changed | removed):
        return sorted(env.found_docs)
    return []


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the configuration values and event handlers."""
    app.add_config_value("swig_profile", "quick", "env", types=[str])
    app.add_config_value("swig_results_dir", "results", "env", types=[str])
    app.add_config_value("swig_notebooks_dir", "notebooks", "env", types=[str])
    app.connect("config-inited", apply_overrides)
    app.connect("source-read", substitute_executed)
    app.connect("env-get-outdated", reread_pasting_pages)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
