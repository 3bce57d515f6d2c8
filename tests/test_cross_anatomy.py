"""Tests of the cross-anatomy evaluation (swig_lib.experiments.evaluation.cross_anatomy) on tiny fixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from swig_lib.core.metrics import map_metrics
from swig_lib.core.models import MAP_NAMES, SwigResNet
from swig_lib.experiments.config import EvalSettings
from swig_lib.experiments.evaluation.cross_anatomy import (
    EDGE_COLUMNS,
    boundary_band,
    cross_anatomy,
    edge_overshoot,
)
from swig_lib.experiments.evaluation.ranking import BASELINE
from swig_lib.experiments.subjects.dataset import Acquired

CSF_T1, WM_T1 = 3900.0, 700.0


def _step() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 × 20 × 2: CSF in columns x < 10 (pure CSF and CSF partial volume), WM beyond; all brain."""
    labels = np.full((20, 20, 2), 2, dtype=np.uint8)
    labels[:10] = 3
    labels[:10, :5] = 4  # CSF partial volume counts as CSF
    labels[10:, :5] = 5  # GM/WM partial volume counts as tissue
    q_h = np.where(np.isin(labels, (3, 4)), CSF_T1, WM_T1)
    return labels, q_h, np.ones(labels.shape, dtype=bool)


def test_boundary_band_geometry() -> None:
    labels, _, mask = _step()
    tissue, csf = boundary_band(labels, mask, band=2)
    rows = np.arange(20)
    assert np.array_equal(np.flatnonzero(tissue.any(axis=(1, 2))), [10, 11])  # within 2 voxels of CSF
    assert np.array_equal(np.flatnonzero(csf.any(axis=(1, 2))), [8, 9])
    assert tissue[10:12].all() and csf[8:10].all() and tissue.sum() == csf.sum() == 2 * len(rows) * 2
    mask[:, :, 1] = False
    tissue, csf = boundary_band(labels, mask, band=1)
    assert not (tissue[..., 1] | csf[..., 1]).any()  # outside the mask
    assert np.array_equal(np.flatnonzero(tissue[..., 0].any(axis=1)), [10]) and tissue[10, :, 0].all()
    assert np.array_equal(np.flatnonzero(csf[..., 0].any(axis=1)), [9]) and csf[9, :, 0].all()
    with pytest.raises(ValueError, match="band must be at least 1 voxel, got 0"):
        boundary_band(labels, mask, band=0)


def test_overshoot_of_the_reference_is_zero() -> None:
    labels, q_h, mask = _step()
    assert edge_overshoot(q_h, q_h, labels, mask) == dict.fromkeys(EDGE_COLUMNS, 0.0)


def test_relative_error_on_the_band_whatever_happens_outside() -> None:
    labels, q_h, mask = _step()
    tissue, csf = boundary_band(labels, mask, band=2)
    band = tissue | csf
    garbage = np.random.default_rng(0).uniform(0, 5000, q_h.shape)
    pred = np.where(band, q_h * 1.03, garbage)
    for value in edge_overshoot(pred, q_h, labels, mask).values():
        assert math.isclose(value, 0.03, rel_tol=1e-12)
    negative = edge_overshoot(np.where(band, q_h * 0.95, garbage), q_h, labels, mask)
    assert math.isclose(negative["edge_signed"], -0.05, rel_tol=1e-12)
    assert math.isclose(negative["edge_abs"], 0.05, rel_tol=1e-12)


def test_known_ringing() -> None:
    """Gibbs-like ringing a·g across the boundary, g = (−0.5, +1 | −1, +0.5) on columns 8, 9 | 10, 11."""
    labels, q_h, mask = _step()
    a = 100.0
    ringing = np.zeros(q_h.shape)
    ringing[8], ringing[9], ringing[10], ringing[11] = -0.5, 1.0, -1.0, 0.5
    pred = q_h + a * ringing
    pred[..., 0] += 777.0 * (np.arange(20)[:, None] % 3)  # slice 0 is not evaluated
    result = edge_overshoot(pred, q_h, labels, mask, slices=np.array([1]))
    n = 20  # voxels per column of the evaluated slice
    assert result["edge_signed"] == pytest.approx(0.0, abs=1e-15)  # the lobes cancel over the band
    assert result["edge_abs"] == pytest.approx(a * n * 3.0 / (n * (2 * CSF_T1 + 2 * WM_T1)), rel=1e-12)
    assert result["edge_signed_tissue"] == pytest.approx(-0.5 * a / (2 * WM_T1), rel=1e-12)
    assert result["edge_signed_csf"] == pytest.approx(0.5 * a / (2 * CSF_T1), rel=1e-12)


