"""The findings page (notebook 11): verdict rules, claims read from the committed quick results, README run time."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from swig_lib.experiments.findings import (
    CHAPTERS,
    COLUMNS,
    VERDICTS,
    count_verdict,
    paper_findings,
    size_holds,
    style_claims,
)

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "results" / "quick"


@pytest.mark.parametrize(("held", "total", "verdict"), [
    (3, 3, "reproduced"), (1, 3, "partly"), (2, 3, "partly"), (0, 3, "not reproduced"), (0, 0, "not tested"),
])
def test_count_verdict(held, total, verdict):
    assert count_verdict(held, total) == verdict


@pytest.mark.parametrize(("ours", "paper", "holds"), [
    (-30.0, -55.0, True),    # same sign, more than half the size
    (-27.5, -55.0, True),    # exactly half
    (-27.4, -55.0, False),   # less than half
    (+1.3, -55.0, False),    # opposite sign
    (+8.5, +13.3, True),
    (0.0, +4.0, False),
])
def test_size_holds_needs_the_sign_and_half_the_size(ours, paper, holds):
    assert size_holds(ours, paper) is holds


@pytest.fixture(scope="module")
def quick():
    return paper_findings(ROOT / "results", "quick")


def test_quick_findings_agree_with_the_ablations_own_records(quick):
    table = quick.table
    assert list(table.columns) == list(COLUMNS)
    assert set(table["verdict"]) <= set(VERDICTS) and set(table["evidence"]) <= set(CHAPTERS)
    # Table III as the ablation wrote it (test subjects, the paper's four models); the ablation's
    # own choice of model (selected_model.json) is made on validation subjects and is not this claim.
    table3 = pd.read_csv(QUICK / "metrics" / "table3_brain.csv").set_index("metric").loc["Total rank"]
    total_rank = {model: float(table3[model]) for model in ("M12++", "M2++", "M1++", "M12-+")}
    best = min(total_rank, key=total_rank.get)
    selects = table.set_index("claim").loc["the lowest total rank selects M12++"]
    assert selects["this run"] == best
    assert selects["verdict"] == ("reproduced" if best == "M12++" else "not reproduced")
    totals = table.set_index("claim").loc["the order of the total ranks", "this run"]
    assert totals == ", ".join(f"{m} {t:g}" for m, t in sorted(total_rank.items(), key=lambda i: i[1]))
    counts = {key: value for key, (value, _) in quick.glue.items()}
    assert counts["findings_total"] == len(table) == sum(counts[f"findings_{v.replace(' ', '_')}"] for v in VERDICTS)


def test_every_result_absent_means_not_tested_with_the_notebook_to_run(tmp_path):
    table = paper_findings(tmp_path, "quick").table
    tested = table[table["verdict"] != "not tested"]
    assert tested.empty, tested
    absent = table[table["this run"].str.startswith("no results")]
    assert set(absent["evidence"]) == {"03_ablation", "04_cross_sequence", "07_phantom", "08_comparison", "09_limits"}
    for row in absent.itertuples():
        assert f"run notebook {row.evidence}" in row._4


def test_styled_tables_show_words_and_links_not_booleans(quick):
    html = quick.styled().to_html()
    for name in set(quick.table["evidence"]):
        assert f'<a href="{name}.html">{CHAPTERS[name]}</a>' in html
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file()
    claims = pd.DataFrame({"paper": ["a", "b"], "this run": ["c", "d"], "agrees": [True, False]},
                          index=pd.Index(["one", "two"], name="claim"))
    html = style_claims(claims).to_html()
    assert VERDICTS["reproduced"] in html and VERDICTS["not reproduced"] in html
    assert "True" not in html and "False" not in html and "white-space: normal" in html


def test_readme_states_the_run_time_of_the_committed_quick_run():
    """The README's sentence must match results/quick/provenance.json (update it with the results)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"on (\d+) CPU cores, recorded in\s+`results/quick/provenance.json`\) took "
                       r"(\d+\.\d) min of notebooks and (\d+) s for the book", readme)
    assert stated, "README: the run-time sentence is missing"
    record = json.loads((QUICK / "provenance.json").read_text(encoding="utf-8"))
    minutes = sum(step["duration_s"] for step in record["notebooks"].values()) / 60
    assert stated.group(2) == f"{minutes:.1f}"
    assert stated.group(3) == f"{record['book']['duration_s']:.0f}"
    assert f"{stated.group(1)} threads" in record["device"]


def test_ventricle_claims_follow_the_ventricle_table(tmp_path):
    from swig_lib.experiments import findings

    rows = [("Q_h", "Q_h", 10.0), ("Acq1", "Q_l", 70.0), ("Acq1", "SR", 40.0), ("Acq5", "Q_l", 50.0),
            ("Acq5", "SR", 55.0), ("Acq5R", "Q_l", 18.0), ("Acq5R", "SR", 17.0)]
    pd.DataFrame(rows, columns=["protocol", "source", "flair_voxelwise"]).to_csv(
        tmp_path / findings.VENTRICLES_FILE, index=False)
    claims = findings._Claims()
    findings._ventricles(tmp_path, claims)
    improve, adequate = claims.rows
    assert improve["verdict"] == "partly"  # SR darker for Acq1 only
    assert improve["this run"] == "ventricle FLAIR / WM, Q_l → SR: Acq1 70 → 40 %, Acq5 50 → 55 %"
    assert adequate["verdict"] == "reproduced"  # 18 % < Acq5's 50 % and <= 2 × 10 %
    (tmp_path / findings.VENTRICLES_FILE).unlink()
    claims = findings._Claims()
    findings._ventricles(tmp_path, claims)
    assert [row["verdict"] for row in claims.rows] == ["not tested", "not tested"]
    assert all("run notebook 05_flair" in row["this run"] for row in claims.rows)
