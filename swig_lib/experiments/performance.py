"""The performance chapter (notebook 06): the benchmark scripts at the profile's size, and the book's run time.

:func:`run_performance` runs the scripts of the repository's ``benchmarks/`` folder (they are
not part of the package; the book runs from the repository root) at the size of the profile's
``bench`` table: the voxel-wise fit (``bench_fitter.py``) once per thread count, a fresh build of
digital subjects (``data_baseline.py``), training and inference (``bench_training.py``) per
device and thread count, and the simulated second sequence (``bench_crosssequence.py``). It
writes ``<results_dir>/<profile>/benchmarks/performance.json`` (the machine and every raw
result) and ``performance_summary.csv`` (:func:`summary_table`).

:func:`book_run_time` tabulates how long the notebooks of the book took, from the rows of
:func:`swig_lib.book.reproduce.run_times`. Timings are measured, never asserted: they depend on
the machine and on whatever else runs on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import torch
from pandas.io.formats.style import Styler

from swig_lib.core.io import PathLike, atomic_write_bytes, write_csv
from swig_lib.experiments.config import Profile
from swig_lib.experiments.results import Glue
from swig_lib.experiments.subjects.anatomy import mni152_template
from swig_lib.experiments.subjects.dataset import load_dataset

#: The benchmark scripts that :func:`run_performance` runs, file names without ``.py``.
SCRIPTS: tuple[str, ...] = ("bench_fitter", "data_baseline", "bench_training", "bench_crosssequence")



@dataclass(frozen=True)
class PerformanceResults:
    """Everything :func:`run_performance` produces.

    Attributes
    ----------
    machine : dict
        CPU, cores, default torch threads, GPU, device of the run, load average before the
        benchmarks, torch and Python versions (:func:`machine_info`).
    load_before, load_after : float
        1-minute load average before and after the benchmarks.
    bench : dict
        The profile's ``bench`` table.
    fitter_rows : list of dict
        Rows of ``bench_fitter.run``: one per CPU thread count (and one for CUDA).
    build : dict
        ``data_baseline.time_build``: ``seconds``, ``per_subject_s``, ``n_subjects``, ``shape``.
    recorded_build : str
        The last complete build of the profile's dataset, from its manifest, or why there is none.
    training_rows : list of dict
        Per device and thread count: training slices/s and inference s/volume (rounded).
    grid, crop : tuple of int
        In-plane acquisition grid and training crop [voxels].
    cross : dict
        ``bench_crosssequence.run``: grid, dictionary, trajectories and seconds per slice.
    out_dir : Path
        ``<results_dir>/<profile>/benchmarks``.
    """

    machine: dict[str, Any]
    load_before: float
    load_after: float
    bench: dict[str, Any]
    fitter_rows: list[dict[str, Any]]
    build: dict[str, Any]
    recorded_build: str
    training_rows: list[dict[str, Any]]
    grid: tuple[int, int]
    crop: tuple[int, int]
    cross: dict[str, Any]
    out_dir: Path

    def machine_table(self) -> pd.DataFrame:
        """Return the machine in one column ``value``."""
        return pd.Series(self.machine, name="value").to_frame()

    def fitter_table(self) -> pd.DataFrame:
        """Return :func:`fitter_table` of the fitter rows."""
        return fitter_table(self.fitter_rows)

    def build_table(self) -> pd.DataFrame:
        """Return the data-build timing in one column ``value``."""
        return pd.Series(
            {
                "grid (X × Y × slices)": " × ".join(map(str, self.build["shape"])),
                "subjects built": self.build["n_subjects"],
                "seconds per subject (fresh build)": f"{self.build['per_subject_s']:.1f}",
                "last complete build of the dataset (manifest)": self.recorded_build,
            },
            name="value",
        ).to_frame()

    def training_table(self) -> pd.DataFrame:
        """Return the training and inference rows, indexed by device and threads."""
        return pd.DataFrame(self.training_rows).set_index(["device", "threads"])

    def crosssequence_table(self) -> pd.DataFrame:
        """Return :func:`crosssequence_table` of the cross-sequence timing."""
        return crosssequence_table(self.cross)

    def summary(self) -> pd.DataFrame:
        """Return :func:`summary_table` of these results."""
        return summary_table(self)

    @property
    def glue(self) -> Glue:
        """The values the chapter's prose quotes: name → (value, format specification)."""
        glue: Glue = {
            "cpu_model": (self.machine["CPU"], None),
            "cpu_cores": (self.machine["logical cores"], None),
            "load_before": (self.load_before, ".2f"),
            "load_after": (self.load_after, ".2f"),
        }
        for r in self.fitter_rows:
            if r["device"] == "cpu":
                key = f"{r['threads']}t"
                glue[f"fitter_voxels_per_s_{key}"] = (r["voxels_per_s"], ",.0f")
                if r["peak_mib"] is not None:
                    glue[f"fitter_peak_mib_{key}"] = (r["peak_mib"], ".0f")
        glue["build_s_per_subject"] = (self.build["per_subject_s"], ".1f")
        for r in self.training_rows:
            if r["device"] == "cpu":
                key = f"{r['threads']}t"
                glue[f"train_slices_per_s_{key}"] = (r["training slices/s"], ".2f")
                glue[f"inference_s_per_volume_{key}"] = (r["inference s/volume"], ".3g")
        glue["crosssequence_s_per_slice"] = (self.cross["seconds_per_slice"]["Acq1+Acq5"], ".2f")
        return glue

    def record(self, profile: str) -> dict[str, Any]:
        """Return the content of ``performance.json`` (machine, bench settings, raw results)."""
        return {
            "profile": profile,
            "machine": self.machine,
            "load_average_after": self.load_after,
            "bench": self.bench,
            "fitter": self.fitter_rows,
            "build": self.build,
            "training": self.training_rows,
            "crosssequence": self.cross,
        }


