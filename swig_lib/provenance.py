"""Fingerprints of what produced a result: length-prefixed SHA-256 hashes and the package's sources.

A leaf module (standard library only), so that both the experiments (cache keys such as the
cross-sequence ``run.json``) and the book runner (the stamps of ``swig reproduce``) can record
which sources produced an output without one layer importing the other.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The folder of the swig_lib sources that :func:`package_fingerprint` hashes.
PACKAGE_DIR = Path(__file__).resolve().parent


def sha256_parts(*parts: bytes) -> str:
    """Return the hexadecimal SHA-256 of the length-prefixed ``parts``.

    Each part is preceded by its length (8 bytes, little-endian), so that moving bytes from one
    part to the next changes the hash.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def package_fingerprint(package_dir: str | os.PathLike[str] = PACKAGE_DIR) -> str:
    """Hash every ``*.py`` and ``*.toml`` file of the package (names and contents)."""
    folder = Path(package_dir)
    files = sorted(
        path
        for pattern in ("*.py", "*.toml")
        for path in folder.rglob(pattern)
        if "__pycache__" not in path.parts
    )
    parts: list[bytes] = []
    for path in files:
        parts += [path.relative_to(folder).as_posix().encode(), path.read_bytes()]
    return sha256_parts(*parts)
