"""Simulated cross-sequence validation data: the paper's MuPa-ZTE protocols, in simulation.

The paper validates a model trained on Cartesian multi-contrast qMRI on maps from a different
sequence (3-D radial MuPa-ZTE, dictionary fitting) at two quality levels. Those scans are private;
this module mimics their logic on a 2-D slice (or a stack of independent 2-D slices):

1. the HR maps (PD, T1, T2) give every brain voxel a transient-state signal evolution
   (:mod:`swig_lib.core.epg`: inversion- and T2-prepared spoiled gradient-echo trains, periodic steady
   state);
2. each time point is sampled by one golden-angle radial spoke per cycle repetition, up to
   ``kmax_fraction`` of the HR Nyquist frequency, with complex Gaussian noise
   (:mod:`swig_lib.core.radial`, FINUFFT);
3. density-compensated gridding (Pipe-Menon weights, a Hann apodisation) straight into a
   K-dimensional temporal subspace, then dictionary matching (:mod:`swig_lib.core.dictionary`) gives
   PD, T1, T2 on the HR voxel grid.

Protocols: ``"Acq5"`` keeps every repetition (the "5-minute" scan); ``"Acq1"`` keeps the first
25 % of them (the "1-minute" scan, including the same noise on the spokes it shares with Acq5).
``Acq5^R`` (a supervised CNN applied to Acq5) belongs to the training module; Acq5 maps of
training subjects come from these functions like any other.

Scale: signals are simulated for M0 = 1 and multiplied by PD. The density compensation is
calibrated on a known simulation, a Gaussian blob whose band-limited value at its centre is known
in closed form (:func:`swig_lib.core.radial.calibrate_dcf`), so gridding preserves the image scale;
the matched PD is the projection scale per unit M0, so a tissue with PD = p maps to p (within
about 1 % in flat regions, noise-free; see ``tests/test_crosssequence.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch

from swig_lib.core.dictionary import (
    SubspaceDictionary,
    build_dictionary,
    log_grid,
    match,
)
from swig_lib.core.epg import Segment, TransientSequence, simulate_signals
from swig_lib.core.radial import (
    calibrate_dcf,
    forward_frames,
    golden_angles,
    grid_subspace,
    pipe_menon_dcf,
    radial_trajectory,
    radial_window,
    ramp_dcf,
)
from swig_lib.experiments.config import check_known_fields

#: Fraction of the full acquisition's cycle repetitions each protocol keeps.
PROTOCOLS: dict[str, float] = {"Acq5": 1.0, "Acq1": 0.25}


@dataclass(frozen=True)
class AcquisitionSettings:
    """Settings of the simulated radial transient-state acquisition and its reconstruction.

    Parameters
    ----------
    sequence : TransientSequence
        Preparations, readout trains and timings (ms, degrees).
    n_repetitions : int
        Cycle repetitions of the full (Acq5) acquisition = spokes per time point.
    spoke_fraction : float
        Fraction of the repetitions kept, in (0, 1]; the first ``max(1, round(f * n))`` are kept
        (set by the protocol: 1.0 for Acq5, 0.25 for Acq1).
    kmax_fraction : float
        Radial k-space extent as a fraction of the HR grid's Nyquist frequency, in (0, 1]; sets
        the resolution of the maps (voxel about 1 / kmax_fraction HR voxels).
    oversampling : int
        Readout oversampling.
    dcf_iterations : int
        Pipe-Menon iterations of the density compensation.
    filter_taper : float
        Apodisation of k-space in the reconstruction: fraction of the radial extent tapered by a
        cosine (Tukey window), 0 = none (sharpest, strong Gibbs ringing), 1 = Hann (default;
        ringing would corrupt CSF, whose long T1 makes its signal weak next to tissue).
    noise_std : float
        Noise level, PD a.u.: the complex k-space noise has standard deviation
        ``noise_std * sqrt(X * Y)`` per sample, i.e. ``noise_std`` is the image noise of one fully
        sampled Cartesian frame on the HR grid. Signals are PD times the transverse magnetisation
        per unit M0 (0.01-0.14 with the default sequence), so one frame alone is far below the
        noise; the subspace reconstruction pools all frames and spokes.
    n_components : int
        Temporal subspace rank K.
    t1_range, t2_range : (float, float)
        Dictionary bounds, ms (log-spaced grids, T2 <= T1 only).
    n_t1, n_t2 : int
        Dictionary grid sizes.
    nufft_eps : float
        FINUFFT tolerance.
    """

    sequence: TransientSequence = field(default_factory=TransientSequence)
    n_repetitions: int = 4
    spoke_fraction: float = 1.0
    kmax_fraction: float = 0.5
    oversampling: int = 2
    dcf_iterations: int = 10
    filter_taper: float = 1.0
    noise_std: float = 1.0
    n_components: int = 5
    t1_range: tuple[float, float] = (100.0, 6000.0)
    t2_range: tuple[float, float] = (10.0, 3000.0)
    n_t1: int = 150
    n_t2: int = 200
    nufft_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.n_repetitions < 1:
            raise ValueError(f"n_repetitions must be >= 1, got {self.n_repetitions}")
        if not 0 < self.spoke_fraction <= 1:
            raise ValueError(f"spoke_fraction must be in (0, 1], got {self.spoke_fraction}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    @property
    def kept_repetitions(self) -> int:
        """Number of cycle repetitions (spokes per time point) actually reconstructed."""
        return max(1, int(round(self.spoke_fraction * self.n_repetitions)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AcquisitionSettings:
        """Build settings from a mapping (e.g. a profile's TOML table); unknown keys raise.

        Keys are field names; ``sequence`` may be a mapping of :class:`TransientSequence` fields
        whose ``segments`` is a list of ``[preparation, prep_time, n_readouts, flip_angle]``.
        """
        check_known_fields(cls, values, "acquisition")
        values = dict(values)
        if isinstance(values.get("sequence"), dict):
            seq = dict(values["sequence"])
            if "segments" in seq:
                seq["segments"] = tuple(Segment(*s) for s in seq["segments"])
            values["sequence"] = TransientSequence(**seq)
        for key in ("t1_range", "t2_range"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


class QuantitativeMaps(NamedTuple):
    """PD (a.u.), T1 (ms) and T2 (ms) maps; arrays of one shape and type."""

    pd: Any
    t1: Any
    t2: Any


@lru_cache(maxsize=4)
def _cached_dictionary(
    sequence: TransientSequence,
    t1_range: tuple[float, float],
    t2_range: tuple[float, float],
    n_t1: int,
    n_t2: int,
    n_components: int,
) -> SubspaceDictionary:
    return build_dictionary(
        sequence, log_grid(*t1_range, n_t1), log_grid(*t2_range, n_t2), n_components
    )


def settings_dictionary(settings: AcquisitionSettings) -> SubspaceDictionary:
    """The compressed dictionary of ``settings`` (built once per distinct settings, then cached)."""
    return _cached_dictionary(
        settings.sequence,
        tuple(settings.t1_range),
        tuple(settings.t2_range),
        settings.n_t1,
        settings.n_t2,
        settings.n_components,
    )


@lru_cache(maxsize=8)
def _cached_sampling(
    shape: tuple[int, int],
    n_timepoints: int,
    kept_repetitions: int,
    kmax_fraction: float,
    oversampling: int,
    dcf_iterations: int,
    nufft_eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angles = golden_angles(kept_repetitions * n_timepoints).reshape(kept_repetitions, n_timepoints)
    kx, ky = radial_trajectory(angles.T, shape, kmax_fraction, oversampling)
    dcf = pipe_menon_dcf(
        kx, ky, shape, ramp_dcf(kx, ky, shape, oversampling), dcf_iterations, nufft_eps
    )
    # Weights of the pooled trajectory make the sum over all frames one image; each frame holds
    # 1/T of the samples, so T * dcf reconstructs every frame at full scale.
    dcf = n_timepoints * calibrate_dcf(dcf, kx, ky, kmax_fraction)
    for array in (kx, ky, dcf):
        array.setflags(write=False)
    return kx, ky, dcf


def radial_sampling(
    settings: AcquisitionSettings, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trajectory and density compensation of the kept spokes (cached per shape and settings).

    Spokes are played in acquisition order, repetition after repetition, each rotated by the
    golden angle from the previous one: the spoke of time point ``t`` in repetition ``r`` is
    number ``r * T + t``. The density compensation is computed for all kept spokes pooled
    (Pipe-Menon, then calibrated) and multiplied by T, so that gridding one frame's samples
    estimates that frame at full scale.

    Returns
    -------
    kx, ky, dcf : read-only ndarray of shape (T, R_kept, n_readout)
        Sample coordinates (rad/voxel) and density compensation weights.
    """
    return _cached_sampling(
        tuple(shape),
        settings.sequence.n_timepoints,
        settings.kept_repetitions,
        settings.kmax_fraction,
        settings.oversampling,
        settings.dcf_iterations,
        settings.nufft_eps,
    )


def _to_numpy(array: Any, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2-D (X, Y) or 3-D (X, Y, Z), got shape {array.shape}")
    return array


def acquire_slice(
    pd: np.ndarray,
    t1: np.ndarray,
    t2: np.ndarray,
    mask: np.ndarray,
    settings: AcquisitionSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Noisy radial k-space of one 2-D slice, for the kept repetitions of ``settings``.

    Voxels outside ``mask`` or without tissue (PD <= 0, or T1/T2 not finite and positive) hold no
    signal. The noise of the full acquisition (``n_repetitions``) is drawn from ``rng`` whatever
    the kept fraction, so a protocol keeping fewer repetitions shares its spokes' noise with the
    full one.

    Parameters
    ----------
    pd, t1, t2 : ndarray of shape (X, Y)
        PD (a.u.), T1 (ms), T2 (ms).
    mask : bool ndarray of shape (X, Y)
        Brain mask.
    settings : AcquisitionSettings
        Acquisition settings.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    complex ndarray of shape (T, R_kept, n_readout)
        Samples on the trajectory of :func:`radial_sampling`.
    """
    shape = pd.shape
    kx, ky, _ = radial_sampling(settings, shape)
    tissue = mask & (pd > 0) & np.isfinite(pd) & np.isfinite(t1) & np.isfinite(t2)
    tissue &= (t1 > 0) & (t2 > 0)
    signals = pd[tissue][:, None] * simulate_signals(settings.sequence, t1[tissue], t2[tissue])
    n_t, n_r, n_read = kx.shape
    kspace = forward_frames(
        signals, tissue, kx.reshape(n_t, -1), ky.reshape(n_t, -1), settings.nufft_eps
    ).reshape(kx.shape)
    full = (n_t, settings.n_repetitions, n_read)
    noise = rng.standard_normal(full) + 1j * rng.standard_normal(full)
    # Complex noise of standard deviation noise_std * sqrt(X * Y) per sample (see the settings).
    return kspace + settings.noise_std * np.sqrt(shape[0] * shape[1] / 2.0) * noise[:, :n_r]


def reconstruct_slice(
    kspace: np.ndarray, mask: np.ndarray, settings: AcquisitionSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subspace gridding and dictionary matching of one slice.

    Parameters
    ----------
    kspace : complex ndarray of shape (T, R, n_readout)
        Samples of at least the kept repetitions of ``settings`` (extra ones are ignored).
    mask : bool ndarray of shape (X, Y)
        Voxels to fit; the maps are 0 elsewhere.
    settings : AcquisitionSettings
        Reconstruction settings.

    Returns
    -------
    pd, t1, t2 : ndarray of shape (X, Y), float64
        PD (a.u.), T1 (ms), T2 (ms).
    """
    shape = mask.shape
    kx, ky, dcf = radial_sampling(settings, shape)
    kspace = kspace[:, : kx.shape[1]]
    if kspace.shape != kx.shape:
        raise ValueError(f"k-space of shape {kspace.shape} for a trajectory of shape {kx.shape}")
    dictionary = settings_dictionary(settings)
    weights = dcf * radial_window(kx, ky, settings.kmax_fraction, settings.filter_taper)
    coefficients = grid_subspace(
        kspace, kx, ky, weights, dictionary.basis, shape, settings.nufft_eps
    )
    maps = np.zeros((3, *shape))
    if mask.any():
        for out, values in zip(maps, match(coefficients[:, mask].T, dictionary)):
            out[mask] = values
    return maps[0], maps[1], maps[2]


def simulate_protocols(
    pd: Any,
    t1: Any,
    t2: Any,
    mask: Any,
    protocols: tuple[str, ...] = ("Acq1", "Acq5"),
    seed: int = 0,
    settings: AcquisitionSettings | None = None,
    **overrides: Any,
) -> dict[str, QuantitativeMaps]:
    """Maps of several protocols from one simulated acquisition of the given HR maps.

    The full acquisition is simulated once per slice; each protocol reconstructs its share of the
    repetitions (Acq1: the first 25 %, with the same noise as in Acq5).

    Parameters
    ----------
    pd, t1, t2 : ndarray or torch.Tensor of shape (X, Y) or (X, Y, Z)
        HR proton density (a.u.), T1 (ms), T2 (ms). A stack is simulated slice by slice
        (multi-slice 2-D).
    mask : array_like of bool, same shape
        Brain mask.
    protocols : tuple of str
        Names from :data:`PROTOCOLS`.
    seed : int
        Seed of the noise (numpy Generator); the same seed gives identical maps.
    settings : AcquisitionSettings, optional
        Defaults to ``AcquisitionSettings()``; ``spoke_fraction`` is set per protocol.
    **overrides
        Fields of :class:`AcquisitionSettings` to replace, e.g. ``noise_std=2.0``.

    Returns
    -------
    dict of str to QuantitativeMaps
        Per protocol (pd, t1, t2), float32, same shape and array type (numpy or torch) as ``pd``;
        0 outside the mask, never NaN.

    Raises
    ------
    ValueError
        For an unknown protocol or inputs of mismatched shape.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"unknown protocol(s) {unknown}: choose from {sorted(PROTOCOLS)}")
    base = dataclasses.replace(settings or AcquisitionSettings(), **overrides)
    per_protocol = {p: dataclasses.replace(base, spoke_fraction=PROTOCOLS[p]) for p in protocols}
    acquired = max(per_protocol.values(), key=lambda s: s.kept_repetitions)

    arrays = [_to_numpy(a, n) for a, n in ((pd, "pd"), (t1, "t1"), (t2, "t2"), (mask, "mask"))]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"pd, t1, t2 and mask differ in shape: {[a.shape for a in arrays]}")
    stacked = arrays[0].ndim == 3
    pd_np, t1_np, t2_np = (a.astype(np.float64) for a in arrays[:3])
    mask_np = arrays[3].astype(bool)
    if not stacked:
        pd_np, t1_np, t2_np, mask_np = (a[..., None] for a in (pd_np, t1_np, t2_np, mask_np))

    rng = np.random.default_rng(seed)
    out = {p: np.zeros((3, *pd_np.shape), dtype=np.float32) for p in protocols}
    for z in range(pd_np.shape[2]):
        kspace = acquire_slice(
            pd_np[..., z], t1_np[..., z], t2_np[..., z], mask_np[..., z], acquired, rng
        )
        for p, s in per_protocol.items():
            for o, m in zip(out[p], reconstruct_slice(kspace, mask_np[..., z], s)):
                o[..., z] = m
    result = {}
    for p, maps in out.items():
        maps = maps if stacked else maps[..., 0]
        if isinstance(pd, torch.Tensor):
            result[p] = QuantitativeMaps(*(torch.from_numpy(m.copy()) for m in maps))
        else:
            result[p] = QuantitativeMaps(*maps)
    return result


def simulate_acquisition(
    pd: Any,
    t1: Any,
    t2: Any,
    mask: Any,
    protocol: str = "Acq5",
    seed: int = 0,
    settings: AcquisitionSettings | None = None,
    **overrides: Any,
) -> QuantitativeMaps:
    """Maps that a radial transient-state qMRI scan of the given HR maps would produce.

    A single-protocol :func:`simulate_protocols`; for one seed, ``"Acq1"`` here equals the Acq1
    maps of ``simulate_protocols`` (the noise is drawn for the full acquisition either way).

    Parameters
    ----------
    pd, t1, t2, mask, seed, settings, **overrides
        As :func:`simulate_protocols`.
    protocol : {"Acq5", "Acq1"}
        Quality level (fraction of the acquisition kept, see :data:`PROTOCOLS`).

    Returns
    -------
    QuantitativeMaps
        (pd, t1, t2), float32, same shape and array type as ``pd``; 0 outside the mask.
    """
    return simulate_protocols(pd, t1, t2, mask, (protocol,), seed, settings, **overrides)[protocol]
