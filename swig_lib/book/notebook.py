"""What every notebook of the book needs: the Colab cell, the page header, gluing, the conventions.

A results notebook ``notebooks/NN_name.ipynb`` has this head, written by :func:`new_notebook` and
checked by :func:`check_notebook` (``tests/test_reproduce.py`` checks every notebook):

1. a Markdown cell: ``# Title``, the "Open in Colab" badge (:func:`colab_badge`), an introduction;
2. the Colab install cell (:func:`colab_install_source`, tag ``remove-cell``), a no-op outside
   Colab;
3. the parameters cell (tags ``parameters`` and ``remove-cell``) assigning exactly
   :data:`PARAMETERS`, optionally followed by parameters for users' own data that default to
   ``None`` (e.g. ``user_data = None``; the runner never sets them); papermill adds the cell of
   the values it injects after it, which the book shows;
4. the header cell (tag ``remove-input``): ``header = page_header(profile, device)``;

then the notebook's own cells, and last ``header.update()`` (tag ``remove-cell``), which rewrites
the banner with the run time from the header cell to the end. Paths are relative to the repository root (the
working directory papermill uses); results go under ``<results_dir>/<profile>/``.

:data:`REPO_URL` is the one place that names the GitHub repository; after changing it, run
:func:`sync_notebooks` to rewrite the Colab cell and badge of every notebook.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import torch
from nbformat import NotebookNode

from swig_lib import __version__, default_device
from swig_lib.core.io import atomic_write_bytes
from swig_lib.experiments.config import load_profile

#: The GitHub repository of this companion: the single setting for Colab links and installs.
REPO_URL = "https://github.com/swig-qmri/swig-companion"
#: The branch that Colab links and the Colab install cell use.
REPO_BRANCH = "main"

#: Top-level folder of run outputs, ignored when :func:`git_state` judges the checkout dirty.
RESULTS_FOLDER = "results"

#: Names the parameters cell assigns, in order, with their defaults.
PARAMETERS: dict[str, Any] = {
    "profile": "quick",
    "seed": 0,
    "data_dir": "data",
    "results_dir": "results",
    "device": "auto",
}

#: First line of the badge in the title cell (:func:`sync_notebook` finds the badge by it).
_BADGE_ALT = "[![Open in Colab]"


def colab_url(notebook: str) -> str:
    """Return the Colab address that opens ``notebooks/<notebook>.ipynb`` from GitHub."""
    slug = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{slug}/blob/{REPO_BRANCH}/notebooks/{notebook}.ipynb"


def colab_badge(notebook: str) -> str:
    """Return the Markdown of the "Open in Colab" badge for notebook ``notebook`` (no suffix)."""
    return f"{_BADGE_ALT}(https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


def colab_install_source() -> str:
    """Return the source of the Colab install cell, the first code cell of every notebook.

    In Colab the cell clones the repository (its ``benchmarks/`` and ``profiles`` travel with it),
    installs :mod:`swig_lib` with its dependencies, and makes the clone the working directory, as
    papermill does with the checkout here, so the notebook's relative paths hold. The cell cannot
    import :mod:`swig_lib` (it installs it), so it is literal code; it does nothing outside Colab.
    """
    clone = "/content/" + REPO_URL.rstrip("/").rsplit("/", 1)[-1]
    return (
        "# In Google Colab only: clone the repository, install swig_lib, work from the clone's root\n"
        "# (a no-op anywhere else).\n"
        "import os\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    if not os.path.isdir("{clone}"):\n'
        f"        !git clone --quiet --depth 1 --branch {REPO_BRANCH} {REPO_URL} {clone}\n"
        f"    %pip install --quiet {clone}\n"
        f'    os.chdir("{clone}")'
    )


def parameters_source(**overrides: Any) -> str:
    """Return the source of a parameters cell: :data:`PARAMETERS`, updated by ``overrides``."""
    unknown = set(overrides) - set(PARAMETERS)
    if unknown:
        raise KeyError(f"not notebook parameters: {sorted(unknown)}; allowed: {list(PARAMETERS)}")
    values = {**PARAMETERS, **overrides}
    return "\n".join(f"{name} = {json.dumps(value)}" for name, value in values.items())


def git_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the git commit of the checkout containing ``path`` and whether it has changes.

    Parameters
    ----------
    path : path-like, optional
        Any folder inside the checkout (default: the working directory).

    Returns
    -------
    dict
        ``{"commit": str | None, "dirty": bool | None}``; both None outside a git checkout or
        without git. ``dirty`` counts changes to tracked files outside :data:`RESULTS_FOLDER`
        (a run rewrites the committed result tables there; that is output, not a code change).
    """
    cwd = Path(path) if path is not None else Path.cwd()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # results/ holds the run's own outputs (some committed): rewriting them is not a code change
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                 f":(top,exclude){RESULTS_FOLDER}")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn the ``device`` notebook parameter into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else the CPU), or any torch device such as ``"cpu"``.

    Raises
    ------
    RuntimeError
        When CUDA is asked for but not available.
    """
    if str(device) == "auto":
        return default_device()
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} asked for, but CUDA is not available here")
    return resolved


def describe_device(device: torch.device) -> str:
    """Return a one-line description of ``device``: the GPU's name, or the CPU and its threads."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    processor = platform.processor() or platform.machine()
    return f"{device} ({processor}, {torch.get_num_threads()} threads)"


