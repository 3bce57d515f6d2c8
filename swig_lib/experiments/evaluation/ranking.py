"""Statistics over subjects and the paper's model-selection rule (Sec. III-D, Fig. 3, Table III).

Per-region metrics of a subject, means with Student-t intervals, percent changes over the
low-resolution baseline ``Q_l``, and the rank sums that select a model (Table III).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from swig_lib import paper
from swig_lib.core.metrics import HIGHER_IS_BETTER, METRICS, map_metrics, to_numpy

MODELS: tuple[str, ...] = ("M1++", "M2++", "M12++", "M12-+", "M12--")
"""Ablation models of Table I: ``M<guide><Q_l input><C_l consistency>``."""

BASELINE = "Q_l"
"""Name of the low-resolution baseline in results tables."""


TOTAL_ROW: tuple[str, str] = ("Total rank", "")
"""Index label of the total-rank row in :meth:`Ranking.to_table` and :func:`paper_table3`."""



REGIONS: tuple[str, str] = ("brain", "interior")
"""Evaluation regions: the brain mask, and its interior (eroded in-plane, :func:`erode_mask`)."""


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


def metric_of(row: tuple[str, str]) -> str:
    """Lower-case metric name of a ``(metric, map)`` row label."""
    return str(row[0]).lower()


def _rank_scores(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, str]:
    """Rank models per ``(metric, map)`` row of ``scores`` (percent changes over the baseline).

    Rows are oriented by :data:`HIGHER_IS_BETTER`; ties share the average rank. The selection's
    tie-break is the summed gain in ``scores``, which should therefore be percent changes.
    """
    if not isinstance(scores.index, pd.MultiIndex) or scores.index.nlevels != 2:
        raise ValueError("scores must be indexed by (metric, map) pairs")
    unknown = {metric_of(row) for row in scores.index} - set(HIGHER_IS_BETTER)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}: expected {list(METRICS)}")
    sign = np.array([1.0 if HIGHER_IS_BETTER[metric_of(row)] else -1.0 for row in scores.index])
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
    rows = [*paper.TABLE3_PERCENT, TOTAL_ROW]
    data = [*paper.TABLE3_PERCENT.values(), paper.TABLE3_TOTAL]
    return pd.DataFrame(
        data,
        index=pd.MultiIndex.from_tuples(rows, names=["metric", "map"]),
        columns=list(paper.TABLE3_MODELS),
        dtype=float,
    )
