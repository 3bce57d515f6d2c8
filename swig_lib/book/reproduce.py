"""``swig reproduce``: execute the book's notebooks with papermill, then build the book.

The notebooks ``notebooks/NN_name.ipynb`` run in numeric order, each with the injected parameters
``profile``, ``seed``, ``data_dir``, ``results_dir`` and ``device`` and with the repository root as
working directory. Executed copies go to ``<results_dir>/<profile>/executed/NN_name.ipynb``; the
book (``jupyter-book build . -W``) renders those copies for the chosen profile.

A step is skipped when its executed copy carries the step's *stamp*: a hash of the injected
parameters, every source file of :mod:`swig_lib` (``profiles.toml`` included), the notebook's
cells and the stamp of the step before it, so that a change upstream reruns what follows.
``force`` reruns the selected steps regardless. A failing notebook stops the run with a message
naming the notebook, the cell and the error; its partial copy is kept as ``NN_name.failed.ipynb``.
Every run writes ``<results_dir>/<profile>/provenance.json``: before each notebook step (status
``running``, with the steps so far, so that a notebook can report the run time of those before
it) and at the end.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
import numpy
import torch
from traitlets.config import Config

from swig_lib import __version__
from swig_lib.book.notebook import (
    describe_device,
    git_state,
    resolve_device,
)
from swig_lib.core.io import atomic_write_json
from swig_lib.experiments.config import load_profile
from swig_lib.provenance import PACKAGE_DIR, package_fingerprint, sha256_parts

#: The Jupyter kernel that runs the notebooks (ipykernel's, of the running interpreter).
KERNEL_NAME = "python3"
#: File names of the notebooks that ``swig reproduce`` runs, in numeric order.
NOTEBOOK_FILE = re.compile(r"^\d{2}_\w+\.ipynb$")
#: Key of the executed notebook's metadata where the runner records the stamp and timings.
METADATA_KEY = "swig"


class ReproduceError(Exception):
    """A step of ``swig reproduce`` failed; the message says which step and why."""


def _utc_now() -> str:
    """Return the current time as an ISO 8601 string in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def find_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the repository root: ``root``, else the working directory or the package's parent.

    Raises
    ------
    ReproduceError
        When the folder has no ``notebooks/`` folder and ``_toc.yml``.
    """
    candidates = [Path(root)] if root is not None else [Path.cwd(), PACKAGE_DIR.parent]
    for candidate in candidates:
        if (candidate / "notebooks").is_dir() and (candidate / "_toc.yml").is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ReproduceError(f"no repository root (a folder with notebooks/ and _toc.yml) at: {tried}")


def discover_notebooks(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the notebooks ``NN_name.ipynb`` of ``folder`` in numeric order."""
    return sorted(path for path in Path(folder).iterdir() if NOTEBOOK_FILE.match(path.name))


def notebook_fingerprint(path: str | os.PathLike[str]) -> str:
    """Hash what a notebook runs and shows: its cells' types, sources, tags and attachments.

    Outputs, execution counts and editor metadata do not enter, so saving the notebook in an
    editor does not invalidate its executed copy.
    """
    notebook = nbformat.read(path, as_version=4)
    cells = [
        {
            "type": cell.cell_type,
            "source": cell.source,
            "tags": list(cell.get("metadata", {}).get("tags", [])),
            "attachments": cell.get("attachments", {}),
        }
        for cell in notebook.cells
    ]
    return sha256_parts(json.dumps(cells, sort_keys=True).encode())


def step_stamps(
    notebooks: Sequence[Path], parameters: dict[str, Any], package: str | None = None
) -> dict[str, str]:
    """Return the stamp of every notebook, keyed by name (file name without suffix).

    Parameters
    ----------
    notebooks : sequence of Path
        The notebooks in execution order.
    parameters : dict
        The parameters papermill injects (JSON-serialisable).
    package : str, optional
        :func:`swig_lib.provenance.package_fingerprint` (computed when not given).

    Returns
    -------
    dict
        ``{name: stamp}``. Each stamp chains the one before it.
    """
    previous = sha256_parts(
        json.dumps(parameters, sort_keys=True).encode(),
        (package or package_fingerprint()).encode(),
    )
    stamps: dict[str, str] = {}
    for path in notebooks:
        previous = sha256_parts(previous.encode(), path.stem.encode(), notebook_fingerprint(path).encode())
        stamps[path.stem] = previous
    return stamps


