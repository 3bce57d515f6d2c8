"""Baseline of the digital subjects: how far the LR maps Q_l are from the HR maps Q_h.

Prints, per map (PD, T1, T2), the mean ± sd over the chosen split's subjects of SSIM and HFEN of
Q_l against Q_h (per axial slice inside the brain mask, and again inside the mask eroded by the
profile's ``eval.interior_voxels``, the region the evaluation uses:
:func:`swig_lib.experiments.subjects.report.subject_baseline`, as in the data chapter), the
paper's Q_l baseline where it states one (:data:`swig_lib.paper.BASELINE`: T2 SSIM 0.98 ± 0.005),
the build time and the size on disk.

    python benchmarks/data_baseline.py --profile quick [--root data] [--force] [--split test]
    python benchmarks/data_baseline.py --profile quick --time-build 1

``--force`` rebuilds the dataset to time the build; otherwise the time recorded in the manifest
of the last build is shown. ``--time-build N`` times a fresh build of N subjects of the profile's
grid in a temporary folder (the dataset itself is left alone).

The performance chapter runs :func:`time_build` (:func:`swig_lib.experiments.performance.run_performance`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np

from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.config import Profile, load_profile
from swig_lib.experiments.subjects.dataset import (
    build_dataset,
    folder_size,
    load_dataset,
)
from swig_lib.experiments.subjects.report import subject_baseline
from swig_lib.paper import BASELINE as PAPER_BASELINE


def run(profile: str | Profile, root: str = "data", split: str = "test",
        force: bool = False, progress: bool = False) -> dict[str, Any]:
    """Build (or reuse) the profile's dataset and compute the Q_l baseline of a split.

    Parameters
    ----------
    profile : str or Profile
        Profile name or a loaded profile (:func:`swig_lib.experiments.config.load_profile`).
    root : str
        Data root.
    split : str
        Subjects to score: ``"train"``, ``"val"`` or ``"test"``.
    force : bool
        Rebuild the dataset (and time the build) even if it is intact.
    progress : bool
        Progress bar while building.

    Returns
    -------
    dict
        ``dataset`` (the :class:`~swig_lib.experiments.subjects.dataset.Dataset`), ``per_subject`` and
        ``summary`` (of :func:`~swig_lib.experiments.subjects.report.subject_baseline`), ``reused``
        (bool), ``build_seconds`` (this build's, or the manifest's recorded one when reused),
        ``size_bytes`` and ``interior_voxels``.
    """
    settings = load_profile(profile) if isinstance(profile, str) else profile
    start = time.perf_counter()
    folder, reused = build_dataset(settings, root, force=force, progress=progress)
    elapsed = time.perf_counter() - start
    dataset = load_dataset(settings, root, build=False)
    baseline = subject_baseline(dataset, settings.eval.interior_voxels, split)
    recorded = dataset.manifest.get("build", {}).get("seconds")
    return {
        "dataset": dataset,
        "per_subject": baseline.per_subject,
        "summary": baseline.summary,
        "reused": reused,
        "build_seconds": float(recorded) if reused and recorded is not None else elapsed,
        "size_bytes": folder_size(folder),
        "interior_voxels": baseline.interior_voxels,
    }


def time_build(profile: str, n_subjects: int = 1) -> dict[str, Any]:
    """Time a fresh build of ``n_subjects`` subjects of the profile's grid and slices.

    The build goes to a temporary folder that is removed afterwards; it includes loading the
    MNI152 template unless an earlier call in this process cached it.

    Parameters
    ----------
    profile : str
        Profile name (its ``data`` section gives grid, slices and anatomy).
    n_subjects : int
        Subjects to build.

    Returns
    -------
    dict
        ``seconds`` (wall time of the whole build), ``per_subject_s``, ``n_subjects`` and
        ``shape`` (grid X, Y, Z).
    """
    base = load_profile(profile).data
    timed = load_profile(profile, {"data.n_subjects": n_subjects, "data.split": [n_subjects, 0, 0],
                                   "data.dataset": f"timing-{base['dataset']}"})
    with tempfile.TemporaryDirectory(prefix="swig-build-") as root:
        start = time.perf_counter()
        build_dataset(timed, root, force=True, progress=False, log=lambda message: None)
        seconds = time.perf_counter() - start
        shape = list(load_dataset(timed, root, build=False).manifest["shape"])
    return {"seconds": seconds, "per_subject_s": seconds / n_subjects, "n_subjects": n_subjects,
            "shape": shape}


def main(argv: list[str] | None = None) -> None:
    """Build (or reuse) the profile's dataset and print the baseline table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--root", default="data")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--force", action="store_true", help="rebuild the dataset and time it")
    parser.add_argument("--time-build", type=int, default=0, metavar="N",
                        help="also time a fresh build of N subjects in a temporary folder")
    args = parser.parse_args(argv)

    result = run(args.profile, args.root, args.split, args.force, progress=True)
    dataset, summary = result["dataset"], result["summary"]
    n = len(dataset.subject_ids(args.split))
    print(f"dataset {dataset.folder} ({args.profile}): {n} {args.split} subjects, grid "
          f"{dataset.manifest['shape']}, keep {dataset.settings['keep']}, sigma {dataset.settings['sigma']}")
    for region in summary.index.get_level_values("region").unique():
        where = "brain mask" if region == "brain" else f"mask eroded by {result['interior_voxels']} voxels"
        print(f"Q_l vs Q_h, per axial slice in the {where}:")
        print(f"{'map':<4} {'SSIM mean ± sd':>18} {'HFEN mean ± sd':>18}")
        for name in MAP_NAMES:
            row = summary.loc[(region, name)]
            sd_ssim, sd_hfen = (np.nan_to_num(row[k]) for k in ("ssim_sd", "hfen_sd"))
            print(f"{name:<4} {row['ssim_mean']:>9.4f} ± {sd_ssim:.4f} {row['hfen_mean']:>9.4f} ± {sd_hfen:.4f}")
    stated = "; ".join(f"{name} {metric.upper()} {mean:g} ± {sd:g}"
                       for (metric, name), (mean, sd) in PAPER_BASELINE.items())
    print(f"paper (QRAPMASTER, 17 test subjects): {stated}; no other baseline stated")
    timing = "recorded build" if result["reused"] else "build"
    print(f"{timing} {result['build_seconds']:.0f} s; {result['size_bytes'] / 2**20:.0f} MiB on disk")
    if args.time_build:
        timed = time_build(args.profile, args.time_build)
        print(f"fresh build of {timed['n_subjects']} subject(s), grid {timed['shape']}: "
              f"{timed['seconds']:.1f} s ({timed['per_subject_s']:.1f} s per subject)")


if __name__ == "__main__":
    main()
