"""The findings chapter (notebook 11): every claim of the paper beside the verdict of this run.

:func:`paper_findings` reads the result tables that the chapters wrote under
``<results_dir>/<profile>/`` (nothing is recomputed: the ablation's per-subject metrics, the
cross-sequence tables, the comparison's ranking, the phantom's recovery tables, the limits'
guidance) and checks each claim of the paper's abstract, results (Sec. IV) and discussion
(Sec. V, the limitations of V-F included) with a stated rule. Every claim gets one verdict of
:data:`VERDICTS` and a link to the chapter that holds its evidence.

The rules, applied to the k of n comparisons a claim consists of (:func:`count_verdict`):
*reproduced* when all n hold, *not reproduced* when none holds, *partly* otherwise, *not tested*
when n = 0 (no result, or nothing in this companion measures the claim). Where the paper gives a
size (a percent change over ``Q_l``), a comparison holds when our change has the paper's sign
and at least half its size (:func:`size_holds`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from swig_lib.core.io import PathLike
from swig_lib.experiments.crossseq.csf import VENTRICLES_FILE
from swig_lib.experiments.crossseq.settings import PROTOCOLS, REFERENCE
from swig_lib.experiments.crossseq.tables import acq1_versus_acq5, paper_table2
from swig_lib.experiments.evaluation.ablation import (
    CONTROL,
    FULL_MODEL,
    HEADLINE,
    ablation_claims,
    guide_loss_contribution,
    region_ranking,
)
from swig_lib.experiments.evaluation.ranking import BASELINE, TOTAL_ROW, paper_table3, rank_percent
from swig_lib.experiments.results import Glue
from swig_lib.paper import TABLE3_MODELS

#: The verdicts, as the table shows them.
VERDICTS: dict[str, str] = {
    "reproduced": "✓ reproduced",
    "partly": "◐ partly",
    "not reproduced": "✗ not reproduced",
    "not tested": "– not tested",
}
#: The chapters that hold the evidence: notebook name → page title.
CHAPTERS: dict[str, str] = {
    "03_ablation": "Ablation study",
    "04_cross_sequence": "Cross-sequence validation",
    "05_flair": "T2-FLAIR",
    "07_phantom": "NIST/ISMRM phantom",
    "08_comparison": "Comparison",
    "09_limits": "Limits",
}
#: The columns of :attr:`Findings.table`.
COLUMNS = ("paper", "claim", "paper's numbers", "this run", "verdict", "evidence")
#: The mismatches of the limits chapter (``kind`` of ``limits/guidance.csv``), worded with their size.
MISMATCHES: dict[str, str] = {
    "bias": "bias field, sd of log B {:g}",
    "FSE": "fast-spin-echo T2w, echo train {:g}",
    "TI": "TI off by {:g} %",
    "flip": "flip angle off by {:g} %",
    "TE": "TE off by {:g} %",
}
#: The fraction of the paper's effect size that our change must reach (:func:`size_holds`).
SIZE_FRACTION = 0.5


def count_verdict(held: int, total: int) -> str:
    """Return the verdict (a key of :data:`VERDICTS`) of a claim whose ``held`` of ``total`` comparisons hold."""
    if total == 0:
        return "not tested"
    return "reproduced" if held == total else "not reproduced" if held == 0 else "partly"


def size_holds(ours: float, paper: float, fraction: float = SIZE_FRACTION) -> bool:
    """Whether our percent change has the paper's sign and at least ``fraction`` of its size."""
    return bool(np.sign(ours) == np.sign(paper) and abs(ours) >= fraction * abs(paper))


def _pct(new: float, old: float) -> float:
    """Percent change of ``new`` over ``old``."""
    return 100.0 * (new / old - 1.0)


@dataclass(frozen=True)
class Findings:
    """The paper's claims checked against the results of one run (:func:`paper_findings`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per claim, the columns of :data:`COLUMNS`; ``verdict`` holds a key of
        :data:`VERDICTS`, ``evidence`` the notebook name of the chapter with the evidence.
    glue : Glue
        ``findings_total`` and ``findings_<verdict>`` (counts; spaces in the verdict become "_").
    """

    table: pd.DataFrame
    glue: Glue

    def styled(self) -> Styler:
        """The table for the page: verdicts as words with ✓/◐/✗, evidence as links, text wrapped."""
        shown = self.table.assign(
            verdict=self.table["verdict"].map(VERDICTS),
            evidence=[f'<a href="{name}.html">{CHAPTERS[name]}</a>' for name in self.table["evidence"]],
        )
        return wrapped(shown.style.hide(axis="index"))


