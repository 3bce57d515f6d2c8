"""Guides that do not match what the model assumes: seeded generators of perturbed guides.

SWIG is trained with guides synthesised by eq. 15-17 from the HR maps, noise-free, with exactly
the protocols of :data:`swig_lib.core.protocols.GUIDE_PROTOCOLS`, on the maps' voxel grid. Real
guides break each of these assumptions (paper Sec. V-F); every generator here breaks one, by an
amount, and the amount 0 returns the unperturbed guides exactly:

* :func:`bias_field_guides`: a smooth multiplicative receive bias field on each guide, of mean 1
  over the brain (:func:`swig_lib.experiments.crossseq.acquisition.bias_field`, normalised);
* :func:`protocol_guides`: the guides acquired with another protocol than the model assumes, the
  T1w's inversion time (``TI``) or flip angle (``flip``) or the T2w's echo time (``TE``) off by a
  percentage (:data:`PROTOCOL_PARAMETERS`);
* :func:`fse_guide`: the T2w acquired as a fast spin echo (:class:`FastSpinEcho`), a train of
  refocusing pulses simulated with extended phase graphs (:mod:`swig_lib.core.epg`), each echo
  filling its own band of phase-encoding lines (T2 blurring, stimulated echoes), while the model
  assumes the single spin echo of eq. 17;
* :func:`misregister`: an in-plane rigid shift (mm) and rotation (degrees), resampled linearly;
* :func:`noisy_guides`: Gaussian noise relative to the guide's mean signal;
* :func:`stand_in_guide`: one guide missing, replaced by the guide synthesised from the LR maps
  (the only stand-in a user without it has).

Units: times in ms, flip angles in degrees, lengths in mm, guides in the signal units of PD (a.u.).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from swig_lib.core.epg import epg_crush, epg_initial, epg_relax, epg_rf, epg_shift
from swig_lib.core.fitter import T1_BOUNDS_MS, T2_BOUNDS_MS
from swig_lib.core.kspace import fft2c, ifft2c
from swig_lib.core.protocols import GUIDE_PROTOCOLS, SpinEchoProtocol
from swig_lib.experiments.crossseq.acquisition import bias_field, synthesize

#: Protocol parameters a guide may be acquired with differently: name → (guide, protocol field).
PROTOCOL_PARAMETERS: dict[str, tuple[str, str]] = {"TI": ("T1w", "tp"), "flip": ("T1w", "flip"), "TE": ("T2w", "te")}

#: (T1, T2) grid on which the fast-spin-echo train is simulated and then interpolated: points per
#: axis, log-spaced over the fitter's bounds, each echo amplitude interpolated linearly in
#: (log T1, log T2). The error stays below 1 % of the train's first echo (see the tests); the
#: amplitudes themselves are not interpolated in log, because pathways of short-T2 tissue can
#: cancel in a late echo (a zero crossing).
FSE_GRID = 128


def bias_fields(mask: np.ndarray, affine: np.ndarray, strength: float, rng: np.random.Generator,
                names: Sequence[str]) -> dict[str, np.ndarray]:
    """One smooth receive bias field per guide, each of mean 1 over the brain.

    B = b / mean(b) over the mask, with b = exp(strength · g)
    (:func:`~swig_lib.experiments.crossseq.acquisition.bias_field`: g a random quadratic polynomial
    of the world coordinates with unit standard deviation over the brain), drawn from ``rng`` in
    the order of ``names``.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    strength : float
        Standard deviation of log b over the brain (0: B = 1).
    rng : numpy.random.Generator
        Source of the fields.
    names : sequence of str
        The guides.

    Returns
    -------
    dict of str to ndarray
        (X, Y, Z) float64 fields, positive.
    """
    fields = {}
    for name in names:
        field = bias_field(mask, affine, strength, rng)
        fields[name] = field / field[np.asarray(mask, dtype=bool)].mean()
    return fields


def bias_field_guides(guides: Mapping[str, np.ndarray], mask: np.ndarray, affine: np.ndarray,
                      strength: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Guides times their own bias fields (:func:`bias_fields`), float32."""
    fields = bias_fields(mask, affine, strength, rng, list(guides))
    return {name: (image * fields[name]).astype(np.float32) for name, image in guides.items()}


