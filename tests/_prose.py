"""The glue names that the book's prose pastes from a notebook."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def glued_names(notebook: str) -> set[str]:
    """Return the glue names of ``notebook`` that markdown cells and ``book/`` pages paste.

    A paste reads ``{glue:text}`/notebooks/<notebook>::<name>:s``.
    """
    pattern = re.compile(rf"{re.escape(notebook)}::(\w+)")
    names = set()
    for path in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("book/*.md")]:
        if path.suffix == ".ipynb":
            text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                           if c["cell_type"] == "markdown")
        else:
            text = path.read_text()
        names |= set(pattern.findall(text))
    return names