def wrapped(styler: Styler) -> Styler:
    """Left-aligned, top-aligned cells whose text wraps instead of being cut (tables of sentences)."""
    return (styler.set_properties(**{"text-align": "left", "white-space": "normal", "vertical-align": "top"})
            .set_table_styles([{"selector": "th", "props": "text-align: left; vertical-align: top;"}]))


def style_claims(claims: pd.DataFrame) -> Styler:
    """The ablation's claims (:func:`ablation_claims`) for the page, with this page's verdict words.

    Parameters
    ----------
    claims : pandas.DataFrame
        Index ``claim``; columns ``paper``, ``this run`` and ``agrees`` (bool).

    Returns
    -------
    pandas.io.formats.style.Styler
        ``agrees`` replaced by a column ``verdict``: "✓ reproduced" or "✗ not reproduced".
    """
    verdict = claims["agrees"].map({True: VERDICTS["reproduced"], False: VERDICTS["not reproduced"]})
    return wrapped(claims.drop(columns="agrees").assign(verdict=verdict).style)


class _Claims:
    """Collects the rows of :class:`Findings`, one claim at a time."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(self, paper: str, claim: str, quoted: str, ours: str, verdict: str, evidence: str) -> None:
        self.rows.append(dict(zip(COLUMNS, (paper, claim, quoted, ours, verdict, evidence))))

    def missing(self, paper: str, claim: str, quoted: str, evidence: str, what: str) -> None:
        self.add(paper, claim, quoted, f"no results ({what} absent: run notebook {evidence})",
                 "not tested", evidence)


def _read(path: Path) -> pd.DataFrame | None:
    """The CSV file at ``path``, or None when it does not exist."""
    return pd.read_csv(path) if path.is_file() else None


def _ablation(out: Path, claims: _Claims) -> None:
    """Sec. IV-A, Table III and Sec. V-A/B: the ablation's claims (:func:`ablation_claims` reused)."""
    page = "03_ablation"
    table = _read(out / "metrics" / "per_subject.csv")
    if table is None:
        claims.missing("IV-A, Table III", "the ablation's findings", "Table III", page, "metrics/per_subject.csv")
        return
    models = [m for m in dict.fromkeys(table["model"]) if m != BASELINE]
    everything = region_ranking(table, HEADLINE, models)
    percent = everything.percent
    checked = ablation_claims(percent)
    rows = list(checked.index)

    def from_checked(paper: str, claim: str, names: Sequence[str]) -> None:
        held = int(checked.loc[list(names), "agrees"].sum())
        claims.add(paper, claim, "; ".join(checked.loc[list(names), "paper"]),
                   "; ".join(checked.loc[list(names), "this run"]), count_verdict(held, len(names)), page)

    from_checked("Abstract; IV-A; V-A (1)",
                 "contrast-specific enhancement: the T1w guide mostly improves T1, the T2w guide T2",
                 [r for r in rows if r.startswith("the T")])
    from_checked("IV-A", "M12++ has the best SSIM and HFEN for PD and T1", [rows[0]])

    summary = _read(out / "metrics" / "summary.csv")
    paper3 = paper_table3()
    cells = [(metric, name) for name in ("PD", "T1") for metric in ("SSIM", "HFEN")]
    if summary is not None:
        brain = summary[summary["region"] == HEADLINE].set_index(["model", "map", "metric"])
        held, ours = 0, []
        for metric, name in cells:
            a, b = (brain.loc[(m, name, metric.lower())] for m in (FULL_MODEL, BASELINE))
            separate = a["ci_low"] > b["ci_high"] or a["ci_high"] < b["ci_low"]
            mine = percent.loc[(metric, name), FULL_MODEL]
            held += int(separate and size_holds(mine, paper3.loc[(metric, name), FULL_MODEL]))
            ours.append(f"{name} {metric} {mine:+.1f} %{'' if separate else ' (CIs overlap)'}")
        claims.add("IV-A, Fig. 3",
                   "M12++ improves PD and T1 over Q_l, with non-overlapping confidence intervals",
                   ", ".join(f"{n} {m} {paper3.loc[(m, n), FULL_MODEL]:+.1f} %" for m, n in cells),
                   ", ".join(ours), count_verdict(held, len(cells)), page)
    from_checked("IV-A", "T2 maps barely improve (< 0.4 % SSIM): a ceiling at a high baseline",
                 [r for r in rows if r.startswith("T2 SSIM")])
    from_checked("IV-A; V-A (3); V-B", "without Q_l as input (M12-+) T1 falls below the baseline: "
                 "the LR maps are essential", [r for r in rows if r.startswith("without Q_l as input")])
    from_checked("IV-A", "M12-- (no Q_l, no data consistency) fails completely",
                 [r for r in rows if r.startswith("without Q_l and without")])
    from_checked("IV-A, Table III", "the lowest total rank selects M12++", [rows[-1]])

    table3 = region_ranking(table, HEADLINE, TABLE3_MODELS)
    ranked = table3.total[list(TABLE3_MODELS)]
    paper_order = sorted(TABLE3_MODELS, key=lambda m: paper3.loc[TOTAL_ROW, m])
    ours_order = list(ranked.sort_values(kind="stable").index)
    claims.add("Table III", "the order of the total ranks",
               ", ".join(f"{m} {paper3.loc[TOTAL_ROW, m]:g}" for m in paper_order),
               ", ".join(f"{m} {ranked[m]:g}" for m in ours_order),
               "reproduced" if ours_order == paper_order else
               "partly" if ours_order[0] == paper_order[0] else "not reproduced", page)

    ranks = table3.ranks[list(TABLE3_MODELS)]
    best = int((ranks[FULL_MODEL] == ranks.min(axis=1)).sum())
    paper_ranks = rank_percent(paper3.drop(index=TOTAL_ROW)).ranks
    paper_best = int((paper_ranks[FULL_MODEL] == paper_ranks.min(axis=1)).sum())
    claims.add("Abstract; V-A (2)", "combined guidance optimally enhances all parameters "
               "(M12++ ranks first in every map and metric)",
               f"M12++ first in {paper_best} of {len(paper_ranks)} cells",
               f"M12++ first in {best} of {len(ranks)} cells", count_verdict(best, len(ranks)), page)

    if CONTROL in models:
        verdicts = guide_loss_contribution(table, HEADLINE).loc[HEADLINE, "verdict"]
        better = int((verdicts == f"{FULL_MODEL} better").sum())
        worse = int((verdicts == f"{FULL_MODEL} worse").sum())
        claims.add("Abstract; II", "the guides bring the HR detail (the guide term of the loss, "
                   "tested against our α = 0 control M12++a0)", "no α = 0 control",
                   f"M12++ clearly better in {better}, worse in {worse} of {len(verdicts)} cells",
                   count_verdict(better, len(verdicts)), page)
    if "M12--" in models and "M12-+" in models:
        gain = np.where([r[0] == "SSIM" for r in percent.index], 1.0, -1.0)
        held = int((gain * (percent["M12-+"] - percent["M12--"]) > 0).sum())
        claims.add("V-B", "data consistency (L_l) prevents quantitatively implausible maps "
                   "(M12-+ with L_l against M12-- without)", "M12-- \"failed completely\"",
                   f"M12-+ better than M12-- in {held} of {len(percent)} cells",
                   count_verdict(held, len(percent)), page)


