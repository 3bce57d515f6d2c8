"""Sphinx extension of the SWIG companion book: API pages from the docstrings, one section per module.

The directive ``swig-api`` (in an ``.rst`` page, so that the docstrings are read as
reStructuredText) documents a package and every module under it, found with
:func:`pkgutil.walk_packages` at build time, so that a new module appears without editing a page::

    .. swig-api:: swig_lib.core

Each module becomes a section titled with its dotted name (a page's table of contents lists
them), holding ``.. automodule:: <name>`` with the options of ``autodoc_default_options``. Modules
whose dotted name has a part starting with ``_`` (and ``__main__``) are left out. A page is read
again when its packages gain or lose a module (autodoc itself re-reads it when a module changes).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def package_modules(package: str) -> list[str]:
    """Return ``package`` and the dotted names of every public module under it, sorted."""
    module = importlib.import_module(package)
    found = [info.name for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{package}.")]
    public = [name for name in found if not any(part.startswith("_") for part in name.split("."))]
    return [package, *sorted(public)]


class PackageApi(SphinxDirective):
    """``.. swig-api:: package``: one section with ``automodule`` per module of the package."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        """Return one section per module."""
        sections: list[nodes.Node] = []
        source, line = self.get_source_info()
        modules = package_modules(self.arguments[0])
        _listed(self.env).setdefault(self.env.docname, {})[self.arguments[0]] = modules
        for name in modules:
            section = nodes.section(ids=[nodes.make_id(f"api-{name}")], names=[nodes.fully_normalize_name(name)])
            section += nodes.title(name, "", nodes.literal(name, name))
            self.state.document.note_implicit_target(section, section)
            body = StringList([f".. automodule:: {name}"], source=source, items=[(source, line)])
            nested_parse_with_titles(self.state, body, section)
            sections.append(section)
        return sections


def _listed(env: BuildEnvironment) -> dict[str, dict[str, list[str]]]:
    """The modules each page documents: ``{docname: {package: modules}}``, kept in the environment."""
    if not hasattr(env, "swig_api_modules"):
        env.swig_api_modules = {}
    return env.swig_api_modules


def outdated_pages(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Return the API pages whose packages now hold other modules (``env-get-outdated`` handler)."""
    return [docname for docname, packages in _listed(env).items()
            if any(package_modules(package) != modules for package, modules in packages.items())]


def purge_page(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    """Forget what a page documented before it is read again (``env-purge-doc`` handler)."""
    _listed(env).pop(docname, None)


def merge_pages(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    """Take over what parallel readers recorded (``env-merge-info`` handler)."""
    _listed(env).update({docname: modules for docname, modules in _listed(other).items() if docname in docnames})


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive and the handlers that keep the pages current."""
    app.add_directive("swig-api", PackageApi)
    app.connect("env-get-outdated", outdated_pages)
    app.connect("env-purge-doc", purge_page)
    app.connect("env-merge-info", merge_pages)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