def protocol_guides(q_h: np.ndarray, parameter: str, change_pct: float) -> dict[str, np.ndarray]:
    """The guides synthesised from Q_h with one protocol parameter off by ``change_pct`` percent.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        HR maps: PD (a.u.), T1 (ms), T2 (ms).
    parameter : str
        A key of :data:`PROTOCOL_PARAMETERS` (``"TI"``, ``"flip"``, ``"TE"``).
    change_pct : float
        Relative change, percent (0: the guides of the dataset, bit for bit).

    Returns
    -------
    dict of str to ndarray
        Every guide of :data:`~swig_lib.core.protocols.GUIDE_PROTOCOLS`, (X, Y, Z) float32.
    """
    if parameter not in PROTOCOL_PARAMETERS:
        raise ValueError(f"unknown protocol parameter {parameter!r}: choose one of {', '.join(PROTOCOL_PARAMETERS)}")
    guide, field = PROTOCOL_PARAMETERS[parameter]
    protocols = dict(GUIDE_PROTOCOLS)
    value = getattr(protocols[guide], field)
    protocols[guide] = replace(protocols[guide], **{field: value * (1.0 + change_pct / 100.0)})
    return {name: synthesize(protocol, q_h) for name, protocol in protocols.items()}


@dataclass(frozen=True)
class FastSpinEcho:
    """A fast-spin-echo (CPMG) T2w acquisition.

    The echo spacing follows from the effective echo time: the centre echo
    (:attr:`centre_echo`, 0-based) fills the centre of k-space, so TE = (centre_echo + 1) · ESP.

    Attributes
    ----------
    etl : int
        Echo-train length (echoes per excitation, ≥ 1).
    te : float
        Effective echo time, ms (default: eq. 17's TE).
    tr : float
        Repetition time, ms.
    refocusing : float
        Refocusing flip angle, degrees (default: eq. 17's α).
    """

    etl: int
    te: float = SpinEchoProtocol.te
    tr: float = SpinEchoProtocol.tr
    refocusing: float = SpinEchoProtocol.flip

    def __post_init__(self) -> None:
        if self.etl < 1 or self.te <= 0 or not 0 < self.refocusing <= 180:
            raise ValueError(f"need etl >= 1, te > 0 and a refocusing angle in (0, 180]; got "
                             f"{self.etl}, {self.te}, {self.refocusing}")
        if self.etl * self.esp > self.tr:
            raise ValueError(f"the echo train ({self.etl} x {self.esp:g} ms) is longer than TR = {self.tr:g} ms")

    @property
    def centre_echo(self) -> int:
        """Index (0-based) of the echo at the centre of k-space."""
        return self.etl // 2

    @property
    def esp(self) -> float:
        """Echo spacing, ms."""
        return self.te / (self.centre_echo + 1)


def fse_echoes(t1: np.ndarray, t2: np.ndarray, sequence: FastSpinEcho) -> np.ndarray:
    """Echo amplitudes of a CPMG train in the periodic steady state, for M0 = 1 (EPG).

    Per repetition: 90° about x, then ``etl`` times [ESP/2 relaxation, dephasing, refocusing about
    y, ESP/2 relaxation, dephasing] with the echo in F+₀; an ideal crusher and free recovery fill
    the rest of TR. The start of a repetition is longitudinal only, so the echoes and the final
    Z₀ are affine in the starting Z₀; two runs (Z₀ = 0 and 1) give the fixed point, the steady
    state (as :func:`swig_lib.core.epg.simulate_signals` does).

    Parameters
    ----------
    t1, t2 : ndarray, shape (B,)
        Relaxation times, ms (> 0).
    sequence : FastSpinEcho
        The train.

    Returns
    -------
    ndarray, shape (B, etl), float64
        ``|F+₀|`` at each echo.
    """
    t1 = np.asarray(t1, dtype=np.float64)
    t2 = np.asarray(t2, dtype=np.float64)
    both = (np.tile(t1, 2), np.tile(t2, 2))
    start = np.concatenate([np.zeros(t1.size), np.ones(t1.size)])
    half = (np.exp(-sequence.esp / 2 / both[0])[:, None], np.exp(-sequence.esp / 2 / both[1])[:, None])
    state = epg_rf(epg_initial(start.size, 2 * sequence.etl + 1, start), 90.0, 0.0)
    echoes = np.empty((start.size, sequence.etl), dtype=np.complex128)
    for index in range(sequence.etl):
        state = epg_shift(epg_relax(state, *half))
        state = epg_rf(state, sequence.refocusing, 90.0)
        state = epg_shift(epg_relax(state, *half))
        echoes[:, index] = state[0][:, 0]
    rest = sequence.tr - sequence.etl * sequence.esp
    state = epg_relax(epg_crush(state), np.exp(-rest / both[0])[:, None], np.exp(-rest / both[1])[:, None])
    end = state[2][:, 0].real
    end0, end1 = end[: t1.size], end[t1.size:]
    steady = end0 / (1.0 - (end1 - end0))
    return np.abs(echoes[: t1.size] + steady[:, None] * (echoes[t1.size:] - echoes[: t1.size]))