def _format_duration(seconds: float) -> str:
    """Format seconds as ``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class PageHeader:
    """The banner at the top of a notebook page: profile, device, run time, commit.

    Create it with :func:`page_header`; call :meth:`update` in the last cell so that the banner
    shows the run time from the header cell to the end (the executed notebook keeps the updated
    banner; the runner's ``provenance.json`` has the full durations, kernel start included).
    """

    def __init__(self, profile: str, device: str | torch.device, started: float | None = None):
        self.profile = profile
        load_profile(profile).apply_threads()  # before any computation: the numbers depend on it
        self.device = describe_device(resolve_device(device))
        self.started = time.time() if started is None else started
        self.git = git_state()
        self._handle: Any = None

    def markdown(self) -> str:
        """Return the banner as one line of Markdown, with the run time up to now."""
        commit = self.git["commit"]
        if commit is None:
            revision = "not a git checkout"
        else:
            revision = f"`{commit[:10]}`" + (" with uncommitted changes" if self.git["dirty"] else "")
        started = datetime.fromtimestamp(self.started, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        elapsed = _format_duration(time.time() - self.started)
        return (
            f"**Profile** `{self.profile}` · **device** {self.device} · **run time** {elapsed} · "
            f"**started** {started} · **commit** {revision} · **swig_lib** {__version__}"
        )

    def show(self) -> None:
        """Display the banner (in IPython with a display id, so :meth:`update` can rewrite it)."""
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is None:
            print(self.markdown())
        else:
            self._handle = display(Markdown(self.markdown()), display_id=True)

    def update(self) -> None:
        """Rewrite the displayed banner with the run time up to now (outside IPython: print it)."""
        from IPython.display import Markdown

        if self._handle is None:
            print(self.markdown())
        else:
            self._handle.update(Markdown(self.markdown()))


def page_header(profile: str, device: str | torch.device, started: float | None = None) -> PageHeader:
    """Display the banner of a notebook page and return it (call ``.update()`` at the end).

    It first sets torch's CPU threads to the profile's ``threads``
    (:meth:`~swig_lib.experiments.config.Profile.apply_threads`), so that every notebook computes
    with the thread count its profile's numbers were made with; the banner shows that count.

    Parameters
    ----------
    profile : str
        The ``profile`` notebook parameter.
    device : str or torch.device
        The ``device`` notebook parameter (``"auto"`` is resolved, see :func:`resolve_device`).
    started : float, optional
        When the notebook started (``time.time()``); default: now.

    Returns
    -------
    PageHeader
        The displayed banner.
    """
    header = PageHeader(profile, device, started)
    header.show()
    return header


def glue_value(name: str, value: Any, fmt: str | None = None) -> None:
    """Glue ``value`` under ``name`` for the book (``{glue}`` roles), or print it without myst-nb.

    Parameters
    ----------
    name : str
        The glue key. A prose page pastes it with
        ``{glue:text}`/notebooks/NN_name.ipynb::name:s``` (myst-nb needs the trailing format
        specification, here ``:s``, when pasting from another page).
    value : Any
        A number or string (printed as ``name = value``), or a figure or table (displayed).
    fmt : str, optional
        A format specification such as ``".3f"``. When given, the formatted string is glued, so
        that the notebook fixes the precision that every page shows.
    """
    shown = value if fmt is None else format(value, fmt)
    scalar = isinstance(shown, (str, int, float))
    try:
        from myst_nb import glue
    except ImportError:  # myst-nb is an optional dependency (the "book" extra)
        glue = None
    if glue is not None:
        glue(name, shown, display=not scalar)
    if scalar or glue is None:
        print(f"{name} = {shown}")


def glue_all(glue: Mapping[str, tuple[Any, str | None]]) -> None:
    """:func:`glue_value` every entry of a chapter's glue mapping, ``name: (value, fmt)``."""
    for name, (value, fmt) in glue.items():
        glue_value(name, value, fmt)


def show(figure: Any) -> None:
    """Display a matplotlib ``figure`` in the notebook and close it (its memory is freed)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(figure)
    plt.close(figure)


def _title_source(name: str, title: str, intro: str) -> str:
    """Return the title cell's Markdown: heading, Colab badge, introduction."""
    return f"# {title}\n\n{colab_badge(name)}\n\n{intro.strip()}"


def new_notebook(name: str, title: str, intro: str, cells: list[NotebookNode]) -> NotebookNode:
    """Return a notebook with the conventional head and tail around ``cells``.

    Parameters
    ----------
    name : str
        The notebook's file name without suffix, e.g. ``"01_data_synthesis"``.
    title : str
        The page title (the ``#`` heading).
    intro : str
        Markdown introducing the page, under the Colab badge.
    cells : list of NotebookNode
        The notebook's own cells (``nbformat.v4.new_code_cell`` / ``new_markdown_cell``).
    """
    v4 = nbformat.v4
    head = [
        v4.new_markdown_cell(_title_source(name, title, intro)),
        v4.new_code_cell(colab_install_source(), metadata={"tags": ["remove-cell"]}),
        v4.new_code_cell(parameters_source(), metadata={"tags": ["parameters", "remove-cell"]}),
        v4.new_code_cell(
            "from swig_lib.book.notebook import page_header\n\nheader = page_header(profile, device)",
            metadata={"tags": ["remove-input"]},
        ),
    ]
    tail = [v4.new_code_cell("header.update()", metadata={"tags": ["remove-cell"]})]
    notebook = v4.new_notebook(cells=[*head, *cells, *tail])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):  # stable ids: regenerating gives the same file
        cell.id = f"{name}-{index:02d}".replace("_", "-")
    return notebook


