"""Table II and the summaries of the cross-sequence validation.

* :func:`paper_table2`: the paper's Table II as data (from :data:`swig_lib.paper.TABLE2`);
* :func:`table2` and :func:`format_table2`: our mean ± sd over slices, laid out beside the
  paper's values;
* :func:`map_summary`, :func:`tissue_summary` and :func:`acq1_versus_acq5`: the ground-truth
  scores that the paper lacked, and whether SR of the short Acq1 reaches the long Acq5.
* :func:`adaptation_summary` and :func:`adaptation_glue`: what scan-specific adaptation of the SR
  model to a volume's maps gains against the ground truth, and :func:`adaptation_verdict`, the
  plain verdict (chapters 04 and 08).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from swig_lib import paper
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.crossseq.acquisition import IMAGE_NAMES
from swig_lib.experiments.crossseq.scoring import TISSUES
from swig_lib.experiments.crossseq.settings import ADAPTED, PROTOCOLS, REFERENCE, SOURCES
from swig_lib.experiments.evaluation.ranking import mean_sd
from swig_lib.experiments.results import Glue


def paper_table2() -> pd.DataFrame:
    """Table II of the paper as data: SSIM and HFEN of synthesised vs acquired in-vivo images.

    Mean ± sd over axial slices 40-140 of one volunteer, MuPa-ZTE protocols Acq1, Acq5 and Acq5^R
    (here ``"Acq5R"``), images synthesised from Q_l and from the SR output Q̂_h (``"SR"``).
    Source: Samadifardheris et al., "Self-Supervised Weighted Image Guided Quantitative MRI
    Super-Resolution", Table II.

    Returns
    -------
    pandas.DataFrame
        Long table: protocol, contrast (``T1w``, ``T2w``, ``FLAIR``), source, metric
        (``ssim``, ``hfen``), mean, sd.
    """
    rows = []
    for (protocol, contrast), values in paper.TABLE2.items():
        cells = zip((("ssim", "Q_l"), ("ssim", "SR"), ("hfen", "Q_l"), ("hfen", "SR")), values)
        for (metric, source), (mean, sd) in cells:
            rows.append({"protocol": protocol, "contrast": contrast, "source": source,
                         "metric": metric, "mean": mean, "sd": sd})
    return pd.DataFrame(rows)


def table2(synthesis: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over slices of SSIM and HFEN per protocol, contrast and source (Table II).

    Parameters
    ----------
    synthesis : pandas.DataFrame
        Per-slice rows (:func:`swig_lib.experiments.crossseq.scoring.synthesis_scores`, with or without a subject
        column).

    Returns
    -------
    pandas.DataFrame
        Indexed by (protocol, contrast, source) in table order; columns ``ssim_mean``,
        ``ssim_sd``, ``hfen_mean``, ``hfen_sd``, ``n`` (slices).
    """
    return mean_sd(synthesis, by=("protocol", "contrast", "source"))


