"""The comparison chapter (notebook 08) as one call: every arm beside SWIG, scored, ranked, timed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _phantom import TISSUES as PHANTOM_TISSUES
from _phantom import FakeDataset, make_subject, tiny_profile
from _prose import glued_names

from swig_lib.experiments.arms.chapter import (
    ADAPTATION_COLUMNS,
    ALL,
    BILATERAL,
    GUIDED,
    INR,
    INR_DC,
    LABELS_TRAINING,
    PNP,
    Q2MRI,
    SUBSET,
    SUPERVISED,
    SWIG,
    SWIG_ADAPT,
    AdaptedArm,
    Arm,
    ArmsSettings,
    SubjectInputs,
    cached_training,
    choose_subset,
    fig_slice,
    fig_subjects,
    filter_arm,
    network_arm,
    run_comparison,
)
from swig_lib.experiments.arms.guided import FilterParams
from swig_lib.experiments.crossseq.tables import adaptation_verdict
from swig_lib.experiments.evaluation.evaluate import evaluate
from swig_lib.experiments.evaluation.ranking import BASELINE
from swig_lib.experiments.owndata.adapt import Recipe
from swig_lib.experiments.subjects.dataset import TISSUE_LABELS
from swig_lib.experiments.training.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, model_from_checkpoint
from swig_lib.experiments.training.loop import train_variant
from swig_lib.experiments.training.windows import prepare_subject, window_indices, window_size

ORACLE = "Oracle"
ARMS = {
    "per_scan_subjects": 1, "per_scan_slices": 2, "tune_stride": 1, "tune_metric": "ssim",
    "guided_radius": [1, 2], "guided_eps": [1e-2], "bilateral_radius": [1], "bilateral_sigma_color": [0.3],
    "bilateral_sigma_space": [1.0],
    "denoiser": {"patches": 32, "patch": 16, "epochs": 1, "batch_size": 16, "lr": 1e-3, "warmup_steps": 1,
                 "width": 4, "depth": 2, "sigma_min": 0.1, "sigma_max": 2.0},
    "pnp": {"iterations": 1, "sigma_max": 1.0, "sigma_min": 1.0, "lam": 1.0},
    "inr": {"n_frequencies": 8, "width": 8, "depth": 1, "steps": 2, "lr": 1e-3},
    "adapt_steps": 30,
}
PROFILE = tiny_profile(seed=0, epochs=1, arms=ARMS)
BUILT_IN = [SWIG, SWIG_ADAPT, GUIDED, BILATERAL, PNP, INR, INR_DC, SUPERVISED, Q2MRI]
PER_SCAN = {SWIG_ADAPT, PNP, INR, INR_DC}


class LabelledDataset(FakeDataset):
    """The phantom with tissue labels (values of :data:`TISSUE_LABELS`), read off its Q_h T1."""

    def labels(self, sid: str) -> np.ndarray:
        t1 = self.reference(sid)[1]
        labels = np.zeros(t1.shape, dtype=np.uint8)
        for code, name in TISSUE_LABELS.items():
            if name in PHANTOM_TISSUES:
                labels[t1 == PHANTOM_TISSUES[name][1]] = code
        return labels


def oracle(dataset: LabelledDataset) -> Arm:
    """An arm that returns Q_h exactly (needs labels, by definition)."""
    return Arm(ORACLE, "oracle", LABELS_TRAINING, False, False, False, "Q_h itself",
               lambda subject, index: np.asarray(dataset.reference(subject.sid), dtype=np.float32))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    results_dir = tmp_path_factory.mktemp("results")
    dataset = LabelledDataset(2, 1, 2, (40, 36, 3))
    train_variant(PROFILE, "M12++", results_dir / "test", device="cpu", dataset=dataset, progress=False)
    results = run_comparison(PROFILE, "M12++", results_dir=results_dir, dataset=dataset, extra_arms=[oracle(dataset)])
    return results_dir / "test", dataset, results


def test_tables_have_every_arm_scope_subject_map_and_region(comparison) -> None:
    out, _, results = comparison
    table = results.table
    assert list(table.columns) == ["scope", "model", "subject", "map", "region", "ssim", "hfen"]
    assert results.names == [*BUILT_IN, ORACLE] and results.scope == SUBSET
    full = table[table["scope"] == ALL]
    assert set(full["model"]) == {BASELINE, *BUILT_IN, ORACLE} - PER_SCAN
    assert len(full) == (1 + 5 + 1) * 2 * 3 * 2  # models x subjects x maps x regions
    subset = table[table["scope"] == SUBSET]
    assert set(subset["model"]) == {BASELINE, *BUILT_IN, ORACLE} and set(subset["subject"]) == {"sub-03"}
    assert len(subset) == (1 + 9 + 1) * 1 * 3 * 2
    assert list(results.features.index) == [*BUILT_IN, ORACLE]
    assert list(results.features.columns) == [
        "HR qMRI labels", "subject guides", "training set", "per-scan optimisation", "follows", "training [s]",
        "training", "slices per subject", "s per subject", "s per slice"]
    features = results.features
    assert features.loc[PNP, "slices per subject"] == 2 and features.loc[SWIG, "slices per subject"] == 3
    assert (features["s per subject"] > 0).all()
    assert features.loc[SUPERVISED, "HR qMRI labels"] == LABELS_TRAINING and features.loc[PNP, "subject guides"] == "no"
    assert features.loc[[SUPERVISED, Q2MRI, PNP], "training"].tolist() == ["trained"] * 3
    tissue = results.tissue
    assert set(tissue["tissue"]) == {"WM", "GM", "CSF"} and set(tissue["scope"]) == {ALL, SUBSET}
    assert list(tissue.columns) == ["scope", "model", "subject", "tissue", "map", "mape", "n_voxels"]
    assert (tissue.loc[tissue["model"] == ORACLE, "mape"] == 0).all()
    assert (tissue.loc[tissue["model"] == BASELINE, "mape"] > 0).any()
    for name in ("per_subject", "summary", "ranking", "features", "tissue", "goals", "adaptation"):
        assert (out / "comparison" / f"{name}.csv").is_file(), name
    written = pd.read_csv(out / "comparison" / "per_subject.csv")
    pd.testing.assert_frame_equal(written, table)


def test_an_arm_that_returns_q_h_gets_ssim_one_hfen_zero_and_rank_one(comparison) -> None:
    _, _, results = comparison
    rows = results.table[results.table["model"] == ORACLE]
    assert (rows["ssim"] == 1.0).all() and (rows["hfen"] == 0.0).all()
    for (scope, region), ranking in results.rankings.items():
        assert (ranking.ranks[ORACLE] == 1).all(), (scope, region)
        assert ranking.total[ORACLE] == 6 and ranking.selected == ORACLE
    assert ORACLE not in results.label_free.total  # it needs labels
    assert {(col, name) for col, name in results.display.scores if col == ORACLE} == {
        (ORACLE, m) for m in ("PD", "T1", "T2")}
    assert all(results.display.scores[(ORACLE, m)] == (1.0, 0.0) for m in ("PD", "T1", "T2"))
    ci = results.ci_table(ALL)
    assert list(ci.columns) == [BASELINE, *(n for n in results.names if n not in PER_SCAN)]
    assert ci.loc[("ssim", "T1"), ORACLE] == "1.000 [1.000, 1.000]" and ci.loc[("hfen", "PD"), ORACLE] == (
        "0.000 [0.000, 0.000]")


def test_the_ranking_is_the_papers_rank_sum_of_the_mean_metrics(comparison) -> None:
    _, _, results = comparison
    for (scope, region), ranking in results.rankings.items():
        part = results.table[(results.table["scope"] == scope) & (results.table["region"] == region)]
        means = part.groupby(["map", "model"])[["ssim", "hfen"]].mean()
        ranks = pd.concat([means["ssim"].unstack("model").drop(columns=BASELINE).rank(axis=1, ascending=False),
                           means["hfen"].unstack("model").drop(columns=BASELINE).rank(axis=1, ascending=True)])
        total = ranks.sum()
        assert total.to_dict() == pytest.approx(ranking.total.to_dict()), (scope, region)
        assert ranking.selected == total.idxmin()
    head = results.table[(results.table["scope"] == SUBSET) & (results.table["region"] == "brain")]
    free = head[~head["model"].isin([SUPERVISED, Q2MRI, ORACLE, SWIG_ADAPT])]  # the goal ranks SWIG as trained
    assert set(results.label_free.total.index) == set(free["model"]) - {BASELINE}


def test_swig_and_q_l_score_exactly_as_in_the_ablation(comparison) -> None:
    out, dataset, results = comparison
    ablation = evaluate(PROFILE, out, ["M12++"], dataset=dataset, progress=False)
    mine = results.table[results.table["scope"] == ALL].replace({SWIG: "M12++"})
    mine = mine[mine["model"].isin([BASELINE, "M12++"])].drop(columns="scope").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.sort_values(list(mine.columns[:4])).reset_index(drop=True),
                                  ablation.sort_values(list(mine.columns[:4])).reset_index(drop=True))


def test_goals_are_computed_from_the_rankings(comparison) -> None:
    _, _, results = comparison
    goals = results.goals
    assert len(goals) == 4 and list(goals.columns) == ["value", "share", "met"]
    assert goals["met"].iloc[0] == (results.label_free.selected == SWIG)
    percent = results.rankings[(ALL, "brain")].percent
    for row, name in zip(goals.iloc[1:].itertuples(), ("PD", "T1", "T2")):
        swig, sup = percent.loc[("HFEN", name), SWIG], percent.loc[("HFEN", name), SUPERVISED]
        if sup < 0:
            assert row.share == pytest.approx(swig / sup) and row.met == (swig / sup >= 0.8)
        else:
            assert np.isnan(row.share) and not row.met
    glue = results.glue
    assert glue["cmp_goal_labelfree"][0] == ("met" if goals["met"].iloc[0] else "not met")
    assert glue["cmp_goal_hfen_met"] == (f"{int(goals['met'].iloc[1:].sum())} of 3", None)
    assert glue["cmp_scope"] == ("the first 1 test subject(s), 2 evaluated slice(s) each", None)


def test_glue_covers_the_prose_and_figures_have_every_arm(comparison) -> None:
    _, _, results = comparison
    used = glued_names("08_comparison.ipynb")
    assert {"cmp_goal_labelfree", "cmp_hfen_share_t1", "rank_swig", "time_pnp"} <= used
    assert used <= set(results.glue)
    assert list(results.display.panels) == ["Q_h", *BUILT_IN, ORACLE, BASELINE]
    assert len(fig_slice(results).axes) == 3 * 12 + 3
    figures = fig_subjects(results, ALL)
    assert list(figures) == ["ssim", "hfen"] and len(figures["ssim"].axes) == 3
    assert results.ranking_table().loc[("Total rank", ""), ORACLE] == "6"


def test_trained_arms_are_reused_only_with_the_same_settings(tmp_path) -> None:
    calls = []

    def train() -> dict:
        calls.append(1)
        return {"model_spec": {}, "model_state": {"w": torch.ones(2)}, "log": [{"time_s": 1.5}]}

    path = tmp_path / "arm.pt"
    payload, status = cached_training(path, {"a": 1}, train)
    assert status == "trained" and payload["format"] == CHECKPOINT_FORMAT and payload["arm_key"] == '{"a": 1}'
    assert cached_training(path, {"a": 1}, train)[1] == "reused" and len(calls) == 1
    assert cached_training(path, {"a": 2}, train)[1] == "trained" and len(calls) == 2
    path.write_bytes(b"damaged")
    assert cached_training(path, {"a": 2}, train)[1] == "trained" and len(calls) == 3


def test_settings_and_subsets_are_checked() -> None:
    settings = ArmsSettings.from_profile(PROFILE)
    assert settings.guided_radius == (1, 2) and settings.inr.steps == 2 and settings.inr.start == "ql"
    with pytest.raises(KeyError, match=r"missing arms setting\(s\) \['tune_stride'\]"):
        ArmsSettings.from_profile(tiny_profile(arms={k: v for k, v in ARMS.items() if k != "tune_stride"}))
    with pytest.raises(KeyError, match=r"missing arms.denoiser setting\(s\) \['depth'\]"):
        denoiser = {k: v for k, v in ARMS["denoiser"].items() if k != "depth"}
        ArmsSettings.from_profile(tiny_profile(arms=ARMS | {"denoiser": denoiser}))
    with pytest.raises(KeyError, match=r"unknown arms.inr setting\(s\) \['step'\]"):
        ArmsSettings.from_profile(tiny_profile(arms=ARMS | {"inr": {"step": 3}}))
    with pytest.raises(ValueError, match="tune_metric must be one of"):
        ArmsSettings.from_profile(tiny_profile(arms=ARMS | {"tune_metric": "psnr"}))
    slices = np.arange(50, 70)
    assert choose_subset(slices, 0).tolist() == list(range(20)) == choose_subset(slices, 25).tolist()
    assert choose_subset(slices, 2).tolist() == [5, 15] and choose_subset(slices, 1).tolist() == [10]


def test_filters_on_the_window_equal_filters_on_the_whole_slice() -> None:
    settings = ArmsSettings.from_profile(PROFILE)
    acq = make_subject(0)
    slices = np.arange(3)
    params = {"PD": FilterParams("guided", 2, eps=1e-2), "T1": FilterParams("bilateral", 1, sigma_color=0.3),
              "T2": FilterParams("guided", 1, eps=1e-1)}
    window = window_size([acq.mask], settings.window_margin(2))
    assert window[0] < 40 and window[1] < 36  # the window is smaller than the slice
    volumes = []
    for size in (window, acq.mask.shape[:2]):
        subject = SubjectInputs("s", acq, acq.mask, slices, prepare_subject(acq, size, slices, 2),
                                *window_indices(acq.mask, size))
        volumes.append(filter_arm(params, 2)(subject, np.arange(3)))
    assert settings.window_margin(2) == 4 == settings.window_margin(4) and settings.window_margin(5) == 5
    np.testing.assert_allclose(volumes[0], volumes[1], rtol=1e-5, atol=1e-3)
    assert (volumes[0][:, ~acq.mask] == 0).all()


def test_paste_puts_window_maps_back_on_their_slices() -> None:
    mask = np.zeros((6, 5, 4), dtype=bool)
    subject = SubjectInputs("s", None, mask, np.array([0, 2, 3]), None, np.array([1, 2, 3]), np.array([0, 1]))
    maps = torch.arange(2 * 3 * 3 * 2, dtype=torch.float32).view(2, 3, 3, 2)
    volume = subject.paste(maps, np.array([0, 2]))
    assert volume.shape == (3, 6, 5, 4) and volume.dtype == np.float32
    assert np.array_equal(volume[:, 1:4, 0:2, 0], maps[0].numpy()) and np.array_equal(volume[:, 1:4, 0:2, 3],
                                                                                    maps[1].numpy())
    assert volume.sum() == maps.sum().item()


def test_swig_with_adaptation_lowers_its_loss_and_is_compared_with_swig(comparison) -> None:
    _, _, results = comparison
    runs = results.adaptation
    assert list(runs.columns) == list(ADAPTATION_COLUMNS) and runs["subject"].tolist() == ["sub-03"]
    assert runs["steps"].tolist() == [30] and (runs["loss_after"] < runs["loss_before"]).all()
    table = results.adaptation_table()
    part = results.summary[(results.summary["scope"] == SUBSET) & (results.summary["region"] == "brain")]
    for (metric, name), row in table.iterrows():
        means = part[(part["metric"] == metric) & (part["map"] == name)].set_index("model")["mean"]
        assert (row[SWIG], row[SWIG_ADAPT]) == (means[SWIG], means[SWIG_ADAPT])
        assert row["change"] == row[SWIG_ADAPT] - row[SWIG]
        assert row["better"] == (row["change"] > 0 if metric == "ssim" else row["change"] < 0)
    better = int(table["better"].sum())
    assert results.glue["cmp_adapt_better"] == (f"{better} of 6", None)
    assert results.glue["cmp_adapt_verdict"] == (adaptation_verdict(better, 6), None)
    assert results.glue["cmp_adapt_loss_fell"] == ("1 of 1", None) and results.glue["cmp_adapt_steps"] == (30, None)
    features = results.features.loc[SWIG_ADAPT]
    assert features["per-scan optimisation"] == "yes" and features["slices per subject"] == 2
    assert features["training [s]"] == results.features.loc[SWIG, "training [s]"]
    assert SWIG_ADAPT in results.rankings[(SUBSET, "brain")].total
    assert SWIG_ADAPT not in results.rankings[(ALL, "brain")].total


def test_with_zero_steps_the_adapted_arm_predicts_exactly_as_swig(comparison) -> None:
    out, dataset, _ = comparison
    payload = load_checkpoint(out / "checkpoints" / "M12++.pt")
    model, recipe = model_from_checkpoint(payload, "cpu"), Recipe.of_checkpoint(payload)
    acq = dataset.acquired("sub-03")
    slices = np.arange(acq.mask.shape[-1])
    size = window_size([acq.mask], 2)
    subject = SubjectInputs("sub-03", acq, acq.mask, slices, prepare_subject(acq, size, slices, 2),
                            *window_indices(acq.mask, size))
    index = np.array([0, 2])
    swig = network_arm(model, 2)(subject, index)
    assert np.array_equal(AdaptedArm(model, recipe, 0, 0, 2, torch.device("cpu"))(subject, index), swig)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = AdaptedArm(model, recipe, 3, 0, 2, torch.device("cpu"))
    changed = adapted(subject, index)
    assert not np.array_equal(changed, swig) and len(adapted.records) == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # SWIG itself is untouched
    assert np.array_equal(network_arm(model, 2)(subject, index), swig)
    assert np.array_equal(AdaptedArm(model, recipe, 3, 0, 2, torch.device("cpu"))(subject, index), changed)