def write_notebook(notebook: NotebookNode, path: str | os.PathLike[str]) -> None:
    """Validate ``notebook`` and write it to ``path`` atomically (temporary file + rename)."""
    nbformat.validate(notebook)
    atomic_write_bytes(path, (nbformat.writes(notebook) + "\n").encode("utf-8"))


def _tags(cell: NotebookNode) -> list[str]:
    """Return a cell's tags."""
    return list(cell.get("metadata", {}).get("tags", []))


def check_notebook(notebook: NotebookNode, name: str) -> list[str]:
    """Return how ``notebook`` (file name ``name``, no suffix) breaks the conventions; [] if none."""
    problems: list[str] = []
    cells = notebook.cells
    if len(cells) < 5:
        return [f"{name}: expected the head (title, Colab, parameters, header cells) and a tail"]
    title, colab, params, header = cells[:4]
    if title.cell_type != "markdown" or not title.source.startswith("# "):
        problems.append(f"{name}: cell 0 must be Markdown starting with the '# Title' heading")
    elif colab_badge(name) not in title.source:
        problems.append(f"{name}: cell 0 lacks the Colab badge {colab_badge(name)!r}")
    if colab.cell_type != "code" or colab.source != colab_install_source():
        problems.append(f"{name}: cell 1 must be the Colab install cell, colab_install_source()")
    if "parameters" not in _tags(params):
        problems.append(f"{name}: cell 2 must be the parameters cell (tag 'parameters')")
    else:
        assignments = [
            (target.id, statement.value)
            for statement in ast.parse(params.source).body
            if isinstance(statement, ast.Assign)
            for target in statement.targets
            if isinstance(target, ast.Name)
        ]
        assigned = [target for target, _ in assignments]
        optional = assignments[len(PARAMETERS):]
        if assigned[: len(PARAMETERS)] != list(PARAMETERS):
            problems.append(f"{name}: the parameters cell assigns {assigned}, expected {list(PARAMETERS)} "
                            "first")
        elif any(not (isinstance(value, ast.Constant) and value.value is None) for _, value in optional):
            problems.append(f"{name}: optional parameters after {list(PARAMETERS)} must default to None")
    if "header = page_header(profile, device" not in header.source:
        problems.append(f"{name}: cell 3 must create the banner: header = page_header(profile, device)")
    if cells[-1].source.strip() != "header.update()":
        problems.append(f"{name}: the last cell must be header.update()")
    return problems


def sync_notebook(path: str | os.PathLike[str]) -> bool:
    """Rewrite the Colab cell and badge of one notebook from :data:`REPO_URL`.

    Returns
    -------
    bool
        True when the file changed.
    """
    target = Path(path)
    notebook = nbformat.read(target, as_version=4)
    title, colab = notebook.cells[0], notebook.cells[1]
    lines = [
        colab_badge(target.stem) if line.startswith(_BADGE_ALT) else line for line in title.source.split("\n")
    ]
    before = (title.source, colab.source)
    title.source, colab.source = "\n".join(lines), colab_install_source()
    if (title.source, colab.source) == before:
        return False
    write_notebook(notebook, target)
    return True


def sync_notebooks(folder: str | os.PathLike[str] = "notebooks") -> list[Path]:
    """Apply :func:`sync_notebook` to every ``NN_name.ipynb`` in ``folder``; return those changed."""
    return [path for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")) if sync_notebook(path)]