def format_table2(summary: pd.DataFrame, contrasts: Sequence[str] = IMAGE_NAMES,
                  paper: bool = True, decimals: int = 2) -> pd.DataFrame:
    """Table II layout: "mean ± sd" per protocol and contrast; the paper's values beside ours.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`table2`; protocols in the order of :data:`swig_lib.experiments.crossseq.settings.PROTOCOLS`,
        other map-set names (users' data) after them, the Q_h floor left out.
    contrasts : sequence of str
        Rows to keep (e.g. ``("T1w", "T2w")`` in notebook 04, ``("FLAIR",)`` in 05).
    paper : bool
        Add the paper's columns (:func:`paper_table2`) for the protocols it has.
    decimals : int
        Decimals shown.

    Returns
    -------
    pandas.DataFrame
        Index (protocol, contrast); columns (who, metric, source) with who ``"ours"`` or
        ``"paper"``, metric ``"SSIM ↑"``/``"HFEN ↓"``, source ``"from Q_l"``/``"from Q̂_h"``.
    """
    def cell(mean: float, sd: float) -> str:
        return f"{mean:.{decimals}f} ± {sd:.{decimals}f}" if np.isfinite(sd) else f"{mean:.{decimals}f}"

    metric_names = {"ssim": "SSIM ↑", "hfen": "HFEN ↓"}
    source_names = {"Q_l": "from Q_l", "SR": "from Q̂_h"}
    order = [(who, metric, source) for who in ("ours", "paper") for metric in metric_names.values()
             for source in source_names.values()]
    reference = paper_table2().set_index(["protocol", "contrast", "source", "metric"])
    names = [p for p in dict.fromkeys(summary.index.get_level_values(0)) if p != REFERENCE]
    names.sort(key=lambda p: PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS))
    rows, index = [], []
    for protocol in names:
        for contrast in contrasts:
            row = {}
            for metric, metric_name in metric_names.items():
                for source, source_name in source_names.items():
                    if (protocol, contrast, source) in summary.index:
                        values = summary.loc[(protocol, contrast, source)]
                        row[("ours", metric_name, source_name)] = cell(
                            values[f"{metric}_mean"], values[f"{metric}_sd"])
                    if paper and (protocol, contrast, source, metric) in reference.index:
                        values = reference.loc[(protocol, contrast, source, metric)]
                        row[("paper", metric_name, source_name)] = cell(values["mean"], values["sd"])
            rows.append(row)
            index.append((protocol, contrast))
    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["protocol", "contrast"]))
    table = table[[c for c in order if c in table.columns]]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def map_summary(maps: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over slices of the map SSIM and HFEN per protocol, source and map."""
    return mean_sd(maps, by=("protocol", "source", "map"))


def tissue_summary(tissue: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over subjects of the percentage errors per protocol, source, tissue and map."""
    return mean_sd(tissue, by=("protocol", "source", "tissue", "map"), metrics=("mape",))


def acq1_versus_acq5(maps: pd.DataFrame, tissue: pd.DataFrame) -> pd.DataFrame:
    """Tabulate whether SR of the 1-minute Acq1 reaches the 5-minute Acq5, every ground-truth metric.

    Parameters
    ----------
    maps, tissue : pandas.DataFrame
        Per-slice map scores and per-subject tissue errors
        (:class:`swig_lib.experiments.crossseq.pipeline.CrossSequenceResults`).

    Returns
    -------
    pandas.DataFrame
        Index (metric, map, tissue) with metric ``ssim`` (↑), ``hfen`` (↓) or ``mape`` (↓, %),
        tissue ``"brain"`` for the map metrics; columns ``Acq1``, ``SR(Acq1)``, ``Acq5``,
        ``SR(Acq5)`` (means) and ``SR(Acq1) ≥ Acq5`` (True where SR of Acq1 is at least as good
        as Acq5).
    """
    columns = {"Acq1": ("Acq1", "Q_l"), "SR(Acq1)": ("Acq1", "SR"),
               "Acq5": ("Acq5", "Q_l"), "SR(Acq5)": ("Acq5", "SR")}
    m, t = map_summary(maps), tissue_summary(tissue)
    rows, index = [], []
    for metric in ("ssim", "hfen"):
        for name in MAP_NAMES:
            rows.append({c: m.loc[(p, s, name), f"{metric}_mean"] for c, (p, s) in columns.items()})
            index.append((metric, name, "brain"))
    for tissue_name in TISSUES:
        for name in MAP_NAMES:
            if ("Acq1", "Q_l", tissue_name, name) in t.index:
                rows.append({c: t.loc[(p, s, tissue_name, name), "mape_mean"]
                             for c, (p, s) in columns.items()})
                index.append(("mape", name, tissue_name))
    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["metric", "map", "tissue"]))
    higher = table.index.get_level_values("metric") == "ssim"
    table["SR(Acq1) ≥ Acq5"] = np.where(higher, table["SR(Acq1)"] >= table["Acq5"],
                                        table["SR(Acq1)"] <= table["Acq5"])
    return table


