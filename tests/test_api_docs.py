"""The API pages (book/api/*.rst) build without a warning: every docstring is valid reStructuredText.

The book test builds them too, with the notebooks, in minutes; this builds only the API pages, with
the autodoc and napoleon settings of ``_config.yml``, so that a docstring that would break the
book's ``-W`` build (``|x|`` read as a substitution, a hanging indent, an unclosed ````...````)
fails here in seconds.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import yaml
from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("package", "core", "experiments", "book")


def test_api_pages_build_without_warnings(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]
    settings = {key: value for key, value in config["config"].items()
                if key.startswith(("autodoc_", "napoleon_")) or key == "add_module_names"}
    extensions = [name for name in config["extra_extensions"] if name.startswith("sphinx.ext.")]
    assert {"sphinx.ext.autodoc", "sphinx.ext.napoleon"} <= set(extensions)
    source = tmp_path / "source"
    source.mkdir()
    for page in PAGES:
        shutil.copy(ROOT / "book" / "api" / f"{page}.rst", source)
    (source / "index.rst").write_text("API\n===\n\n.. toctree::\n\n" + "".join(f"   {p}\n" for p in PAGES))
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        f"extensions = {[*extensions, 'swig_api']!r}\n"
        + "".join(f"{key} = {value!r}\n" for key, value in settings.items())
    )
    warnings = io.StringIO()
    app = Sphinx(str(source), str(source), str(tmp_path / "out"), str(tmp_path / "doctrees"), "dummy",
                 status=None, warning=warnings, freshenv=True)
    app.build()
    assert warnings.getvalue() == ""
    assert app.statuscode == 0
    assert "swig_lib.core.physics" in app.env.domaindata["py"]["modules"]