def _cross_sequence(out: Path, claims: _Claims) -> None:
    """Sec. IV-B and V-C/D/E: Table II, the 1-minute scan, the FLAIR and the sulci."""
    folder = out / "crosssequence"
    table2 = _read(folder / "table2.csv")
    if table2 is None:
        claims.missing("IV-B, Table II", "the cross-sequence findings", "Table II", "04_cross_sequence",
                       "crosssequence/table2.csv")
        return
    ours = table2.set_index(["protocol", "contrast", "source"])
    paper = paper_table2().set_index(["protocol", "contrast", "source", "metric"])["mean"]

    def change(table: Callable[[str, str, str, str], float], protocol: str, contrast: str, metric: str) -> float:
        return _pct(table(protocol, contrast, "SR", metric), table(protocol, contrast, "Q_l", metric))

    def mine(protocol: str, contrast: str, source: str, metric: str) -> float:
        return float(ours.loc[(protocol, contrast, source), f"{metric}_mean"])

    def theirs(protocol: str, contrast: str, source: str, metric: str) -> float:
        return float(paper.loc[(protocol, contrast, source, metric)])

    def improves(contrasts: Sequence[str]) -> tuple[int, int, str]:
        pairs = [(p, c, m) for p in PROTOCOLS for c in contrasts for m in ("ssim", "hfen")]
        held = sum(change(mine, p, c, m) * (1 if m == "ssim" else -1) > 0 for p, c, m in pairs)
        return held, len(pairs), f"SR better in {held} of {len(pairs)} protocol-contrast-metric cells"

    held, total, text = improves(("T1w", "T2w"))
    claims.add("IV-B, Table II", "images synthesised from the SR maps match the acquired T1w and T2w "
               "better than those from Q_l, for every protocol", "better in 12 of 12", text,
               count_verdict(held, total), "04_cross_sequence")

    cells = [(p, m) for m in ("ssim", "hfen") for p in PROTOCOLS]
    sized = [(p, m, change(mine, p, "T1w", m), change(theirs, p, "T1w", m)) for p, m in cells]
    claims.add("IV-B, Table II", "sizes of the T1w gains (SSIM up, HFEN down; Acq1, Acq5, Acq5^R)",
               ", ".join(f"{p} {m.upper()} {t:+.1f} %" for p, m, _, t in sized),
               ", ".join(f"{p} {m.upper()} {o:+.1f} %" for p, m, o, _ in sized),
               count_verdict(sum(size_holds(o, t) for *_, o, t in sized), len(sized)), "04_cross_sequence")

    def larger(table: Callable[[str, str, str, str], float]) -> int:
        return sum(abs(change(table, p, "T1w", m)) > abs(change(table, PROTOCOLS[2], "T1w", m))
                   for p in PROTOCOLS[:2] for m in ("ssim", "hfen"))

    held, total = larger(mine), 2 * len(PROTOCOLS[:2])
    claims.add("IV-B", "the gains are largest for Acq1 and Acq5, smaller for the refined Acq5^R (T1w)",
               f"larger than Acq5^R's in {larger(theirs)} of {total} cells",
               f"larger than Acq5^R's in {held} of {total} cells", count_verdict(held, total), "04_cross_sequence")

    maps, tissue = _read(folder / "maps.csv"), _read(folder / "tissue.csv")
    if maps is None or tissue is None:
        claims.missing("Abstract; V-C", "SR of the 1-minute scan reaches the 5-minute scan", "Table II",
                       "04_cross_sequence", "crosssequence/maps.csv or tissue.csv")
    else:
        verdict = acq1_versus_acq5(maps, tissue)["SR(Acq1) ≥ Acq5"]
        claims.add("Abstract; V-C", "SR of the 1-minute scan (Acq1) reaches the quality of the 5-minute "
                   "scan (Acq5); tested against the true maps", "\"exceeded 5-minute Acq5 quality\"",
                   f"SR(Acq1) at least as good as Acq5 in {int(verdict.sum())} of {len(verdict)} metrics",
                   count_verdict(int(verdict.sum()), len(verdict)), "04_cross_sequence")

    beyond = [(p, c, m) for p in PROTOCOLS[:2] for c in ("T1w", "T2w", "FLAIR") for m in ("ssim", "hfen")]
    held = sum((mine(p, c, "SR", m) - mine(PROTOCOLS[2], c, "Q_l", m)) * (1 if m == "ssim" else -1) > 0
               for p, c, m in beyond)
    claims.add("V-D", "SR of Acq1 and Acq5 surpasses the supervised reconstruction Acq5^R "
               "(synthesised T1w, T2w, T2-FLAIR)", "better in all contrasts",
               f"better in {held} of {len(beyond)} cells", count_verdict(held, len(beyond)),
               "04_cross_sequence")

    held, total, text = improves(("FLAIR",))
    claims.add("IV-B; V-E", "T2-FLAIR, never a guide, is synthesised better from the SR maps for every "
               "protocol", ", ".join(f"{p} SSIM {change(theirs, p, 'FLAIR', 'ssim'):+.1f} %" for p in PROTOCOLS),
               text + "; " + ", ".join(f"{p} HFEN {change(mine, p, 'FLAIR', 'hfen'):+.1f} %" for p in PROTOCOLS),
               count_verdict(held, total), "05_flair")

    sulci = _read(folder / "sulci.csv")
    if sulci is not None:
        error = sulci.groupby(["protocol", "source"])["error"].mean()
        closer = sum(abs(error[(p, "SR")]) < abs(error[(p, "Q_l")]) for p in PROTOCOLS)
        claims.add("IV-B; V-E", "SR improves the FLAIR in narrow cortical sulci", "Fig. 4c, red arrows",
                   f"sulcal FLAIR error closer to the truth in {closer} of {len(PROTOCOLS)} protocols",
                   count_verdict(closer, len(PROTOCOLS)), "05_flair")
    _ventricles(folder, claims)