def test_empty_band_and_shape_errors() -> None:
    labels, q_h, mask = _step()
    no_csf = np.full(labels.shape, 2, dtype=np.uint8)
    assert all(math.isnan(v) for v in edge_overshoot(q_h, q_h, no_csf, mask).values())
    with pytest.raises(ValueError, match=r"shape mismatch: pred \(20, 20, 1\)"):
        edge_overshoot(q_h[..., :1], q_h, labels, mask)


class _Dataset:
    """A stand-in for swig_lib.experiments.subjects.dataset.Dataset: two test subjects in memory."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x, y = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
        radius = np.hypot(x - 11.5, y - 11.5)
        self.mask = np.repeat((radius < 9)[..., None], 3, axis=2)
        self.labels_ = np.where(self.mask, np.where(np.repeat((radius < 3)[..., None], 3, 2), 3, 2), 0)
        self.labels_ = self.labels_.astype(np.uint8)
        csf = self.labels_ == 3
        self.q_h = {sid: np.stack([np.where(csf, v_csf, v_wm) * (1 + 0.05 * rng.standard_normal(csf.shape))
                                   for v_csf, v_wm in ((100, 70), (3900, 700), (1700, 75))]) * self.mask
                    for sid in ("sub-01", "sub-02")}

    def subject_ids(self, split: str) -> list[str]:
        return list(self.q_h) if split == "test" else []

    def acquired(self, sid: str) -> Acquired:
        q_l = (self.q_h[sid] * 0.97).astype(np.float32)
        guides = {"T1w": q_l[1] / 1000, "T2w": q_l[2] / 100}
        return Acquired(sid, q_l, guides, self.mask, np.eye(4), lambda: np.zeros(0))

    def reference(self, sid: str) -> np.ndarray:
        return self.q_h[sid].astype(np.float32)

    def labels(self, sid: str) -> np.ndarray:
        return self.labels_


def test_cross_anatomy_table() -> None:
    torch.manual_seed(0)
    model = SwigResNet(("T1w", "T2w"), True, (100.0, 1000.0, 100.0), width=4, n_blocks=1, last_kernel=3)
    settings = EvalSettings(variants=("M12++",), interior_voxels=2, slice_stride=1, val_slice_stride=1,
                            min_brain_fraction=0.0,
                            batch_size=2)
    datasets = {"mni152": _Dataset(0), "synthsr": _Dataset(1)}
    results = cross_anatomy(datasets, {"trained on mni152": model}, settings)
    assert len(results.metrics) == 2 * 2 * 2 * 3 * 2  # tests × subjects × models × maps × regions
    assert len(results.edges) == 2 * 2 * 2 * 3
    assert list(results.metrics.columns) == ["model", "test", "subject", "map", "region", "ssim", "hfen"]
    assert set(results.edges.columns) == {"model", "test", "subject", "map", *EDGE_COLUMNS}
    ds = datasets["synthsr"]
    acq, q_h, labels = ds.acquired("sub-02"), ds.reference("sub-02"), ds.labels("sub-02")
    expected = map_metrics(acq.q_l, q_h, acq.mask, MAP_NAMES, slices=np.arange(3))
    rows = results.metrics.query("model == @BASELINE and test == 'synthsr' and subject == 'sub-02' "
                                 "and region == 'brain'").set_index("map")
    for name in MAP_NAMES:
        assert rows.loc[name, "ssim"] == expected[name]["ssim"] and rows.loc[name, "hfen"] == expected[name]["hfen"]
    edge = results.edges.query("model == @BASELINE and test == 'synthsr' and subject == 'sub-02' and map == 'T1'")
    assert edge.iloc[0]["edge_signed"] == edge_overshoot(acq.q_l[1], q_h[1], labels, acq.mask)["edge_signed"]
    assert math.isclose(edge.iloc[0]["edge_signed"], -0.03, rel_tol=1e-5)  # Q_l = 0.97 Q_h
    summary = results.summary()
    assert len(summary) == 2 * 2 * 3 and set(summary["model"]) == {BASELINE, "trained on mni152"}
    mean = results.metrics.query("model == 'trained on mni152' and test == 'mni152' and map == 'PD' "
                                 "and region == 'brain'")["ssim"].mean()
    assert summary.query("model == 'trained on mni152' and test == 'mni152' and map == 'PD'")["ssim"].item() == mean
    with pytest.raises(ValueError, match="the model name 'Q_l' is reserved for the baseline"):
        cross_anatomy(datasets, {BASELINE: model}, settings)
