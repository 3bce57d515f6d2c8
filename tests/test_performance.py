"""Tests of the performance chapter's tables (swig_lib.experiments.performance) on synthetic inputs."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from swig_lib.experiments import performance as pf
from swig_lib.experiments.config import load_profile


def _fitter_row(threads: int, voxels_per_s: float, peak: float | None) -> dict:
    return {"device": "cpu", "threads": threads, "voxels": 1000, "seconds": 1000 / voxels_per_s,
            "voxels_per_s": voxels_per_s, "peak_mib": peak, "median_rel_err": {"PD": 1e-9, "T1": 3e-9, "T2": 0.0}}


def _training_row(threads: int, slices: float, seconds: float) -> dict:
    return {"device": "cpu", "threads": threads, "training slices/s": slices, "inference s/volume": seconds}


CROSS = {"shape": (64, 64), "brain_voxels": 1500, "dictionary_atoms": 400, "dictionary_s": 1.234,
         "trajectory_s": {"Acq5": 0.5, "Acq1": 0.25},
         "seconds_per_slice": {"Acq5": 0.1, "Acq1": 0.05, "Acq1+Acq5": 0.12}}


def _results(tmp_path: Path) -> pf.PerformanceResults:
    return pf.PerformanceResults(
        machine={"CPU": "test CPU", "logical cores": 2}, load_before=0.5, load_after=1.25,
        bench={"fitter_voxels": 20000, "infer_slices": 4},
        fitter_rows=[_fitter_row(1, 123456.7, 170.4), _fitter_row(2, 234567.8, None)],
        build={"seconds": 8.0, "per_subject_s": 8.0, "n_subjects": 1, "shape": [170, 206, 4]},
        recorded_build="10 s for 5 subjects",
        training_rows=[_training_row(1, 12.09, 0.65), _training_row(2, 21.78, 0.36)],
        grid=(170, 206), crop=(64, 64), cross=CROSS, out_dir=tmp_path,
    )


def test_fitter_table() -> None:
    table = pf.fitter_table([_fitter_row(1, 123456.7, 170.6), _fitter_row(2, 234567.8, None)])
    assert list(table.index) == [("cpu", 1), ("cpu", 2)]
    assert table.loc[("cpu", 1), "voxels/s"] == 123457
    assert table.loc[("cpu", 1), "seconds"] == 0.008
    assert table.loc[("cpu", 1), "peak memory [MiB]"] == 171
    assert pd.isna(table.loc[("cpu", 2), "peak memory [MiB]"])
    assert table.loc[("cpu", 1), "median rel. error"] == "3.0e-09"


def test_crosssequence_table() -> None:
    values = pf.crosssequence_table(CROSS)["value"]
    assert values["grid"] == "64 × 64"
    assert values["dictionary (once)"] == "1.23 s"
    assert values["trajectory + density compensation Acq1 (once)"] == "0.25 s"
    assert values["Acq1+Acq5 per slice"] == "0.120 s"


def test_summary_table_and_glue(tmp_path: Path) -> None:
    results = _results(tmp_path)
    summary = results.summary()
    assert list(summary.columns) == ["size", "unit", "1 thread(s)", "2 thread(s)", "default threads"]
    assert summary.loc["fit (eq. 1), float64", "size"] == "20,000 voxels"
    assert summary.loc["fit (eq. 1), float64", "2 thread(s)"] == 234567.8
    assert summary.loc["fit: peak memory", "1 thread(s)"] == 170.4
    assert pd.isna(summary.loc["fit: peak memory", "2 thread(s)"])  # not measured
    assert summary.loc["inference", "size"] == "170 × 206 × 4"
    assert summary.loc["training", "size"] == "crop 64 × 64"
    assert summary.loc["cross-sequence simulation, Acq1 + Acq5", "default threads"] == 0.12
    html = pf.style_summary(summary).to_html()
    assert "234,568" in html and "0.12" in html and "12.1" in html
    glue = results.glue
    assert glue["fitter_voxels_per_s_1t"] == (123456.7, ",.0f")
    assert "fitter_peak_mib_2t" not in glue and glue["fitter_peak_mib_1t"] == (170.4, ".0f")
    assert glue["train_slices_per_s_2t"] == (21.78, ".2f")
    assert glue["inference_s_per_volume_1t"] == (0.65, ".3g")
    assert glue["crosssequence_s_per_slice"] == (0.12, ".2f")
    assert glue["load_after"] == (1.25, ".2f")
    record = results.record("smoke")
    assert record["load_average_after"] == 1.25 and record["crosssequence"] is CROSS


def test_book_run_time() -> None:
    rows = [
        {"notebook": "01_data_synthesis", "status": "executed", "duration_s": 120.0,
         "finished": "2025-01-02T03:04:05+00:00"},
        {"notebook": "02_training", "status": "cached", "duration_s": 480.0, "finished": "2025-01-02T03:12:00+00:00"},
    ]
    run = pf.book_run_time(rows, 60.0, 30)
    assert run.recorded and run.before_s == 600.0 and run.total_min == 11.0
    assert run.verdict == "within the target of 30 min"
    assert list(run.table.index) == ["01_data_synthesis", "02_training", "06_performance (this page, so far)",
                                     "total"]
    assert run.table.loc["01_data_synthesis", "finished"] == "2025-01-02 03:04 UTC"
    assert run.table["minutes"].tolist() == [2.0, 8.0, 1.0, 11.0]
    assert run.glue["book_target_verdict"] == ("within the target of 30 min", None)
    assert pf.book_run_time(rows, 60.0, 10).verdict == "over the target of 10 min"
    assert pf.book_run_time(rows, 60.0, 0).verdict == "no target for this profile"
    missing = [*rows, {"notebook": "03_ablation", "status": "missing", "duration_s": None, "finished": None}]
    unrun = pf.book_run_time(missing, 60.0, 30)
    assert unrun.before_s == 600.0
    assert unrun.verdict == "not yet comparable with the target of 30 min (03_ablation did not run)"
    assert "<td" in unrun.styled().to_html()


def test_book_run_time_without_record() -> None:
    run = pf.book_run_time([], 90.0, 5)
    assert not run.recorded and run.before_s == 0.0 and run.total_min == 1.5
    assert list(run.table.index) == ["06_performance (this page, so far)", "total"]
    assert run.verdict == "within the target of 5 min"


STUBS = {
    "bench_fitter": """
        def run(voxels, sigmas, device, repeats, seed, dtype="float64", threads=None):
            return [{"device": device, "threads": threads, "voxels": voxels, "seconds": 2.0,
                     "voxels_per_s": voxels / 2.0, "peak_mib": 10.0 * (threads or 1),
                     "median_rel_err": {"PD": float(seed)}}]
    """,
    "data_baseline": """
        def time_build(profile, n_subjects):
            return {"seconds": 3.0, "per_subject_s": 3.0 / n_subjects, "n_subjects": n_subjects,
                    "shape": [4, 5, 6]}
    """,
    "bench_training": """
        import torch
        def bench_training(profile, crop, grid, device, steps):
            return 10.0 * torch.get_num_threads() + steps
        def bench_inference(profile, crop, grid, n_slices, device):
            return 0.123456
    """,
    "bench_crosssequence": """
        def run(shape, slices, repeats):
            return {"shape": shape, "brain_voxels": 1, "dictionary_atoms": 2, "dictionary_s": 0.0,
                    "trajectory_s": {}, "seconds_per_slice": {"Acq1+Acq5": float(slices)}}
    """,
}


def test_run_performance_with_stub_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "benchmarks"
    scripts.mkdir()
    for name, source in STUBS.items():
        (scripts / f"{name}.py").write_text(textwrap.dedent(source))
    for name in STUBS:  # load_scripts registers the stubs; the monkeypatch removes them afterwards
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = load_profile("smoke", {"seed": 3})
    threads = torch.get_num_threads()
    results = pf.run_performance(settings, torch.device("cpu"), data_dir=tmp_path / "no-data",
                                 results_dir=tmp_path / "results", device_label="the CPU", scripts=scripts)
    assert torch.get_num_threads() == threads  # restored
    bench = settings["bench"]
    assert [r["threads"] for r in results.fitter_rows] == bench["threads"]
    assert results.fitter_rows[0]["median_rel_err"] == {"PD": 3.0}  # the profile's seed reaches the fitter
    assert results.machine["device of this run"] == "the CPU"
    assert results.recorded_build.startswith("no usable dataset (dataset ")
    assert [r["training slices/s"] for r in results.training_rows] == [
        10.0 * t + bench["train_steps"] for t in bench["threads"]]
    assert results.training_rows[0]["inference s/volume"] == 0.12
    assert results.crop == tuple(bench["train_crop"])
    out = tmp_path / "results" / "smoke" / "benchmarks"
    assert results.out_dir == out
    record = json.loads((out / "performance.json").read_text())
    assert record["profile"] == "smoke" and record["build"]["shape"] == [4, 5, 6]
    assert record["crosssequence"]["seconds_per_slice"] == {"Acq1+Acq5": float(bench["crosssequence_slices"])}
    written = pd.read_csv(out / "performance_summary.csv", index_col="benchmark")
    assert written.loc["data build", "default threads"] == 3.0


def test_load_scripts_names_the_missing_script(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no benchmark script .*bench_fitter.py: run from the repository"):
        pf.load_scripts(tmp_path)