def _ventricles(folder: Path, claims: _Claims) -> None:
    """Sec. IV-B/V-E: fluid suppression in the ventricles (``crosssequence/ventricles.csv``).

    The measure is the FLAIR of the ventricle core in percent of the white matter's, synthesised
    from each map set (:func:`swig_lib.experiments.crossseq.csf.ventricle_budget`). "Adequate"
    suppression: below Acq5's level and within twice the level the true maps leave.
    """
    suppression = "SR markedly improves the fluid suppression of the FLAIR from Acq1 and Acq5"
    adequate = "the FLAIR from Acq5^R suppresses the ventricles adequately"
    table = _read(folder / VENTRICLES_FILE)
    if table is None:
        for claim in (suppression, adequate):
            claims.missing("IV-B; V-E", claim, "Fig. 4c", "05_flair", f"crosssequence/{VENTRICLES_FILE}")
        return
    level = table.set_index(["protocol", "source"])["flair_voxelwise"]
    radial = PROTOCOLS[:2]
    held = sum(level[(p, "SR")] < level[(p, "Q_l")] for p in radial)
    claims.add("IV-B; V-E", suppression, "\"poor fluid suppression\" before SR, \"marked improvements\" after",
               "ventricle FLAIR / WM, Q_l → SR: " + ", ".join(
                   f"{p} {level[(p, 'Q_l')]:.0f} → {level[(p, 'SR')]:.0f} %" for p in radial),
               count_verdict(int(held), len(radial)), "05_flair")
    recon, truth, acq5 = level[(PROTOCOLS[2], "Q_l")], level[(REFERENCE, REFERENCE)], level[("Acq5", "Q_l")]
    held = int(recon < acq5) + int(recon <= 2 * truth)
    claims.add("IV-B; V-E", adequate, "Fig. 4c", f"ventricle FLAIR / WM {recon:.0f} % (Acq5 {acq5:.0f} %, "
               f"true maps {truth:.0f} %; adequate: below Acq5 and at most twice the true maps')",
               count_verdict(held, 2), "05_flair")