def recorded_run(executed: Path) -> dict[str, Any] | None:
    """Return the runner's record in an executed notebook's metadata, or None if there is none."""
    if not executed.is_file():
        return None
    try:
        notebook = nbformat.read(executed, as_version=4)
    except (OSError, ValueError) as exc:  # unreadable or not a notebook: treat as not executed
        print(f"  ignoring unreadable executed notebook {executed}: {exc}", file=sys.stderr)
        return None
    record = notebook.metadata.get(METADATA_KEY)
    return dict(record) if record else None


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> set[str]:
    """Return the names of the notebooks to consider for execution.

    Parameters
    ----------
    notebooks : sequence of Path
        All notebooks.
    only : sequence of str, optional
        Names such as ``01_data_synthesis``, ``01_data_synthesis.ipynb`` or just ``01``; None
        selects every notebook.

    Raises
    ------
    ReproduceError
        When a name matches no notebook.
    """
    names = [path.stem for path in notebooks]
    if not only:
        return set(names)
    chosen: set[str] = set()
    for wanted in only:
        key = Path(wanted).name.removesuffix(".ipynb")
        matches = [name for name in names if name == key or name.split("_", 1)[0] == key]
        if not matches:
            raise ReproduceError(f"--only {wanted!r} matches no notebook; available: {', '.join(names)}")
        chosen.update(matches)
    return chosen