def synthesis_glue(summary: pd.DataFrame, contrasts: Sequence[str], prefix: str) -> Glue:
    """Glue values of the Table II analogue: each protocol's means and how often SR improves on Q_l.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`table2`.
    contrasts : sequence of str
        The contrasts of the page, e.g. ``("T1w", "T2w")`` (chapter 04) or ``("FLAIR",)`` (05).
    prefix : str
        Key prefix. With one contrast the keys are ``<prefix>_<protocol>_<source>_<metric>``,
        with several ``<prefix>_<contrast>_<protocol>_<source>_<metric>``; then
        ``<prefix>_ssim_better`` and ``<prefix>_hfen_better``: "k of n" protocol-contrast pairs in
        which the SR output beats Q_l (SSIM higher, HFEN lower).

    Returns
    -------
    Glue
        Values (format ``.3f`` for the means).
    """
    glue: Glue = {}
    better = {"ssim": 0, "hfen": 0}
    for protocol in PROTOCOLS:
        for contrast in contrasts:
            tag = protocol if len(contrasts) == 1 else f"{contrast}_{protocol}"
            for metric in better:
                for source in SOURCES:
                    glue[f"{prefix}_{tag}_{source}_{metric}"] = (
                        summary.loc[(protocol, contrast, source), f"{metric}_mean"], ".3f")
            ql, sr = (summary.loc[(protocol, contrast, s)] for s in SOURCES)
            better["ssim"] += int(sr.ssim_mean > ql.ssim_mean)
            better["hfen"] += int(sr.hfen_mean < ql.hfen_mean)
    for metric, count in better.items():
        glue[f"{prefix}_{metric}_better"] = (f"{count} of {len(PROTOCOLS) * len(contrasts)}", None)
    return glue


def verdict_glue(verdict: pd.DataFrame) -> Glue:
    """Glue values of :func:`acq1_versus_acq5`: how often SR(Acq1) reaches Acq5, WM errors, SSIM.

    Parameters
    ----------
    verdict : pandas.DataFrame
        :func:`acq1_versus_acq5`.

    Returns
    -------
    Glue
        ``xs_acq1_reaches`` ("k of n"), ``xs_mape_WM_<map>_<column>`` (%) and
        ``xs_ssim_<map>_<column>`` for T1 and T2.
    """
    glue: Glue = {"xs_acq1_reaches": (f"{int(verdict['SR(Acq1) ≥ Acq5'].sum())} of {len(verdict)}", None)}
    keys = {"Acq1": "Acq1", "SR(Acq1)": "SR_Acq1", "Acq5": "Acq5", "SR(Acq5)": "SR_Acq5"}
    for name in ("T1", "T2"):
        for column, key in keys.items():
            glue[f"xs_mape_WM_{name}_{key}"] = (verdict.loc[("mape", name, "WM"), column], ".1f")
            glue[f"xs_ssim_{name}_{key}"] = (verdict.loc[("ssim", name, "brain"), column], ".3f")
    return glue


def adaptation_verdict(better: int, total: int) -> str:
    """Say plainly whether scan-specific adaptation helped: on all, none or some of ``total`` map-metric pairs."""
    if better == total:
        return "adaptation helps: it improves every map on both metrics"
    if better == 0:
        return "adaptation does not help here: it improves no map on either metric"
    return f"adaptation helps only in part: it improves {better} of {total} map-metric pairs and not the others"


