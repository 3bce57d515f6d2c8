"""Throughput, accuracy and peak memory of :func:`swig_lib.core.fitter.fit_qmri` (eq. 1).

Random tissue-range voxels (PD 40-120 a.u., T1 300-4500 ms, T2 30-2000 ms) are synthesised with
the paper's protocol (eq. 13-14), Gaussian noise of each ``--sigma`` is added, and the fit is
timed (best of ``--repeats``). Reported per device and noise level: voxels/s, median and 99th
percentile relative errors against the true maps, and peak memory (CPU: rise of the peak resident
set size over the level before the fit, Linux only; CUDA: ``torch.cuda.max_memory_allocated``).
With ``--scipy-voxels N`` the objective reached on N noisy voxels is compared with
``scipy.optimize.least_squares`` started from the true parameters.

Example::

    python benchmarks/bench_fitter.py --voxels 1000000 --sigma 0 0.1 0.5 --repeats 5
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from swig_lib.core.fitter import T1_BOUNDS_MS, T2_BOUNDS_MS, fit_qmri
from swig_lib.core.physics import qmri_contrasts
from swig_lib.core.protocols import QMRIProtocol

PROTOCOL = QMRIProtocol()
MAPS = ("PD", "T1", "T2")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=1_000_000, help="number of voxels fitted")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="contrast dtype")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CPU, and CUDA when available"
    )
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.1, 0.5], help="noise std, a.u.")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--grid", type=int, nargs=2, default=(16, 16), help="initialisation grid (T1, T2)")
    parser.add_argument("--chunk-size", type=int, default=2**16, help="voxels fitted at once")
    parser.add_argument("--scipy-voxels", type=int, default=0, help="noisy voxels checked against scipy")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def tissue_maps(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform random PD (a.u.), T1 and T2 (ms) in the tissue ranges, float64."""
    g = torch.Generator().manual_seed(seed)
    pd = 40.0 + 80.0 * torch.rand(n, generator=g, dtype=torch.float64)
    t1 = 300.0 + 4200.0 * torch.rand(n, generator=g, dtype=torch.float64)
    t2 = 30.0 + 1970.0 * torch.rand(n, generator=g, dtype=torch.float64)
    return pd, t1, t2


def _rss_kib(field: str) -> int | None:
    """A memory field of /proc/self/status in KiB, or None off Linux."""
    if not _STATUS.exists():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS (glibc) and reset the peak-RSS counter (Linux ≥ 4.0).

    Returns True if the counter could be reset.
    """
    libc = ctypes.util.find_library("c")
    if libc is not None and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def timed_fit(
    contrasts: torch.Tensor, repeats: int, grid: tuple[int, int], chunk_size: int
) -> tuple[torch.Tensor, float, float | None]:
    """Best-of-``repeats`` fit; returns the maps, the best wall time (s) and peak memory (MiB)."""
    cuda = contrasts.device.type == "cuda"
    best = math.inf
    peak_mib = None
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            can_reset = _reset_peak_rss()
            base = _rss_kib("VmRSS")
        start = time.perf_counter()
        maps = fit_qmri(
            contrasts, PROTOCOL.tr, PROTOCOL.te, grid_size=tuple(grid), chunk_size=chunk_size
        )
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        if cuda:
            peak_mib = max(peak_mib or 0.0, (torch.cuda.max_memory_allocated() - base) / 2**20)
        elif can_reset and base is not None:
            # the largest rise counts: memory the allocator keeps resident hides part of it
            peak_mib = max(peak_mib or 0.0, (_rss_kib("VmHWM") - base) / 1024)
    return maps, best, peak_mib


def scipy_check(signal: np.ndarray, truth: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """Relative objective difference (ours − scipy)/scipy per voxel; scipy starts from the truth."""
    tr, te = np.array(PROTOCOL.tr), np.array(PROTOCOL.te)

    def model(p: np.ndarray) -> np.ndarray:
        return np.concatenate([p[0] * (1.0 - np.exp(-tr / p[1])), p[0] * np.exp(-te / p[2])])

    lower = [0.0, math.log(T1_BOUNDS_MS[0]), math.log(T2_BOUNDS_MS[0])]
    upper = [np.inf, math.log(T1_BOUNDS_MS[1]), math.log(T2_BOUNDS_MS[1])]
    diffs = []
    for s, p_true, p_ours in zip(signal, truth, ours):

        def residual(x: np.ndarray, s: np.ndarray = s) -> np.ndarray:
            return model(np.array([x[0], math.exp(x[1]), math.exp(x[2])])) - s

        x0 = [p_true[0], math.log(p_true[1]), math.log(p_true[2])]
        sol = least_squares(residual, x0, bounds=(lower, upper), xtol=1e-15, ftol=1e-15, gtol=1e-15)
        f_ref = float((sol.fun**2).sum())
        f_ours = float(((model(p_ours) - s) ** 2).sum())
        diffs.append((f_ours - f_ref) / f_ref)
    return np.array(diffs)


def run(
    voxels: int = 1_000_000,
    sigmas: tuple[float, ...] = (0.0, 0.1, 0.5),
    dtype: str = "float64",
    device: str = "auto",
    repeats: int = 3,
    threads: int | None = None,
    grid: tuple[int, int] = (16, 16),
    chunk_size: int = 2**16,
    scipy_voxels: int = 0,
    seed: int = 0,
) -> list[dict]:
    """Run the benchmark; one result row per noise level and device.

    Parameters are the command-line options (see :func:`parse_args`). ``threads`` sets torch's
    CPU threads for the run and restores the previous number afterwards.

    Returns
    -------
    list of dict
        Keys ``device``, ``threads``, ``dtype``, ``sigma``, ``voxels``, ``seconds`` (best of
        ``repeats``), ``voxels_per_s``, ``peak_mib`` (None when not measurable),
        ``median_rel_err`` and ``p99_rel_err`` (dicts by map) and, with ``scipy_voxels``,
        ``scipy_rel_objective_max``/``_min``.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(voxels, sigmas, dtype, device, repeats, grid, chunk_size, scipy_voxels, seed)
    finally:
        torch.set_num_threads(previous)


