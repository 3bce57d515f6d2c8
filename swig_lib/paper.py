"""The numbers printed in the paper, each with its table or section: one home for the book and the tests.

Source: Samadifardheris et al., "Self-Supervised Weighted Image Guided Quantitative MRI
Super-Resolution". Nothing here is computed; every value is copied from the paper as printed.
"""

from __future__ import annotations

#: Table III: percent change of each metric over Q_l, (metric, map) → M1++, M2++, M12++, M12-+
#: (mean over the paper's 17 test subjects; M12-- failed and was excluded).
TABLE3_PERCENT: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("SSIM", "PD"): (+2.62, +1.41, +4.32, +0.23),
    ("SSIM", "T1"): (+1.78, +1.25, +3.17, -1.48),
    ("SSIM", "T2"): (+0.22, +0.36, +0.27, -0.61),
    ("HFEN", "PD"): (-28.66, -35.34, -55.06, -40.91),
    ("HFEN", "T1"): (-30.25, -18.85, -52.38, -38.75),
    ("HFEN", "T2"): (-3.21, -8.41, -7.49, -4.03),
}
#: Table III: the printed total ranks (see experiments.evaluation.ranking.paper_table3 on their arithmetic).
TABLE3_TOTAL: tuple[int, int, int, int] = (17, 15, 9, 19)
#: Table III: the ranked models, in the column order of the table.
TABLE3_MODELS: tuple[str, ...] = ("M1++", "M2++", "M12++", "M12-+")

#: Sec. IV-A: the Q_l baseline, (metric, map) → (mean, sd).
BASELINE: dict[tuple[str, str], tuple[float, float]] = {("ssim", "T2"): (0.98, 0.005)}
"""The paper's ``Q_l`` baseline (mean, sd over its 17 test subjects) where it states one, keyed by
``(metric, map)``: only the T2 SSIM (Sec. IV-A); PD and T1 baselines and every HFEN baseline are
shown in its Fig. 3 but not given as numbers."""

#: Table II: (protocol, contrast) → SSIM from Q_l, SSIM from the SR output, HFEN from Q_l, HFEN from
#: the SR output, each (mean, sd) over axial slices 40-140 of one volunteer; "Acq5R" is Acq5^R.
TABLE2: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {
    ("Acq1", "T1w"): ((0.83, 0.04), (0.94, 0.02), (0.72, 0.07), (0.32, 0.04)),
    ("Acq1", "T2w"): ((0.79, 0.07), (0.88, 0.09), (0.83, 0.08), (0.25, 0.04)),
    ("Acq1", "FLAIR"): ((0.71, 0.08), (0.74, 0.08), (1.17, 0.06), (1.13, 0.12)),
    ("Acq5", "T1w"): ((0.84, 0.04), (0.94, 0.02), (0.71, 0.08), (0.32, 0.04)),
    ("Acq5", "T2w"): ((0.75, 0.08), (0.88, 0.09), (1.04, 0.06), (0.25, 0.04)),
    ("Acq5", "FLAIR"): ((0.69, 0.09), (0.74, 0.08), (1.34, 0.05), (1.10, 0.12)),
    ("Acq5R", "T1w"): ((0.87, 0.03), (0.94, 0.02), (0.66, 0.07), (0.46, 0.08)),
    ("Acq5R", "T2w"): ((0.63, 0.12), (0.85, 0.10), (1.38, 0.11), (0.35, 0.06)),
    ("Acq5R", "FLAIR"): ((0.70, 0.09), (0.75, 0.07), (1.54, 0.14), (1.24, 0.08)),
}
