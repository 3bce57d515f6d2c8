"""Tests of the cross-sequence scores (crossseq.scoring) and the sulcal CSF (crossseq.sulci)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _crossseq import phantom

from swig_lib.experiments.crossseq.acquisition import image_protocols, synthesize
from swig_lib.experiments.crossseq.scoring import (
    map_scores,
    match_intensity,
    synthesis_scores,
    synthesized_images,
    tissue_errors,
)
from swig_lib.experiments.crossseq.settings import REFERENCE
from swig_lib.experiments.crossseq.sulci import sulcal_csf, sulcal_flair_errors, zoom_window
from swig_lib.experiments.crossseq.tables import acq1_versus_acq5, table2


def test_identical_images_give_ssim_one_and_hfen_zero() -> None:
    maps, mask, _ = phantom()
    protocols = image_protocols()
    acquired = {c: synthesize(p, maps) * mask for c, p in protocols.items()}
    slices = np.arange(4)
    for match, scale in (("none", 1.0), ("affine", 3.0)):
        truth = {c: scale * a + 7.0 * (scale != 1) * mask for c, a in acquired.items()}
        images = synthesized_images({("Acq5", "Q_l"): maps}, truth, protocols, mask, slices, match)
        rows = pd.DataFrame(synthesis_scores(images, truth, mask, slices))
        assert len(rows) == 3 * 4 and set(rows["contrast"]) == {"T1w", "T2w", "FLAIR"}
        np.testing.assert_allclose(rows["ssim"], 1.0, atol=1e-6)
        np.testing.assert_allclose(rows["hfen"], 0.0, atol=1e-5)
    summary = table2(rows)
    assert summary.loc[("Acq5", "T1w", "Q_l"), "ssim_mean"] == pytest.approx(1.0)
    assert summary.loc[("Acq5", "T1w", "Q_l"), "n"] == 4


def test_match_intensity_recovers_an_affine_map() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(10, 10))
    region = np.ones((10, 10), dtype=bool)
    np.testing.assert_allclose(match_intensity(image, 2.5 * image - 4.0, region), 2.5 * image - 4.0,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="non-constant"):
        match_intensity(np.ones((4, 4)), image[:4, :4], np.ones((4, 4), dtype=bool))


def test_tissue_errors_and_the_acq1_versus_acq5_table() -> None:
    maps, mask, labels = phantom()
    slices = np.array([0, 2])
    sets = {(p, s): maps * f for (p, s), f in {("Acq1", "Q_l"): 1.2, ("Acq1", "SR"): 1.05,
                                                ("Acq5", "Q_l"): 1.1, ("Acq5", "SR"): 1.02}.items()}
    tissue = pd.DataFrame(tissue_errors(sets, maps, labels, slices))
    assert set(tissue["tissue"]) == {"WM", "GM"}
    row = tissue[(tissue["protocol"] == "Acq1") & (tissue["source"] == "Q_l")]
    np.testing.assert_allclose(row["mape"], 20.0, rtol=1e-5)
    assert (row["n_voxels"] == 2 * (labels[..., 0] == 2).sum()).any()
    scores = pd.DataFrame(map_scores(sets, maps, mask, slices))
    table = acq1_versus_acq5(scores.assign(subject="s"), tissue.assign(subject="s"))
    assert table.loc[("mape", "T1", "WM"), "SR(Acq1) ≥ Acq5"]  # 5 % < 10 %
    assert not table.loc[("mape", "T1", "WM"), "Acq1"] <= table.loc[("mape", "T1", "WM"), "Acq5"]


def test_sulcal_csf_and_zoom_window_follow_the_labels() -> None:
    labels = np.zeros((80, 80), dtype=np.uint8)
    mask = np.zeros((80, 80), dtype=bool)
    mask[5:75, 5:75] = True
    labels[mask] = 1
    labels[38:42, 38:42] = 3  # "ventricle": deep
    labels[6:9, 60:70] = 3  # sulcus near the surface
    labels[9, 60:70] = 4  # its partial-volume rim
    sulci = sulcal_csf(labels, mask)
    assert sulci[6:10, 60:70].all() and not sulci[38:42, 38:42].any()
    x0, y0, size = zoom_window(labels, mask, size=20)
    assert size == 20 and x0 <= 6 and x0 + size >= 10 and y0 <= 60 and y0 + size >= 70

    truth = np.where(mask, 10.0, 0.0)[..., None]
    images = {(REFERENCE, REFERENCE, "FLAIR"): truth,
              ("Acq1", "Q_l", "FLAIR"): truth + 2.0 * sulci[..., None],
              ("Acq1", "Q_l", "T1w"): truth}
    rows = sulcal_flair_errors(images, sulci[..., None], mask[..., None], np.array([0]))
    assert rows == [{"protocol": "Acq1", "source": "Q_l", "error": pytest.approx(20.0),
                     "n_voxels": int(sulci.sum())}]
