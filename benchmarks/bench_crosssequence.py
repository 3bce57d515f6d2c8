"""Seconds per slice of the simulated cross-sequence acquisition (Acq1, Acq5, both together).

Usage: ``python benchmarks/bench_crosssequence.py [--shape 160 190] [--slices 4] [--repeats 3]``

The phantom is a synthetic axial slice (ellipses of GM, WM and CSF with smooth value variations)
filling the grid about as much as a brain-masked slice. One-off costs (dictionary, trajectory and
density compensation, cached per settings and grid shape) are timed separately.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from swig_lib.crosssequence import (
    AcquisitionSettings,
    radial_sampling,
    settings_dictionary,
    simulate_acquisition,
    simulate_protocols,
)


def synthetic_slice(shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """PD (a.u.), T1 (ms), T2 (ms) and mask of an ellipse head with GM rim, WM and ventricles."""
    x, y = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    r = np.hypot(x / 0.85, y / 0.9)
    mask = r < 1
    wm = r < 0.8
    csf = (np.abs(x) < 0.08) & (np.abs(y) < 0.35) | (r > 0.95) & mask
    wobble = 1 + 0.05 * np.sin(7 * x) * np.cos(5 * y)
    pd = np.where(csf, 100.0, np.where(wm, 69.0, 82.0)) * wobble * mask
    t1 = np.where(csf, 3900.0, np.where(wm, 700.0, 1100.0)) * wobble * mask
    t2 = np.where(csf, 1700.0, np.where(wm, 75.0, 95.0)) * wobble * mask
    return pd, t1, t2, mask


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(160, 190))
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(args.shape)
    pd, t1, t2, mask = (
        np.repeat(a[..., None], args.slices, axis=-1) for a in synthetic_slice(shape)
    )

    settings = AcquisitionSettings()
    start = time.perf_counter()
    dictionary = settings_dictionary(settings)
    print(f"dictionary ({dictionary.t1.size} atoms, K={dictionary.basis.shape[1]}): "
          f"{time.perf_counter() - start:.2f} s once per settings")
    for protocol, fraction in (("Acq5", 1.0), ("Acq1", 0.25)):
        start = time.perf_counter()
        radial_sampling(AcquisitionSettings(spoke_fraction=fraction), shape)
        print(f"trajectory + Pipe-Menon DCF {protocol}: {time.perf_counter() - start:.2f} s "
              "once per grid shape")

    print(f"grid {shape}, {int(mask[..., 0].sum())} brain voxels per slice, {args.slices} slices, "
          f"best of {args.repeats}:")
    for protocol in ("Acq5", "Acq1"):
        seconds = best_of(args.repeats, lambda: simulate_acquisition(pd, t1, t2, mask, protocol))
        print(f"  {protocol}: {seconds / args.slices:.3f} s per slice")
    seconds = best_of(args.repeats, lambda: simulate_protocols(pd, t1, t2, mask, ("Acq1", "Acq5")))
    print(f"  Acq1 + Acq5 together: {seconds / args.slices:.3f} s per slice")


if __name__ == "__main__":
    main()
