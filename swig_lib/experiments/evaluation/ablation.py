"""The ablation chapter (notebook 03) as one call: :func:`run_ablation`.

Its parts: the models of Table I as a table, the evaluation against Q_h
(:func:`swig_lib.experiments.evaluation.evaluate.evaluate`), a representative subject and slice
chosen by rule (Fig. 2), Table III next to the paper's (the paper's ranking on the test subjects,
reproduced), the model selection by the same rule on the validation subjects only (the default
model with the paper's Φ, the transfer model with randomised Φ; written with
:func:`swig_lib.experiments.evaluation.selection.write_selection`), the fixed against the
randomised degradation (``M12++`` against ``M12++dr``), the contribution of the guide loss
(``M12++`` against the α = 0 control ``M12++a0``) and the paper's ablation claims checked one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import uniform_filter

from swig_lib.core.io import PathLike
from swig_lib.core.metrics import HIGHER_IS_BETTER, METRICS, hfen, map_metrics, ssim
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.config import Profile
from swig_lib.experiments.evaluation.evaluate import evaluate, score_split, trained_checkpoints
from swig_lib.experiments.evaluation.ranking import (
    BASELINE,
    MODELS,
    TOTAL_ROW,
    Ranking,
    mean_ci,
    metric_of,
    paper_table3,
    rank_models,
    rank_percent,
)
from swig_lib.experiments.evaluation.selection import write_selection
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.plotting import DIFF_LIMITS
from swig_lib.experiments.results import Glue
from swig_lib.experiments.training.augment import randomised_profile
from swig_lib.experiments.training.checkpoints import checkpoint_paths
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import select_slices
from swig_lib.paper import TABLE3_MODELS

#: The headline region (the paper's brain mask) and the other one (the mask eroded in-plane).
HEADLINE, OTHER = "brain", "interior"
#: Column labels of the reference and the input in the panels of Fig. 2 (matplotlib mathtext).
REFERENCE_LABEL, INPUT_LABEL = "$Q_h$", "$Q_l$"
#: Largest edge (voxels) of the zoom window of Fig. 2.
ZOOM_SIZE = 64
#: The full model and its α = 0 control, compared to isolate the guide loss.
FULL_MODEL, CONTROL = "M12++", "M12++a0"
#: The full model trained with degradation randomisation (the transfer model, issue 11).
TRANSFER = "M12++dr"
#: The subject sets of the model selection and of the degradation comparison: key → label.
SUBJECT_SETS: dict[str, str] = {"test": "test (paper Φ)", "val": "validation (paper Φ)",
                                "val_dr": "validation (randomised Φ)"}


def median_subject(
    table: pd.DataFrame,
    model: str = BASELINE,
    metric: str = "ssim",
    region: str | None = "brain",
) -> str:
    """Return the subject whose ``metric`` of ``model``, averaged over the maps, is the median.

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
    """Return the axial slice whose ``metric`` (mean over the maps) is the median of a volume's slices.

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
    """Check the ablation findings the paper states (Sec. IV-A, Table III) on our percent changes.

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


def table1(variants: Sequence[str], alpha: float) -> pd.DataFrame:
    """Table I of the paper for ``variants``: inputs, loss terms and α of every model.

    Parameters
    ----------
    variants : sequence of str
        Keys of :data:`~swig_lib.experiments.training.variants.VARIANTS`.
    alpha : float
        The profile's ``train.alpha`` (a variant may override it).

    Returns
    -------
    pandas.DataFrame
        Index ``model``; columns ``Q_l input``, ``data consistency``, ``T1w guide``, ``T2w guide``
        ("Yes"/"No"), ``α`` and ``source`` (the paper's Table I, or our control).
    """
    yes = {True: "Yes", False: "No"}
    return pd.DataFrame([
        {"model": name, "Q_l input": yes[v.use_ql], "data consistency": yes[v.data_consistency],
         "T1w guide": yes["T1w" in v.guides], "T2w guide": yes["T2w" in v.guides],
         "α": f"{v.resolved_alpha(alpha):g}", "source": "paper, Table I" if name in MODELS else "our control"}
        for name, v in ((n, VARIANTS[n]) for n in variants)
    ]).set_index("model")


