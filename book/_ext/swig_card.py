"""Sphinx extension of the SWIG companion book: the released model's card on its page.

``swig release`` writes the model card (Markdown) next to the released model, in the package
(:data:`swig_lib.experiments.release.PACKAGED_RELEASE`, or ``$SWIG_RELEASE_DIR``). A page holding
the line :data:`PLACEHOLDER` (a MyST comment, invisible without this extension) gets the card in
its place when Sphinx reads it, its headings one level deeper, so that the page shows the card of
the installed release wherever the book's sources were copied. Without a release the page says
how to make one instead (and the build does not fail).
"""

from __future__ import annotations

import re
from typing import Any

from sphinx.application import Sphinx

from swig_lib.experiments.release import read_release

#: The line a page holds where the card goes.
PLACEHOLDER = "% swig: released model card"

#: The text shown where no model has been released.
NO_RELEASE = """```{note}
This checkout has no released model yet: `make release` (`swig release --profile quick`) writes it,
with this card, from the `quick` profile's results.
```"""


def card_markdown() -> tuple[str, str | None]:
    """Return the card's Markdown with every heading one level deeper, and its file (None: no release)."""
    release = read_release()
    if release is None or not release.card.is_file():
        return NO_RELEASE, None
    text = release.card.read_text(encoding="utf-8")
    return re.sub(r"^(#+ )", r"#\1", text, flags=re.MULTILINE), str(release.card)


def insert_card(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read``: replace the placeholder line by the card (and depend on its file)."""
    if PLACEHOLDER not in source[0]:
        return
    text, path = card_markdown()
    if path is not None:
        app.env.note_dependency(path)
    source[0] = source[0].replace(PLACEHOLDER, text)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the event handler."""
    app.connect("source-read", insert_card)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
