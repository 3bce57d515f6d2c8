"""Image-quality metrics and the paper's model-selection ranking (Sec. III-C, Fig. 3, Table III).

Two slice-wise metrics compare a prediction with a reference (paper Sec. III-C.1):

* SSIM, the structural similarity index of Wang et al. (2004) [paper ref. 24], computed with
  scikit-image's default 7x7 uniform window (not the 11x11 Gaussian window of Wang et al.).
* HFEN, the high-frequency error norm of Ravishankar & Bresler (2011) [paper ref. 25].

Both are evaluated on 2-D axial slices inside a brain mask and averaged over slices
(:func:`slice_metrics`), then over subjects (Fig. 3, :func:`mean_ci`), and turned into the percent
changes over the low-resolution baseline ``Q_l`` and the rank sums of Table III
(:func:`rank_models`).

Masking convention (used by every function here): voxels outside the mask are set to zero in both
images before filtering, and the metric is averaged (SSIM) or the norms are taken (HFEN) over mask
voxels only. Averaging SSIM over the whole field of view instead would count the zero background,
where both images agree perfectly, and inflate SSIM; averaging over the mask is the stricter choice.

Every function accepts NumPy arrays or torch tensors and computes in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

METRICS: tuple[str, ...] = ("ssim", "hfen")
"""Metric columns of the long results table, in the row order of Table III."""

HIGHER_IS_BETTER: dict[str, bool] = {"ssim": True, "hfen": False}
"""Direction of each metric: SSIM higher is better, HFEN lower is better (paper Sec. III-C.1)."""

MODELS: tuple[str, ...] = ("M1++", "M2++", "M12++", "M12-+", "M12--")
"""Ablation models of Table I: ``M<guide><Q_l input><C_l consistency>``."""

BASELINE = "Q_l"
"""Name of the low-resolution baseline in results tables."""

_PAPER_TABLE3_PERCENT: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("SSIM", "PD"): (+2.62, +1.41, +4.32, +0.23),
    ("SSIM", "T1"): (+1.78, +1.25, +3.17, -1.48),
    ("SSIM", "T2"): (+0.22, +0.36, +0.27, -0.61),
    ("HFEN", "PD"): (-28.66, -35.34, -55.06, -40.91),
    ("HFEN", "T1"): (-30.25, -18.85, -52.38, -38.75),
    ("HFEN", "T2"): (-3.21, -8.41, -7.49, -4.03),
}
_PAPER_TABLE3_TOTAL: tuple[int, int, int, int] = (17, 15, 9, 19)
_PAPER_TABLE3_MODELS: tuple[str, ...] = ("M1++", "M2++", "M12++", "M12-+")
TOTAL_ROW: tuple[str, str] = ("Total rank", "")
"""Index label of the total-rank row in :meth:`Ranking.to_table` and :func:`paper_table3`."""


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
    denominator = float(np.linalg.norm(log_ref))
    if denominator == 0.0:
        raise ValueError("LoG(ref) is zero within the mask: HFEN is undefined")
    return float(np.linalg.norm(log_err)) / denominator


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


REGIONS: tuple[str, str] = ("brain", "interior")
"""Evaluation regions: the brain mask, and its interior (eroded in-plane, :func:`erode_mask`)."""

PAPER_BASELINE: dict[tuple[str, str], tuple[float, float]] = {("ssim", "T2"): (0.98, 0.005)}
"""The paper's ``Q_l`` baseline (mean, sd over its 17 test subjects) where it states one, keyed by
``(metric, map)``: only the T2 SSIM (Sec. IV-A); PD and T1 baselines and every HFEN baseline are
shown in its Fig. 3 but not given as numbers."""


def region_metrics(
    pred_maps: Any,
    ref_maps: Any,
    mask: Any,
    interior_voxels: int,
    names: Sequence[str] = ("PD", "T1", "T2"),
    slices: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Slice-averaged SSIM and HFEN per map in the brain mask and in its interior.

    Parameters
    ----------
    pred_maps, ref_maps : array_like, shape (M, X, Y, Z)
        Stacked maps, e.g. ``Q_l`` and ``Q_h`` (PD [a.u.], T1 [ms], T2 [ms]).
    mask : array_like of bool, shape (X, Y, Z)
        Brain mask.
    interior_voxels : int
        In-plane erosion of the ``"interior"`` region (:func:`erode_mask`); 0 leaves that region
        out.
    names : sequence of str
        Map names, one per channel.
    slices : sequence of int, optional
        Axial slices to evaluate (default: every slice with mask voxels, see
        :func:`slice_metrics`).

    Returns
    -------
    list of dict
        One row per region and map: ``map``, ``region`` (:data:`REGIONS`), ``ssim``, ``hfen``
        (means over the evaluated slices) and ``n_slices``.
    """
    regions = {"brain": 0} | ({"interior": int(interior_voxels)} if interior_voxels > 0 else {})
    rows = []
    for region, erosion in regions.items():
        scores = map_metrics(pred_maps, ref_maps, mask, names, slices=slices, interior_voxels=erosion)
        for name, result in scores.items():
            rows.append({"map": name, "region": region, "ssim": result["ssim"],
                         "hfen": result["hfen"], "n_slices": int(result["slices"].size)})
    return rows


