"""Dictionary of signal evolutions over a (T1, T2) grid, SVD compression and matching.

The dictionary holds the periodic-steady-state evolutions of a
:class:`~swig_lib.core.epg.TransientSequence` for every grid pair with T2 <= T1 (M0 = 1). Its leading
left singular vectors form the temporal subspace in which images are reconstructed (McGivney
2014); matching picks, per voxel, the atom with the largest normalised inner product with the
voxel's subspace coefficients, and PD is the projection scale (Ma 2013). Because the atoms are
real and unit-norm, the largest inner product is a nearest-neighbour search, done exactly with a
k-d tree instead of an exhaustive scan.

References
----------
Ma D et al. Magnetic resonance fingerprinting. Nature 495:187-192 (2013).

McGivney DF et al. SVD compression for magnetic resonance fingerprinting in the time domain.
IEEE Trans Med Imaging 33:2311-2322 (2014).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from swig_lib.core.epg import TransientSequence, simulate_signals


@dataclass(frozen=True, eq=False)
class SubspaceDictionary:
    """A compressed dictionary ready for matching.

    The signals of a sequence whose RF pulses all have real phases share one global phase
    (-i for pulses about x); the dictionary removes it, so its atoms are real.

    Attributes
    ----------
    t1, t2 : ndarray of shape (N,)
        Relaxation times of the atoms, ms.
    basis : complex ndarray of shape (T, K)
        Temporal subspace (orthonormal columns, carrying the global phase): an evolution ``s``
        has coefficients ``c = basis^H s``, real for the noise-free signal of any atom.
    atoms : ndarray of shape (N, K), float64
        Subspace coefficients of the atoms, normalised to unit norm.
    norms : ndarray of shape (N,)
        Norms of the un-normalised compressed atoms (signal per unit M0).
    energy : float
        Fraction of the dictionary's energy kept by the K components.
    tree : scipy.spatial.cKDTree
        Nearest-neighbour index over the atoms and their negatives (2N points).
    """

    t1: np.ndarray
    t2: np.ndarray
    basis: np.ndarray
    atoms: np.ndarray
    norms: np.ndarray
    energy: float
    tree: cKDTree


def log_grid(low: float, high: float, n: int) -> np.ndarray:
    """``n`` logarithmically spaced values from ``low`` to ``high`` (inclusive), e.g. in ms.

    Raises
    ------
    ValueError
        If the bounds are not positive and increasing or ``n < 2``.
    """
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low or n < 2:
        raise ValueError(f"need 0 < low < high and n >= 2, got {low}, {high}, {n}")
    return np.geomspace(low, high, n)


def grid_pairs(t1_values: np.ndarray, t2_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (T1, T2) pairs of two value lists with T2 <= T1, ms.

    Raises
    ------
    ValueError
        If a value is not finite and positive, or no pair satisfies T2 <= T1.
    """
    t1_values = np.asarray(t1_values, dtype=np.float64).ravel()
    t2_values = np.asarray(t2_values, dtype=np.float64).ravel()
    for name, values in (("T1", t1_values), ("T2", t2_values)):
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"dictionary {name} values must be finite and > 0 ms")
    t1, t2 = (a.ravel() for a in np.meshgrid(t1_values, t2_values, indexing="ij"))
    keep = t2 <= t1
    if not keep.any():
        raise ValueError("no (T1, T2) pair with T2 <= T1")
    return t1[keep], t2[keep]


def remove_global_phase(
    signals: np.ndarray, phase: float | None = None, tolerance: float = 1e-9
) -> tuple[np.ndarray, float]:
    """Real evolutions from complex ones that share one global phase.

    Parameters
    ----------
    signals : complex ndarray of shape (N, T)
    phase : float, optional
        The phase to remove, rad; estimated as ``arg(sum s^2) / 2`` when omitted.
    tolerance : float
        Largest imaginary residual allowed after removing the phase, relative to max ``|signal|``.

    Returns
    -------
    real : ndarray of shape (N, T), float64
        ``Re(signals * exp(-i phase))``.
    phase : float
        The phase removed, rad.

    Raises
    ------
    ValueError
        If the signals are not real up to that phase.
    """
    if phase is None:
        phase = 0.5 * float(np.angle(np.sum(signals**2)))
    rotated = signals * np.exp(-1j * phase)
    if np.abs(rotated.imag).max() > tolerance * np.abs(signals).max():
        raise ValueError("dictionary signals are not real up to a global phase")
    return rotated.real, phase