def _run(
    voxels: int, sigmas: tuple[float, ...], dtype: str, device: str, repeats: int,
    grid: tuple[int, int], chunk_size: int, scipy_voxels: int, seed: int,
) -> list[dict]:
    """The body of :func:`run`, with torch's threads already set."""
    devices = ["cpu"] if device in ("auto", "cpu") else []
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        devices.append("cuda")
    pd, t1, t2 = tissue_maps(voxels, seed)
    truth = torch.stack((pd, t1, t2))
    clean = qmri_contrasts(pd, t1, t2)
    rows = []
    for sigma in sigmas:
        g = torch.Generator().manual_seed(seed + 1)
        noisy = clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64)
        for name in devices:
            contrasts = noisy.to(device=name, dtype=getattr(torch, dtype))
            maps, seconds, peak = timed_fit(contrasts, repeats, grid, chunk_size)
            rel = ((maps.double().cpu() - truth) / truth).abs()
            row = {
                "device": name,
                "threads": torch.get_num_threads() if name == "cpu" else None,
                "dtype": dtype,
                "sigma": float(sigma),
                "voxels": voxels,
                "seconds": seconds,
                "voxels_per_s": voxels / seconds,
                "peak_mib": peak,
                "median_rel_err": {n: float(rel[i].median()) for i, n in enumerate(MAPS)},
                "p99_rel_err": {n: float(rel[i].quantile(0.99)) for i, n in enumerate(MAPS)},
            }
            if sigma > 0 and scipy_voxels > 0:
                n = min(scipy_voxels, voxels)
                ours = maps[:, :n].double().cpu().T.numpy()
                diffs = scipy_check(noisy[:, :n].T.numpy(), truth[:, :n].T.numpy(), ours)
                row.update(scipy_voxels=n, scipy_rel_objective_max=float(diffs.max()),
                           scipy_rel_objective_min=float(diffs.min()))
            rows.append(row)
    return rows


def main() -> None:
    """Run the benchmark and print one line per device and noise level."""
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"fit_qmri: {args.voxels} voxels, {args.dtype}, grid {args.grid[0]}x{args.grid[1]}, "
        f"chunk {args.chunk_size}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"best of {args.repeats}"
    )
    rows = run(args.voxels, tuple(args.sigma), args.dtype, args.device, args.repeats, None,
               tuple(args.grid), args.chunk_size, args.scipy_voxels, args.seed)
    for row in rows:
        med = ", ".join(f"{n} {v:.1e}" for n, v in row["median_rel_err"].items())
        p99 = ", ".join(f"{n} {v:.1e}" for n, v in row["p99_rel_err"].items())
        memory = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.0f} MiB"
        print(
            f"[{row['device']}] sigma {row['sigma']:g}: {row['voxels_per_s']:,.0f} voxels/s "
            f"({row['seconds']:.2f} s), median rel. error {med}; 99th pct {p99}; peak memory {memory}"
        )
        if "scipy_voxels" in row:
            print(
                f"    scipy least_squares on {row['scipy_voxels']} voxels: (f_ours - f_scipy)/f_scipy "
                f"max {row['scipy_rel_objective_max']:.1e}, min {row['scipy_rel_objective_min']:.1e}"
            )


if __name__ == "__main__":
    main()
