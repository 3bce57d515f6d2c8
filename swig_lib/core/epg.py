"""Transient-state multi-parametric sequence and its extended-phase-graph (EPG) simulator.

The sequence stands in for the MuPa-ZTE acquisition of the paper's in-vivo experiment: a cycle of
magnetisation preparations (inversion, T2 preparation), each followed by a train of small-flip-angle
spoiled gradient-echo readouts, repeated until the magnetisation reaches a periodic steady state.
Each readout is one *time point* of the signal evolution (one radial spoke per cycle repetition,
see :mod:`swig_lib.core.radial`).

Signal evolutions are computed with the EPG formalism (Weigel 2015), vectorised over any number of
(T1, T2) pairs at once; with ideal spoiling the EPG reduces to a longitudinal Bloch recursion with
a closed form per readout train, which is what the default path evaluates (:func:`bloch_cycle`,
checked against :func:`epg_cycle`). Pulses are instantaneous and on resonance (no B0, B1 or T2*
effects). Units: times in ms, flip angles and RF phases in degrees, equilibrium magnetisation
M0 = 1 (PD scaling is applied by the caller).

References
----------
Weigel M. Extended phase graphs: dephasing, RF pulses, and echoes - pure and simple.
J Magn Reson Imaging 41:266-295 (2015).

Ma D et al. Magnetic resonance fingerprinting. Nature 495:187-192 (2013).

Jiang Y et al. MR fingerprinting using fast imaging with steady state precession (MRF-FISP).
Magn Reson Med 74:1621-1631 (2015).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Preparation = Literal["none", "inversion", "t2prep"]
Spoiling = Literal["ideal", "gradient"]

#: EPG state: (F+, F-, Z), each complex of shape (B, n_states).
EPGState = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Segment:
    """One magnetisation preparation followed by a train of gradient-echo readouts.

    Parameters
    ----------
    preparation : {"none", "inversion", "t2prep"}
        ``"inversion"``: ideal 180 degree pulse followed by a crusher. ``"t2prep"``: ideal
        90x - 180y - (-90x) T2 preparation followed by a crusher. ``"none"``: free relaxation only.
    prep_time : float
        ms. Inversion: delay from the inversion pulse to the first readout pulse (TI).
        T2 preparation: its echo time (duration from the 90x to the -90x pulse).
        None: a free-relaxation delay before the first readout.
    n_readouts : int
        Number of readouts (time points) in the train.
    flip_angle : float
        Readout flip angle, degrees.
    """

    preparation: Preparation
    prep_time: float
    n_readouts: int
    flip_angle: float

    def __post_init__(self) -> None:
        if self.preparation not in ("none", "inversion", "t2prep"):
            raise ValueError(f"unknown preparation {self.preparation!r}")
        if self.prep_time < 0:
            raise ValueError(f"prep_time must be >= 0 ms, got {self.prep_time}")
        if self.n_readouts < 1:
            raise ValueError(f"n_readouts must be >= 1, got {self.n_readouts}")
        if not 0 < self.flip_angle <= 180:
            raise ValueError(f"flip_angle must be in (0, 180] degrees, got {self.flip_angle}")


@dataclass(frozen=True)
class TransientSequence:
    """A cycle of prepared spoiled gradient-echo trains, repeated to a periodic steady state.

    The defaults encode T1 with an inversion recovery and T2 with three T2 preparations of
    increasing echo time (40, 120, 300 ms; the longest for the weakly encoded long T2 of CSF),
    each followed by 60 readouts of 8 degrees (240 time points, a 2.9 s cycle), in the spirit of
    MuPa-ZTE.

    Parameters
    ----------
    segments : tuple of Segment
        Played in order within one cycle.
    tr : float
        Repetition time of the readouts, ms.
    te : float
        Echo time of the readouts (time from pulse to the sampled echo), ms; ``0 <= te <= tr``.
    recovery_delay : float
        Free relaxation at the end of each cycle, before the next one starts, ms.
    spoiling : {"ideal", "gradient"}
        ``"ideal"``: all transverse magnetisation is destroyed after each readout (perfect RF
        spoiling, Mz-only dynamics). ``"gradient"``: an unbalanced gradient dephases by one
        configuration order per TR (FISP-like, keeps stimulated echoes and T2 sensitivity).
    n_states : int or None
        Number of EPG configuration orders kept in ``"gradient"`` mode; None keeps every order a
        train can reach (exact). Ignored for ``"ideal"`` spoiling, which needs a single order.
    """

    segments: tuple[Segment, ...] = (
        Segment("inversion", 20.0, 60, 8.0),
        Segment("t2prep", 40.0, 60, 8.0),
        Segment("t2prep", 120.0, 60, 8.0),
        Segment("t2prep", 300.0, 60, 8.0),
    )
    tr: float = 6.0
    te: float = 1.0
    recovery_delay: float = 1000.0
    spoiling: Spoiling = "ideal"
    n_states: int | None = None

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a sequence needs at least one segment")
        if self.tr <= 0 or not 0 <= self.te <= self.tr:
            raise ValueError(f"need tr > 0 and 0 <= te <= tr, got tr={self.tr}, te={self.te}")
        if self.recovery_delay < 0:
            raise ValueError(f"recovery_delay must be >= 0 ms, got {self.recovery_delay}")
        if self.spoiling not in ("ideal", "gradient"):
            raise ValueError(f"unknown spoiling {self.spoiling!r}")
        if self.n_states is not None and self.n_states < 1:
            raise ValueError(f"n_states must be >= 1 or None, got {self.n_states}")

    @property
    def n_timepoints(self) -> int:
        """Readouts per cycle (length of a signal evolution)."""
        return sum(seg.n_readouts for seg in self.segments)

    @property
    def cycle_duration(self) -> float:
        """Duration of one cycle, ms."""
        return (
            sum(seg.prep_time + seg.n_readouts * self.tr for seg in self.segments)
            + self.recovery_delay
        )

    @property
    def orders(self) -> int:
        """Number of EPG configuration orders simulated."""
        if self.spoiling == "ideal":
            return 1
        longest = max(seg.n_readouts for seg in self.segments)
        return longest + 1 if self.n_states is None else self.n_states


# --------------------------------------------------------------------------------------------
# EPG operators (Weigel 2015, conventions of Hargreaves' epg_* routines). F- is stored as
# F-_k = conj(F+_{-k}); an RF pulse about the axis at phase phi from x acts on (F+, F-, Z).
# --------------------------------------------------------------------------------------------


def epg_initial(n_batch: int, n_states: int, mz: np.ndarray | float = 1.0) -> EPGState:
    """Return an EPG state at rest: longitudinal magnetisation ``mz`` in Z0, nothing else.

    Parameters
    ----------
    n_batch : int
        Number of independent spins (tissues).
    n_states : int
        Number of configuration orders.
    mz : float or ndarray of shape (n_batch,)
        Initial longitudinal magnetisation (units of M0).
    """
    fp = np.zeros((n_batch, n_states), dtype=np.complex128)
    fm = np.zeros_like(fp)
    z = np.zeros_like(fp)
    z[:, 0] = mz
    return fp, fm, z


def epg_rf(state: EPGState, alpha: float, phase: float = 0.0) -> EPGState:
    """Apply an instantaneous RF rotation to every configuration order.

    Parameters
    ----------
    state : EPGState
        (F+, F-, Z).
    alpha : float
        Flip angle, degrees.
    phase : float
        RF phase, degrees (0 = rotation about x, 90 = about y).
    """
    fp, fm, z = state
    a, p = np.deg2rad(alpha), np.deg2rad(phase)
    c2, s2, sa, ca = np.cos(a / 2) ** 2, np.sin(a / 2) ** 2, np.sin(a), np.cos(a)
    e1, e2 = np.exp(1j * p), np.exp(2j * p)
    return (
        c2 * fp + e2 * s2 * fm - 1j * e1 * sa * z,
        np.conj(e2) * s2 * fp + c2 * fm + 1j * np.conj(e1) * sa * z,
        -0.5j * np.conj(e1) * sa * fp + 0.5j * e1 * sa * fm + ca * z,
    )


def epg_relax(state: EPGState, e1: np.ndarray, e2: np.ndarray) -> EPGState:
    """Relax every order over an interval tau; Z0 recovers towards M0 = 1.

    Parameters
    ----------
    state : EPGState
        (F+, F-, Z).
    e1, e2 : ndarray of shape (B, 1)
        exp(-tau/T1) and exp(-tau/T2) for each spin (tau in ms, T1/T2 in ms).
    """
    fp, fm, z = state
    z = z * e1
    z[:, 0] += 1.0 - e1[:, 0]
    return fp * e2, fm * e2, z


def epg_shift(state: EPGState) -> EPGState:
    """Dephase by one configuration order (an unbalanced gradient of unit area)."""
    fp, fm, z = state
    fp_new = np.empty_like(fp)
    fm_new = np.empty_like(fm)
    fp_new[:, 1:] = fp[:, :-1]
    fm_new[:, :-1] = fm[:, 1:]
    fm_new[:, -1] = 0.0
    fp_new[:, 0] = np.conj(fm_new[:, 0])
    return fp_new, fm_new, z


def epg_crush(state: EPGState) -> EPGState:
    """Ideal crusher: destroy every configuration except the longitudinal Z0."""
    fp, fm, z = state
    z_new = np.zeros_like(z)
    z_new[:, 0] = z[:, 0]
    return np.zeros_like(fp), np.zeros_like(fm), z_new


def _relaxation_factors(
    tau: float, t1: np.ndarray, t2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """exp(-tau/T1) and exp(-tau/T2) as (B, 1) columns (tau, T1, T2 in ms)."""
    return np.exp(-tau / t1)[:, None], np.exp(-tau / t2)[:, None]


def _validate_relaxation(t1: np.ndarray, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t1 = np.asarray(t1, dtype=np.float64)
    t2 = np.asarray(t2, dtype=np.float64)
    if t1.shape != t2.shape or t1.ndim != 1:
        raise ValueError(f"t1 and t2 must be 1-D of equal length, got {t1.shape} and {t2.shape}")
    if not (np.all(np.isfinite(t1)) and np.all(np.isfinite(t2))):
        raise ValueError("t1 and t2 must be finite")
    if np.any(t1 <= 0) or np.any(t2 <= 0):
        raise ValueError("t1 and t2 must be > 0 ms")
    return t1, t2


def epg_cycle(
    sequence: TransientSequence,
    t1: np.ndarray,
    t2: np.ndarray,
    initial_mz: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Play one cycle of ``sequence`` with the EPG operators (any spoiling).

    Parameters
    ----------
    sequence : TransientSequence
        The sequence.
    t1, t2 : ndarray of shape (B,)
        Relaxation times, ms (> 0).
    initial_mz : float or ndarray of shape (B,)
        Z0 at the start of the cycle (units of M0); the cycle starts from a purely longitudinal
        state.

    Returns
    -------
    signals : ndarray of shape (B, n_timepoints), complex128
        F+_0 at the echo time of every readout (M0 = 1). With RF phase 0 the signal is -i times the
        real transverse magnetisation.
    final_mz : ndarray of shape (B,), float64
        Z0 at the end of the cycle, after the recovery delay.
    """
    t1, t2 = _validate_relaxation(t1, t2)
    e_te = _relaxation_factors(sequence.te, t1, t2)
    e_rest = _relaxation_factors(sequence.tr - sequence.te, t1, t2)
    state = epg_initial(t1.size, sequence.orders, initial_mz)
    signals = np.empty((sequence.n_timepoints, t1.size), dtype=np.complex128)
    n = 0
    for seg in sequence.segments:
        if seg.preparation == "inversion":
            state = epg_crush(epg_rf(state, 180.0))
            state = epg_relax(state, *_relaxation_factors(seg.prep_time, t1, t2))
        elif seg.preparation == "t2prep":
            half = _relaxation_factors(seg.prep_time / 2, t1, t2)
            state = epg_relax(epg_rf(state, 90.0), *half)
            state = epg_relax(epg_rf(state, 180.0, 90.0), *half)
            state = epg_crush(epg_rf(state, 90.0, 180.0))
        else:
            state = epg_relax(state, *_relaxation_factors(seg.prep_time, t1, t2))
        for _ in range(seg.n_readouts):
            state = epg_relax(epg_rf(state, seg.flip_angle), *e_te)
            signals[n] = state[0][:, 0]
            n += 1
            state = epg_relax(state, *e_rest)
            state = epg_shift(state) if sequence.spoiling == "gradient" else epg_crush(state)
    state = epg_crush(state)
    state = epg_relax(state, *_relaxation_factors(sequence.recovery_delay, t1, t2))
    return signals.T.copy(), state[2][:, 0].real.copy()