@dataclass(frozen=True)
class BookRunTime:
    """How long the notebooks of the book took (:func:`book_run_time`).

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by notebook: ``status``, ``minutes``, ``finished`` (UTC), then this page (so far)
        and the total.
    recorded : bool
        Whether the runner recorded any notebook (False: no ``provenance.json``).
    before_s : float
        Seconds of the notebooks before this page (those without a duration count 0).
    total_min : float
        Minutes of those notebooks and of this page so far.
    target_min : float
        The profile's target for the whole book (0: none).
    verdict : str
        Within or over the target, or why it cannot be compared.
    """

    table: pd.DataFrame
    recorded: bool
    before_s: float
    total_min: float
    target_min: float
    verdict: str

    def styled(self) -> Styler:
        """Return the table with minutes to one decimal and blanks for missing values."""
        return self.table.style.format({"minutes": "{:.1f}"}, na_rep="")

    @property
    def glue(self) -> Glue:
        """The values the chapter's prose quotes: name → (value, format specification)."""
        return {
            "book_minutes_before": (self.before_s / 60, ".1f"),
            "book_minutes_total": (self.total_min, ".1f"),
            "book_target_minutes": (self.target_min, ".0f"),
            "book_target_verdict": (self.verdict, None),
        }


def cpu_model() -> str:
    """Return the CPU model from /proc/cpuinfo (Linux), else from :mod:`platform`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device_label: str, default_threads: int, load_before: float) -> dict[str, Any]:
    """Describe the machine: CPU, cores, torch threads, GPU, the run's device, load, versions.

    Parameters
    ----------
    device_label : str
        The device of this run, in words.
    default_threads : int
        torch's CPU threads before the benchmarks.
    load_before : float
        1-minute load average before the benchmarks.

    Returns
    -------
    dict
        Display names → values (the load average as a string with two decimals).
    """
    return {
        "CPU": cpu_model(),
        "logical cores": os.cpu_count(),
        "torch threads (default)": default_threads,
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "device of this run": device_label,
        "load average (1 min) before": f"{load_before:.2f}",
        "torch": torch.__version__,
        "Python": platform.python_version(),
    }


def load_scripts(folder: PathLike = "benchmarks", names: Sequence[str] = SCRIPTS) -> dict[str, ModuleType]:
    """Import benchmark scripts from a folder outside the package.

    Parameters
    ----------
    folder : path
        The repository's ``benchmarks/`` folder.
    names : sequence of str
        Script names without ``.py``; each is registered in :data:`sys.modules` under its name,
        as a plain ``import`` from that folder would.

    Returns
    -------
    dict of str to module
    """
    modules = {}
    for name in names:
        path = Path(folder) / f"{name}.py"
        if not path.is_file():
            raise FileNotFoundError(f"no benchmark script {path}: run from the repository root")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def fitter_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Tabulate fitter benchmark rows (``bench_fitter.run``).

    Parameters
    ----------
    rows : sequence of mapping
        With ``device``, ``threads``, ``voxels``, ``seconds``, ``voxels_per_s``, ``peak_mib``
        (None when not measured) and ``median_rel_err`` (by map).

    Returns
    -------
    pandas.DataFrame
        Indexed by device and threads: voxels, seconds (3 decimals), voxels/s (integer), peak
        memory [MiB] (integer or None) and the largest median relative error over the maps.
    """
    return pd.DataFrame(
        [
            {
                "device": r["device"],
                "threads": r["threads"],
                "voxels": r["voxels"],
                "seconds": round(r["seconds"], 3),
                "voxels/s": round(r["voxels_per_s"]),
                "peak memory [MiB]": None if r["peak_mib"] is None else round(r["peak_mib"]),
                "median rel. error": f"{max(r['median_rel_err'].values()):.1e}",
            }
            for r in rows
        ]
    ).set_index(["device", "threads"])