def check_kernel() -> None:
    """Check that the ``python3`` kernel runs this interpreter (so it sees swig_lib).

    Raises
    ------
    ReproduceError
        When no ``python3`` kernel exists, or when it names another Python executable.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel as exc:
        raise ReproduceError(
            f"no Jupyter kernel {KERNEL_NAME!r}: install ipykernel in this environment "
            "(pip install -e '.[book]')"
        ) from exc
    program = spec.argv[0]
    # jupyter_client runs a kernel whose argv[0] is a bare "python…" with sys.executable.
    if os.sep not in program:
        return
    if Path(program).resolve() != Path(sys.executable).resolve():
        raise ReproduceError(
            f"the Jupyter kernel {KERNEL_NAME!r} ({spec.resource_dir}) runs {program}, not this "
            f"environment's {sys.executable}; remove that kernelspec or run "
            f"`{sys.executable} -m ipykernel install --sys-prefix` and put this environment's "
            "share/jupyter first on JUPYTER_PATH"
        )


def _kernel_config() -> Config:
    """Return the kernel manager configuration: CurveZMQ-encrypted kernel traffic where possible."""
    import zmq

    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


def _source_cell(source: Path, executed_index: int) -> int | None:
    """Map a cell index of the executed copy to the source notebook (papermill adds one cell).

    Returns None for the cell papermill injected.
    """
    cells = nbformat.read(source, as_version=4).cells
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    injected = tagged[-1] + 1 if tagged else 0
    if executed_index == injected:
        return None
    return executed_index if executed_index < injected else executed_index - 1


def _first_line(source: str) -> str:
    """Return the first non-blank line of a cell's source, shortened to 80 characters."""
    line = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def execute_step(
    source: Path,
    executed: Path,
    parameters: dict[str, Any],
    stamp: str,
    root: Path,
    progress: bool = True,
) -> float:
    """Execute one notebook with papermill and record the stamp in the executed copy.

    The copy is written under a temporary name and renamed into place on success; a failure
    leaves it as ``NN_name.failed.ipynb``.

    Parameters
    ----------
    source, executed : Path
        The notebook and where its executed copy goes.
    parameters : dict
        Injected into the cell tagged ``parameters``.
    stamp : str
        The step's stamp (see :func:`step_stamps`).
    root : Path
        Working directory of the kernel (the repository root).
    progress : bool
        Show papermill's per-cell progress bar.

    Returns
    -------
    float
        Duration in seconds.

    Raises
    ------
    ReproduceError
        When a cell raises or the kernel fails; the message names the notebook and the cell.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    partial = executed.with_name(f".{executed.stem}.running.ipynb")
    failed = executed.with_name(f"{executed.stem}.failed.ipynb")
    started, start = _utc_now(), time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            language="python",
            cwd=str(root),
            progress_bar=progress,
            report_mode=False,
            config=_kernel_config(),
        )
    except PapermillExecutionError as exc:
        os.replace(partial, failed)
        index = _source_cell(source, exc.cell_index)
        where = "the injected parameters cell" if index is None else f"cell {index}"
        raise ReproduceError(
            f"notebook {source.name} failed in {where} ({_first_line(exc.source)!r}): "
            f"{exc.ename}: {exc.evalue}\n  partial output: {failed}"
        ) from exc
    except Exception as exc:  # kernel death, timeouts, missing kernel: report and stop the run
        if partial.exists():
            os.replace(partial, failed)
        raise ReproduceError(f"notebook {source.name} could not run: {type(exc).__name__}: {exc}") from exc
    duration = time.perf_counter() - start
    notebook = nbformat.read(partial, as_version=4)
    notebook.metadata[METADATA_KEY] = {
        "stamp": stamp,
        "parameters": parameters,
        "started": started,
        "finished": _utc_now(),
        "duration_s": round(duration, 3),
    }
    nbformat.write(notebook, partial)
    os.replace(partial, executed)
    failed.unlink(missing_ok=True)
    return duration


def _jupyter_book() -> str:
    """Return the ``jupyter-book`` program of this environment."""
    here = Path(sys.executable).parent
    program = shutil.which("jupyter-book", path=str(here)) or shutil.which("jupyter-book")
    if program is None:
        raise ReproduceError("jupyter-book is not installed: pip install -e '.[book]'")
    return program


def run_book_build(root: Path, profile: str, results_dir: str, output_dir: Path | None = None) -> float:
    """Build the HTML book of ``profile`` with ``jupyter-book build <root> -W``.

    Parameters
    ----------
    root : Path
        The repository root (the book's source).
    profile : str
        The profile whose executed notebooks the book shows.
    results_dir : str
        The results folder, relative to ``root`` or absolute.
    output_dir : Path, optional
        The folder that receives ``_build/`` (``--path-output``; the HTML is in
        ``<output_dir>/_build/html``); default ``root``.

    Returns
    -------
    float
        Duration in seconds.

    Raises
    ------
    ReproduceError
        When the build fails (any Sphinx warning fails it).
    """
    env = {**os.environ, "SWIG_PROFILE": profile, "SWIG_RESULTS_DIR": results_dir}
    start = time.perf_counter()
    command = [_jupyter_book(), "build", str(root), "-W"]
    if output_dir is not None:
        command += ["--path-output", str(output_dir)]
    done = subprocess.run(command, cwd=root, env=env, check=False)
    if done.returncode != 0:
        raise ReproduceError(
            f"the book build failed (jupyter-book exit {done.returncode}); list every warning with "
            f"`SWIG_PROFILE={profile} jupyter-book build . -W --keep-going`"
        )
    return time.perf_counter() - start


def _step_record(
    status: str, stamp: str, executed: Path, root: Path, run: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the provenance entry of one notebook."""
    record: dict[str, Any] = {"status": status, "stamp": stamp}
    if run is not None:
        record.update(duration_s=run.get("duration_s"), finished=run.get("finished"))
    if executed.is_file():
        record["executed"] = os.path.relpath(executed, root)
    return record


def run_times(
    results_dir: str | os.PathLike[str], profile: str, before: str | None = None
) -> list[dict[str, Any]]:
    """The notebooks of the latest ``swig reproduce`` run of ``profile`` and how long each took.

    Reads ``<results_dir>/<profile>/provenance.json``, which the runner updates before every
    notebook step, so a notebook executed by the runner sees the steps before it in the same run.

    Parameters
    ----------
    results_dir : path-like
        The results folder.
    profile : str
        The profile.
    before : str, optional
        Keep only the notebooks whose names sort before this one (e.g. ``"06_performance"``).

    Returns
    -------
    list of dict
        One row per notebook in run order: ``notebook``, ``status`` (``executed`` in this run,
        ``cached`` from an earlier run with the same stamp, ``not selected`` states ``stale`` or
        ``missing``, ...), ``duration_s`` (of the execution that produced the executed copy, None
        when there is none) and ``finished``. Empty when there is no provenance file.
    """
    path = Path(results_dir) / profile / "provenance.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for name, step in record.get("notebooks", {}).items():
        if before is not None and name >= before:
            continue
        rows.append({"notebook": name, "status": step.get("status"),
                     "duration_s": step.get("duration_s"), "finished": step.get("finished")})
    return rows


def reproduce(
    profile: str,
    force: bool = False,
    only: Sequence[str] | None = None,
    build_book: bool = True,
    seed: int | None = None,
    device: str = "auto",
    data_dir: str = "data",
    results_dir: str = "results",
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    book_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Execute the notebooks of ``profile`` (skipping up-to-date ones) and build the book.

    Parameters
    ----------
    profile : str
        ``smoke``, ``quick`` or ``paper`` (see ``swig_lib/profiles.toml``).
    force : bool
        Rerun the selected notebooks even when their executed copies are up to date.
    only : sequence of str, optional
        Run only these notebooks (``01_data_synthesis``, or its number ``01``).
    build_book : bool
        Build the book when the notebooks succeeded.
    seed : int, optional
        The injected ``seed``, the training seed: notebooks 02-06 load the profile with it
        (``load_profile(profile, {"seed": seed})``), so another value retrains and reruns on the
        same data (the dataset seed is ``data.seed``). Default: the profile's ``seed``.
    device : str
        The injected ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...).
    data_dir, results_dir : str
        Injected paths, relative to the repository root (the notebooks' working directory).
    root : path-like, optional
        The repository root (default: found from the working directory).
    progress : bool
        Show papermill's per-cell progress bars.
    book_dir : path-like, optional
        Where the book goes: ``<book_dir>/_build/html`` (default: the repository root's
        ``_build/html``).

    Returns
    -------
    int
        0 on success, 1 when a notebook or the book build failed, 2 for invalid arguments.
    """
    try:
        root_path = find_root(root)
        settings = load_profile(profile)
        resolved = describe_device(resolve_device(device))
        notebooks = discover_notebooks(root_path / "notebooks")
        if not notebooks:
            raise ReproduceError(f"no notebooks NN_name.ipynb in {root_path / 'notebooks'}")
        selected = select_notebooks(notebooks, only)
    except (ReproduceError, ValueError, KeyError, RuntimeError) as exc:
        print(f"swig reproduce: {exc}", file=sys.stderr)
        return 2
    parameters = {
        "profile": profile,
        "seed": settings.seed if seed is None else int(seed),
        "data_dir": data_dir,
        "results_dir": results_dir,
        "device": device,
    }
    results = Path(results_dir) if Path(results_dir).is_absolute() else root_path / results_dir
    executed_dir = results / profile / "executed"
    stamps = step_stamps(notebooks, parameters)
    provenance: dict[str, Any] = {
        "profile": profile,
        "parameters": parameters,
        "device": resolved,
        "git": git_state(root_path),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "swig_lib": __version__,
        },
        "platform": platform.platform(),
        "started": _utc_now(),
        "notebooks": {},
    }
    status, kernel_checked = 0, False
    provenance_path = results / profile / "provenance.json"
    print(f"swig reproduce: profile {profile!r}, seed {parameters['seed']}, device {resolved}")
    try:
        for number, path in enumerate(notebooks, start=1):
            # The record so far, before every step: a notebook can read the durations of the
            # notebooks before it in this run (status "running" until the run ends).
            atomic_write_json(provenance_path, {**provenance, "status": "running"})
            name, stamp = path.stem, stamps[path.stem]
            executed = executed_dir / f"{name}.ipynb"
            run = recorded_run(executed)
            current = run is not None and run.get("stamp") == stamp
            prefix = f"[{number}/{len(notebooks)}] {name}"
            if name not in selected:
                state = "cached" if current else ("stale" if run else "missing")
                provenance["notebooks"][name] = _step_record(state, stamp, executed, root_path, run)
                print(f"{prefix}: not selected ({state})", flush=True)
                continue
            if current and not force:
                provenance["notebooks"][name] = _step_record("cached", stamp, executed, root_path, run)
                print(f"{prefix}: up to date, skipped", flush=True)
                continue
            if not kernel_checked:
                check_kernel()
                kernel_checked = True
            print(f"{prefix}: running", flush=True)
            try:
                duration = execute_step(path, executed, parameters, stamp, root_path, progress)
            except ReproduceError:
                provenance["notebooks"][name] = {"status": "failed", "stamp": stamp}
                raise
            run = recorded_run(executed)
            provenance["notebooks"][name] = _step_record("executed", stamp, executed, root_path, run)
            print(f"{prefix}: done in {duration:.1f} s", flush=True)
        if build_book:
            print("book: jupyter-book build . -W", flush=True)
            output = root_path if book_dir is None else Path(book_dir).resolve()
            seconds = run_book_build(root_path, profile, results_dir, output)
            index = output / "_build" / "html" / "index.html"
            provenance["book"] = {"html": os.path.relpath(index, root_path), "duration_s": round(seconds, 3)}
            print(f"book: built in {seconds:.1f} s: {index}", flush=True)
    except ReproduceError as exc:
        print(f"swig reproduce: {exc}", file=sys.stderr)
        status = 1
    for path in notebooks:
        provenance["notebooks"].setdefault(path.stem, {"status": "not run", "stamp": stamps[path.stem]})
    provenance["finished"] = _utc_now()
    provenance["status"] = "ok" if status == 0 else "failed"
    atomic_write_json(provenance_path, provenance)
    return status
