"""Tests of the transient-state sequence simulator (swig_lib.core.epg) against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from swig_lib.core.epg import (
    Segment,
    TransientSequence,
    bloch_cycle,
    epg_cycle,
    simulate_signals,
)

T1 = np.array([600.0, 1000.0, 4000.0, 250.0])
T2 = np.array([80.0, 100.0, 2000.0, 20.0])
CYCLES = pytest.mark.parametrize("cycle", [epg_cycle, bloch_cycle], ids=["epg", "bloch"])


@CYCLES
def test_inversion_recovery_matches_closed_form(cycle):
    # A negligible flip angle reads Mz without disturbing it: Mz(t) = 1 - 2 exp(-t / T1).
    alpha, ti, tr = 1e-3, 10.0, 5.0
    seq = TransientSequence(segments=(Segment("inversion", ti, 400, alpha),), tr=tr, te=0.0)
    signals, _ = cycle(seq, T1, T2, 1.0)
    t = ti + tr * np.arange(400)
    expected = -1j * np.sin(np.deg2rad(alpha)) * (1.0 - 2.0 * np.exp(-t[None] / T1[:, None]))
    np.testing.assert_allclose(signals, expected, rtol=0, atol=1e-7 * np.sin(np.deg2rad(alpha)))


@CYCLES
def test_spoiled_train_reaches_ernst_steady_state(cycle):
    alpha, tr, te = 30.0, 10.0, 2.0
    seq = TransientSequence(segments=(Segment("none", 0.0, 3000, alpha),), tr=tr, te=te)
    signals, _ = cycle(seq, T1, T2, 1.0)
    e1, a = np.exp(-tr / T1), np.deg2rad(alpha)
    ernst = np.sin(a) * (1 - e1) / (1 - e1 * np.cos(a)) * np.exp(-te / T2)
    np.testing.assert_allclose(signals[:, -1], -1j * ernst, rtol=1e-9)
    # ... and approaches it monotonically from Mz = 1.
    assert np.all(np.abs(signals[:, 0]) > np.abs(signals[:, -1]))


@CYCLES
def test_t2_preparation_scales_mz_by_exp_minus_te_over_t2(cycle):
    te_prep, mz0 = 70.0, 0.7
    seq = TransientSequence(segments=(Segment("t2prep", te_prep, 1, 90.0),), tr=10.0, te=0.0)
    signals, _ = cycle(seq, T1, T2, mz0)
    np.testing.assert_allclose(signals[:, 0], -1j * mz0 * np.exp(-te_prep / T2), rtol=1e-12)


def test_closed_form_bloch_equals_epg_with_ideal_spoiling():
    rng = np.random.default_rng(3)
    t1 = rng.uniform(100.0, 5000.0, 64)
    t2 = rng.uniform(10.0, 3000.0, 64)
    seq = TransientSequence()
    start = rng.uniform(-1.0, 1.0, 64)
    sig_epg, end_epg = epg_cycle(seq, t1, t2, start)
    sig_bloch, end_bloch = bloch_cycle(seq, t1, t2, start)
    np.testing.assert_allclose(sig_bloch, sig_epg, rtol=0, atol=1e-12)
    np.testing.assert_allclose(end_bloch, end_epg, rtol=0, atol=1e-12)


@pytest.mark.parametrize("spoiling", ["ideal", "gradient"])
def test_simulate_signals_is_the_periodic_steady_state(spoiling):
    # Repeating the cycle from equilibrium converges to what simulate_signals returns directly.
    seq = TransientSequence(
        segments=(Segment("inversion", 20.0, 30, 10.0), Segment("t2prep", 60.0, 30, 10.0)),
        recovery_delay=200.0,
        spoiling=spoiling,
    )
    mz = np.ones(T1.size)
    for _ in range(80):
        signals, mz = epg_cycle(seq, T1, T2, mz)
    np.testing.assert_allclose(simulate_signals(seq, T1, T2), signals, rtol=0, atol=1e-10)


def _rotation(alpha: float, phase: float) -> np.ndarray:
    """Active rotation by ``alpha`` about the transverse axis at ``phase`` from x (degrees)."""
    a, p = np.deg2rad(alpha), np.deg2rad(phase)
    rz = np.array([[np.cos(p), -np.sin(p), 0], [np.sin(p), np.cos(p), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return rz @ rx @ rz.T


def _isochromat_cycle(seq: TransientSequence, t1: float, t2: float, n_iso: int) -> np.ndarray:
    """Independent reference: average of isochromats dephased by 2 pi m / n_iso per TR."""
    phases = 2 * np.pi * np.arange(n_iso) / n_iso
    m = np.zeros((n_iso, 3))
    m[:, 2] = 1.0

    def relax(m, tau):
        e1, e2 = np.exp(-tau / t1), np.exp(-tau / t2)
        return m * np.array([e2, e2, e1]) + np.array([0.0, 0.0, 1.0 - e1])

    def crush(m):
        out = np.zeros_like(m)
        out[:, 2] = m[:, 2].mean()
        return out

    signals = []
    for seg in seq.segments:
        if seg.preparation == "inversion":
            m = relax(crush(m @ _rotation(180.0, 0.0).T), seg.prep_time)
        elif seg.preparation == "t2prep":
            m = relax(m @ _rotation(90.0, 0.0).T, seg.prep_time / 2)
            m = relax(m @ _rotation(180.0, 90.0).T, seg.prep_time / 2)
            m = crush(m @ _rotation(90.0, 180.0).T)
        for _ in range(seg.n_readouts):
            m = relax(m @ _rotation(seg.flip_angle, 0.0).T, seq.te)
            signals.append(np.mean(m[:, 0] + 1j * m[:, 1]))
            m = relax(m, seq.tr - seq.te)
            c, s = np.cos(phases), np.sin(phases)
            m = np.stack([c * m[:, 0] - s * m[:, 1], s * m[:, 0] + c * m[:, 1], m[:, 2]], axis=1)
    return np.array(signals)


def test_gradient_spoiled_epg_matches_isochromat_simulation():
    seq = TransientSequence(
        segments=(Segment("inversion", 15.0, 25, 35.0), Segment("t2prep", 50.0, 25, 60.0)),
        tr=8.0,
        te=2.0,
        spoiling="gradient",
    )
    t1, t2 = np.array([900.0, 300.0]), np.array([120.0, 40.0])
    signals, _ = epg_cycle(seq, t1, t2, 1.0)
    for i in range(t1.size):
        # More isochromats than twice the highest configuration order: no aliasing.
        reference = _isochromat_cycle(seq, t1[i], t2[i], n_iso=128)
        np.testing.assert_allclose(signals[i], reference, rtol=0, atol=1e-10)
    # Stimulated echoes make it differ from ideal spoiling.
    ideal, _ = epg_cycle(TransientSequence(**{**seq.__dict__, "spoiling": "ideal"}), t1, t2, 1.0)
    assert np.abs(ideal - signals).max() > 1e-3


def test_truncated_states_approximate_the_exact_gradient_epg():
    seq = TransientSequence(spoiling="gradient")
    exact = simulate_signals(seq, T1, T2)
    truncated = simulate_signals(TransientSequence(spoiling="gradient", n_states=30), T1, T2)
    assert np.abs(truncated - exact).max() < 1e-3 * np.abs(exact).max()


def test_default_sequence_shape_and_vectorisation():
    seq = TransientSequence()
    assert seq.n_timepoints == 240
    batch = simulate_signals(seq, T1, T2)
    assert batch.shape == (T1.size, 240)
    one = simulate_signals(seq, T1[2:3], T2[2:3])
    np.testing.assert_allclose(batch[2:3], one, rtol=1e-12)
    # Every signal is -i times a real evolution (RF pulses about x, no off-resonance).
    assert np.abs(batch.real).max() < 1e-15


@pytest.mark.parametrize(
    ("t1", "t2"),
    [([1000.0, -5.0], [80.0, 80.0]), ([1000.0, 900.0], [0.0, 80.0]), ([1000.0], [80.0, 90.0]),
     ([np.nan], [80.0])],
)
def test_invalid_relaxation_times_raise(t1, t2):
    with pytest.raises(ValueError):
        simulate_signals(TransientSequence(), np.array(t1), np.array(t2))


def test_invalid_sequence_parameters_raise():
    with pytest.raises(ValueError):
        Segment("saturation", 10.0, 10, 5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Segment("inversion", 10.0, 0, 5.0)
    with pytest.raises(ValueError):
        TransientSequence(tr=5.0, te=6.0)
    with pytest.raises(ValueError):
        TransientSequence(segments=())
    with pytest.raises(ValueError):
        bloch_cycle(TransientSequence(spoiling="gradient"), T1, T2)