def crosssequence_table(cross: Mapping[str, Any]) -> pd.DataFrame:
    """Tabulate the cross-sequence timing (``bench_crosssequence.run``) in one column ``value``.

    Parameters
    ----------
    cross : mapping
        With ``shape``, ``brain_voxels``, ``dictionary_atoms``, ``dictionary_s``,
        ``trajectory_s`` and ``seconds_per_slice`` (by protocol).

    Returns
    -------
    pandas.DataFrame
        One-off costs (dictionary, trajectories) and seconds per slice, as strings.
    """
    return pd.Series(
        {
            "grid": " × ".join(map(str, cross["shape"])),
            "brain voxels per slice": cross["brain_voxels"],
            "dictionary atoms": cross["dictionary_atoms"],
            "dictionary (once)": f"{cross['dictionary_s']:.2f} s",
            **{f"trajectory + density compensation {p} (once)": f"{s:.2f} s"
               for p, s in cross["trajectory_s"].items()},
            **{f"{p} per slice": f"{s:.3f} s" for p, s in cross["seconds_per_slice"].items()},
        },
        name="value",
    ).to_frame()


def _by_threads(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """Return ``{"<n> thread(s)": value}`` of the CPU rows."""
    return {f"{r['threads']} thread(s)": r[key] for r in rows if r["device"] == "cpu"}


def summary_table(results: PerformanceResults) -> pd.DataFrame:
    """Tabulate every timing of the chapter, one row per benchmark, one column per CPU thread count.

    Parameters
    ----------
    results : PerformanceResults
        The benchmark results.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``benchmark``: ``size``, ``unit`` and ``"<n> thread(s)"`` columns (the data
        build and the cross-sequence simulation: ``"default threads"``).
    """
    bench, build, cross, grid, crop = results.bench, results.build, results.cross, results.grid, results.crop
    return pd.DataFrame(
        [
            {
                "benchmark": "fit (eq. 1), float64",
                "size": f"{bench['fitter_voxels']:,} voxels",
                "unit": "voxels/s",
                **_by_threads(results.fitter_rows, "voxels_per_s"),
            },
            {
                "benchmark": "fit: peak memory",
                "size": f"{bench['fitter_voxels']:,} voxels",
                "unit": "MiB",
                **{k: v for k, v in _by_threads(results.fitter_rows, "peak_mib").items() if v is not None},
            },
            {
                "benchmark": "data build",
                "size": " × ".join(map(str, build["shape"])),
                "unit": "s per subject",
                "default threads": build["per_subject_s"],
            },
            {
                "benchmark": "training",
                "size": f"crop {crop[0]} × {crop[1]}",
                "unit": "slices/s",
                **_by_threads(results.training_rows, "training slices/s"),
            },
            {
                "benchmark": "inference",
                "size": f"{grid[0]} × {grid[1]} × {bench['infer_slices']}",
                "unit": "s per volume",
                **_by_threads(results.training_rows, "inference s/volume"),
            },
            {
                "benchmark": "cross-sequence simulation, Acq1 + Acq5",
                "size": " × ".join(map(str, cross["shape"])),
                "unit": "s per slice",
                "default threads": cross["seconds_per_slice"]["Acq1+Acq5"],
            },
        ]
    ).set_index("benchmark")


def style_summary(summary: pd.DataFrame) -> Styler:
    """Format the timings of :func:`summary_table`: thousands separators from 100, else 3 digits."""
    numeric = [c for c in summary.columns if c not in ("size", "unit")]
    return summary.style.format(lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.3g}", subset=numeric, na_rep="")


def _recorded_build(settings: Profile, data_dir: PathLike) -> str:
    """Describe the last complete build of the profile's dataset from its manifest."""
    try:
        recorded = load_dataset(settings, root=data_dir, build=False).manifest["build"]
    except FileNotFoundError as reason:
        return f"no usable dataset ({reason})"
    return f"{recorded['seconds']:.0f} s for {settings.data['n_subjects']} subjects"


def run_performance(
    settings: Profile,
    device: torch.device,
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    device_label: str | None = None,
    scripts: PathLike = "benchmarks",
) -> PerformanceResults:
    """Run the benchmark scripts at the size of the profile's ``bench`` table and write the results.

    Parameters
    ----------
    settings : Profile
        A loaded profile (:func:`~swig_lib.experiments.config.load_profile`); its ``seed`` seeds
        torch's global generator first, and the fitter's random voxels.
    device : torch.device
        The device of the run; CUDA rows are added whenever CUDA is available.
    data_dir, results_dir : path
        Data root (for the dataset's recorded build) and results root.
    device_label : str, optional
        The device in words (default: ``str(device)``).
    scripts : path
        The repository's ``benchmarks/`` folder.

    Returns
    -------
    PerformanceResults
    """
    modules = load_scripts(scripts)
    bench, seed = settings.bench, settings.seed
    default_threads = torch.get_num_threads()
    torch.manual_seed(seed)
    load_before = os.getloadavg()[0]
    machine = machine_info(str(device) if device_label is None else device_label, default_threads, load_before)

    bench_fitter = modules["bench_fitter"]
    fitter_rows = []
    for threads in bench.threads:
        (row,) = bench_fitter.run(voxels=bench.fitter_voxels, sigmas=(0.0,), dtype="float64", device="cpu",
                                  repeats=bench.fitter_repeats, threads=threads, seed=seed)
        fitter_rows.append(row)
    if torch.cuda.is_available():
        fitter_rows += bench_fitter.run(voxels=bench.fitter_voxels, sigmas=(0.0,), device="cuda",
                                        repeats=bench.fitter_repeats, seed=seed)

    # time the template loading too, as `swig data` does
    mni152_template.cache_clear()
    build = modules["data_baseline"].time_build(settings.name, bench.build_subjects)
    recorded_build = _recorded_build(settings, data_dir)

    bench_training = modules["bench_training"]
    grid = tuple(mni152_template(int(settings.data["margin"])).shape[:2])
    crop = bench.train_crop
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    training_rows = []
    for dev in devices:
        for threads in bench.threads if dev.type == "cpu" else [None]:
            if threads is not None:
                torch.set_num_threads(threads)
            slices_per_s = bench_training.bench_training(settings, crop, grid, dev, bench.train_steps)
            seconds = bench_training.bench_inference(settings, crop, grid, bench.infer_slices, dev)
            training_rows.append({
                "device": str(dev),
                "threads": threads,
                "crop": f"{crop[0]} × {crop[1]}",
                "batch": settings.train.batch_size,
                "width": settings.model.width,
                "training slices/s": round(slices_per_s, 2),
                "volume": f"{grid[0]} × {grid[1]} × {bench.infer_slices}",
                "inference s/volume": round(seconds, 2),
            })
    torch.set_num_threads(default_threads)

    cross = modules["bench_crosssequence"].run(bench.crosssequence_shape, bench.crosssequence_slices,
                                               bench.crosssequence_repeats)
    results = PerformanceResults(
        machine=machine, load_before=load_before, load_after=os.getloadavg()[0], bench=bench.to_dict(),
        fitter_rows=fitter_rows, build=build, recorded_build=recorded_build, training_rows=training_rows,
        grid=grid, crop=crop, cross=cross, out_dir=Path(results_dir) / settings.name / "benchmarks",
    )
    record = results.record(settings.name)
    atomic_write_bytes(results.out_dir / "performance.json",
                       (json.dumps(record, indent=1, default=str) + "\n").encode("utf-8"))
    write_csv(results.summary(), results.out_dir / "performance_summary.csv", index=True)
    return results


def book_run_time(
    rows: Sequence[Mapping[str, Any]],
    page_s: float,
    target_minutes: float,
    page: str = "06_performance",
) -> BookRunTime:
    """Tabulate the run time of the notebooks before a page, of the page so far, and the total.

    Parameters
    ----------
    rows : sequence of mapping
        :func:`swig_lib.book.reproduce.run_times` of the notebooks before the page: ``notebook``,
        ``status``, ``duration_s`` (None when the notebook has no executed copy) and
        ``finished`` (ISO 8601 or None).
    page_s : float
        Seconds the page has run so far.
    target_minutes : float
        The run-time target of the whole book [min]; 0 for none.
    page : str
        The page's notebook name.

    Returns
    -------
    BookRunTime
    """
    times = pd.DataFrame(list(rows))
    if times.empty:
        before_s = 0.0
    else:
        times["minutes"] = times["duration_s"].astype(float) / 60
        finished = pd.to_datetime(times["finished"], utc=True)
        times["finished"] = finished.dt.strftime("%Y-%m-%d %H:%M UTC").fillna("")
        before_s = float(times["duration_s"].fillna(0).sum())
    total_min = (before_s + page_s) / 60
    target = float(target_minutes)
    table = [] if times.empty else times[["notebook", "status", "minutes", "finished"]].to_dict("records")
    table.append({"notebook": f"{page} (this page, so far)", "status": "running", "minutes": page_s / 60})
    table.append({"notebook": "total", "status": "", "minutes": total_min})
    unrun = [] if times.empty else list(times.loc[times["duration_s"].isna(), "notebook"])
    if target <= 0:
        verdict = "no target for this profile"
    elif unrun:
        verdict = f"not yet comparable with the target of {target:.0f} min ({', '.join(unrun)} did not run)"
    else:
        verdict = ("within" if total_min <= target else "over") + f" the target of {target:.0f} min"
    return BookRunTime(pd.DataFrame(table).set_index("notebook"), not times.empty, before_s, total_min, target,
                       verdict)