def region_ranking(table: pd.DataFrame, region: str, models: Sequence[str]) -> Ranking:
    """Rank ``models`` by the paper's rule (:func:`~swig_lib.experiments.evaluation.ranking.rank_models`).

    Parameters
    ----------
    table : pandas.DataFrame
        The per-subject table of :func:`~swig_lib.experiments.evaluation.evaluate.evaluate`.
    region : str
        ``"brain"`` or ``"interior"``.
    models : sequence of str
        The models to rank (against the baseline ``Q_l``).
    """
    rows = table[(table["region"] == region) & table["model"].isin([BASELINE, *models])]
    return rank_models(rows[["model", "subject", "map", "ssim", "hfen"]], BASELINE)


def guide_loss_contribution(table: pd.DataFrame, region: str, a: str = FULL_MODEL,
                            b: str = CONTROL) -> pd.DataFrame:
    """Paired comparison of two models over the test subjects, per map and metric.

    Parameters
    ----------
    table : pandas.DataFrame
        The per-subject table of :func:`~swig_lib.experiments.evaluation.evaluate.evaluate`.
    region : str
        ``"brain"`` or ``"interior"``.
    a, b : str
        The models; by default the full model and its α = 0 control.

    Returns
    -------
    pandas.DataFrame
        Index (region, map, metric); columns: the mean paired difference ``a − b`` with its 95 %
        confidence interval (Student t), the percent change of each model's mean over ``Q_l`` and a
        verdict (``"<a> better"``, ``"<a> worse"``: the interval excludes zero; else
        ``"no clear difference"``).
    """
    part = table[table["region"] == region]
    rows = []
    for name in MAP_NAMES:
        for metric in ("ssim", "hfen"):
            block = part[part["map"] == name].pivot(index="subject", columns="model", values=metric)
            mean, lo, hi = mean_ci(block[a] - block[b])
            better = (lo > 0) if metric == "ssim" else (hi < 0)
            worse = (hi < 0) if metric == "ssim" else (lo > 0)
            base = block[BASELINE].mean()
            rows.append({"region": region, "map": name, "metric": metric.upper(),
                         f"{a} − {b}": f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                         f"{a} vs Q_l": f"{100 * (block[a].mean() / base - 1):+.2f} %",
                         f"{b} vs Q_l": f"{100 * (block[b].mean() / base - 1):+.2f} %",
                         "verdict": f"{a} better" if better else f"{a} worse" if worse else "no clear difference"})
    return pd.DataFrame(rows).set_index(["region", "map", "metric"])


@dataclass
class RepresentativeSlice:
    """The slice of Fig. 2: every model and Q_l next to Q_h on one axial slice.

    Attributes
    ----------
    subject : str
        The test subject (:func:`median_subject`).
    z : int
        The slice index in the subject's volume (:func:`median_slice`).
    slice_k : int
        The MNI152 slice number of ``z``.
    mask : numpy.ndarray
        (X, Y) brain mask of the slice.
    panels : dict of str to numpy.ndarray
        (3, X, Y) PD [a.u.], T1 [ms], T2 [ms] per column: :data:`REFERENCE_LABEL`, every model,
        :data:`INPUT_LABEL`.
    scores : dict of (str, str) to (float, float)
        SSIM and HFEN against Q_h on the brain mask, by (column, map), Q_h excluded.
    relative : pandas.DataFrame
        Median relative error in percent over the brain voxels, one row per column (Q_h
        excluded), one column per map.
    zoom : tuple of slice
        The square window of the zoom, (X, Y): where the error of Q_l, summed over the maps in
        units of :data:`~swig_lib.experiments.plotting.DIFF_LIMITS`, is densest.
    """

    subject: str
    z: int
    slice_k: int
    mask: np.ndarray
    panels: dict[str, np.ndarray]
    scores: dict[tuple[str, str], tuple[float, float]]
    relative: pd.DataFrame
    zoom: tuple[slice, slice]


