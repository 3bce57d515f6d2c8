"""Baseline of the digital subjects: how far the LR maps Q_l are from the HR maps Q_h.

Prints, per map (PD, T1, T2), the mean over the chosen split's subjects of SSIM and HFEN of Q_l
against Q_h (per axial slice inside the brain mask, :func:`swig_lib.metrics.map_metrics`; again
inside the mask eroded by the profile's ``eval.interior_voxels``, the region the evaluation
uses), the paper's Q_l baseline where it states one (T2 SSIM 0.98 ± 0.005), and the build time.

    python benchmarks/data_baseline.py --profile quick [--root data] [--force] [--split test]

``--force`` rebuilds the dataset to time the build; otherwise the time recorded in the manifest
of the last build is shown.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from swig_lib.config import load_profile
from swig_lib.data import build_dataset, folder_size, load_dataset
from swig_lib.metrics import map_metrics

MAPS = ("PD", "T1", "T2")


def main(argv: list[str] | None = None) -> None:
    """Build (or reuse) the profile's dataset and print the baseline table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--root", default="data")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--force", action="store_true", help="rebuild the dataset and time it")
    args = parser.parse_args(argv)

    profile = load_profile(args.profile)
    start = time.perf_counter()
    folder, reused = build_dataset(profile, args.root, force=args.force)
    elapsed = time.perf_counter() - start
    dataset = load_dataset(profile, args.root, build=False)
    ids = dataset.subject_ids(args.split)
    interior = int(profile.get("eval", {}).get("interior_voxels", 0))
    regions = {"brain mask": 0} | ({f"mask eroded by {interior} voxels": interior} if interior else {})
    rows = {(region, name): [] for region in regions for name in MAPS}
    for sid in ids:
        acq, q_h = dataset.acquired(sid), dataset.reference(sid)
        for region, voxels in regions.items():
            scores = map_metrics(acq.q_l, q_h, acq.mask, names=MAPS, interior_voxels=voxels)
            for name in MAPS:
                rows[region, name].append((scores[name]["ssim"], scores[name]["hfen"]))

    shape = dataset.manifest["shape"]
    print(f"dataset {folder} ({args.profile}): {len(ids)} {args.split} subjects, grid {shape}, "
          f"keep {dataset.settings['keep']}, sigma {dataset.settings['sigma']}")
    for region in regions:
        print(f"Q_l vs Q_h, per axial slice in the {region}:")
        print(f"{'map':<4} {'SSIM mean ± sd':>18} {'HFEN mean ± sd':>18}")
        for name in MAPS:
            values = np.asarray(rows[region, name])
            sd = values.std(axis=0, ddof=1) if len(ids) > 1 else np.zeros(2)
            print(f"{name:<4} {values[:, 0].mean():>9.4f} ± {sd[0]:.4f} {values[:, 1].mean():>9.4f} ± {sd[1]:.4f}")
    print("paper (QRAPMASTER, 17 test subjects): T2 SSIM 0.98 ± 0.005; PD and T1 improved by "
          "4.3 % and 3.2 % SSIM with SR")
    recorded = dataset.manifest["build"]["seconds"]
    timing = f"recorded build {recorded:.0f} s" if reused else f"build {elapsed:.0f} s"
    print(f"{timing}; {folder_size(folder) / 2**20:.0f} MiB on disk")


if __name__ == "__main__":
    main()