def _comparison(out: Path, claims: _Claims) -> None:
    """Sec. V-B: SR against direct estimation of the maps from the weighted images."""
    ranking = _read(out / "comparison" / "ranking.csv")
    claim = "SR beats estimating the maps directly from the weighted images (total rank, SWIG vs Q2MRI-like)"
    if ranking is None:
        claims.missing("V-B", claim, "argued, not measured", "08_comparison", "comparison/ranking.csv")
        return
    total = ranking[(ranking["scope"] == "all") & (ranking["region"] == HEADLINE)
                    & (ranking["metric"] == "Total rank")].iloc[0]
    claims.add("V-B", claim, "argued, not measured", f"SWIG {total['SWIG']:g}, Q2MRI-like {total['Q2MRI-like']:g}",
               "reproduced" if total["SWIG"] < total["Q2MRI-like"] else "not reproduced", "08_comparison")


def _phantom(out: Path, claims: _Claims) -> None:
    """Sec. V-F: the phantom validation the paper calls for."""
    recovery, spheres = _read(out / "phantom" / "recovery.csv"), _read(out / "phantom" / "spheres.csv")
    claim = "SR preserves quantitative accuracy (phantom validation, open in the paper)"
    if recovery is None or spheres is None:
        claims.missing("V-F", claim, "not done", "07_phantom", "phantom/recovery.csv or spheres.csv")
        return
    counts = recovery.groupby(["plate", "source"])["recovered"].sum()
    plates = list(dict.fromkeys(recovery["plate"]))
    held = sum(counts[(p, "SR")] >= counts[(p, "Q_l")] for p in plates)
    claims.add("V-F", claim + ": ring values of the spheres recovered", "not done",
               "; ".join(f"{p}: SR {counts[(p, 'SR')]}, Q_l {counts[(p, 'Q_l')]} rings" for p in plates),
               count_verdict(held, len(plates)), "07_phantom")
    info = json.loads((out / "phantom" / "info.json").read_text(encoding="utf-8"))
    measurable = spheres[spheres["measurable"]]
    within = int((measurable["SR_vs_HR_pct"].abs() <= 100 * info["tolerance"]).sum())
    claims.add("V-F", "SR is accurate across the physiological relaxation-time range (phantom spheres)",
               "not done", f"SR within {100 * info['tolerance']:g} % of the HR fit in {within} of "
               f"{len(measurable)} measurable spheres", count_verdict(within, len(measurable)), "07_phantom")


