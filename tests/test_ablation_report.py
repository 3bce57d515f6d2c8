"""The ablation chapter as one call (notebook 03): evaluation, Fig. 2 slice, Table III, selection, glue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _phantom import FakeDataset, tiny_profile
from _prose import glued_names

from swig_lib.core.metrics import hfen, ssim
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.evaluation.ablation import (
    INPUT_LABEL,
    REFERENCE_LABEL,
    SUBJECT_SETS,
    degradation_table,
    guide_loss_contribution,
    median_subject,
    run_ablation,
    select_models,
    table1,
    table3_comparison,
    tissue_t1_spread,
    zoom_window,
)
from swig_lib.experiments.evaluation.figures import fig2_errors, fig2_maps, fig2_zoom, fig3
from swig_lib.experiments.evaluation.ranking import rank_models
from swig_lib.experiments.evaluation.selection import read_selection
from swig_lib.experiments.training.loop import train_variant

VARIANTS = ["M12++", "M2++", "M1++", "M12-+", "M12--", "M12++a0"]
PROFILE = tiny_profile(seed=2, epochs=1, variants=tuple(VARIANTS))


class ManifestDataset(FakeDataset):
    """The phantom with the parts of a dataset manifest the ablation reads."""

    def __init__(self) -> None:
        super().__init__(2, 1, 3, (40, 36, 3))
        t1 = {"sub-00": 1000.0, "sub-01": 1100.0, "sub-02": 1050.0, "sub-03": 1000.0, "sub-04": 1000.0,
              "sub-05": 1000.0}
        self.manifest = {
            "slices": [80, 84, 88],
            "subjects": {sid: {"tissue_values": {"WM": {"t1": t1[sid]}, "GM": {"t1": 1400.0}}} for sid in t1},
        }


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    results_dir = tmp_path_factory.mktemp("results")
    dataset = ManifestDataset()
    for name in VARIANTS:
        train_variant(PROFILE, name, results_dir / "test", device="cpu", dataset=dataset, progress=False)
    randomised = FakeDataset(1, 2, 0, (40, 36, 3))  # stands for the randomised dataset: other validation subjects
    return results_dir / "test", dataset, run_ablation(PROFILE, results_dir=results_dir, dataset=dataset,
                                                       randomised=randomised)


def test_tables_and_selection_are_written(ablation) -> None:
    out, _, results = ablation
    for name in ("per_subject", "summary", "ranking_brain", "ranking_interior", "table3_brain", "table3_interior"):
        assert (out / "metrics" / f"{name}.csv").is_file(), name
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics" / "per_subject.csv"), results.table)
    # Selected on the validation subjects only: the profile's (paper Φ) and the randomised dataset's.
    assert set(results.validation["val"]["subject"]) == {"sub-02"}
    assert set(results.validation["val_dr"]["subject"]) == {"sub-01", "sub-02"}
    for key, kind in (("val", "default"), ("val_dr", "transfer")):
        part = results.validation[key]
        rows = part[part["region"] == "brain"][["model", "subject", "map", "ssim", "hfen"]]
        assert read_selection(out, kind=kind) == rank_models(rows).selected == results.chosen[key].selected
    assert results.selected == results.chosen["val"].selected
    assert results.selected_transfer == results.chosen["val_dr"].selected
    assert results.glue["selected_model"] == (results.selected, None)
    assert results.glue["selected_test"] == (results.everything.selected, None)
    assert results.glue["table3_selected"] == (results.ranked["brain"].selected, None)
    assert results.degradation.shape == (6, 6)  # 3 subject sets x (M12++, Q_l); (SSIM, HFEN) x 3 maps
    rows = results.table[(results.table["region"] == "interior")
                         & results.table["model"].isin(["Q_l", "M1++", "M2++", "M12++", "M12-+"])]
    interior = rank_models(rows[["model", "subject", "map", "ssim", "hfen"]])
    pd.testing.assert_frame_equal(results.table3["interior"], table3_comparison(interior))
    assert list(results.everything.total.index) == VARIANTS
    assert results.with_ql == ["M12++", "M2++", "M1++", "M12++a0"]
    assert list(results.means.columns.get_level_values("model")[:7]) == ["Q_l", *VARIANTS]
    assert results.contribution.shape == (12, 4)  # 2 regions x 3 maps x 2 metrics
    assert set(results.claims["agrees"]) <= {True, False} and len(results.claims) == 8


def test_representative_slice(ablation) -> None:
    _, dataset, results = ablation
    shown = results.slice
    assert shown.subject == median_subject(results.table, "Q_l", "ssim", "brain")
    assert shown.slice_k == dataset.manifest["slices"][shown.z]
    assert list(shown.panels) == [REFERENCE_LABEL, *VARIANTS, INPUT_LABEL]
    q_h = dataset.reference(shown.subject)[..., shown.z]
    q_l = dataset.acquired(shown.subject).q_l[..., shown.z]
    assert shown.scores[(INPUT_LABEL, "T1")] == (ssim(q_l[1], q_h[1], shown.mask), hfen(q_l[1], q_h[1], shown.mask))
    error = 100 * float(np.median(np.abs(q_l[2][shown.mask] - q_h[2][shown.mask]) / q_h[2][shown.mask]))
    assert shown.relative.loc[INPUT_LABEL, "T2 median |error| / Q_h [%]"] == error
    assert shown.zoom[0].stop - shown.zoom[0].start == 36 == shown.zoom[1].stop - shown.zoom[1].start
    assert results.glue["zoom_size"] == ("36 × 36", None)
    assert len(fig2_maps(shown).axes) == 3 * 8 + 3 and len(fig2_errors(shown).axes) == 3 * 7 + 3
    assert len(fig2_zoom(shown).axes[0].images[0].get_array().shape) == 2
    figures = fig3(results.table, "brain", results.with_ql, "test")
    assert list(figures) == ["ssim", "hfen"] and figures["hfen"].get_suptitle() == "HFEN per test subject, test"


def test_glue_covers_the_prose(ablation) -> None:
    _, _, results = ablation
    used = glued_names("03_ablation.ipynb")
    assert {"selected_model", "fig2_slice_k", "a0_interior_hfen_pd_pct", "tissue_t1_cv"} <= used
    assert used <= set(results.glue)
    assert results.glue["tissue_t1_cv"][0] == pytest.approx(100 * np.std([1000, 1100, 1050, 1000, 1000, 1000],
                                                                          ddof=1) / 1025)
    assert results.glue["claims_total"] == (8, None)
    assert results.glue["n_test"] == (3, None) and results.glue["alpha"] == (4000.0, "g")


def test_zoom_window_centres_on_the_largest_error() -> None:
    q_h = np.ones((3, 20, 20))
    mask = np.ones((20, 20), bool)
    # One error of one display window; every window covering it ties, the first one wins.
    for (x, y), window in (((12, 7), np.s_[5:13, 0:8]), ((1, 19), np.s_[0:8, 12:20])):
        q_l = q_h.copy()
        q_l[1, x, y] += 400.0
        assert zoom_window(q_l, q_h, mask, size=8) == window
    q_l = q_h.copy()
    q_l[2, 12, 7] += 40.0
    q_l[0, 3, 3] += 5.0  # half a window elsewhere: the larger error wins
    assert zoom_window(q_l, q_h, mask, size=8) == np.s_[5:13, 0:8]
    assert zoom_window(q_l, q_h, ~mask, size=8) == np.s_[0:8, 0:8]  # no error inside the mask
    assert zoom_window(q_l[:, :10], q_h[:, :10], mask[:10], size=64) == np.s_[0:10, 0:10]  # at most the slice


def test_guide_loss_contribution_verdicts() -> None:
    rows = []
    for i, subject in enumerate(["a", "b", "c", "d"]):
        for name in ("PD", "T1", "T2"):
            for model, ssim_value in (("Q_l", 0.80), ("M12++", 0.90 + 0.001 * i), ("M12++a0", 0.85)):
                hfen_value = {"PD": 0.5, "T1": 0.4 + 0.01 * i, "T2": 0.5}[name] if model == "M12++" else 0.5
                rows.append({"model": model, "subject": subject, "map": name, "region": "brain",
                             "ssim": ssim_value, "hfen": hfen_value})
    verdicts = guide_loss_contribution(pd.DataFrame(rows), "brain")["verdict"]
    assert verdicts[("brain", "PD", "SSIM")] == "M12++ better"
    assert verdicts[("brain", "T1", "HFEN")] == "M12++ better"
    assert verdicts[("brain", "PD", "HFEN")] == "no clear difference"
    table = guide_loss_contribution(pd.DataFrame(rows), "brain")
    assert table.loc[("brain", "T2", "SSIM"), "M12++a0 vs Q_l"] == "+6.25 %"


def test_table1_and_tissue_spread() -> None:
    table = table1(["M12++", "M12--", "M12++a0"], 2.5e4)
    assert table.loc["M12++a0", "α"] == "0" and table.loc["M12++", "α"] == "25000"
    assert table.loc["M12++a0", "source"] == "our control" and table.loc["M12--", "source"] == "paper, Table I"
    assert list(table.loc["M12--", ["Q_l input", "data consistency"]]) == ["No", "No"]
    manifest = {"subjects": {"a": {"tissue_values": {"WM": {"t1": 900.0}, "GM": {"t1": 1300.0}}},
                             "b": {"tissue_values": {"WM": {"t1": 1100.0}, "GM": {"t1": 1300.0}}}}}
    assert tissue_t1_spread(manifest) == pytest.approx(100 * np.sqrt(2e4) / 1000)


def _scores(values: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """A per-subject table of one subject: every map of a model scores (SSIM, HFEN) = ``values[model]``."""
    return pd.DataFrame([{"model": model, "subject": "sub-00", "map": name, "region": "brain", "ssim": s, "hfen": h}
                         for model, (s, h) in values.items() for name in MAP_NAMES])


def test_selection_on_known_validation_tables() -> None:
    tables = {"val": _scores({"Q_l": (0.90, 0.5), "M12++": (0.95, 0.3), "M12++dr": (0.92, 0.4)}),
              "val_dr": _scores({"Q_l": (0.80, 0.6), "M12++": (0.81, 0.7), "M12++dr": (0.85, 0.4)})}
    chosen = select_models(tables, ["M12++", "M12++dr"])
    assert chosen["val"].selected == "M12++" and chosen["val_dr"].selected == "M12++dr"
    assert chosen["val"].total.to_dict() == {"M12++": 6.0, "M12++dr": 12.0}
    assert chosen["val_dr"].total.to_dict() == {"M12++": 12.0, "M12++dr": 6.0}
    frame = degradation_table({"test": _scores({"Q_l": (0.7, 0.9), "M12++dr": (0.75, 0.8), "M12++": (0.8, 0.6)}),
                               **tables})
    assert list(frame.index) == [(SUBJECT_SETS[key], model) for key in ("test", "val", "val_dr")
                                 for model in ("M12++", "M12++dr", "Q_l")]
    assert frame.loc[("validation (randomised Φ)", "M12++dr"), ("HFEN", "T1")] == 0.4
    assert frame.loc[("test (paper Φ)", "M12++"), ("SSIM", "PD")] == 0.8
