"""Tests of the provenance fingerprints (swig_lib.provenance)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from swig_lib import provenance


def test_sha256_parts_prefixes_every_part_with_its_length() -> None:
    expected = hashlib.sha256((2).to_bytes(8, "little") + b"ab" + (1).to_bytes(8, "little") + b"c").hexdigest()
    assert provenance.sha256_parts(b"ab", b"c") == expected
    assert provenance.sha256_parts(b"ab", b"c") != provenance.sha256_parts(b"a", b"bc")
    assert provenance.sha256_parts() == hashlib.sha256().hexdigest()


def test_package_fingerprint_hashes_the_sorted_names_and_contents_of_sources(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.toml").write_text("x = 1\n")
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "notes.txt").write_text("not a source\n")
    expected = provenance.sha256_parts(b"a.py", b"A = 1\n", b"sub/b.toml", b"x = 1\n")
    assert provenance.package_fingerprint(tmp_path) == expected
    assert provenance.PACKAGE_DIR.name == "swig_lib" and (provenance.PACKAGE_DIR / "provenance.py").is_file()
