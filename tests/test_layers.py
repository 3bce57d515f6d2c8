"""The package's layers: imports go only downward (core → experiments → book → cli), never up.

Every ``swig_lib`` module is parsed (not imported) and each of its imports of another ``swig_lib``
module, at any depth of the file (functions included), is checked against the layer order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "swig_lib"

#: Layer of a module by its dotted-name prefix; higher layers may import lower ones only.
LAYERS: tuple[tuple[str, int], ...] = (
    ("swig_lib.cli", 4),
    ("swig_lib.book", 3),
    ("swig_lib.experiments", 2),
    ("swig_lib.core", 1),
    ("swig_lib", 0),  # the leaves: __init__ (version, device), paper (printed numbers), provenance
)


def layer(module: str) -> int:
    """Layer of a dotted module name (the first matching prefix of :data:`LAYERS`)."""
    return next(rank for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + "."))


def module_name(path: Path) -> str:
    """Dotted name of a source file of the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``swig_lib`` module a file imports (``from swig_lib.x import y`` counts ``swig_lib.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute swig_lib imports")
    return {name for name in found if name == "swig_lib" or name.startswith("swig_lib.")}


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_layer_table_covers_every_module() -> None:
    assert len(SOURCES) > 50
    assert {layer(module_name(p)) for p in SOURCES} == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_downward(path: Path) -> None:
    own = layer(module_name(path))
    upward = sorted(name for name in imported_modules(path) if layer(name) > own)
    assert not upward, f"{module_name(path)} (layer {own}) imports higher layers: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from swig_lib.cli import main\n    return main\n")
    assert imported_modules(source) == {"swig_lib.cli"}
    assert layer("swig_lib.cli") > layer("swig_lib.core.physics")
