"""Image-quality metrics of the paper (Sec. III-C.1): SSIM and HFEN in a mask, per slice and per map.

Two slice-wise metrics compare a prediction with a reference (paper Sec. III-C.1):

* SSIM, the structural similarity index of Wang et al. (2004) [paper ref. 24], computed with
  scikit-image's default 7x7 uniform window (not the 11x11 Gaussian window of Wang et al.).
* HFEN, the high-frequency error norm of Ravishankar & Bresler (2011) [paper ref. 25].

Both are evaluated on 2-D axial slices inside a brain mask and averaged over slices
(:func:`slice_metrics`); statistics over subjects and the ranking of Table III are in
:mod:`swig_lib.experiments.evaluation.ranking`.

Masking convention (used by every function here): voxels outside the mask are set to zero in both
images before filtering, and the metric is averaged (SSIM) or the norms are taken (HFEN) over mask
voxels only. Averaging SSIM over the whole field of view instead would count the zero background,
where both images agree perfectly, and inflate SSIM; averaging over the mask is the stricter choice.

Every function accepts NumPy arrays or torch tensors and computes in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

METRICS: tuple[str, ...] = ("ssim", "hfen")
"""Metric columns of the long results table, in the row order of Table III."""

HIGHER_IS_BETTER: dict[str, bool] = {"ssim": True, "hfen": False}
"""Direction of each metric: SSIM higher is better, HFEN lower is better (paper Sec. III-C.1)."""



def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a float64 NumPy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _prepare_pair(
    pred: Any, ref: Any, mask: Any | None, ndim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and return ``(pred, ref, mask)`` with both images zeroed outside the mask."""
    pred, ref = to_numpy(pred), to_numpy(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs ref {ref.shape}")
    if pred.ndim != ndim:
        raise ValueError(f"expected {ndim}-D images, got shape {pred.shape}")
    if mask is None:
        mask_b = np.ones(pred.shape, dtype=bool)
    else:
        mask_b = to_numpy(mask) > 0
        if mask_b.shape != pred.shape:
            raise ValueError(f"shape mismatch: mask {mask_b.shape} vs images {pred.shape}")
    if not mask_b.any():
        raise ValueError("empty mask: no voxel to evaluate")
    if not (np.isfinite(pred[mask_b]).all() and np.isfinite(ref[mask_b]).all()):
        raise ValueError("non-finite values (NaN or inf) inside the mask")
    # np.where, not multiplication: NaN * 0 would leak NaN from outside the mask into the filters.
    return np.where(mask_b, pred, 0.0), np.where(mask_b, ref, 0.0), mask_b


def ssim(pred: Any, ref: Any, mask: Any | None = None) -> float:
    """Structural similarity of one 2-D slice (paper Sec. III-C.1, ref. [24]).

    scikit-image's :func:`~skimage.metrics.structural_similarity` with its default 7x7 uniform
    window, sample covariance, ``K1 = 0.01`` and ``K2 = 0.03``, and
    ``data_range = max(ref) - min(ref)`` over the mask voxels (the whole image without a mask).

    Parameters
    ----------
    pred, ref : array_like, shape (X, Y)
        Predicted and reference slice, same units (a.u. for PD, ms for T1/T2).
    mask : array_like of bool, shape (X, Y), optional
        Evaluation region. Both images are set to zero outside it, the full SSIM map is computed
        and averaged over the mask voxels. This is stricter than the mean over the field of view,
        where the identical zero background pushes SSIM towards 1. Without a mask the result is
        scikit-image's mean SSIM (the map averaged after cropping a 3-voxel border).

    Returns
    -------
    float
        SSIM, at most 1 (identical images); higher is better.

    Raises
    ------
    ValueError
        On shape mismatch, an empty mask, non-finite values in the mask, a slice smaller than
        7x7, or a reference that is constant within the mask (``data_range = 0``).
    """
    pred_m, ref_m, mask_b = _prepare_pair(pred, ref, mask, ndim=2)
    if min(pred_m.shape) < 7:
        raise ValueError(f"slice {pred_m.shape} is smaller than the 7x7 SSIM window")
    data_range = float(ref_m[mask_b].max() - ref_m[mask_b].min())
    if data_range == 0.0:
        raise ValueError("ref is constant within the mask: SSIM data_range would be 0")
    mssim, ssim_map = structural_similarity(pred_m, ref_m, data_range=data_range, full=True)
    if mask is None:
        return float(mssim)
    return float(ssim_map[mask_b].mean())


def hfen(pred: Any, ref: Any, mask: Any | None = None, sigma: float = 1.5) -> float:
    """High-frequency error norm of one 2-D slice (paper Sec. III-C.1, ref. [25]).

    ``HFEN = ||LoG(pred - ref)||_2 / ||LoG(ref)||_2`` with LoG the Laplacian-of-Gaussian filter
    :func:`scipy.ndimage.gaussian_laplace` of standard deviation ``sigma`` (voxels), following
    S. Ravishankar and Y. Bresler, "MR image reconstruction from highly undersampled k-space data
    by dictionary learning", IEEE Trans. Med. Imaging 30(5):1028-1041, 2011 (sigma = 1.5). Their
    MATLAB code uses a 15x15 ``fspecial('log')`` kernel; SciPy's default truncation (4 sigma) gives
    a 13x13 support, a negligible difference for ``sigma = 1.5``.

    Parameters
    ----------
    pred, ref : array_like, shape (X, Y)
        Predicted and reference slice, same units.
    mask : array_like of bool, shape (X, Y), optional
        Both images are set to zero outside the mask before filtering (so the mask edge is part of
        the structure, identically in both images), and both norms are taken over mask voxels.
    sigma : float
        Standard deviation of the Gaussian, in voxels.

    Returns
    -------
    float
        HFEN >= 0; 0 for identical images, 1 for ``pred = 0``; lower is better. Invariant to
        multiplying both images by the same constant.

    Raises
    ------
    ValueError
        On shape mismatch, an empty mask, non-finite values in the mask, or ``LoG(ref) = 0`` on the
        mask (a constant reference has no high frequencies to compare with).
    """
    pred_m, ref_m, mask_b = _prepare_pair(pred, ref, mask, ndim=2)
    log_err = ndimage.gaussian_laplace(pred_m - ref_m, sigma)[mask_b]
    log_ref = ndimage.gaussian_laplace(ref_m, sigma)[mask_b]
    # Norms by NumPy's pairwise sum, not np.linalg.norm: that one goes through BLAS, whose
    # reduction order (and so the last bits) depends on the BLAS build and its thread count.
    denominator = float(np.sqrt(np.sum(log_ref * log_ref)))
    if denominator == 0.0:
        raise ValueError("LoG(ref) is zero within the mask: HFEN is undefined")
    return float(np.sqrt(np.sum(log_err * log_err))) / denominator


def erode_mask(mask: Any, voxels: int = 4) -> np.ndarray:
    """Erode a mask in-plane by ``voxels`` voxels, slice by slice.

    Binary erosion over the first two axes only (each axial slice of an (X, Y, Z) volume
    separately) with a Euclidean disk of radius ``voxels``; voxels beyond the array edge count as
    outside the mask. Used to evaluate an interior mask without the brain-mask rim, where the
    zero-filled background makes HFEN and SSIM mostly measure the mask edge.

    Parameters
    ----------
    mask : array_like of bool, shape (X, Y) or (X, Y, Z)
        Mask to erode.
    voxels : int
        Erosion radius in voxels (in-plane); 0 returns the mask unchanged.

    Returns
    -------
    numpy.ndarray of bool
        Eroded mask, same shape. An axis-aligned square loses exactly a ``voxels``-wide rim.
    """
    mask_b = to_numpy(mask) > 0
    if mask_b.ndim not in (2, 3):
        raise ValueError(f"mask must be 2-D or 3-D, got shape {mask_b.shape}")
    if voxels < 0:
        raise ValueError(f"voxels must be >= 0, got {voxels}")
    if voxels == 0:
        return mask_b.copy()
    grid = np.arange(-voxels, voxels + 1)
    disk = grid[:, None] ** 2 + grid[None, :] ** 2 <= voxels**2
    structure = disk if mask_b.ndim == 2 else disk[:, :, None]
    return ndimage.binary_erosion(mask_b, structure=structure, border_value=0)


def slice_metrics(
    pred: Any,
    ref: Any,
    mask: Any,
    slices: Sequence[int] | None = None,
    interior_voxels: int = 0,
) -> dict[str, Any]:
    """SSIM and HFEN on axial slices of a volume, and their means (paper Sec. III-C.1, Fig. 3).

    Parameters
    ----------
    pred, ref : array_like, shape (X, Y, Z)
        Predicted and reference volume in NIfTI order; axial slices along the last axis.
    mask : array_like of bool, shape (X, Y, Z)
        Brain mask.
    slices : sequence of int, optional
        Axial slice indices to evaluate (e.g. ``range(40, 141)`` for Table II). Default: every
        slice with a non-empty (eroded) mask. Slices whose (eroded) mask is empty are skipped.
    interior_voxels : int
        When > 0, the mask is first eroded in-plane by this many voxels (:func:`erode_mask`).

    Returns
    -------
    dict
        ``ssim`` and ``hfen``: means over the evaluated slices (float); ``ssim_slices`` and
        ``hfen_slices``: per-slice values (ndarray); ``slices``: evaluated indices (int ndarray).

    Raises
    ------
    ValueError
        On shape mismatch, or when no requested slice has mask voxels; a per-slice metric error is
        re-raised with the slice index.
    """
    pred_a, ref_a = to_numpy(pred), to_numpy(ref)
    mask_b = to_numpy(mask) > 0
    if not pred_a.shape == ref_a.shape == mask_b.shape:
        raise ValueError(
            f"shape mismatch: pred {pred_a.shape}, ref {ref_a.shape}, mask {mask_b.shape}"
        )
    if pred_a.ndim != 3:
        raise ValueError(f"expected (X, Y, Z) volumes, got shape {pred_a.shape}")
    if interior_voxels > 0:
        mask_b = erode_mask(mask_b, interior_voxels)
    requested = np.arange(pred_a.shape[2]) if slices is None else np.asarray(slices, dtype=int)
    if requested.size and (requested.min() < 0 or requested.max() >= pred_a.shape[2]):
        raise ValueError(f"slice indices out of range [0, {pred_a.shape[2]})")
    kept = np.array([z for z in requested if mask_b[:, :, z].any()], dtype=int)
    if kept.size == 0:
        raise ValueError("empty mask: no requested slice has mask voxels")
    ssim_values, hfen_values = [], []
    for z in kept:
        try:
            ssim_values.append(ssim(pred_a[:, :, z], ref_a[:, :, z], mask_b[:, :, z]))
            hfen_values.append(hfen(pred_a[:, :, z], ref_a[:, :, z], mask_b[:, :, z]))
        except ValueError as err:
            raise ValueError(f"axial slice {z}: {err}") from err
    ssim_slices, hfen_slices = np.array(ssim_values), np.array(hfen_values)
    return {
        "ssim": float(ssim_slices.mean()),
        "hfen": float(hfen_slices.mean()),
        "ssim_slices": ssim_slices,
        "hfen_slices": hfen_slices,
        "slices": kept,
    }


def map_metrics(
    pred_maps: Any,
    ref_maps: Any,
    mask: Any,
    names: Sequence[str] = ("PD", "T1", "T2"),
    **kw: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`slice_metrics` for each parametric map of a (3, X, Y, Z) stack.

    Parameters
    ----------
    pred_maps, ref_maps : array_like, shape (M, X, Y, Z)
        Stacked maps (default order PD [a.u.], T1 [ms], T2 [ms]).
    mask : array_like of bool, shape (X, Y, Z)
        Brain mask shared by all maps.
    names : sequence of str
        One name per map (length M).
    **kw
        Passed to :func:`slice_metrics` (``slices``, ``interior_voxels``).

    Returns
    -------
    dict
        ``{name: slice_metrics(...)}``.
    """
    pred_a, ref_a = to_numpy(pred_maps), to_numpy(ref_maps)
    if pred_a.shape != ref_a.shape:
        raise ValueError(f"shape mismatch: pred_maps {pred_a.shape} vs ref_maps {ref_a.shape}")
    if pred_a.ndim != 4 or pred_a.shape[0] != len(names):
        raise ValueError(
            f"expected maps of shape ({len(names)}, X, Y, Z) for names {tuple(names)}, "
            f"got {pred_a.shape}"
        )
    return {
        name: slice_metrics(pred_a[i], ref_a[i], mask, **kw) for i, name in enumerate(names)
    }