def bloch_cycle(
    sequence: TransientSequence,
    t1: np.ndarray,
    t2: np.ndarray,
    initial_mz: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Play one cycle of an ideally spoiled ``sequence`` with the closed-form Bloch recursion.

    With ideal spoiling only Mz survives between pulses, and within a train of constant flip
    angle a it follows Mz[k+1] = q Mz[k] + (1 - E1) with q = cos(a) E1, E1 = exp(-TR/T1), so
    Mz[k] = Mss + (Mz[0] - Mss) q**k with Mss = (1 - E1) / (1 - q). This is the single-order EPG
    of :func:`epg_cycle`, evaluated without a loop over time points.

    Parameters, returns
        As :func:`epg_cycle`; ``sequence.spoiling`` must be ``"ideal"``.
    """
    if sequence.spoiling != "ideal":
        raise ValueError("bloch_cycle needs ideal spoiling; use epg_cycle")
    t1, t2 = _validate_relaxation(t1, t2)
    mz = np.broadcast_to(np.asarray(initial_mz, dtype=np.float64), t1.shape).copy()
    e1_tr = np.exp(-sequence.tr / t1)
    e2_te = np.exp(-sequence.te / t2)
    transverse = np.empty((t1.size, sequence.n_timepoints))
    n = 0
    for seg in sequence.segments:
        e1_prep = np.exp(-seg.prep_time / t1)
        if seg.preparation == "inversion":
            mz = -mz * e1_prep + (1.0 - e1_prep)
        elif seg.preparation == "t2prep":
            mz = mz * np.exp(-seg.prep_time / t2)
        else:
            mz = mz * e1_prep + (1.0 - e1_prep)
        a = np.deg2rad(seg.flip_angle)
        q = np.cos(a) * e1_tr
        m_ss = (1.0 - e1_tr) / (1.0 - q)
        powers = np.empty((t1.size, seg.n_readouts + 1))
        powers[:, 0] = 1.0
        powers[:, 1:] = q[:, None]
        np.cumprod(powers, axis=1, out=powers)
        mz_k = m_ss[:, None] + (mz - m_ss)[:, None] * powers
        transverse[:, n : n + seg.n_readouts] = mz_k[:, :-1] * (np.sin(a) * e2_te)[:, None]
        n += seg.n_readouts
        mz = mz_k[:, -1]
    e1_rec = np.exp(-sequence.recovery_delay / t1)
    return -1j * transverse, mz * e1_rec + (1.0 - e1_rec)


def simulate_signals(sequence: TransientSequence, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Signal evolutions in the periodic steady state reached by repeating the cycle.

    Every cycle ends with an ideal crusher, so its start state is Z0 alone and the signals and the
    end-of-cycle Z0 are affine in the start Z0. Two runs (start Z0 = 0 and 1, batched) give the
    affine map; its fixed point is the periodic steady state, reached exactly without dummy
    cycles. Ideal spoiling uses :func:`bloch_cycle`, gradient spoiling :func:`epg_cycle`.

    Parameters
    ----------
    sequence : TransientSequence
        The sequence.
    t1, t2 : array_like of shape (B,)
        Relaxation times, ms (> 0).

    Returns
    -------
    ndarray of shape (B, n_timepoints), complex128
        Signal evolutions for M0 = 1.
    """
    t1, t2 = _validate_relaxation(t1, t2)
    cycle = bloch_cycle if sequence.spoiling == "ideal" else epg_cycle
    start = np.concatenate([np.zeros(t1.size), np.ones(t1.size)])
    sig, end = cycle(sequence, np.tile(t1, 2), np.tile(t2, 2), start)
    sig0, sig1 = sig[: t1.size], sig[t1.size :]
    end0, end1 = end[: t1.size], end[t1.size :]
    # Fixed point of m -> end0 + m (end1 - end0); |end1 - end0| < 1 for finite T1.
    steady = end0 / (1.0 - (end1 - end0))
    return sig0 + steady[:, None] * (sig1 - sig0)