@lru_cache(maxsize=8)
def _echo_table(sequence: FastSpinEcho) -> RegularGridInterpolator:
    """:func:`fse_echoes` on the log-spaced (T1, T2) grid of :data:`FSE_GRID` points per axis."""
    axes = (np.linspace(*np.log(T1_BOUNDS_MS), FSE_GRID), np.linspace(*np.log(T2_BOUNDS_MS), FSE_GRID))
    u, v = np.meshgrid(*axes, indexing="ij")
    table = fse_echoes(np.exp(u.ravel()), np.exp(v.ravel()), sequence).reshape(FSE_GRID, FSE_GRID, sequence.etl)
    return RegularGridInterpolator(axes, table)


def interpolated_echoes(t1: np.ndarray, t2: np.ndarray, sequence: FastSpinEcho) -> np.ndarray:
    """:func:`fse_echoes` interpolated on the grid of :data:`FSE_GRID` (T1, T2 clipped to the fitter's bounds).

    Parameters
    ----------
    t1, t2 : ndarray, shape (B,)
        Relaxation times, ms.
    sequence : FastSpinEcho
        The train.

    Returns
    -------
    ndarray, shape (B, etl), float64
    """
    points = np.stack([np.log(np.clip(t1, *T1_BOUNDS_MS)), np.log(np.clip(t2, *T2_BOUNDS_MS))], axis=-1)
    return _echo_table(sequence)(points)