def svd_basis(signals: np.ndarray, n_components: int) -> tuple[np.ndarray, float]:
    """Leading temporal singular vectors of a set of real signal evolutions.

    Parameters
    ----------
    signals : ndarray of shape (N, T), float64
        One evolution per row.
    n_components : int
        K, number of components kept (1 <= K <= T).

    Returns
    -------
    basis : ndarray of shape (T, K), float64
        Orthonormal columns, signed so that the mean signal has positive coefficients.
    energy : float
        Fraction of the squared Frobenius norm captured by the K components.
    """
    if not 1 <= n_components <= signals.shape[1]:
        raise ValueError(f"n_components must be in [1, {signals.shape[1]}], got {n_components}")
    # Eigen-decomposition of the T x T Gram matrix: cheaper than an SVD of the N x T matrix.
    eigvals, eigvecs = np.linalg.eigh(signals.T @ signals)
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = np.clip(eigvals[order], 0.0, None), eigvecs[:, order[:n_components]]
    eigvecs = eigvecs * np.where(signals.mean(axis=0) @ eigvecs < 0, -1.0, 1.0)
    return eigvecs, float(eigvals[:n_components].sum() / eigvals.sum())


def build_dictionary(
    sequence: TransientSequence,
    t1_values: np.ndarray,
    t2_values: np.ndarray,
    n_components: int = 5,
    chunk_size: int = 8192,
) -> SubspaceDictionary:
    """Simulate, compress and normalise a dictionary over a (T1, T2) grid.

    Parameters
    ----------
    sequence : TransientSequence
        The acquisition.
    t1_values, t2_values : array_like
        Grid values, ms (> 0); only pairs with T2 <= T1 are kept.
    n_components : int
        Subspace rank K.
    chunk_size : int
        Atoms simulated at once (bounds the memory of the complex intermediates).

    Returns
    -------
    SubspaceDictionary
    """
    t1, t2 = grid_pairs(t1_values, t2_values)
    real_signals = np.empty((t1.size, sequence.n_timepoints))
    phase = None
    for start in range(0, t1.size, chunk_size):
        part = slice(start, start + chunk_size)
        real_signals[part], phase = remove_global_phase(
            simulate_signals(sequence, t1[part], t2[part]), phase
        )
    real_basis, energy = svd_basis(real_signals, n_components)
    coefficients = real_signals @ real_basis
    norms = np.linalg.norm(coefficients, axis=1)
    atoms = coefficients / norms[:, None]
    return SubspaceDictionary(
        t1=t1,
        t2=t2,
        basis=real_basis * np.exp(1j * phase),
        atoms=atoms,
        norms=norms,
        energy=energy,
        tree=cKDTree(np.concatenate([atoms, -atoms])),
    )


def match(
    coefficients: np.ndarray, dictionary: SubspaceDictionary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dictionary matching: maximal normalised inner product, exact, via nearest neighbours.

    Each voxel's coefficients ``c`` are first phase-corrected with the principal-axis phase
    ``theta = arg(sum_k c_k^2) / 2`` (exact for noise-free data, whose coefficients are real up to
    one phase) and reduced to ``a = Re(c exp(-i theta))``, dropping the noise in quadrature. The
    atom maximising ``|<d_n, a>| / |a|`` over the unit-norm atoms ``d_n`` is the nearest
    neighbour of ``a / |a|`` among the atoms and their negatives (exact k-d tree search). PD is the
    least-squares scale of the un-normalised atom, ``|<d_n, a>| / norm_n``.

    Parameters
    ----------
    coefficients : complex ndarray of shape (V, K)
        Subspace coefficients of V voxels.
    dictionary : SubspaceDictionary
        Compressed dictionary with the same K.

    Returns
    -------
    pd, t1, t2 : ndarray of shape (V,), float64
        PD (a.u. of the coefficients per unit M0), T1 (ms), T2 (ms). A voxel with all-zero
        coefficients gets PD = 0.
    """
    coefficients = np.asarray(coefficients)
    if coefficients.ndim != 2 or coefficients.shape[1] != dictionary.atoms.shape[1]:
        raise ValueError(
            f"coefficients must be (V, {dictionary.atoms.shape[1]}), got {coefficients.shape}"
        )
    theta = 0.5 * np.angle(np.sum(coefficients**2, axis=1))
    real = (coefficients * np.exp(-1j * theta)[:, None]).real
    length = np.linalg.norm(real, axis=1)
    direction = real / np.where(length > 0, length, 1.0)[:, None]
    _, index = dictionary.tree.query(direction)
    best = index % dictionary.t1.size
    projection = np.abs(np.sum(dictionary.atoms[best] * real, axis=1))
    return projection / dictionary.norms[best], dictionary.t1[best], dictionary.t2[best]
