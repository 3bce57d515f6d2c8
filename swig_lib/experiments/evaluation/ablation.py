"""The ablation chapter's analyses (notebook 03): a representative subject and slice chosen by rule,
Table III next to the paper's, and the paper's ablation claims checked one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from swig_lib.core.metrics import HIGHER_IS_BETTER, METRICS, map_metrics
from swig_lib.experiments.evaluation.ranking import (
    BASELINE,
    TOTAL_ROW,
    Ranking,
    metric_of,
    paper_table3,
    rank_percent,
)
from swig_lib.paper import TABLE3_MODELS


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
    percent: pd.DataFrame, ranked: Sequence[str] = TABLE3_MODELS, decimals: int = 2
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
    sign = np.array([1.0 if HIGHER_IS_BETTER[metric_of(row)] else -1.0 for row in own.index])
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
    t2_paper = paper.loc[("SSIM", "T2"), list(TABLE3_MODELS)].max()
    t2_ours = own.loc[("SSIM", "T2")].max()
    rows.append((
        "T2 SSIM barely improves (largest gain of the ranked models < 0.4 %)",
        f"largest {t2_paper:+.{decimals}f} %",
        f"largest {t2_ours:+.{decimals}f} %",
        bool(t2_ours < 0.4),
    ))
    if "M12--" in percent.columns:
        ssim_rows = [row for row in percent.index if metric_of(row) == "ssim"]
        rows.append((
            "without Q_l and without data consistency the model fails (M12--: SSIM below Q_l)",
            "\"failed completely\", not tabulated",
            ", ".join(pct("M12--", *row).replace("M12-- ", f"{row[1]} ") for row in ssim_rows),
            bool((percent.loc[ssim_rows, "M12--"] < 0).all()),
        ))
    selected = rank_percent(own).selected
    rows.append(("the lowest total rank selects M12++", "M12++", selected, selected == "M12++"))
    return pd.DataFrame(rows, columns=["claim", "paper", "this run", "agrees"]).set_index("claim")