def phase_encode_echoes(n_lines: int, sequence: FastSpinEcho) -> np.ndarray:
    """Echo (0-based) that fills each phase-encoding line, linear ordering, centre echo at k = 0.

    Lines are in the centred order of :func:`swig_lib.core.kspace.fft2c` (DC at ``n_lines // 2``);
    line k gets echo ``clip(centre_echo + floor((k − n_lines//2) · etl / n_lines), 0, etl − 1)``.
    """
    offset = (np.arange(n_lines) - n_lines // 2) * sequence.etl / n_lines
    return np.clip(sequence.centre_echo + np.floor(offset).astype(np.int64), 0, sequence.etl - 1)


def fse_guide(q_h: np.ndarray, sequence: FastSpinEcho) -> np.ndarray:
    """A fast-spin-echo T2w image of maps Q_h (magnitude, PD units).

    Each voxel's echo amplitudes (:func:`interpolated_echoes`) times PD give one image per echo;
    in k-space, each echo's image fills the phase-encoding lines (second in-plane axis) that
    :func:`phase_encode_echoes` gives it; the guide is the magnitude of the inverse transform.
    Voxels with PD = 0 give no signal.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        PD (a.u.), T1 (ms), T2 (ms); axial slices along the last axis.
    sequence : FastSpinEcho
        The echo train.

    Returns
    -------
    ndarray, shape (X, Y, Z), float32
    """
    pd, t1, t2 = (np.asarray(x, dtype=np.float64) for x in q_h)
    tissue = pd > 0
    echoes = np.zeros((sequence.etl, *pd.shape))
    echoes[:, tissue] = (interpolated_echoes(t1[tissue], t2[tissue], sequence) * pd[tissue][:, None]).T
    lines = phase_encode_echoes(pd.shape[1], sequence)
    kspace = fft2c(torch.from_numpy(echoes).permute(0, 3, 1, 2))  # (etl, Z, X, Y)
    filled = sum(kspace[e] * torch.from_numpy(lines == e) for e in range(sequence.etl))
    return ifft2c(filled).abs().permute(1, 2, 0).numpy().astype(np.float32)


def misregister(guides: Mapping[str, np.ndarray], affine: np.ndarray, shift_mm: Sequence[float] = (0.0, 0.0),
                rotation_deg: float = 0.0) -> dict[str, np.ndarray]:
    """Guides moved in-plane against the maps: rotated about the grid's centre, then shifted.

    Every axial slice is resampled linearly (:func:`scipy.ndimage.affine_transform`, order 1,
    periodic borders: the grid wraps as the DFT of Φ does), as a registration tool resamples an
    image, so a fractional shift also blurs by interpolation. A shift by whole voxels moves the
    voxels exactly (:func:`numpy.roll`); no shift and no rotation return the guides unchanged.

    Parameters
    ----------
    guides : mapping of str to ndarray
        (X, Y, Z) guides.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine (its voxel sizes convert mm to voxels).
    shift_mm : (float, float)
        Shift along the first two voxel axes, mm (positive: towards higher indices).
    rotation_deg : float
        In-plane rotation, degrees (positive: from the first voxel axis towards the second).

    Returns
    -------
    dict of str to ndarray
        (X, Y, Z) float32 guides.
    """
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    angle = np.radians(rotation_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = {}
    for name, image in guides.items():
        centre = (np.asarray(image.shape[:2], dtype=np.float64) - 1.0) / 2.0
        shift = np.asarray(shift_mm, dtype=np.float64) / spacing[:2]
        matrix = np.eye(3)
        matrix[:2, :2] = rotation.T  # output → input: the inverse rotation
        offset = np.zeros(3)
        offset[:2] = centre - rotation.T @ (centre + shift)
        moved[name] = ndimage.affine_transform(np.asarray(image, dtype=np.float32), matrix, offset, order=1,
                                               mode="grid-wrap")
    return moved


def noisy_guides(guides: Mapping[str, np.ndarray], mask: np.ndarray, level: float,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Guides with Gaussian noise inside the brain: sd = ``level`` × the guide's mean ``|signal|`` in the brain.

    Parameters
    ----------
    guides : mapping of str to ndarray
        (X, Y, Z) guides.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask; voxels outside keep their value.
    level : float
        Relative noise level (0.02: a signal-to-noise ratio of 50), ≥ 0.
    rng : numpy.random.Generator
        Source of the noise, drawn for every guide in order.

    Returns
    -------
    dict of str to ndarray
        (X, Y, Z) float32 guides.
    """
    if level < 0:
        raise ValueError(f"the noise level must be >= 0, got {level}")
    inside = np.asarray(mask, dtype=bool)
    noisy = {}
    for name, image in guides.items():
        sigma = level * float(np.abs(image[inside]).mean())
        noise = rng.standard_normal(image.shape)
        noisy[name] = np.where(inside, image + sigma * noise, image).astype(np.float32)
    return noisy


def stand_in_guide(q_l: np.ndarray, name: str) -> np.ndarray:
    """The guide ``name`` synthesised from the LR maps (eq. 15-17): a missing guide's only stand-in.

    It carries no information beyond Q_l itself, so a model that reads it gets Q_l's structure
    twice instead of an HR image's.

    Parameters
    ----------
    q_l : ndarray, shape (3, X, Y, Z)
        LR maps: PD (a.u.), T1 (ms), T2 (ms).
    name : str
        A key of :data:`~swig_lib.core.protocols.GUIDE_PROTOCOLS`.

    Returns
    -------
    ndarray, shape (X, Y, Z), float32
    """
    return synthesize(GUIDE_PROTOCOLS[name], q_l)
