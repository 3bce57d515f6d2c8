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

Speed without changing a bit: :class:`SliceScorer` filters each slice only on its mask's bounding
box plus the filters' reach (outside the mask both images are zero, so no filtered value inside
the mask changes, not even in its last bit), and filters the reference once for all the
predictions scored against it (:func:`map_metrics_many`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

METRICS: tuple[str, ...] = ("ssim", "hfen")
"""Metric columns of the long results table, in the row order of Table III."""

HIGHER_IS_BETTER: dict[str, bool] = {"ssim": True, "hfen": False}
"""Direction of each metric: SSIM higher is better, HFEN lower is better (paper Sec. III-C.1)."""

SSIM_WINDOW = 7
"""Side of SSIM's uniform window, voxels (scikit-image's default)."""

SSIM_K1, SSIM_K2 = 0.01, 0.03
"""SSIM's stabilising constants, C_i = (K_i · data_range)² (Wang et al. 2004; scikit-image)."""

SSIM_COV_NORM = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
"""n/(n − 1) over the window's n voxels: scikit-image's sample (co)variances."""

HFEN_SIGMA = 1.5
"""Standard deviation of HFEN's Laplacian of Gaussian, voxels (Ravishankar & Bresler 2011)."""

LOG_TRUNCATE = 4.0
"""Truncation of the LoG's Gaussian, in standard deviations (SciPy's default)."""


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
        and averaged over the mask voxels (:class:`SliceScorer`). This is stricter than the mean
        over the field of view, where the identical zero background pushes SSIM towards 1.
        Without a mask the result is scikit-image's mean SSIM (the map averaged after cropping a
        3-voxel border).

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
    if mask is not None:
        return float(SliceScorer(ref_m[None], mask_b[None], hfen=False).score(pred_m[None])[0][0])
    return float(structural_similarity(pred_m, ref_m, data_range=_ssim_data_range(ref_m, mask_b)))


def hfen(pred: Any, ref: Any, mask: Any | None = None, sigma: float = HFEN_SIGMA) -> float:
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
    return float(SliceScorer(ref_m[None], mask_b[None], sigma, ssim=False).score(pred_m[None])[1][0])


def _ssim_data_range(ref_m: np.ndarray, mask_b: np.ndarray, shape: tuple[int, ...] | None = None) -> float:
    """SSIM's ``data_range`` of one slice, max − min of the reference over the mask, after the checks.

    ``shape`` is that of the whole slice when ``ref_m`` and ``mask_b`` are a crop of it.

    Raises
    ------
    ValueError
        For a slice smaller than the SSIM window or a reference constant within the mask.
    """
    shape = ref_m.shape if shape is None else shape
    if min(shape) < SSIM_WINDOW:
        raise ValueError(f"slice {shape} is smaller than the 7x7 SSIM window")
    data_range = float(ref_m[mask_b].max() - ref_m[mask_b].min())
    if data_range == 0.0:
        raise ValueError("ref is constant within the mask: SSIM data_range would be 0")
    return data_range


