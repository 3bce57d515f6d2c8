"""Tests of Table II as data and its side-by-side layout (crossseq.tables)."""

from __future__ import annotations

import pandas as pd

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
