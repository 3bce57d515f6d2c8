"""Tests of dictionary generation, SVD compression and matching (swig_lib.core.dictionary)."""

from __future__ import annotations

import numpy as np
import pytest

from swig_lib.core.dictionary import (
    build_dictionary,
    grid_pairs,
    log_grid,
    match,
    remove_global_phase,
    svd_basis,
)
from swig_lib.core.epg import Segment, TransientSequence, simulate_signals

SEQUENCE = TransientSequence(
    segments=(
        Segment("inversion", 20.0, 40, 8.0),
        Segment("t2prep", 40.0, 40, 8.0),
        Segment("t2prep", 150.0, 40, 8.0),
    ),
    recovery_delay=800.0,
)
T1_VALUES = log_grid(200.0, 5000.0, 40)
T2_VALUES = log_grid(20.0, 2500.0, 45)


@pytest.fixture(scope="module")
def dictionary():
    return build_dictionary(SEQUENCE, T1_VALUES, T2_VALUES, n_components=5)


def test_grid_pairs_keep_t2_below_t1_and_validate():
    t1, t2 = grid_pairs([100.0, 1000.0], [50.0, 500.0, 2000.0])
    assert set(zip(t1, t2)) == {(100.0, 50.0), (1000.0, 50.0), (1000.0, 500.0)}
    with pytest.raises(ValueError):
        grid_pairs([100.0, 0.0], [50.0])
    with pytest.raises(ValueError):
        grid_pairs([100.0], [-50.0])
    with pytest.raises(ValueError):
        grid_pairs([100.0], [500.0])
    with pytest.raises(ValueError):
        log_grid(0.0, 100.0, 10)
    with pytest.raises(ValueError):
        log_grid(100.0, 50.0, 10)


def test_svd_basis_is_orthonormal_and_captures_the_energy():
    rng = np.random.default_rng(0)
    signals = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 20))
    basis, energy = svd_basis(signals, 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)
    assert energy == pytest.approx(1.0)
    _, partial = svd_basis(signals, 1)
    assert 0 < partial < 1
    with pytest.raises(ValueError):
        svd_basis(signals, 0)


def test_dictionary_structure(dictionary):
    n = dictionary.t1.size
    assert np.all(dictionary.t2 <= dictionary.t1)
    assert dictionary.atoms.shape == (n, 5) and dictionary.basis.shape == (SEQUENCE.n_timepoints, 5)
    np.testing.assert_allclose(np.linalg.norm(dictionary.atoms, axis=1), 1.0)
    np.testing.assert_allclose(dictionary.basis.conj().T @ dictionary.basis, np.eye(5), atol=1e-12)
    assert dictionary.energy > 0.999
    # Chunked simulation gives the same dictionary.
    chunked = build_dictionary(SEQUENCE, T1_VALUES, T2_VALUES, n_components=5, chunk_size=97)
    np.testing.assert_allclose(chunked.atoms, dictionary.atoms, atol=1e-12)


def test_matching_recovers_grid_values_exactly(dictionary):
    rng = np.random.default_rng(1)
    pick = rng.choice(dictionary.t1.size, 300, replace=False)
    pd = rng.uniform(20.0, 150.0, pick.size)
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, pick.size))  # e.g. a receive-coil phase
    evolutions = simulate_signals(SEQUENCE, dictionary.t1[pick], dictionary.t2[pick])
    signals = (pd * phase)[:, None] * evolutions
    coefficients = signals @ dictionary.basis.conj()
    pd_hat, t1_hat, t2_hat = match(coefficients, dictionary)
    np.testing.assert_array_equal(t1_hat, dictionary.t1[pick])
    np.testing.assert_array_equal(t2_hat, dictionary.t2[pick])
    assert np.abs(pd_hat / pd - 1).max() < 0.01


def test_matching_off_grid_values_lands_near_the_truth(dictionary):
    # Geometric midpoints between grid nodes, tissue-like T2 (50-300 ms): the match is within one
    # grid step. (Far below the shortest T2 preparation all T2 look alike, and far above the
    # longest one T2 trades off against T1 quantisation, so those ranges are not asserted.)
    t1 = np.sqrt(T1_VALUES[10:30:4] * T1_VALUES[11:31:4])
    t2 = np.sqrt(T2_VALUES[9:24:3] * T2_VALUES[10:25:3])
    signals = 60.0 * simulate_signals(SEQUENCE, t1, t2)
    pd, t1_hat, t2_hat = match(signals @ dictionary.basis.conj(), dictionary)
    step1, step2 = T1_VALUES[1] / T1_VALUES[0], T2_VALUES[1] / T2_VALUES[0]
    assert np.all(np.abs(np.log(t1_hat / t1)) <= np.log(step1))
    assert np.all(np.abs(np.log(t2_hat / t2)) <= np.log(step2))
    assert np.abs(pd / 60.0 - 1).max() < 0.05


def test_tree_search_equals_exhaustive_maximum_inner_product(dictionary):
    rng = np.random.default_rng(2)
    pick = rng.choice(dictionary.t1.size, 400)
    evolutions = simulate_signals(SEQUENCE, dictionary.t1[pick], dictionary.t2[pick])
    clean = evolutions @ dictionary.basis.conj()
    noisy = clean + 0.05 * np.abs(clean).max() * (
        rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)
    )
    pd_hat, t1_hat, t2_hat = match(noisy, dictionary)
    theta = 0.5 * np.angle(np.sum(noisy**2, axis=1))
    real = (noisy * np.exp(-1j * theta)[:, None]).real
    scores = np.abs(real @ dictionary.atoms.T)
    best = np.argmax(scores, axis=1)
    np.testing.assert_array_equal(t1_hat, dictionary.t1[best])
    np.testing.assert_array_equal(t2_hat, dictionary.t2[best])
    np.testing.assert_allclose(pd_hat, scores[np.arange(best.size), best] / dictionary.norms[best])
    # Noise makes some matches wrong: the check above is not trivially on exact data.
    assert np.mean(t1_hat != dictionary.t1[pick]) > 0.05


def test_zero_coefficients_give_zero_pd(dictionary):
    pd, t1, t2 = match(np.zeros((3, 5), dtype=complex), dictionary)
    np.testing.assert_array_equal(pd, 0.0)
    assert np.all(np.isfinite(t1)) and np.all(np.isfinite(t2))
    with pytest.raises(ValueError):
        match(np.zeros((3, 4), dtype=complex), dictionary)


def test_remove_global_phase():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((10, 8))
    out, phase = remove_global_phase(np.exp(0.7j) * real)
    assert np.allclose(out, real) or np.allclose(out, -real)
    with pytest.raises(ValueError):
        remove_global_phase(real * np.exp(1j * rng.uniform(0, 1, (10, 1))))