def zoom_window(q_l: np.ndarray, q_h: np.ndarray, mask: np.ndarray, size: int = ZOOM_SIZE) -> tuple[slice, slice]:
    """Return the square window of a slice where the error of Q_l is densest.

    The error is ``|Q_l − Q_h|`` summed over the maps in units of their
    :data:`~swig_lib.experiments.plotting.DIFF_LIMITS`, zero outside the mask, averaged over a
    ``size``-square (clipped to the slice) by a uniform filter; the window is centred on its
    maximum and shifted inside the slice.

    Parameters
    ----------
    q_l, q_h : numpy.ndarray
        (3, X, Y) maps of the slice: PD [a.u.], T1 [ms], T2 [ms].
    mask : numpy.ndarray
        (X, Y) brain mask.
    size : int
        Largest window edge, voxels.

    Returns
    -------
    tuple of slice
        The window, (X, Y).
    """
    size = min(size, *mask.shape)
    error_ql = sum(np.abs(q_l[c] - q_h[c]) / DIFF_LIMITS[name] for c, name in enumerate(MAP_NAMES))
    density = uniform_filter(np.where(mask, error_ql, 0.0), size=size, mode="constant")
    cx, cy = np.unravel_index(np.argmax(density), density.shape)
    x0 = int(np.clip(cx - size // 2, 0, mask.shape[0] - size))
    y0 = int(np.clip(cy - size // 2, 0, mask.shape[1] - size))
    return np.s_[x0 : x0 + size, y0 : y0 + size]


def representative_slice(profile: Profile, out: Path, dataset: Any, table: pd.DataFrame,
                         variants: Sequence[str], device: torch.device) -> RepresentativeSlice:
    """Pick the slice of Fig. 2 by rule and run every model on it.

    The subject whose baseline SSIM on the brain mask is the median (:func:`median_subject`), and
    in it the evaluated slice whose baseline SSIM is the median (:func:`median_slice`).

    Parameters
    ----------
    profile : Profile
        Reads ``eval.min_brain_fraction`` and ``eval.slice_stride``.
    out : Path
        ``<results_dir>/<profile>`` (the kept checkpoints).
    dataset
        The dataset (``acquired``, ``reference``, ``manifest["slices"]``).
    table : pandas.DataFrame
        The per-subject table of :func:`~swig_lib.experiments.evaluation.evaluate.evaluate`.
    variants : sequence of str
        The models to show.
    device : torch.device
        Where the models run.
    """
    cfg = profile.eval
    shown = median_subject(table, BASELINE, "ssim", HEADLINE)
    acq, q_h = dataset.acquired(shown), dataset.reference(shown)
    mask = np.asarray(acq.mask, bool)
    candidates = select_slices(mask, cfg.min_brain_fraction, cfg.slice_stride)
    z, _ = median_slice(acq.q_l, q_h, mask, candidates, "ssim")
    predictions = {
        name: predict_volume(load_model(checkpoint_paths(out, name)[0], device),
                             acq.q_l, acq.guides, mask, slices=np.array([z]))[..., z]
        for name in variants
    }
    panels = {REFERENCE_LABEL: q_h[..., z], **predictions, INPUT_LABEL: acq.q_l[..., z]}
    m2 = mask[..., z]
    scores = {
        (col, name): (ssim(img[c], q_h[c, ..., z], m2), hfen(img[c], q_h[c, ..., z], m2))
        for col, img in panels.items() if col != REFERENCE_LABEL for c, name in enumerate(MAP_NAMES)
    }
    relative = pd.DataFrame({
        col: {f"{name} median |error| / Q_h [%]":
              100 * float(np.median(np.abs(img[c][m2] - q_h[c, ..., z][m2]) / q_h[c, ..., z][m2]))
              for c, name in enumerate(MAP_NAMES)}
        for col, img in panels.items() if col != REFERENCE_LABEL
    }).T
    return RepresentativeSlice(
        subject=shown, z=int(z), slice_k=int(dataset.manifest["slices"][z]), mask=m2, panels=panels,
        scores=scores, relative=relative, zoom=zoom_window(panels[INPUT_LABEL], panels[REFERENCE_LABEL], m2),
    )


def tissue_t1_spread(manifest: Mapping[str, Any]) -> float:
    """Largest coefficient of variation (%) over the subjects of a tissue's mean T1.

    Parameters
    ----------
    manifest : mapping
        The dataset manifest: ``subjects`` → record → ``tissue_values`` → tissue → ``t1`` [ms].
    """
    tissues = pd.DataFrame([{"tissue": t, "t1": e["t1"]} for r in manifest["subjects"].values()
                            for t, e in r["tissue_values"].items()])
    cv = tissues.groupby("tissue")["t1"].agg(lambda x: 100 * x.std(ddof=1) / x.mean())
    return float(cv.max())


def validation_tables(profile: Profile, out: Path, variants: Sequence[str], datasets: Mapping[str, Any],
                      device: torch.device, progress: bool = False) -> dict[str, pd.DataFrame]:
    """Score every variant on the validation subjects of each dataset (for the model selection).

    Parameters
    ----------
    profile : Profile
        Reads the ``eval`` section.
    out : Path
        ``<results_dir>/<profile>`` (the kept checkpoints).
    variants : sequence of str
        The candidates.
    datasets : mapping of str to dataset
        By key of :data:`SUBJECT_SETS` (``"val"``: the profile's dataset, ``"val_dr"``: the
        degradation-randomised one).
    device : torch.device
        Where the models run.
    progress : bool
        Progress bars.

    Returns
    -------
    dict of str to pandas.DataFrame
        Per key, the per-subject table of
        :func:`~swig_lib.experiments.evaluation.evaluate.score_split` on the ``"val"`` split.
    """
    models = {n: load_model(p, device) for n, p in trained_checkpoints(profile, out, variants).items()}
    return {key: score_split(profile, models, data, "val", progress) for key, data in datasets.items()}


def select_models(tables: Mapping[str, pd.DataFrame], models: Sequence[str],
                  region: str = HEADLINE) -> dict[str, Ranking]:
    """The model selection: ``models`` ranked by the rule of Table III on each (validation) table.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Per-subject tables (:func:`validation_tables`), by key.
    models : sequence of str
        The candidates.
    region : str
        The mask of the ranking.

    Returns
    -------
    dict of str to Ranking
        Per key, the ranking (:func:`region_ranking`); its ``selected`` is the lowest total rank.
    """
    return {key: region_ranking(table, region, models) for key, table in tables.items()}


def degradation_table(tables: Mapping[str, pd.DataFrame], models: Sequence[str] = (FULL_MODEL, TRANSFER),
                      region: str = HEADLINE) -> pd.DataFrame:
    """Mean SSIM and HFEN per map of ``models`` and ``Q_l`` on each subject set (fixed vs randomised Φ).

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Per-subject tables by key of :data:`SUBJECT_SETS`.
    models : sequence of str
        The models compared (those present in a table are shown), then the baseline.
    region : str
        The mask.

    Returns
    -------
    pandas.DataFrame
        Rows (subjects, model), the subjects labelled as in :data:`SUBJECT_SETS`; columns (metric,
        map): the mean over the subjects of the set.
    """
    parts = {}
    for key, table in tables.items():
        rows = table[(table["region"] == region) & table["model"].isin([*models, BASELINE])]
        means = rows.groupby(["model", "map"], sort=False)[["ssim", "hfen"]].mean().unstack("map")
        order = [m for m in (*models, BASELINE) if m in means.index]
        parts[SUBJECT_SETS[key]] = means.loc[order, [(metric, name) for metric in ("ssim", "hfen")
                                                     for name in MAP_NAMES]]
    frame = pd.concat(parts, names=["subjects", "model"])
    frame.columns = pd.MultiIndex.from_tuples([(m.upper(), n) for m, n in frame.columns], names=["metric", "map"])
    return frame


@dataclass
class AblationResults:
    """Everything :func:`run_ablation` produces.

    Attributes
    ----------
    variants : list of str
        The evaluated models, in the profile's order.
    table1 : pandas.DataFrame
        The models (:func:`table1`).
    table : pandas.DataFrame
        Per test subject, model (``Q_l`` included), map and region: SSIM and HFEN (the
        ``metrics/per_subject.csv`` of :func:`~swig_lib.experiments.evaluation.evaluate.evaluate`).
    means : pandas.DataFrame
        Means over the test subjects: rows (region, map), columns (metric, model).
    slice : RepresentativeSlice
        The slice of Fig. 2.
    ranked : dict of str to Ranking
        The ranking of the paper's four models (Table III) per region.
    everything : Ranking
        The ranking of every evaluated model on the headline region.
    table3 : dict of str to pandas.DataFrame
        Our Table III next to the paper's, per region (:func:`table3_comparison`).
    validation : dict of str to pandas.DataFrame
        Per-subject tables on the validation subjects, by key ``"val"`` (the profile's dataset,
        paper Φ) and ``"val_dr"`` (the randomised dataset, each subject with its own Φ).
    chosen : dict of str to Ranking
        The ranking of every evaluated model on the headline region of each validation table
        (same keys): the model selection.
    selected : str
        The default model: lowest total rank on the validation subjects with the paper's Φ
        (written to ``metrics/selected_model.json``).
    selected_transfer : str
        The transfer model: the same on the validation subjects with randomised Φ (written too).
    degradation : pandas.DataFrame
        ``M12++``, ``M12++dr`` and ``Q_l`` on the test and both validation sets
        (:func:`degradation_table`).
    contribution : pandas.DataFrame or None
        ``M12++`` against ``M12++a0`` per region (:func:`guide_loss_contribution`); None when the
        control was not evaluated.
    claims : pandas.DataFrame
        The paper's ablation findings checked (:func:`ablation_claims`).
    figure_dir : Path
        ``<results_dir>/<profile>/ablation``, for the figures.
    glue : dict of str to (value, format)
        The numbers the chapter's prose quotes, by glue name.
    """

    variants: list[str]
    table1: pd.DataFrame
    table: pd.DataFrame
    means: pd.DataFrame
    slice: RepresentativeSlice
    ranked: dict[str, Ranking]
    everything: Ranking
    table3: dict[str, pd.DataFrame]
    validation: dict[str, pd.DataFrame]
    chosen: dict[str, Ranking]
    selected: str
    selected_transfer: str
    degradation: pd.DataFrame
    contribution: pd.DataFrame | None
    claims: pd.DataFrame
    figure_dir: Path
    glue: Glue

    @property
    def with_ql(self) -> list[str]:
        """The evaluated models that receive Q_l as input."""
        return [n for n in self.variants if VARIANTS[n].use_ql]


def _slice_glue(shown: RepresentativeSlice) -> Glue:
    """Glue the subject, slice, scores and relative errors of Fig. 2."""
    glue: Glue = {"fig2_subject": (shown.subject, None), "fig2_slice_k": (shown.slice_k, None),
                  "fig2_slice_z": (shown.slice_k - 72, None)}
    for name in MAP_NAMES:
        for col, key in ((INPUT_LABEL, "ql"), (FULL_MODEL, "m12")):
            if (col, name) in shown.scores:
                glue[f"fig2_{key}_ssim_{name.lower()}"] = (shown.scores[(col, name)][0], ".3f")
                glue[f"fig2_{key}_hfen_{name.lower()}"] = (shown.scores[(col, name)][1], ".3f")
    for col, key in ((INPUT_LABEL, "ql"), (FULL_MODEL, "m12"), ("M12-+", "m12mp")):
        if col in shown.relative.index:
            for name in MAP_NAMES:
                value = float(shown.relative.loc[col, f"{name} median |error| / Q_h [%]"])
                glue[f"relerr_{key}_{name.lower()}"] = (value, ".1f")
    size = shown.zoom[0].stop - shown.zoom[0].start
    glue["zoom_size"] = (f"{size} × {size}", None)
    return glue


def _ranking_glue(ranked: Mapping[str, Ranking], paper: pd.DataFrame) -> Glue:
    """Glue the selections and total ranks of Table III, ours and the paper's."""
    recomputed = rank_percent(paper.drop(index=TOTAL_ROW))
    glue: Glue = {"table3_selected": (ranked[HEADLINE].selected, None),
                  "table3_selected_interior": (ranked[OTHER].selected, None)}
    for region, r in ranked.items():
        glue[f"totals_{region}"] = (" / ".join(f"{r.total[m]:g}" for m in TABLE3_MODELS), None)
    glue["paper_totals_printed"] = (" / ".join(f"{paper.loc[TOTAL_ROW, m]:g}" for m in TABLE3_MODELS), None)
    glue["paper_totals_recomputed"] = (" / ".join(f"{recomputed.total[m]:g}" for m in TABLE3_MODELS), None)
    glue["table3_models"] = (" / ".join(TABLE3_MODELS), None)
    return glue


def _selection_glue(results: AblationResults) -> Glue:
    """Glue the two validation selections, the test ranking's choice and the degradation comparison."""
    glue: Glue = {"selected_model": (results.selected, None), "selected_transfer": (results.selected_transfer, None),
                  "selected_test": (results.everything.selected, None),
                  "n_val": (results.validation["val"]["subject"].nunique(), None),
                  "n_candidates": (len(results.chosen["val"].total), None)}
    for key, ranking in results.chosen.items():
        glue[f"totals_{key}"] = (", ".join(f"{m} {t:g}" for m, t in ranking.total.sort_values(kind="stable").items()),
                                 None)
    table = results.degradation
    for key, label in SUBJECT_SETS.items():
        for model in (FULL_MODEL, TRANSFER):  # "–" for a model that was not evaluated
            evaluated = (label, model) in table.index
            change = 100 * (table.loc[(label, model)] / table.loc[(label, BASELINE)] - 1) if evaluated else None
            for metric, name in table.columns:
                glue[f"deg_{key}_{'dr' if model == TRANSFER else 'm12'}_{metric.lower()}_{name.lower()}_pct"] = (
                    (float(change[(metric, name)]), "+.1f") if change is not None else ("–", None))
    return glue


def _discussion_glue(results: AblationResults, paper: pd.DataFrame, interior_all: Ranking | None,
                     tissue_t1_cv: float) -> Glue:
    """Glue the numbers of the chapter's discussion: effects of M12++, M12-+ and the control."""
    glue: Glue = {}
    mine, theirs = results.ranked[HEADLINE].percent, paper.drop(index=TOTAL_ROW)
    interior = results.ranked[OTHER].percent
    for metric, name in mine.index:
        key = f"{metric.lower()}_{name.lower()}"
        glue[f"m12_{key}_pct"] = (float(mine.loc[(metric, name), FULL_MODEL]), "+.2f")
        glue[f"paper_m12_{key}_pct"] = (float(theirs.loc[(metric, name), FULL_MODEL]), "+.2f")
        glue[f"m12_interior_{key}_pct"] = (float(interior.loc[(metric, name), FULL_MODEL]), "+.2f")
        glue[f"ql_{key}"] = (float(results.means.loc[(HEADLINE, name), (metric.lower(), BASELINE)]), ".3f")
    full_percent = results.everything.percent
    for model, key in (("M12-+", "m12mp"), (CONTROL, "a0")):
        if model in full_percent.columns:
            for metric, name in full_percent.index:
                glue[f"{key}_{metric.lower()}_{name.lower()}_pct"] = (
                    float(full_percent.loc[(metric, name), model]), "+.2f")
    if interior_all is not None:
        glue["a0_interior_hfen_pd_pct"] = (float(interior_all.percent.loc[("HFEN", "PD"), CONTROL]), "+.2f")
    totals = results.ranked[HEADLINE].total
    if "M12-+" in totals.index:
        glue["m12mp_total"] = (f"{totals['M12-+']:g}", None)
        glue["m12mp_place"] = (int((totals < totals["M12-+"]).sum()) + 1, None)
    glue["tissue_t1_cv"] = (tissue_t1_cv, ".1f")
    glue["claims_differ"] = (int((~results.claims["agrees"]).sum()), None)
    ratio = float((mine[FULL_MODEL].abs() / theirs[FULL_MODEL].abs()).median())
    glue["effect_ratio"] = (ratio, ".2f")
    glue["effect_word"] = ("smaller than" if ratio < 0.8 else "larger than" if ratio > 1.25 else "similar to", None)
    return glue


def run_ablation(
    profile: Profile,
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    device: str | torch.device = "cpu",
    *,
    dataset: Any = None,
    randomised: Any = None,
    progress: bool = False,
) -> AblationResults:
    """Evaluate the trained models, rank them (Table III), select on validation and check the paper's claims.

    Parameters
    ----------
    profile : Profile
        A loaded profile (:func:`swig_lib.experiments.config.load_profile`): reads ``name``,
        ``train.alpha`` and the ``eval`` section.
    data_dir : str or PathLike
        Root of the datasets (:func:`swig_lib.experiments.subjects.dataset.load_dataset`).
    results_dir : str or PathLike
        Results root; the checkpoints are read from and everything is written to
        ``<results_dir>/<profile name>/``.
    device : str or torch.device
        Where the models run.
    dataset
        A loaded dataset (default: loaded from ``data_dir``).
    randomised
        The loaded degradation-randomised dataset, whose validation subjects select the transfer
        model (default: that of
        :func:`~swig_lib.experiments.training.augment.randomised_profile`, from ``data_dir``).
    progress : bool
        Progress bars.

    Returns
    -------
    AblationResults
        Tables, rankings, the slice of Fig. 2 and the glued numbers. Written: the tables of
        :func:`~swig_lib.experiments.evaluation.evaluate.evaluate` under ``metrics/`` and the
        selections, ``metrics/selected_model.json``
        (:func:`~swig_lib.experiments.evaluation.selection.write_selection`): every evaluated
        model ranked by the rule of Table III on the validation subjects only.
    """
    device = torch.device(device)
    cfg = profile.eval
    out = Path(results_dir) / profile.name
    figure_dir = out / "ablation"
    figure_dir.mkdir(parents=True, exist_ok=True)
    variants = list(cfg.variants)
    if dataset is None or randomised is None:
        from swig_lib.experiments.subjects.dataset import load_dataset

        dataset = load_dataset(profile, root=data_dir, progress=progress) if dataset is None else dataset
        randomised = (load_dataset(randomised_profile(profile), root=data_dir, progress=progress)
                      if randomised is None else randomised)
    test_ids = dataset.subject_ids("test")
    alpha = profile.train.alpha
    glue: Glue = {"n_test": (len(test_ids), None), "interior_voxels": (cfg.interior_voxels, None),
                  "alpha": (alpha, "g")}

    table = evaluate(profile, out, variants, device=device, dataset=dataset, progress=progress)
    first = np.asarray(dataset.acquired(test_ids[0]).mask, bool)
    glue["n_eval_slices"] = (len(select_slices(first, cfg.min_brain_fraction, cfg.slice_stride)), None)
    means = (table.groupby(["region", "map", "model"], sort=False)[["ssim", "hfen"]].mean()
             .unstack("model")[["ssim", "hfen"]])
    means = means.reindex(columns=[BASELINE, *variants], level=1)

    shown = representative_slice(profile, out, dataset, table, variants, device)
    glue |= _slice_glue(shown)

    ranked = {region: region_ranking(table, region, TABLE3_MODELS) for region in (HEADLINE, OTHER)}
    paper = paper_table3()
    glue |= _ranking_glue(ranked, paper)
    everything = region_ranking(table, HEADLINE, variants)
    # The candidates are the method's configurations: Table III's models and the transfer model
    # (not the failed M12-- nor the control M12++a0, as in the paper's ranking).
    candidates = [v for v in variants if v in (*TABLE3_MODELS, TRANSFER)]
    validation = validation_tables(profile, out, candidates, {"val": dataset, "val_dr": randomised}, device,
                                   progress)
    chosen = select_models(validation, candidates)
    write_selection(out, chosen["val"].selected, region=HEADLINE, total_rank=dict(chosen["val"].total),
                    selected_interior=region_ranking(validation["val"], OTHER, candidates).selected,
                    profile=profile.name, selected_transfer=chosen["val_dr"].selected,
                    total_rank_transfer=dict(chosen["val_dr"].total), selected_test=everything.selected)

    contribution, interior_all = None, None
    if CONTROL in variants:
        contribution = pd.concat([guide_loss_contribution(table, region) for region in (HEADLINE, OTHER)])
        for region in (HEADLINE, OTHER):
            verdicts = contribution.loc[region, "verdict"]
            glue[f"guide_loss_better_{region}"] = (int((verdicts == f"{FULL_MODEL} better").sum()), None)
            glue[f"guide_loss_worse_{region}"] = (int((verdicts == f"{FULL_MODEL} worse").sum()), None)
        interior_all = region_ranking(table, OTHER, variants)
    claims = ablation_claims(everything.percent)
    glue["claims_agree"] = (int(claims["agrees"].sum()), None)
    glue["claims_total"] = (len(claims), None)

    results = AblationResults(
        variants=variants, table1=table1(variants, alpha), table=table, means=means, slice=shown,
        ranked=ranked, everything=everything,
        table3={region: table3_comparison(r) for region, r in ranked.items()}, validation=validation,
        chosen=chosen, selected=chosen["val"].selected, selected_transfer=chosen["val_dr"].selected,
        degradation=degradation_table({"test": table, **validation}), contribution=contribution, claims=claims,
        figure_dir=figure_dir, glue=glue,
    )
    glue |= _selection_glue(results)
    glue |= _discussion_glue(results, paper, interior_all, tissue_t1_spread(dataset.manifest))
    return results
