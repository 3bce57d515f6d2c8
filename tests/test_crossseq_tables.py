"""Tests of Table II as data and its side-by-side layout (crossseq.tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from swig_lib.experiments.crossseq.tables import format_table2, paper_table2, table2


def test_paper_table2_and_the_side_by_side_layout() -> None:
    paper = paper_table2()
    assert len(paper) == 9 * 4
    row = paper[(paper["protocol"] == "Acq5R") & (paper["contrast"] == "T2w")
                & (paper["source"] == "Q_l") & (paper["metric"] == "ssim")]
    assert row[["mean", "sd"]].to_numpy().tolist() == [[0.63, 0.12]]
    ours = pd.DataFrame([{"protocol": "Acq1", "contrast": "FLAIR", "source": s, "slice": z,
                          "ssim": 0.5 + 0.1 * z, "hfen": 1.0} for s in ("Q_l", "SR") for z in (0, 1)])
    table = format_table2(table2(ours), contrasts=("FLAIR",))
    assert table.index.tolist() == [("Acq1", "FLAIR")]
    assert table.loc[("Acq1", "FLAIR"), ("ours", "SSIM ↑", "from Q_l")] == "0.55 ± 0.07"
    assert table.loc[("Acq1", "FLAIR"), ("paper", "HFEN ↓", "from Q̂_h")] == "1.13 ± 0.12"


def _summary(sr_better: bool) -> pd.DataFrame:
    """A table2-like summary: Q_l SSIM 0.8 / HFEN 0.6; SR 0.9 / 0.5 (better) or 0.7 / 0.7."""
    from swig_lib.experiments.crossseq.settings import PROTOCOLS, SOURCES

    rows = []
    for protocol in PROTOCOLS:
        for contrast in ("T1w", "T2w", "FLAIR"):
            for source in SOURCES:
                good = source == "SR" and sr_better
                bad = source == "SR" and not sr_better
                rows.append({"protocol": protocol, "contrast": contrast, "source": source,
                             "ssim_mean": 0.9 if good else 0.7 if bad else 0.8,
                             "hfen_mean": 0.5 if good else 0.7 if bad else 0.6})
    return pd.DataFrame(rows).set_index(["protocol", "contrast", "source"])


def test_synthesis_glue_names_values_and_counts() -> None:
    from swig_lib.experiments.crossseq.tables import synthesis_glue

    two = synthesis_glue(_summary(True), ("T1w", "T2w"), "xs")
    assert two["xs_T1w_Acq1_SR_ssim"] == (0.9, ".3f")
    assert two["xs_T2w_Acq5_Q_l_hfen"] == (0.6, ".3f")
    assert two["xs_ssim_better"] == ("6 of 6", None) and two["xs_hfen_better"] == ("6 of 6", None)
    one = synthesis_glue(_summary(False), ("FLAIR",), "flair")
    assert one["flair_Acq1_SR_hfen"] == (0.7, ".3f")
    assert one["flair_ssim_better"] == ("0 of 3", None) and one["flair_hfen_better"] == ("0 of 3", None)
    assert len(one) == 3 * 2 * 2 + 2


def test_verdict_glue_reads_the_acq1_versus_acq5_table() -> None:
    from swig_lib.experiments.crossseq.tables import verdict_glue

    index = pd.MultiIndex.from_tuples(
        [("mape", "T1", "WM"), ("mape", "T2", "WM"), ("ssim", "T1", "brain"), ("ssim", "T2", "brain")])
    verdict = pd.DataFrame({"Acq1": [10.0, 12.0, 0.8, 0.7], "SR(Acq1)": [9.0, 11.0, 0.85, 0.75],
                            "Acq5": [8.0, 10.0, 0.9, 0.8], "SR(Acq5)": [7.0, 9.0, 0.92, 0.82],
                            "SR(Acq1) ≥ Acq5": [False, False, False, True]}, index=index)
    glue = verdict_glue(verdict)
    assert glue["xs_acq1_reaches"] == ("1 of 4", None)
    assert glue["xs_mape_WM_T2_SR_Acq1"] == (11.0, ".1f")
    assert glue["xs_ssim_T1_Acq5"] == (0.9, ".3f")
    assert len(glue) == 1 + 2 * 4 * 2


def test_settings_describe_names_the_acquisition() -> None:
    from swig_lib.experiments.config import load_profile
    from swig_lib.experiments.crossseq.settings import CrossSequenceSettings

    text = CrossSequenceSettings.from_profile(load_profile("smoke")).describe()
    lines = text.splitlines()
    assert len(lines) == 5 and "spokes per time point in Acq5 (a quarter in Acq1)" in lines[0]
    assert lines[-1] == "synthesised images are compared after a least-squares affine intensity match"


def test_adaptation_summary_compares_sr_before_and_after_on_the_adapted_slices_only() -> None:
    from swig_lib.experiments.crossseq.settings import ADAPTED
    from swig_lib.experiments.crossseq.tables import adaptation_glue, adaptation_summary, adaptation_verdict

    def rows(source: str, subject: str, ssim: float, hfen: float) -> list[dict]:
        return [{"subject": subject, "protocol": p, "source": source, "map": m, "slice": z, "ssim": ssim + 0.01 * z,
                 "hfen": hfen} for p in ("Acq1", "Acq5") for m in ("PD", "T1", "T2") for z in (4, 6)]

    # SR of sub-02 (not adapted) and the Q_l rows must not enter the comparison.
    maps = pd.DataFrame(rows("SR", "sub-01", 0.80, 0.40) + rows("SR", "sub-02", 0.10, 9.0)
                        + rows("Q_l", "sub-01", 0.5, 0.9))
    adapted = pd.DataFrame(rows(ADAPTED, "sub-01", 0.70, 0.30))
    summary = adaptation_summary(maps, adapted)
    assert summary.index.names == ["protocol", "metric", "map"] and len(summary) == 12
    assert list(summary.columns) == ["SR", ADAPTED, "change", "better"]
    assert summary.loc[("Acq1", "ssim", "T1"), "SR"] == pytest.approx(0.85)  # mean of slices 4 and 6
    assert summary.loc[("Acq5", "hfen", "T2"), ADAPTED] == pytest.approx(0.30)
    assert summary["better"].tolist() == [False] * 3 + [True] * 3 + [False] * 3 + [True] * 3  # SSIM down, HFEN down
    runs = pd.DataFrame([{"subject": "sub-01", "protocol": p, "steps": 50, "slices": 2, "seconds": s,
                          "loss_before": 10.0, "loss_after": after}
                         for p, s, after in (("Acq1", 10.0, 9.0), ("Acq5", 20.0, 11.0))])
    glue = adaptation_glue(summary, runs)
    assert glue["xs_adapt_volumes"] == ("the Acq1 and Acq5 maps of 1 test subject(s)", None)
    assert glue["xs_adapt_seconds"] == (15.0, ".0f") and glue["xs_adapt_steps"] == (50, None)
    assert glue["xs_adapt_better"] == ("6 of 12", None) and glue["xs_adapt_loss_fell"] == ("1 of 2", None)
    assert glue["xs_adapt_verdict"][0] == adaptation_verdict(6, 12) == (
        "adaptation helps only in part: it improves 6 of 12 map-metric pairs and not the others")
    assert adaptation_verdict(0, 6) == "adaptation does not help here: it improves no map on either metric"
    assert adaptation_verdict(6, 6) == "adaptation helps: it improves every map on both metrics"


def test_display_tables_of_the_chapters_match_their_inline_forms() -> None:
    """map_table, tissue_table, sulci_summary/sulci_glue and floor_text on the committed quick results."""
    from swig_lib.core.io import read_csv
    from swig_lib.experiments.crossseq import tables
    from swig_lib.experiments.crossseq.settings import PROTOCOLS, REFERENCE, SOURCES

    folder = Path(__file__).resolve().parents[1] / "results" / "quick" / "crosssequence"
    maps, tissue, sulci = (read_csv(folder / f"{name}.csv") for name in ("maps", "tissue", "sulci"))
    rows = [(p, s) for p in PROTOCOLS for s in SOURCES]
    expected = tables.map_summary(maps)[["ssim_mean", "hfen_mean"]].unstack("map")
    expected.columns = [f"{metric[:4].upper()} {name}" for metric, name in expected.columns]
    pd.testing.assert_frame_equal(tables.map_table(maps), expected.reindex(rows).round(3))
    errors = tables.tissue_summary(tissue)
    cells = errors.apply(lambda r: f"{r.mape_mean:.1f} ± {r.mape_sd:.1f}", axis=1)
    pd.testing.assert_frame_equal(tables.tissue_table(tissue), cells.unstack(["tissue", "map"]).reindex(rows))
    summary = tables.sulci_summary(sulci)
    means = sulci.groupby(["protocol", "source"])["error"].mean()
    assert list(summary.index) == rows and np.allclose(summary["mean"], [means[r] for r in rows], rtol=0, atol=1e-12)
    glue = tables.sulci_glue(summary)
    closer = sum(abs(means[(p, "SR")]) < abs(means[(p, "Q_l")]) for p in PROTOCOLS)
    assert glue["flair_sulci_closer"] == (f"{closer} of {len(PROTOCOLS)}", None)
    assert glue[f"flair_sulci_{PROTOCOLS[0]}_SR"] == (means[(PROTOCOLS[0], "SR")], ".1f")
    synthesis = tables.table2(read_csv(folder / "synthesis.csv"))
    text = tables.floor_text(synthesis, ("T1w", "FLAIR")).splitlines()
    row = synthesis.loc[(REFERENCE, "FLAIR", REFERENCE)]
    assert len(text) == 3 and text[2] == (f"  FLAIR: SSIM {row.ssim_mean:.3f} ± {row.ssim_sd:.3f}, "
                                          f"HFEN {row.hfen_mean:.3f} ± {row.hfen_sd:.3f}")