def adaptation_summary(maps: pd.DataFrame, adaptation: pd.DataFrame) -> pd.DataFrame:
    """SR before and after scan-specific adaptation, against Q_h, on the adapted volumes' slices.

    Parameters
    ----------
    maps : pandas.DataFrame
        Per-slice map scores (:attr:`~swig_lib.experiments.crossseq.pipeline.CrossSequenceResults.maps`);
        its ``"SR"`` rows of the adapted subjects, protocols and slices are compared.
    adaptation : pandas.DataFrame
        Per-slice map scores of the adapted model's output
        (:attr:`~swig_lib.experiments.crossseq.pipeline.CrossSequenceResults.adaptation`, source
        :data:`~swig_lib.experiments.crossseq.settings.ADAPTED`).

    Returns
    -------
    pandas.DataFrame
        Index (protocol, metric, map), metric ``ssim`` (↑) or ``hfen`` (↓); columns ``SR`` and
        :data:`~swig_lib.experiments.crossseq.settings.ADAPTED` (means over the slices), ``change``
        (adapted − SR) and ``better``.
    """
    keys = ["subject", "protocol", "slice"]
    sr = maps[maps["source"] == "SR"].merge(adaptation[keys].drop_duplicates(), on=keys)
    means = pd.concat([sr, adaptation]).groupby(["protocol", "source", "map"], sort=False)[["ssim", "hfen"]].mean()
    protocols = list(dict.fromkeys(adaptation["protocol"]))
    index = pd.MultiIndex.from_tuples([(p, m, n) for p in protocols for m in ("ssim", "hfen") for n in MAP_NAMES],
                                      names=["protocol", "metric", "map"])
    table = pd.DataFrame({source: [means.loc[(p, source, n), m] for p, m, n in index] for source in ("SR", ADAPTED)},
                         index=index)
    table["change"] = table[ADAPTED] - table["SR"]
    higher = table.index.get_level_values("metric") == "ssim"
    table["better"] = np.where(higher, table["change"] > 0, table["change"] < 0)
    return table


def adaptation_glue(summary: pd.DataFrame, runs: pd.DataFrame) -> Glue:
    """Glue values of the adaptation section of chapter 04.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`adaptation_summary`.
    runs : pandas.DataFrame
        Per adapted volume: subject, protocol, steps, slices, seconds, loss_before, loss_after
        (:attr:`~swig_lib.experiments.crossseq.pipeline.CrossSequenceResults.adaptation_runs`).

    Returns
    -------
    Glue
        ``xs_adapt_volumes`` (what was adapted), ``xs_adapt_steps``, ``xs_adapt_seconds`` (mean
        wall time per volume, s: adaptation and prediction), ``xs_adapt_better`` ("k of n"
        protocol-map-metric triples that improve), ``xs_adapt_verdict`` and ``xs_adapt_loss_fell``
        ("k of n" volumes whose self-supervised loss fell).
    """
    better = int(summary["better"].sum())
    protocols = " and ".join(dict.fromkeys(runs["protocol"]))
    return {
        "xs_adapt_volumes": (f"the {protocols} maps of {runs['subject'].nunique()} test subject(s)", None),
        "xs_adapt_steps": (int(runs["steps"].iloc[0]), None),
        "xs_adapt_seconds": (float(runs["seconds"].mean()), ".0f"),
        "xs_adapt_better": (f"{better} of {len(summary)}", None),
        "xs_adapt_verdict": (adaptation_verdict(better, len(summary)), None),
        "xs_adapt_loss_fell": (f"{int((runs['loss_after'] < runs['loss_before']).sum())} of {len(runs)}", None),
    }


def floor_text(summary: pd.DataFrame, contrasts: Sequence[str]) -> str:
    """The images synthesised from the true maps Q_h (the floor left by noise and bias), as text.

    One line per contrast: mean ± sd of SSIM and HFEN over the evaluated slices (:func:`table2`).
    """
    lines = ["synthesised from the true maps Q_h (the floor left by noise and bias):"]
    for contrast in contrasts:
        row = summary.loc[(REFERENCE, contrast, REFERENCE)]
        lines.append(f"  {contrast}: SSIM {row.ssim_mean:.3f} ± {row.ssim_sd:.3f}, "
                     f"HFEN {row.hfen_mean:.3f} ± {row.hfen_sd:.3f}")
    return "\n".join(lines)


def map_table(maps: pd.DataFrame) -> pd.DataFrame:
    """Mean map SSIM and HFEN against Q_h per protocol and source, one column per metric and map."""
    table = map_summary(maps)[["ssim_mean", "hfen_mean"]].unstack("map")
    table.columns = [f"{metric[:4].upper()} {name}" for metric, name in table.columns]
    return table.reindex([(p, s) for p in PROTOCOLS for s in SOURCES]).round(3)


