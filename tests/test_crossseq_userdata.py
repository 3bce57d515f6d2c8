"""Tests of the cross-sequence evaluation of users' own NIfTI data (crossseq.userdata) and its figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from _crossseq import checkpoint, phantom

from swig_lib.core.io import DataValidationError, save_nifti
from swig_lib.experiments.crossseq import figures as crossseq_figures
from swig_lib.experiments.crossseq.acquisition import image_protocols, synthesize
from swig_lib.experiments.crossseq.tables import table2
from swig_lib.experiments.crossseq.userdata import evaluate_user_data

matplotlib.use("Agg")


def _user_files(tmp_path: Path) -> dict:
    maps, mask, _ = phantom()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    files = {"mask": save_nifti(tmp_path / "mask.nii.gz", mask, affine)}
    noisy = maps * (1 + 0.05 * np.random.default_rng(0).normal(size=maps.shape)) * mask
    for name, data in (("fast", noisy), ("slow", maps)):
        files[name] = {m: save_nifti(tmp_path / f"{name}_{m}.nii.gz", data[i], affine)
                       for i, m in enumerate(("PD", "T1", "T2"))}
    for contrast, protocol in image_protocols().items():
        files[contrast] = save_nifti(tmp_path / f"{contrast}.nii.gz", 3 * synthesize(protocol, maps) * mask,
                                     affine)
    return files


def test_user_data_path_on_small_nifti_files(tmp_path: Path) -> None:
    files = _user_files(tmp_path)
    model = checkpoint(tmp_path / "M12++.pt")
    flair = vars(image_protocols()["FLAIR"])
    result = evaluate_user_data(model, {"fast": files["fast"], "slow": files["slow"]},
                                t1w=files["T1w"], t2w=files["T2w"], flair=files["FLAIR"],
                                mask=files["mask"], flair_protocol=flair)
    table = result.synthesis
    assert len(table) == 2 * 2 * 3 * 4  # map sets x sources x contrasts x slices
    assert np.isfinite(table[["ssim", "hfen"]].to_numpy()).all()
    # The exact maps ("slow") reproduce the acquired images after the affine match.
    slow = table[(table["protocol"] == "slow") & (table["source"] == "Q_l")]
    np.testing.assert_allclose(slow["ssim"], 1.0, atol=1e-5)
    fast = table2(table).loc[("fast", "T1w", "Q_l"), "ssim_mean"]
    assert fast < 0.99
    assert set(result.example.synthesized) >= {("fast", "SR", "FLAIR"), ("slow", "Q_l", "T1w")}
    for figure in (crossseq_figures.fig4a_maps(result.example), crossseq_figures.fig4b_guides(result.example),
                   crossseq_figures.fig4c_flair(result.example, zoom=16)):
        assert figure.axes
        matplotlib.pyplot.close(figure)

    with pytest.raises(DataValidationError, match="flair_protocol"):
        evaluate_user_data(model, {"fast": files["fast"]}, files["T1w"], files["T2w"], files["FLAIR"])
    with pytest.raises(DataValidationError, match="guide"):
        evaluate_user_data(model, {"fast": files["fast"]}, t1w=files["T1w"])
    moved = save_nifti(tmp_path / "moved.nii.gz", np.ones((40, 36, 4)), np.diag([1.0, 1.0, 3.0, 1.0]))
    with pytest.raises(DataValidationError, match="affine"):
        evaluate_user_data(model, {"fast": files["fast"]}, files["T1w"], moved, mask=files["mask"])


def test_user_data_report_is_the_chapter_view_of_evaluate_user_data(tmp_path: Path) -> None:
    from swig_lib.experiments.crossseq.tables import format_table2
    from swig_lib.experiments.crossseq.userdata import user_data_report

    files = _user_files(tmp_path)
    model = checkpoint(tmp_path / "M12++.pt")
    assert user_data_report(None, model, ("T1w", "T2w")) is None
    user_data = {"maps": {"fast": files["fast"]}, "t1w": files["T1w"], "t2w": files["T2w"], "mask": files["mask"]}
    table, example = user_data_report(user_data, model, ("T1w", "T2w"))
    direct = evaluate_user_data(model, {"fast": files["fast"]}, t1w=files["T1w"], t2w=files["T2w"],
                                mask=files["mask"])
    pd.testing.assert_frame_equal(table, format_table2(table2(direct.synthesis), ("T1w", "T2w"), paper=False))
    assert example.subject == direct.example.subject and example.slice == direct.example.slice