def baseline_metrics(
    dataset: Any,
    split: str = "test",
    interior_voxels: int = 4,
    names: Sequence[str] = ("PD", "T1", "T2"),
    slices: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The ``Q_l`` baseline: SSIM and HFEN of ``Q_l`` against ``Q_h`` for every subject of a split.

    Parameters
    ----------
    dataset : swig_lib.experiments.subjects.dataset.Dataset
        A loaded dataset (anything with ``subject_ids(split)``, ``acquired(sid)`` giving ``q_l``
        and ``mask``, and ``reference(sid)``).
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    interior_voxels, names, slices
        As in :func:`region_metrics`.

    Returns
    -------
    pandas.DataFrame
        Long table with columns ``model`` (:data:`BASELINE`), ``subject``, ``map``, ``region``,
        ``ssim``, ``hfen``, ``n_slices``; one row per subject, region and map.
    """
    rows = []
    for sid in dataset.subject_ids(split):
        acquired = dataset.acquired(sid)
        reference = dataset.reference(sid)
        for row in region_metrics(acquired.q_l, reference, acquired.mask, interior_voxels, names, slices):
            rows.append({"model": BASELINE, "subject": sid, **row})
    if not rows:
        raise ValueError(f"split {split!r} has no subjects")
    return pd.DataFrame(rows)


def mean_sd(
    table: pd.DataFrame,
    by: Sequence[str] = ("model", "region", "map"),
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """Mean and sample standard deviation (``ddof=1``) over subjects, per group.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with one row per subject and the columns ``by`` and ``metrics``.
    by : sequence of str
        Grouping columns (kept in their order of appearance).
    metrics : sequence of str
        Metric columns to summarise.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``by``; columns ``<metric>_mean``, ``<metric>_sd`` for each metric and ``n``
        (subjects). The sd is NaN for a single subject.
    """
    missing = {*by, *metrics} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}")
    grouped = table.groupby(list(by), sort=False)
    out = pd.DataFrame(index=grouped.size().index)
    for metric in metrics:
        out[f"{metric}_mean"] = grouped[metric].mean()
        out[f"{metric}_sd"] = grouped[metric].std(ddof=1)
    out["n"] = grouped.size()
    return out


def mean_ci(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the mean (error bars of Fig. 3).

    ``mean +/- t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof=1``).

    Parameters
    ----------
    values : array_like, shape (n,)
        Samples, e.g. one metric value per subject.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    (mean, lo, hi) : tuple of float
        For a single value ``v``: ``(v, v, v)``.
    """
    x = to_numpy(values).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError("mean_ci got non-finite values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2.0, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def percent_change(value: float, baseline: float) -> float:
    """Percent change ``100 * (value - baseline) / baseline`` (Table III entries).

    Raises
    ------
    ValueError
        If ``baseline`` is 0.
    """
    if baseline == 0:
        raise ValueError("percent_change: baseline is 0")
    return 100.0 * (float(value) - float(baseline)) / float(baseline)


@dataclass(frozen=True)
class Ranking:
    """Result of the model selection of Table III.

    All frames are indexed by ``(metric, map)`` pairs, metric in upper case (``("SSIM", "PD")``,
    ..., ``("HFEN", "T2")``) and have one column per model (the baseline excluded, except in
    ``means``).

    Attributes
    ----------
    percent : pandas.DataFrame
        Percent change over the baseline (positive SSIM and negative HFEN changes are gains).
    ranks : pandas.DataFrame
        Rank per metric-map, 1 = best; ties share the average rank.
    total : pandas.Series
        Sum of the ranks over the metric-map rows, per model (lower is better).
    selected : str
        Model with the lowest total rank; ties broken by the larger summed gain
        (sum of SSIM % changes minus sum of HFEN % changes), then by column order.
    means : pandas.DataFrame or None
        Mean over subjects per metric-map, baseline column included (None when ranked from
        percent changes alone, :func:`rank_percent`).
    """

    percent: pd.DataFrame
    ranks: pd.DataFrame
    total: pd.Series
    selected: str
    means: pd.DataFrame | None = None

    def to_table(self, decimals: int = 2) -> pd.DataFrame:
        """Table III layout: percent rows plus a ``("Total rank", "")`` row, one column per model.

        Same layout as :func:`paper_table3`, so the two can be shown side by side.
        """
        total = pd.DataFrame([self.total.values], columns=self.total.index)
        table = pd.concat([self.percent.round(decimals), total], ignore_index=True)
        table.index = pd.MultiIndex.from_tuples(
            [*self.percent.index, TOTAL_ROW], names=["metric", "map"]
        )
        return table


def _metric_of(row: tuple[str, str]) -> str:
    """Lower-case metric name of a ``(metric, map)`` row label."""
    return str(row[0]).lower()


def _rank_scores(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, str]:
    """Rank models per ``(metric, map)`` row of ``scores`` (percent changes over the baseline).

    Rows are oriented by :data:`HIGHER_IS_BETTER`; ties share the average rank. The selection's
    tie-break is the summed gain in ``scores``, which should therefore be percent changes.
    """
    if not isinstance(scores.index, pd.MultiIndex) or scores.index.nlevels != 2:
        raise ValueError("scores must be indexed by (metric, map) pairs")
    unknown = {_metric_of(row) for row in scores.index} - set(HIGHER_IS_BETTER)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}: expected {list(METRICS)}")
    sign = np.array([1.0 if HIGHER_IS_BETTER[_metric_of(row)] else -1.0 for row in scores.index])
    gains = scores.mul(sign, axis=0)
    ranks = gains.rank(axis=1, ascending=False, method="average")
    total = ranks.sum(axis=0)
    order = sorted(
        range(len(total)),
        key=lambda i: (total.iloc[i], -gains.iloc[:, i].sum(), i),
    )
    return ranks, total, str(total.index[order[0]])


def rank_percent(percent: pd.DataFrame) -> Ranking:
    """Rank models from a table of percent changes over a shared baseline (Table III).

    With a shared baseline, ``percent_change`` is a monotone function of each model's mean, so
    ranking percent changes equals ranking the means (:func:`rank_models`).

    Parameters
    ----------
    percent : pandas.DataFrame
        Index ``(metric, map)`` pairs (metric ``SSIM``/``HFEN``, any case), one column per model,
        e.g. the first six rows of :func:`paper_table3`.

    Returns
    -------
    Ranking
        With ``means=None``.
    """
    ranks, total, selected = _rank_scores(percent)
    return Ranking(percent=percent, ranks=ranks, total=total, selected=selected)


def rank_models(
    table: pd.DataFrame,
    baseline: str = BASELINE,
    percent_mode: Literal["of_means", "per_subject"] = "of_means",
) -> Ranking:
    """Model selection of the paper (Sec. III-D.1 "Model Selection", Table III).

    For each metric (SSIM, HFEN) and map, every model's metric is averaged over subjects and the
    models are ranked on these means (rank 1 = highest SSIM or lowest HFEN; ties share the
    average rank). The total rank is the sum over the metric-map ranks and the model with the
    lowest total is selected (ties: larger summed gain, see :class:`Ranking`).

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with columns ``model, subject, map, ssim, hfen``, one row per model x subject x
        map; the baseline is one of the models. Every model must cover the baseline's subjects for
        each map.
    baseline : str
        Name of the baseline model (``"Q_l"``).
    percent_mode : {"of_means", "per_subject"}
        How ``Ranking.percent`` is formed: ``"of_means"`` is the percent change of the model's mean
        over the baseline's mean (consistent with the ranks); ``"per_subject"`` averages the
        per-subject percent changes, another reading of the Table III caption ("averaged across 17
        test subjects"), whose order need not match the ranks. Ranks always use the means, as the
        paper's text states.

    Returns
    -------
    Ranking
        Rows ordered SSIM then HFEN, maps in order of first appearance; model columns in order of
        first appearance, baseline excluded.
    """
    required = {"model", "subject", "map", *METRICS}
    missing = required - set(table.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}")
    if table.duplicated(["model", "subject", "map"]).any():
        raise ValueError("table has duplicate (model, subject, map) rows")
    models = [m for m in pd.unique(table["model"]) if m != baseline]
    if baseline not in set(table["model"]):
        raise ValueError(f"baseline {baseline!r} is not a model in the table")
    if not models:
        raise ValueError("table has no model besides the baseline")
    maps = list(pd.unique(table["map"]))
    rows = [(metric.upper(), name) for metric in METRICS for name in maps]
    columns = [baseline, *models]

    blocks = {
        (metric.upper(), name): _subject_block(table, metric, name, baseline, models)
        for metric in METRICS
        for name in maps
    }
    index = pd.MultiIndex.from_tuples(rows, names=["metric", "map"])
    means = pd.DataFrame(
        [blocks[row][columns].mean().to_numpy() for row in rows], index=index, columns=columns
    )
    if (means[baseline] <= 0).any():
        raise ValueError(
            f"baseline {baseline!r} has a non-positive mean: percent changes would invert the order"
        )
    percent_of_means = pd.DataFrame(
        [[percent_change(means.loc[row, m], means.loc[row, baseline]) for m in models]
         for row in rows],
        index=index,
        columns=models,
    )
    if percent_mode == "of_means":
        percent = percent_of_means
    elif percent_mode == "per_subject":
        percent = pd.DataFrame(
            [[np.mean([percent_change(v, b) for v, b in zip(blocks[row][m], blocks[row][baseline])])
              for m in models]
             for row in rows],
            index=index,
            columns=models,
        )
    else:
        raise ValueError(f"percent_mode must be 'of_means' or 'per_subject', got {percent_mode!r}")
    # Ranking the percent changes of the means equals ranking the means (shared baseline), and
    # percent changes make the tie-break (summed gain) comparable across metrics and maps.
    ranks, total, selected = _rank_scores(percent_of_means)
    return Ranking(percent=percent, ranks=ranks, total=total, selected=selected, means=means)


def _subject_block(
    table: pd.DataFrame, metric: str, name: str, baseline: str, models: list[str]
) -> pd.DataFrame:
    """Subjects x models table of ``metric`` on map ``name``, for the baseline's subjects."""
    block = table[table["map"] == name].pivot(index="subject", columns="model", values=metric)
    block = block.dropna(subset=[baseline])
    incomplete = [m for m in models if m not in block or block[m].isna().any()]
    if incomplete:
        raise ValueError(
            f"map {name!r}, {metric}: model(s) {incomplete} lack values for baseline subjects"
        )
    return block


def paper_table3() -> pd.DataFrame:
    """Table III of the paper as data, in the layout of :meth:`Ranking.to_table`.

    Percent improvement over the ``Q_l`` baseline, averaged over the 17 test subjects, for models
    M1++, M2++, M12++ and M12-+ (M12-- failed and was excluded), and the printed total ranks
    17, 15, 9, 19. Source: Samadifardheris et al., "Self-Supervised Weighted Image Guided
    Quantitative MRI Super-Resolution", Table III.

    Note: the printed totals cannot be reproduced from the printed percent changes. Ranking them
    (:func:`rank_percent`, any tie rule: there are no ties) gives 18, 15, 8, 19; the printed
    totals give M1++ one rank point less and M12++ one more (both sum to 60). Rounding cannot
    explain it (entries of a row differ by at least 0.05, ten times the rounding error); possible
    causes are percent changes averaged per subject while the ranks use mean metric values
    (Sec. III-D.1), or an arithmetic slip. Both totals select M12++.
    """
    rows = [*_PAPER_TABLE3_PERCENT, TOTAL_ROW]
    data = [*_PAPER_TABLE3_PERCENT.values(), _PAPER_TABLE3_TOTAL]
    return pd.DataFrame(
        data,
        index=pd.MultiIndex.from_tuples(rows, names=["metric", "map"]),
        columns=list(_PAPER_TABLE3_MODELS),
        dtype=float,
    )


# ----------------------------------------------------------------------------------------------
# Ablation (notebook 03): a representative slice chosen by rule, Table III next to the paper's
# ----------------------------------------------------------------------------------------------


def median_subject(
    table: pd.DataFrame,
    model: str = BASELINE,
    metric: str = "ssim",
    region: str | None = "brain",
) -> str:
    """The subject whose ``metric`` of ``model``, averaged over the maps, is the median.

    A rule for a "representative" subject that nobody picks by hand (Fig. 2). With an even number
    of subjects the lower of the two middle subjects is returned; tied subjects keep the order
    of the table.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with columns ``model``, ``subject``, ``map``, ``metric`` and, when ``region``
        is given, ``region`` (e.g. ``metrics/per_subject.csv`` of ``swig evaluate``).
    model : str
        Model whose values decide (default: the ``Q_l`` baseline, the same for every variant).
    metric : str
        Metric column.
    region : str or None
        Keep only these rows of the ``region`` column (None: no filter).

    Returns
    -------
    str
        The subject id.
    """
    rows = table[table["model"] == model]
    if region is not None:
        rows = rows[rows["region"] == region]
    if rows.empty:
        raise ValueError(f"no rows for model {model!r}" + (f" in region {region!r}" if region else ""))
    per_subject = rows.groupby("subject", sort=False)[metric].mean()
    ordered = per_subject.sort_values(kind="stable")
    return str(ordered.index[(len(ordered) - 1) // 2])


def median_slice(
    pred_maps: Any,
    ref_maps: Any,
    mask: Any,
    slices: Sequence[int] | None = None,
    metric: str = "ssim",
    names: Sequence[str] = ("PD", "T1", "T2"),
) -> tuple[int, pd.DataFrame]:
    """The axial slice whose ``metric`` (mean over the maps) is the median of a volume's slices.

    Parameters
    ----------
    pred_maps, ref_maps : array_like, shape (M, X, Y, Z)
        E.g. ``Q_l`` and ``Q_h`` of one subject.
    mask : array_like of bool, shape (X, Y, Z)
        Brain mask.
    slices : sequence of int, optional
        Candidate slices (default: every slice with mask voxels).
    metric : str
        ``"ssim"`` or ``"hfen"``.
    names : sequence of str
        Map names, one per channel.

    Returns
    -------
    (int, pandas.DataFrame)
        The slice index (lower median for an even count) and the per-slice values: index the
        slice, one column per map plus ``mean``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    scores = map_metrics(pred_maps, ref_maps, mask, names, slices=slices)
    kept = scores[names[0]]["slices"]
    frame = pd.DataFrame(
        {name: scores[name][f"{metric}_slices"] for name in names}, index=pd.Index(kept, name="slice")
    )
    frame["mean"] = frame[list(names)].mean(axis=1)
    ordered = frame["mean"].sort_values(kind="stable")
    return int(ordered.index[(len(ordered) - 1) // 2]), frame


def table3_comparison(ranking: Ranking, paper: pd.DataFrame | None = None, decimals: int = 2) -> pd.DataFrame:
    """Our Table III next to the paper's: percent change (rank) per model, ours and the paper's.

    Parameters
    ----------
    ranking : Ranking
        Our ranking (:func:`rank_models`), over any models; the paper's columns are added for the
        models it ranks (:func:`paper_table3`), the others show "–".
    paper : pandas.DataFrame, optional
        The paper's table in the layout of :func:`paper_table3` (default: that table).
    decimals : int
        Decimals of the percent changes.

    Returns
    -------
    pandas.DataFrame
        Strings. Rows ``(metric, map)`` plus ``("Total rank", "")``; columns ``(model, source)``
        with source ``"this run"`` and ``"paper"``. A cell reads ``+4.32 (1)``: percent change and
        rank among the models of its table. The paper's total reads ``9 (8)``: the printed total
        and, in brackets, the total that its printed percent changes give (they differ, see
        :func:`paper_table3`). Models in the paper's order first, then any others.
    """
    paper = paper_table3() if paper is None else paper
    percent_rows = [row for row in paper.index if row != TOTAL_ROW]
    paper_ranked = rank_percent(paper.loc[percent_rows])
    rows = [*ranking.percent.index, TOTAL_ROW]
    models = [m for m in paper.columns if m in ranking.percent.columns]
    models += [m for m in ranking.percent.columns if m not in models]
    columns, data = [], {}
    for model in models:
        for source in ("this run", "paper"):
            columns.append((model, source))
            cells = []
            for row in rows:
                if source == "this run":
                    if row == TOTAL_ROW:
                        cells.append(f"{ranking.total[model]:g}")
                    else:
                        cells.append(f"{ranking.percent.loc[row, model]:+.{decimals}f} "
                                     f"({ranking.ranks.loc[row, model]:g})")
                elif model not in paper.columns or (row != TOTAL_ROW and row not in paper.index):
                    cells.append("–")
                elif row == TOTAL_ROW:
                    cells.append(f"{paper.loc[TOTAL_ROW, model]:g} ({paper_ranked.total[model]:g})")
                else:
                    cells.append(f"{paper.loc[row, model]:+.{decimals}f} "
                                 f"({paper_ranked.ranks.loc[row, model]:g})")
            data[(model, source)] = cells
    return pd.DataFrame(
        data,
        index=pd.MultiIndex.from_tuples(rows, names=["metric", "map"]),
        columns=pd.MultiIndex.from_tuples(columns, names=["model", "source"]),
    )


def ablation_claims(
    percent: pd.DataFrame, ranked: Sequence[str] = _PAPER_TABLE3_MODELS, decimals: int = 2
) -> pd.DataFrame:
    """The ablation findings the paper states (Sec. IV-A, Table III), checked on our percent changes.

    Parameters
    ----------
    percent : pandas.DataFrame
        Percent change over ``Q_l`` (``Ranking.percent`` of :func:`rank_models`), rows
        ``(metric, map)`` with metric ``SSIM``/``HFEN``, one column per model. Must hold the
        models of ``ranked``; a row about ``M12--`` is added when that column is present.
    ranked : sequence of str
        The models of the paper's ranking (Table III), among which "best" and the selection are
        decided.
    decimals : int
        Decimals of the percent changes in the text.

    Returns
    -------
    pandas.DataFrame
        Index: the claim; columns ``paper`` (its numbers), ``this run`` (ours, same form) and
        ``agrees`` (bool).
    """
    missing = [m for m in ranked if m not in percent.columns]
    if missing:
        raise ValueError(f"percent lacks the ranked model(s) {missing}")
    paper = paper_table3()
    own = percent[list(ranked)]
    sign = np.array([1.0 if HIGHER_IS_BETTER[_metric_of(row)] else -1.0 for row in own.index])
    best = own.mul(sign, axis=0).idxmax(axis=1)

    def pct(model: str, metric: str, name: str, table: pd.DataFrame = percent) -> str:
        return f"{model} {table.loc[(metric, name), model]:+.{decimals}f} %"

    rows = []
    cells = [(metric, name) for name in ("PD", "T1") for metric in ("SSIM", "HFEN")]
    rows.append((
        "M12++ is the best of the ranked models for PD and T1 (SSIM and HFEN)",
        "M12++ best in all 4",
        ", ".join(f"{name} {metric}: {best[(metric, name)]}" for metric, name in cells),
        all(best[cell] == "M12++" for cell in cells),
    ))
    for metric, name, winner, loser in (("SSIM", "T1", "M1++", "M2++"), ("SSIM", "T2", "M2++", "M1++"),
                                        ("HFEN", "T2", "M2++", "M1++")):
        gain = sign[list(own.index).index((metric, name))]
        rows.append((
            f"the T{winner[1]}w guide helps {name} more ({metric}: {winner} better than {loser})",
            f"{pct(winner, metric, name, paper)} vs {pct(loser, metric, name, paper)}",
            f"{pct(winner, metric, name)} vs {pct(loser, metric, name)}",
            bool(gain * percent.loc[(metric, name), winner] > gain * percent.loc[(metric, name), loser]),
        ))
    rows.append((
        "without Q_l as input, T1 SSIM falls below the baseline (M12-+)",
        pct("M12-+", "SSIM", "T1", paper),
        pct("M12-+", "SSIM", "T1"),
        bool(percent.loc[("SSIM", "T1"), "M12-+"] < 0),
    ))
    t2_paper = paper.loc[("SSIM", "T2"), list(_PAPER_TABLE3_MODELS)].max()
    t2_ours = own.loc[("SSIM", "T2")].max()
    rows.append((
        "T2 SSIM barely improves (largest gain of the ranked models < 0.4 %)",
        f"largest {t2_paper:+.{decimals}f} %",
        f"largest {t2_ours:+.{decimals}f} %",
        bool(t2_ours < 0.4),
    ))
    if "M12--" in percent.columns:
        ssim_rows = [row for row in percent.index if _metric_of(row) == "ssim"]
        rows.append((
            "without Q_l and without data consistency the model fails (M12--: SSIM below Q_l)",
            "\"failed completely\", not tabulated",
            ", ".join(pct("M12--", *row).replace("M12-- ", f"{row[1]} ") for row in ssim_rows),
            bool((percent.loc[ssim_rows, "M12--"] < 0).all()),
        ))
    selected = rank_percent(own).selected
    rows.append(("the lowest total rank selects M12++", "M12++", selected, selected == "M12++"))
    return pd.DataFrame(rows, columns=["claim", "paper", "this run", "agrees"]).set_index("claim")