def _window_mean(image: np.ndarray) -> np.ndarray:
    """Mean over SSIM's 7x7 window (:func:`scipy.ndimage.uniform_filter`, reflected edges)."""
    return ndimage.uniform_filter(image, size=SSIM_WINDOW)


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of a 2-D mask grown by ``margin`` voxels, clipped to the image."""
    box = []
    for axis in (1, 0):
        hits = np.flatnonzero(mask.any(axis=axis))
        box.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + margin + 1))
    return box[0], box[1]


class SliceError(ValueError):
    """A metric is undefined on one slice of a stack; ``index`` is its position in the stack."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class SliceScorer:
    """SSIM and HFEN (:func:`ssim`, :func:`hfen`) of predictions against one stack of reference slices.

    Everything that depends on the reference alone is computed once, per slice: the crop to the
    mask's bounding box grown by the filters' reach (the LoG's truncated Gaussian, ⌊4σ + ½⌋ = 6
    voxels at σ = 1.5, and half the SSIM window), the zeroed reference, its window means and
    variances, ``data_range`` and ‖LoG(ref)‖. Both images are zero outside the mask and every filter
    output inside the mask reaches no further than the crop, so the values are bit for bit those
    of the same functions on the whole slice; only the predictions are filtered per call.

    Parameters
    ----------
    ref : numpy.ndarray, shape (K, X, Y)
        Reference slices (float64; values outside the mask are ignored).
    mask : numpy.ndarray of bool, shape (K, X, Y)
        Evaluation region of each slice; none may be empty.
    sigma : float
        HFEN's Gaussian standard deviation, voxels.
    ssim, hfen : bool
        Which metrics :meth:`score` computes (the other's values are NaN and its checks skipped).

    Raises
    ------
    SliceError
        For the first slice (in stack order) with a non-finite reference value in the mask, one
        smaller than the SSIM window, a reference constant within its mask, or LoG(ref) = 0 there.
    """

    def __init__(self, ref: np.ndarray, mask: np.ndarray, sigma: float = HFEN_SIGMA,
                 ssim: bool = True, hfen: bool = True) -> None:
        self.sigma, self.ssim, self.hfen = sigma, ssim, hfen
        margin = max(SSIM_WINDOW // 2, int(LOG_TRUNCATE * sigma + 0.5))
        self.slices: list[dict[str, Any]] = []
        for k, (ref_k, mask_k) in enumerate(zip(ref, mask, strict=True)):
            try:
                self.slices.append(self._prepare(ref_k, mask_k, margin))
            except ValueError as err:
                raise SliceError(k, str(err)) from None

    def _prepare(self, ref: np.ndarray, mask: np.ndarray, margin: int) -> dict[str, Any]:
        """The reference's share of both metrics on one slice (see the class notes)."""
        box = _bounding_box(mask, margin)
        inside = mask[box]
        if not np.isfinite(ref[box][inside]).all():
            raise ValueError("non-finite values (NaN or inf) inside the mask")
        r = np.where(inside, ref[box], 0.0)
        entry: dict[str, Any] = {"box": box, "inside": inside, "ref": r}
        if self.ssim:
            data_range = _ssim_data_range(r, inside, ref.shape)
            uy = _window_mean(r)
            entry.update(uy=uy, uy2=uy**2, vy=SSIM_COV_NORM * (_window_mean(r * r) - uy * uy),
                         c1=(SSIM_K1 * data_range) ** 2, c2=(SSIM_K2 * data_range) ** 2)
        if self.hfen:
            log_ref = ndimage.gaussian_laplace(r, self.sigma, truncate=LOG_TRUNCATE)[inside]
            # Norms by NumPy's pairwise sum, not np.linalg.norm: that one goes through BLAS, whose
            # reduction order (and so the last bits) depends on the BLAS build and its thread count.
            entry["log_ref_norm"] = float(np.sqrt(np.sum(log_ref * log_ref)))
            if entry["log_ref_norm"] == 0.0:
                raise ValueError("LoG(ref) is zero within the mask: HFEN is undefined")
        return entry

    def score(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SSIM and HFEN of each slice of ``pred``, shape (K, X, Y) like the reference.

        Returns
        -------
        (ssim, hfen) : tuple of numpy.ndarray, shape (K,)
            Per-slice values (NaN for a metric switched off).

        Raises
        ------
        SliceError
            For the first slice with a non-finite prediction inside the mask.
        """
        ssim_values, hfen_values = np.full(len(self.slices), np.nan), np.full(len(self.slices), np.nan)
        for k, (pred_k, s) in enumerate(zip(pred, self.slices, strict=True)):
            inside = s["inside"]
            if not np.isfinite(pred_k[s["box"]][inside]).all():
                raise SliceError(k, "non-finite values (NaN or inf) inside the mask")
            # np.where, not multiplication: NaN * 0 would leak NaN from outside the mask.
            p = np.where(inside, pred_k[s["box"]], 0.0)
            if self.ssim:
                ssim_values[k] = self._ssim(p, s)
            if self.hfen:
                log_err = ndimage.gaussian_laplace(p - s["ref"], self.sigma, truncate=LOG_TRUNCATE)[inside]
                hfen_values[k] = float(np.sqrt(np.sum(log_err * log_err))) / s["log_ref_norm"]
        return ssim_values, hfen_values

    @staticmethod
    def _ssim(p: np.ndarray, s: Mapping[str, Any]) -> float:
        """Masked mean SSIM of one cropped slice: scikit-image's arithmetic, term for term."""
        ux, uy = _window_mean(p), s["uy"]
        vx = SSIM_COV_NORM * (_window_mean(p * p) - ux * ux)
        vxy = SSIM_COV_NORM * (_window_mean(p * s["ref"]) - ux * uy)
        a1, a2 = 2 * ux * uy + s["c1"], 2 * vxy + s["c2"]
        b1, b2 = ux**2 + s["uy2"] + s["c1"], vx + s["vy"] + s["c2"]
        return float(((a1 * a2) / (b1 * b2))[s["inside"]].mean())


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


def _evaluated_slices(mask_b: np.ndarray, slices: Sequence[int] | None) -> np.ndarray:
    """The requested axial slices (default: all) whose mask is not empty; checks the indices."""
    n_z = mask_b.shape[2]
    requested = np.arange(n_z) if slices is None else np.asarray(slices, dtype=int)
    if requested.size and (requested.min() < 0 or requested.max() >= n_z):
        raise ValueError(f"slice indices out of range [0, {n_z})")
    kept = np.array([z for z in requested if mask_b[:, :, z].any()], dtype=int)
    if kept.size == 0:
        raise ValueError("empty mask: no requested slice has mask voxels")
    return kept


def _axial_stack(volume: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The axial slices ``kept`` of an (X, Y, Z) volume as a contiguous (K, X, Y) stack."""
    return np.ascontiguousarray(np.moveaxis(volume[:, :, kept], 2, 0))


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
    pred_a = to_numpy(pred)
    if pred_a.ndim != 3:
        raise ValueError(f"expected (X, Y, Z) volumes, got shape {pred_a.shape}")
    return map_metrics(pred_a[None], to_numpy(ref)[None], mask, ("map",), slices=slices,
                       interior_voxels=interior_voxels)["map"]


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
        ``slices`` and ``interior_voxels``, as for :func:`slice_metrics` (:func:`map_metrics_many`).

    Returns
    -------
    dict
        ``{name: slice_metrics(...)}``.
    """
    return map_metrics_many({"": pred_maps}, ref_maps, mask, names, **kw)[""]


def map_metrics_many(
    predictions: Mapping[str, Any],
    ref_maps: Any,
    mask: Any,
    names: Sequence[str] = ("PD", "T1", "T2"),
    slices: Sequence[int] | None = None,
    interior_voxels: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`map_metrics` of several predictions of the same maps, the reference filtered once.

    Parameters
    ----------
    predictions : mapping of str to array_like, shape (M, X, Y, Z)
        Stacked maps by model name, in the order of ``names``.
    ref_maps : array_like, shape (M, X, Y, Z)
        Reference maps.
    mask : array_like of bool, shape (X, Y, Z)
        Brain mask shared by all maps.
    names : sequence of str
        One name per map (length M).
    slices, interior_voxels
        As for :func:`slice_metrics`.

    Returns
    -------
    dict
        ``{model: {name: slice_metrics(...)}}``, bit for bit the values of :func:`slice_metrics`.

    Raises
    ------
    ValueError
        On shape mismatch, out-of-range or empty slices, or a metric undefined on a slice (the
        message names the axial slice).
    """
    ref_a = to_numpy(ref_maps)
    mask_b = to_numpy(mask) > 0
    arrays = {model: to_numpy(pred) for model, pred in predictions.items()}
    for pred_a in arrays.values():
        if pred_a.shape != ref_a.shape:
            raise ValueError(f"shape mismatch: pred {pred_a.shape} vs ref {ref_a.shape}")
    if ref_a.ndim != 4 or ref_a.shape[0] != len(names):
        raise ValueError(
            f"expected maps of shape ({len(names)}, X, Y, Z) for names {tuple(names)}, "
            f"got {ref_a.shape}"
        )
    if ref_a.shape[1:] != mask_b.shape:
        raise ValueError(f"shape mismatch: maps {ref_a.shape[1:]} vs mask {mask_b.shape}")
    if interior_voxels > 0:
        mask_b = erode_mask(mask_b, interior_voxels)
    kept = _evaluated_slices(mask_b, slices)
    mask_s = _axial_stack(mask_b, kept)
    results: dict[str, dict[str, dict[str, Any]]] = {model: {} for model in arrays}
    for i, name in enumerate(names):
        try:
            scorer = SliceScorer(_axial_stack(ref_a[i], kept), mask_s)
            for model, pred_a in arrays.items():
                ssim_values, hfen_values = scorer.score(_axial_stack(pred_a[i], kept))
                results[model][name] = {"ssim": float(ssim_values.mean()), "hfen": float(hfen_values.mean()),
                                        "ssim_slices": ssim_values, "hfen_slices": hfen_values, "slices": kept}
        except SliceError as err:
            raise ValueError(f"axial slice {kept[err.index]}: {err}") from err
    return results