def tissue_table(tissue: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over subjects of each tissue's absolute percentage error, per protocol and source."""
    cells = tissue_summary(tissue).apply(lambda r: f"{r.mape_mean:.1f} ± {r.mape_sd:.1f}", axis=1)
    return cells.unstack(["tissue", "map"]).reindex([(p, s) for p in PROTOCOLS for s in SOURCES])


def sulci_summary(sulci: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over subjects of the sulcal FLAIR error (%), per protocol and source, in order."""
    summary = sulci.groupby(["protocol", "source"], sort=False)["error"].agg(["mean", "std"])
    return summary.reindex([(p, s) for p in PROTOCOLS for s in SOURCES])


def sulci_glue(summary: pd.DataFrame) -> Glue:
    """Glue of :func:`sulci_summary`: ``flair_sulci_<protocol>_<source>`` (%) and ``flair_sulci_closer``.

    ``flair_sulci_closer`` counts the protocols whose SR error is closer to zero than Q_l's.
    """
    glue: Glue = {f"flair_sulci_{p}_{s}": (float(summary.loc[(p, s), "mean"]), ".1f")
                  for p in PROTOCOLS for s in SOURCES}
    closer = sum(int(abs(summary.loc[(p, "SR"), "mean"]) < abs(summary.loc[(p, "Q_l"), "mean"])) for p in PROTOCOLS)
    glue["flair_sulci_closer"] = (f"{closer} of {len(PROTOCOLS)}", None)
    return glue


def calibration_table(calibration: pd.DataFrame, synthesis: pd.DataFrame, chosen: str,
                      contrasts: Sequence[str] = ("T1w", "T2w"), protocols: Sequence[str] = ("Acq1", "Acq5")
                      ) -> pd.DataFrame:
    """How the radial sequence was calibrated: mean SSIM "from Q_l" of each setting, beside the paper's.

    Parameters
    ----------
    calibration : pandas.DataFrame
        The candidates' per-slice rows (:class:`~swig_lib.experiments.crossseq.pipeline.CrossSequenceResults`
        ``calibration``: subject, setting, protocol, source, contrast, slice, ssim, hfen).
    synthesis : pandas.DataFrame
        The chapter's per-slice synthesis rows; its rows of the calibration subjects give the
        chosen setting's line (the same slices, images and noise as the candidates').
    chosen : str
        Label of the chapter's own setting
        (:func:`swig_lib.experiments.crossseq.settings.calibration_label`).
    contrasts, protocols : sequence of str
        Columns.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, then ``"<chosen> (chosen)"`` and ``"paper (Table II)"``; columns
        (protocol, contrast): mean SSIM of the images synthesised from the protocol's maps
        against the acquired ones, over the calibration subjects' slices. Empty without candidates.
    """
    columns = pd.MultiIndex.from_product([protocols, contrasts], names=["protocol", "contrast"])
    if calibration.empty:
        return pd.DataFrame(columns=columns)
    ours = synthesis[synthesis["subject"].isin(set(calibration["subject"])) & (synthesis["source"] == "Q_l")]
    frames = [calibration, ours.assign(setting=f"{chosen} (chosen)")]
    rows = pd.concat(frames).pivot_table(index="setting", columns=["protocol", "contrast"], values="ssim",
                                         sort=False)
    reference = paper_table2()
    reference = reference[(reference["source"] == "Q_l") & (reference["metric"] == "ssim")]
    rows.loc["paper (Table II)"] = reference.set_index(["protocol", "contrast"])["mean"]
    return rows.reindex(columns=columns)


def calibration_glue(table: pd.DataFrame) -> Glue:
    """Glue of :func:`calibration_table`: ``xs_cal_<row>_<protocol>_<contrast>`` (SSIM), rows first/chosen/paper.

    ``first`` is the first candidate (the first reproduction's setting), ``chosen`` the chapter's.
    """
    if table.empty:
        return {}
    rows = {"first": table.index[0], "chosen": table.index[-2], "paper": table.index[-1]}
    return {f"xs_cal_{name}_{protocol}_{contrast}": (float(table.loc[row, (protocol, contrast)]), ".2f")
            for name, row in rows.items() for protocol, contrast in table.columns}
