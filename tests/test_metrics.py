"""Tests of swig_lib.core.metrics: SSIM, HFEN, masks, slice aggregation, statistics, Table III."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from swig_lib import paper
from swig_lib.core import metrics as m
from swig_lib.experiments.evaluation import ablation as ab
from swig_lib.experiments.evaluation import ranking as rk


def _phantom(n: int = 48, seed: int = 0) -> np.ndarray:
    """Smooth positive test image (ms-like values) with edges: a disk, a square and a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = 600.0 + 4.0 * xx
    img[(xx - n / 2) ** 2 + (yy - n / 2) ** 2 < (n / 4) ** 2] = 1000.0
    img[5:15, 30:42] = 1800.0
    return img + rng.normal(0.0, 5.0, img.shape)


def _disk_mask(n: int = 48, radius: float = 20.0) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return (xx - n / 2 + 0.5) ** 2 + (yy - n / 2 + 0.5) ** 2 <= radius**2


REF = _phantom()
MASK = _disk_mask()


# --- SSIM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [None, MASK])
def test_ssim_identity_is_one(mask):
    assert m.ssim(REF, REF, mask) == pytest.approx(1.0, abs=1e-12)


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(1)
    values = [m.ssim(REF + rng.normal(0, s, REF.shape), REF, MASK) for s in (10, 50, 200)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_ignores_values_outside_mask():
    pred = REF + np.random.default_rng(2).normal(0, 30, REF.shape)
    pred_out, ref_out = pred.copy(), REF.copy()
    pred_out[~MASK] = 1e4
    ref_out[~MASK] = np.nan
    assert m.ssim(pred_out, ref_out, MASK) == pytest.approx(m.ssim(pred, REF, MASK), abs=1e-12)


def test_ssim_mask_is_stricter_than_field_of_view():
    """Averaging over the mask excludes the zero background that agrees perfectly."""
    pred = REF + np.random.default_rng(3).normal(0, 50, REF.shape)
    small = _disk_mask(radius=10)
    fov = m.ssim(np.where(small, pred, 0), np.where(small, REF, 0))
    assert m.ssim(pred, REF, small) < fov


def test_ssim_data_range_is_ref_range_in_mask():
    from skimage.metrics import structural_similarity

    pred = REF * 1.05
    expected = structural_similarity(pred, REF, data_range=REF.max() - REF.min())
    assert m.ssim(pred, REF) == pytest.approx(expected, abs=1e-12)


def test_ssim_accepts_torch():
    pred = REF + 20.0
    assert m.ssim(torch.from_numpy(pred).float(), torch.from_numpy(REF), MASK) == pytest.approx(
        m.ssim(pred, REF, MASK), abs=1e-5
    )


@pytest.mark.parametrize(
    ("pred", "ref", "mask", "match"),
    [
        (np.zeros((20, 20)), np.zeros((20, 21)), None, "shape mismatch"),
        (REF, REF, np.zeros_like(MASK), "empty mask"),
        (REF, REF, MASK[:10], "shape mismatch"),
        (np.ones((20, 20)), np.ones((20, 20)), None, "constant"),
    ],
)
def test_ssim_errors(pred, ref, mask, match):
    with pytest.raises(ValueError, match=match):
        m.ssim(pred, ref, mask)


# --- HFEN -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [None, MASK])
def test_hfen_identity_is_zero(mask):
    assert m.hfen(REF, REF, mask) == 0.0


@pytest.mark.parametrize("mask", [None, MASK])
def test_hfen_of_zero_prediction_is_one(mask):
    assert m.hfen(np.zeros_like(REF), REF, mask) == pytest.approx(1.0, abs=1e-12)


def test_hfen_scale_invariant():
    pred = REF + np.random.default_rng(4).normal(0, 40, REF.shape)
    assert m.hfen(7.3 * pred, 7.3 * REF, MASK) == pytest.approx(m.hfen(pred, REF, MASK), rel=1e-12)


def test_hfen_grows_with_noise_and_blur_is_penalized():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    low, high = (m.hfen(REF + rng.normal(0, s, REF.shape), REF, MASK) for s in (10, 100))
    assert 0 < low < high
    blurred, sharp = (m.hfen(gaussian_filter(REF, s), REF, MASK) for s in (2.0, 0.5))
    assert blurred > sharp


def test_hfen_matches_definition():
    from scipy.ndimage import gaussian_laplace

    pred = REF + np.random.default_rng(6).normal(0, 40, REF.shape)
    pm, rm = pred * MASK, REF * MASK
    expected = np.linalg.norm(gaussian_laplace(pm - rm, 1.5)[MASK]) / np.linalg.norm(
        gaussian_laplace(rm, 1.5)[MASK]
    )
    assert m.hfen(pred, REF, MASK) == pytest.approx(expected, rel=1e-12)


def test_hfen_ignores_values_outside_mask():
    pred = REF + np.random.default_rng(7).normal(0, 30, REF.shape)
    pred_out, ref_out = pred.copy(), REF.copy()
    pred_out[~MASK] = -5e3
    ref_out[~MASK] = 0.0
    assert m.hfen(pred_out, ref_out, MASK) == pytest.approx(m.hfen(pred, REF, MASK), abs=1e-12)


def test_hfen_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        m.hfen(REF, REF[:, :-1])
    with pytest.raises(ValueError, match="empty mask"):
        m.hfen(REF, REF, np.zeros_like(MASK))
    with pytest.raises(ValueError, match="LoG"):
        m.hfen(np.ones((20, 20)), np.zeros((20, 20)))


# --- erode_mask -----------------------------------------------------------------------------------


def test_erode_mask_removes_exactly_the_rim_of_a_square():
    mask = np.zeros((30, 30, 3), dtype=bool)
    mask[5:25, 8:28, :] = True
    eroded = m.erode_mask(mask, voxels=4)
    expected = np.zeros_like(mask)
    expected[9:21, 12:24, :] = True
    np.testing.assert_array_equal(eroded, expected)


def test_erode_mask_is_in_plane_only_and_zero_is_identity():
    mask = np.zeros((20, 20, 5), dtype=bool)
    mask[4:16, 4:16, 2] = True  # a single axial slice: a 3-D erosion would remove it entirely
    assert m.erode_mask(mask, 2)[:, :, 2].sum() == 8 * 8
    np.testing.assert_array_equal(m.erode_mask(mask, 0), mask)
    with pytest.raises(ValueError):
        m.erode_mask(mask, -1)


# --- slice_metrics / map_metrics ------------------------------------------------------------------


def _volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = np.stack([_phantom(seed=z) for z in range(6)], axis=-1)
    pred = ref + np.random.default_rng(8).normal(0, 40, ref.shape)
    mask = np.repeat(MASK[:, :, None], 6, axis=-1)
    mask[:, :, 0] = False
    mask[:, :, 5] = False
    mask[20:24, 20:24, 5] = True  # tiny mask: empty after erosion
    return pred, ref, mask


def test_slice_metrics_matches_per_slice_functions():
    pred, ref, mask = _volume()
    out = m.slice_metrics(pred, ref, mask)
    np.testing.assert_array_equal(out["slices"], [1, 2, 3, 4, 5])
    z = 3
    assert out["ssim_slices"][2] == pytest.approx(m.ssim(pred[..., z], ref[..., z], mask[..., z]))
    assert out["hfen_slices"][2] == pytest.approx(m.hfen(pred[..., z], ref[..., z], mask[..., z]))
    assert out["ssim"] == pytest.approx(out["ssim_slices"].mean())
    assert out["hfen"] == pytest.approx(out["hfen_slices"].mean())


def test_slice_metrics_interior_and_explicit_slices():
    pred, ref, mask = _volume()
    out = m.slice_metrics(pred, ref, mask, slices=[0, 2, 3, 5], interior_voxels=4)
    np.testing.assert_array_equal(out["slices"], [2, 3])  # 0 empty, 5 empty after erosion
    interior = m.erode_mask(mask, 4)
    expected = m.hfen(pred[..., 2], ref[..., 2], interior[..., 2])
    assert out["hfen_slices"][0] == pytest.approx(expected)


def test_slice_metrics_errors():
    pred, ref, mask = _volume()
    with pytest.raises(ValueError, match="shape mismatch"):
        m.slice_metrics(pred, ref[..., :-1], mask)
    with pytest.raises(ValueError, match="empty mask"):
        m.slice_metrics(pred, ref, mask, slices=[0])
    with pytest.raises(ValueError, match="out of range"):
        m.slice_metrics(pred, ref, mask, slices=[6])


def _full_slice_scores(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """The definitions on the whole slice: scikit-image's SSIM map and SciPy's LoG, no cropping."""
    from scipy.ndimage import gaussian_laplace
    from skimage.metrics import structural_similarity

    pm, rm = np.where(mask, pred, 0.0), np.where(mask, ref, 0.0)
    _, ssim_map = structural_similarity(pm, rm, data_range=rm[mask].max() - rm[mask].min(), full=True)
    log_err, log_ref = gaussian_laplace(pm - rm, 1.5)[mask], gaussian_laplace(rm, 1.5)[mask]
    return float(ssim_map[mask].mean()), float(np.sqrt(np.sum(log_err * log_err)) / np.sqrt(np.sum(log_ref * log_ref)))


@pytest.mark.parametrize("where", ["centre", "corner", "edge", "speck"])
def test_cropped_filters_are_bit_identical_to_the_whole_slice(where):
    """The scorer filters only the mask's box plus the filters' reach: not one bit may change."""
    rng = np.random.default_rng(11)
    ref = rng.normal(800.0, 200.0, (60, 70))
    pred = ref + rng.normal(0.0, 50.0, ref.shape)
    mask = np.zeros(ref.shape, dtype=bool)
    boxes = {"centre": (slice(20, 41), slice(25, 50)), "corner": (slice(0, 12), slice(0, 15)),
             "edge": (slice(10, 40), slice(64, 70)), "speck": (slice(30, 33), slice(30, 34))}
    mask[boxes[where]] = True
    mask &= rng.random(ref.shape) > 0.2  # ragged edges and holes
    assert (m.ssim(pred, ref, mask), m.hfen(pred, ref, mask)) == _full_slice_scores(pred, ref, mask)


def test_map_metrics_many_equals_one_at_a_time():
    pred, ref, mask = _volume()
    maps = {"a": np.stack([pred, ref, 2 * pred]), "b": np.stack([ref + 3.0, pred, ref])}
    together = m.map_metrics_many(maps, np.stack([ref, ref, 2 * ref]), mask, interior_voxels=2)
    for model, stack in maps.items():
        alone = m.map_metrics(stack, np.stack([ref, ref, 2 * ref]), mask, interior_voxels=2)
        for name in ("PD", "T1", "T2"):
            for key in ("ssim_slices", "hfen_slices", "slices"):
                np.testing.assert_array_equal(together[model][name][key], alone[name][key])
    z = int(together["a"]["PD"]["slices"][1])
    interior = m.erode_mask(mask, 2)[..., z]
    assert together["a"]["PD"]["ssim_slices"][1] == _full_slice_scores(pred[..., z], ref[..., z], interior)[0]


def test_slice_metrics_names_the_slice_of_a_bad_value():
    pred, ref, mask = _volume()
    pred[24, 24, 3] = np.nan
    with pytest.raises(ValueError, match=r"^axial slice 3: non-finite values \(NaN or inf\) inside the mask$"):
        m.slice_metrics(pred, ref, mask)
    flat = ref.copy()
    flat[..., 2] = 7.0
    with pytest.raises(ValueError, match=r"^axial slice 2: ref is constant within the mask"):
        m.slice_metrics(ref, flat, mask)


def test_map_metrics_keys_and_values():
    pred, ref, mask = _volume()
    out = m.map_metrics(np.stack([pred, ref, 2 * pred]), np.stack([ref, ref, 2 * ref]), mask)
    assert list(out) == ["PD", "T1", "T2"]
    assert out["T1"]["ssim"] == pytest.approx(1.0) and out["T1"]["hfen"] == 0.0
    assert out["T2"]["hfen"] == pytest.approx(out["PD"]["hfen"])
    with pytest.raises(ValueError, match="names"):
        m.map_metrics(np.stack([pred, ref]), np.stack([ref, ref]), mask)


class _FakeDataset:
    """Two subjects whose Q_l is Q_h plus noise (subject 2: twice the noise)."""

    def __init__(self) -> None:
        pred, ref, mask = _volume()
        self.ref, self.mask = np.stack([ref, ref, 2 * ref]), mask
        self.noise = pred - ref

    def subject_ids(self, split: str) -> list[str]:
        return ["sub-01", "sub-02"] if split == "test" else []

    def reference(self, sid: str) -> np.ndarray:
        return self.ref

    def acquired(self, sid: str):
        scale = 1.0 if sid == "sub-01" else 2.0
        return type("Acquired", (), {"q_l": self.ref + scale * self.noise, "mask": self.mask})


def test_region_metrics_brain_and_interior():
    pred, ref, mask = _volume()
    rows = rk.region_metrics(np.stack([pred] * 3), np.stack([ref] * 3), mask, interior_voxels=4)
    assert [(r["region"], r["map"]) for r in rows] == [
        (region, name) for region in rk.REGIONS for name in ("PD", "T1", "T2")
    ]
    interior = m.slice_metrics(pred, ref, mask, interior_voxels=4)
    assert rows[3]["hfen"] == pytest.approx(interior["hfen"]) and rows[3]["n_slices"] == 4
    assert rows[0]["n_slices"] == 5
    assert {r["region"] for r in rk.region_metrics(pred[None], ref[None], mask, 0, ("PD",))} == {"brain"}


def test_baseline_metrics_and_mean_sd():
    table = rk.baseline_metrics(_FakeDataset(), "test", interior_voxels=4)
    assert len(table) == 2 * 2 * 3 and set(table["model"]) == {rk.BASELINE}
    summary = rk.mean_sd(table, by=("region", "map"))
    pd_brain = table[(table["map"] == "PD") & (table["region"] == "brain")]["ssim"]
    assert summary.loc[("brain", "PD"), "ssim_mean"] == pytest.approx(pd_brain.mean())
    assert summary.loc[("brain", "PD"), "ssim_sd"] == pytest.approx(pd_brain.std(ddof=1))
    assert (summary["n"] == 2).all()
    with pytest.raises(ValueError, match="no subjects"):
        rk.baseline_metrics(_FakeDataset(), "train")
    with pytest.raises(ValueError, match="lacks"):
        rk.mean_sd(table, by=("nonsense",))
    assert paper.BASELINE[("ssim", "T2")] == (0.98, 0.005)


# --- statistics -----------------------------------------------------------------------------------


def test_mean_ci_hand_computed():
    # values 1..5: mean 3, s = sqrt(2.5), t_{0.975,4} = 2.7764451
    mean, lo, hi = rk.mean_ci([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * np.sqrt(2.5) / np.sqrt(5)
    assert (mean, lo, hi) == pytest.approx((3.0, 3.0 - half, 3.0 + half), rel=1e-12)
    mean90, lo90, _ = rk.mean_ci([1, 2, 3, 4, 5], level=0.9)
    assert lo90 == pytest.approx(3.0 - stats.t.ppf(0.95, 4) * np.sqrt(0.5), rel=1e-12)
    assert rk.mean_ci([0.7]) == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError):
        rk.mean_ci([])


def test_percent_change():
    assert rk.percent_change(1.1, 1.0) == pytest.approx(10.0)
    assert rk.percent_change(0.45, 0.9) == pytest.approx(-50.0)
    with pytest.raises(ValueError, match="baseline"):
        rk.percent_change(1.0, 0.0)


# --- Table III ranking ----------------------------------------------------------------------------

PAPER_MODELS = ["M1++", "M2++", "M12++", "M12-+"]


def test_paper_table3_layout():
    table = rk.paper_table3()
    assert list(table.columns) == PAPER_MODELS
    assert table.shape == (7, 4)
    assert table.loc[("HFEN", "PD"), "M12++"] == -55.06
    assert table.loc[rk.TOTAL_ROW].tolist() == [17, 15, 9, 19]


def test_rank_percent_on_paper_numbers():
    """Ranking the printed % changes selects M12++ (as the paper) with totals 18/15/8/19.

    The paper prints 17/15/9/19: not reproducible from its own percentages with any tie rule
    (there are no ties); both versions sum to 60 and select M12++. See paper_table3's docstring.
    """
    paper = rk.paper_table3()
    ranking = rk.rank_percent(paper.iloc[:6])
    assert ranking.selected == "M12++"
    assert ranking.total.tolist() == [18.0, 15.0, 8.0, 19.0]
    assert ranking.total.sum() == paper.loc[rk.TOTAL_ROW].sum() == 60
    assert ranking.ranks.loc[("HFEN", "T2")].tolist() == [4.0, 1.0, 2.0, 3.0]
    assert ranking.to_table().index.equals(paper.index)


def _long_table_from_percent(percent: pd.DataFrame, n_subjects: int = 5) -> pd.DataFrame:
    """Per-subject metric table whose means reproduce ``percent`` over a known baseline."""
    rng = np.random.default_rng(9)
    base = {"ssim": 0.9, "hfen": 0.4}
    rows = []
    for (metric, name), changes in percent.iterrows():
        key = metric.lower()
        noise = rng.normal(0, 0.01, n_subjects)
        noise -= noise.mean()
        baseline = base[key] + noise
        for s in range(n_subjects):
            rows.append(("Q_l", f"s{s}", name, key, baseline[s]))
            for model, change in changes.items():
                rows.append((model, f"s{s}", name, key, baseline[s] * (1 + change / 100)))
    long = pd.DataFrame(rows, columns=["model", "subject", "map", "metric", "value"])
    return long.pivot_table(
        index=["model", "subject", "map"], columns="metric", values="value", sort=False
    ).reset_index()


def test_rank_models_reproduces_percent_and_ranks_from_means():
    paper = rk.paper_table3().iloc[:6]
    table = _long_table_from_percent(paper)
    ranking = rk.rank_models(table, baseline="Q_l")
    np.testing.assert_allclose(ranking.percent.loc[paper.index, PAPER_MODELS], paper, atol=1e-9)
    # Ranking by % change equals ranking by means when the baseline is shared.
    means = ranking.means[PAPER_MODELS]
    sign = np.where(means.index.get_level_values("metric") == "SSIM", 1.0, -1.0)
    by_means = means.mul(sign, axis=0).rank(axis=1, ascending=False)
    pd.testing.assert_frame_equal(ranking.ranks, by_means)
    pd.testing.assert_frame_equal(ranking.ranks, rk.rank_percent(paper).ranks, check_names=False)
    assert ranking.selected == "M12++"
    assert ranking.total.tolist() == [18.0, 15.0, 8.0, 19.0]
    assert ranking.means.loc[("SSIM", "PD"), "Q_l"] == pytest.approx(0.9)
    per_subject = rk.rank_models(table, baseline="Q_l", percent_mode="per_subject")
    np.testing.assert_allclose(per_subject.percent, ranking.percent, atol=1e-9)  # exact scaling


def test_rank_models_ties_share_average_rank_and_tie_break():
    percent = pd.DataFrame(
        {"A": [1.0, -10.0], "B": [1.0, -12.0], "C": [0.5, -20.0]},
        index=pd.MultiIndex.from_tuples([("SSIM", "PD"), ("HFEN", "PD")]),
    )
    ranking = rk.rank_percent(percent)
    assert ranking.ranks.loc[("SSIM", "PD")].tolist() == [1.5, 1.5, 3.0]
    assert ranking.total.tolist() == [4.5, 3.5, 4.0]
    assert ranking.selected == "B"
    tied = rk.rank_percent(pd.DataFrame({"A": [2.0, -1.0], "B": [1.0, -5.0]}, index=percent.index))
    assert tied.total.tolist() == [3.0, 3.0]
    assert tied.selected == "B"  # summed gain: A 2 + 1 = 3, B 1 + 5 = 6


def test_rank_models_errors():
    table = _long_table_from_percent(rk.paper_table3().iloc[:6])
    with pytest.raises(ValueError, match="baseline"):
        rk.rank_models(table, baseline="Q_x")
    with pytest.raises(ValueError, match="lacks column"):
        rk.rank_models(table.drop(columns="hfen"))
    incomplete = table.drop(index=table.index[(table["model"] == "M2++")][:1])
    with pytest.raises(ValueError, match="M2\\+\\+"):
        rk.rank_models(incomplete)
    with pytest.raises(ValueError, match="duplicate"):
        rk.rank_models(pd.concat([table, table.iloc[:1]]))


# --- ablation helpers (notebook 03) ---------------------------------------------------------------


def test_median_subject_lower_median_over_maps():
    rows = [("Q_l", f"s{i}", name, "brain", v + (0.01 if name == "T1" else 0.0), 0.3)
            for i, v in enumerate([0.90, 0.70, 0.80, 0.95]) for name in ("PD", "T1")]
    rows += [("Q_l", "s0", "PD", "interior", 0.1, 0.3), ("M12++", "s1", "PD", "brain", 0.99, 0.1)]
    table = pd.DataFrame(rows, columns=["model", "subject", "map", "region", "ssim", "hfen"])
    assert ab.median_subject(table) == "s2"  # order 0.70 (s1), 0.80 (s2), 0.90, 0.95: lower median
    assert ab.median_subject(table, metric="hfen") == "s1"  # all tie: table order, lower median
    with pytest.raises(ValueError, match="no rows"):
        ab.median_subject(table, model="M2++")


def test_median_slice_picks_the_median_slice():
    ref = np.stack([np.stack([REF] * 5, axis=-1)] * 2)
    noise = np.random.default_rng(3).normal(0, 1, ref.shape) * np.array([0, 40, 10, 20, 30])
    mask = np.stack([MASK] * 5, axis=-1)
    z, frame = ab.median_slice(ref + noise, ref, mask, names=("T1", "T2"))
    assert list(frame.index) == [0, 1, 2, 3, 4] and list(frame.columns) == ["T1", "T2", "mean"]
    assert z == 3  # noise levels 0, 40, 10, 20, 30: SSIM order 0 > 2 > 3 > 4 > 1, median slice 3
    z_sub, frame_sub = ab.median_slice(ref + noise, ref, mask, slices=[1, 2], names=("T1", "T2"))
    assert z_sub == 1 and list(frame_sub.index) == [1, 2]  # lower median of two: the worse one
    with pytest.raises(ValueError, match="metric"):
        ab.median_slice(ref, ref, mask, metric="psnr", names=("T1", "T2"))


def test_table3_comparison_layout_and_paper_totals():
    paper = rk.paper_table3()
    ours = rk.rank_percent(paper.iloc[:6][["M12++", "M1++"]] * 0.5)
    table = ab.table3_comparison(ours)
    assert list(table.columns.get_level_values(0)[::2]) == ["M1++", "M12++"]  # paper order
    assert table.loc[("SSIM", "PD"), ("M12++", "paper")] == "+4.32 (1)"
    assert table.loc[("SSIM", "PD"), ("M12++", "this run")] == "+2.16 (1)"
    assert table.loc[rk.TOTAL_ROW, ("M12++", "paper")] == "9 (8)"
    assert table.loc[rk.TOTAL_ROW, ("M1++", "paper")] == "17 (18)"
    assert table.loc[rk.TOTAL_ROW, ("M12++", "this run")] == "6"  # best in all six rows


def test_ablation_claims_on_the_papers_own_numbers():
    percent = rk.paper_table3().iloc[:6].copy()
    claims = ab.ablation_claims(percent)
    assert claims["agrees"].all() and len(claims) == 7
    percent["M12--"] = -50.0
    percent.loc[("SSIM", "T1"), "M12-+"] = +0.5
    claims = ab.ablation_claims(percent)
    assert len(claims) == 8 and claims["agrees"].sum() == 7  # only the M12-+ T1 row fails
    with pytest.raises(ValueError, match="ranked model"):
        ab.ablation_claims(percent.drop(columns="M2++"))