def _limits(out: Path, claims: _Claims) -> None:
    """Sec. V-C and V-F: pathology, bias fields, the guides' signal model and protocol."""
    guidance, lesions = _read(out / "limits" / "guidance.csv"), _read(out / "limits" / "lesion_summary.csv")
    if guidance is None or lesions is None:
        claims.missing("V-F", "the limitations", "named, not measured", "09_limits",
                       "limits/guidance.csv or lesion_summary.csv")
        return
    tumour = lesions[lesions["lesion"].str.startswith("tumour")]
    bias = {m: tumour.loc[tumour["method"] == m, "bias_both"].abs().max() for m in ("SWIG", BASELINE)}
    claims.add("V-F", "pathology that violates the mono-exponential model (a tumour with two compartments) "
               "causes systematic errors in SR", "named, not measured",
               f"largest tumour bias: SWIG {bias['SWIG']:.1f} %, Q_l {bias[BASELINE]:.1f} %",
               "reproduced" if bias["SWIG"] > bias[BASELINE] else "not reproduced", "09_limits")
    swig = guidance[guidance["method"] == "SWIG"].set_index("kind")

    def degrades(kinds: Sequence[str]) -> tuple[str, str]:
        rows = swig.loc[list(kinds)]
        bites = int((rows["tolerable"] < rows["largest"]).sum())
        text = ", ".join(f"{MISMATCHES[k].format(r.largest)}: {100 * r.retained_at_largest:.0f} % of the "
                         "gain kept" for k, r in rows.iterrows())
        some = bool((rows["retained_at_largest"] < 1).any())
        return text, ("reproduced" if bites == len(rows) else "partly" if bites or some else "not reproduced")

    for paper, claim, kinds in (
        ("V-F", "bias-field differences between training and inference degrade SR", ("bias",)),
        ("V-F", "the simplified T2w model (no fast-spin-echo refocusing) degrades SR", ("FSE",)),
        ("V-C", "the guides must match the training protocol (TI, flip angle, TE)", ("TI", "flip", "TE")),
    ):
        if all(k in swig.index for k in kinds):
            claims.add(paper, claim, "named, not measured", *degrades(kinds), "09_limits")
    claims.add("V-F", "slice profiles and B1 inhomogeneity are neglected by the signal models",
               "named, not measured", "the digital subjects have neither (2-D slices, no B1)", "not tested",
               "09_limits")


def paper_findings(results_dir: PathLike, profile: str) -> Findings:
    """Check every claim of the paper against the results of ``profile`` (nothing is recomputed).

    Parameters
    ----------
    results_dir : str or PathLike
        Results root; the tables are read from ``<results_dir>/<profile>/``.
    profile : str
        The profile's name.

    Returns
    -------
    Findings
        A claim whose results are absent is *not tested*, with the notebook that writes them.
    """
    out = Path(results_dir) / profile
    claims = _Claims()
    for part in (_ablation, _cross_sequence, _comparison, _phantom, _limits):
        part(out, claims)
    table = pd.DataFrame(claims.rows, columns=list(COLUMNS))
    glue: Glue = {"findings_total": (len(table), None)}
    counts: Mapping[str, Any] = table["verdict"].value_counts()
    for verdict in VERDICTS:
        glue[f"findings_{verdict.replace(' ', '_')}"] = (int(counts.get(verdict, 0)), None)
    return Findings(table=table, glue=glue)
