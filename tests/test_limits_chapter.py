"""Tests of the limits chapter's settings, summaries and guidance (swig_lib.experiments.limits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from swig_lib.experiments.arms.guided import FilterParams
from swig_lib.experiments.config import PROFILES, load_profile
from swig_lib.experiments.limits import chapter as C
from swig_lib.experiments.limits.settings import LimitsSettings


def test_settings_of_every_profile() -> None:
    for name in PROFILES:
        settings = LimitsSettings.from_profile(load_profile(name))
        assert settings.ms_radii_mm == (1.5, 3.0, 5.0) and settings.tumour_mm == (5.0, 14.0)
        assert settings.keep_gain == 0.5 and min(settings.fse_etl) >= 1
    quick = LimitsSettings.from_profile(load_profile("quick"))
    assert (quick.n_subjects, quick.slices_per_subject, quick.protocol_pct[0]) == (3, 3, -30.0)
    with pytest.raises(ValueError, match=r"need 0 <= core < outer radius \(tumour_mm \[14.0, 5.0\]\)"):
        LimitsSettings.from_profile(load_profile("smoke", {"limits.tumour_mm": [14.0, 5.0]}))
    with pytest.raises(ValueError, match="keep_gain must lie in"):
        LimitsSettings.from_profile(load_profile("smoke", {"limits.keep_gain": 0.0}))
    with pytest.raises(TypeError, match=r"setting limits\.fse_etl\[0\] must be int"):
        LimitsSettings.from_profile(load_profile("smoke", {"limits.fse_etl": [8.5]}))


def test_white_matter_slices() -> None:
    mask = np.zeros((6, 6, 5), bool)
    mask[1:5, 1:5, :4] = True  # slice 4 has no brain
    labels = np.zeros((6, 6, 5), np.uint8)
    for z, count in enumerate((3, 9, 1, 5)):
        labels[..., z].flat[:count] = 2
    assert C.white_matter_slices(labels, mask, 0.25, 2).tolist() == [1, 3]
    assert C.white_matter_slices(labels, mask, 0.25, 0).tolist() == [0, 1, 2, 3]


def test_guided_maps_with_radius_zero_return_q_l_in_the_mask() -> None:
    rng = np.random.default_rng(0)
    q_l = rng.uniform(50, 1000, (3, 12, 10, 2)).astype(np.float32)
    guides = {g: rng.normal(size=(12, 10, 2)).astype(np.float32) for g in ("T1w", "T2w")}
    mask = np.zeros((12, 10, 2), bool)
    mask[2:10, 2:8] = True
    params = {name: FilterParams("guided", radius=0) for name in ("PD", "T1", "T2")}
    assert np.allclose(C.guided_maps(q_l, guides, mask, params), q_l * mask, rtol=1e-5)
    one = C.guided_maps(q_l, {"T2w": guides["T2w"]}, mask, {n: FilterParams("guided", 2, 0.1) for n in params})
    assert one.shape == q_l.shape and not one[:, ~mask].any()


def _curves() -> pd.DataFrame:
    """Curves of one map and two kinds with known gains: Q_l SSIM 0.90 / HFEN 0.20, SWIG 0.94 / 0.10."""
    rows = [{"kind": "none", "size": 0.0, "method": "Q_l", "map": "T1", "ssim": 0.90, "hfen": 0.20}]
    for method in ("SWIG", "guided filter"):
        for size, ssim, hfen in ((0.0, 0.94, 0.10), (1.0, 0.93, 0.11), (2.0, 0.91, 0.14), (3.0, 0.89, 0.30)):
            rows.append({"kind": "shift", "size": size, "method": method, "map": "T1", "ssim": ssim, "hfen": hfen})
        for size, ssim in ((-10.0, 0.92), (0.0, 0.94), (10.0, 0.93)):
            rows.append({"kind": "TE", "size": size, "method": method, "map": "T1", "ssim": ssim, "hfen": 0.10})
    table = pd.DataFrame(rows)
    return C.mismatch_curves(pd.concat([table.assign(subject="a"), table.assign(subject="b")]))


def test_curves_retained_gain_and_tolerable_size() -> None:
    curves = _curves()
    shift = curves[(curves["kind"] == "shift") & (curves["method"] == "SWIG")].set_index("size")
    assert shift["d_ssim"].tolist() == pytest.approx([0.0, -0.01, -0.03, -0.05])
    assert shift["d_hfen"].tolist() == pytest.approx([0.0, 0.01, 0.04, 0.20])
    retained = C.retained_gain(curves, "shift", "SWIG")  # SSIM gain 0.04, HFEN gain 0.10; worst of the two
    assert retained.tolist() == pytest.approx([1.0, 0.75, 0.25, -1.0])
    assert C.tolerable_size(retained, 0.5) == 1.0 and C.tolerable_size(retained, 0.2) == 2.0
    assert C.tolerable_size(retained, 0.9) == 0.0
    te = C.retained_gain(curves, "TE", "SWIG")  # HFEN gain unchanged; SSIM −10 %: 0.5, +10 %: 0.75
    assert te.tolist() == pytest.approx([0.5, 1.0, 0.75])
    assert C.tolerable_size(te, 0.7) == 0.0 and C.tolerable_size(te, 0.45) == 10.0  # both signs must keep it


def test_guidance_table_and_advice() -> None:
    curves = _curves()
    table = C.guidance_table(curves, 0.5, ("shift", "TE"))
    text = C.guidance_text(table)
    assert text.index.tolist() == ["shift", "TE"]
    row = table.loc[("shift", "SWIG")]
    assert (row["tolerable"], row["smallest"], row["largest"]) == (1.0, 1.0, 3.0)
    assert row["retained_at_largest"] == pytest.approx(-1.0)
    assert table.loc[("TE", "SWIG"), "retained_at_largest"] == pytest.approx(0.5)
    assert text.loc["shift", ("tolerable", "SWIG")] == "1 mm"
    assert text.loc["TE", ("gain kept there", "guided filter")] == "50 %"
    assert C.advice(table, "shift", 0.5) == (
        "With guides shifted by 3 mm, SWIG falls below Q_l (-100 % of its gain); the guided filter falls below Q_l "
        "(-100 % of its gain). To keep at least 50 % of SWIG's gain, register the guides to the maps within 1 mm.")
    assert C.advice(C.guidance_table(curves, 0.4, ("TE",)), "TE", 0.4).endswith(
        "Every tested size keeps at least 40 % of SWIG's gain.")
    assert C.advice(C.guidance_table(curves, 0.8, ("shift",)), "shift", 0.8).endswith(
        "Even the smallest tested size, 1 mm, costs SWIG more than 20 % of its gain: stay well below it.")
    assert C.percent_kept(-3.2) == "< −100 %" and C.percent_kept(0.456) == "46 %"
    assert [C.format_size(k, s) for k, s in (("bias", 0.1), ("TI", 20.0), ("FSE", 16.0), ("shift", 0.5),
                                             ("rotation", 2.0), ("noise", 0.02))] == [
        "10 %", "±20 %", "16 echoes", "0.5 mm", "2°", "2 %"]


def test_lesion_summary() -> None:
    rows = []
    for subject, shift in (("a", 0.0), ("b", 2.0)):
        for case, contrast, bias in (("none", 1.0, 0.0), ("both", 18.0, -2.0), ("maps only", 12.0, -4.0),
                                     ("guides only", 5.0, 1.0)):
            rows.append({"subject": subject, "lesion": "MS 3 mm", "kind": "ms", "radius_mm": 3.0, "part": "lesion",
                         "case": case, "method": "SWIG", "map": "T2", "contrast": contrast + shift,
                         "true_contrast": 20.0 + shift, "bias": bias})
    summary = C.lesion_summary(pd.DataFrame(rows))
    row = summary.loc[("MS 3 mm", "lesion", "SWIG", "T2")]
    assert row["true"] == 21.0
    assert row["kept_both"] == pytest.approx(100 * 19 / 21) and row["kept_maps_only"] == pytest.approx(100 * 13 / 21)
    assert row["invented"] == pytest.approx(100 * (6 - 2) / 21)
    assert (row["bias_both"], row["bias_maps_only"]) == (-2.0, -4.0)


def test_missing_summary_compares_each_way_with_its_method_with_both_guides() -> None:
    curves = _curves()
    rows = [{"missing": "T2w", "method": way, "subject": subject, "map": "T1", "ssim": ssim, "hfen": 0.2}
            for subject in ("a", "b") for way, ssim in (("SWIG, stand-in guide from Q_l", 0.92),
                                                        ("guided filter, remaining guide", 0.90))]
    summary = C.missing_summary(pd.DataFrame(rows), curves)
    assert summary.loc[("T2w", "SWIG, stand-in guide from Q_l", "T1"), "d_ssim"] == pytest.approx(0.92 - 0.94)
    assert summary.loc[("T2w", "guided filter, remaining guide", "T1"), "d_hfen"] == pytest.approx(0.2 - 0.10)


def test_run_limits_needs_the_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoints/M12\+\+\.pt: no checkpoint of M12\+\+; train it first "
                                                 r"\(notebook 02, or `swig train --profile smoke --variant M12\+\+`\)"):
        C.run_limits(load_profile("smoke"), "M12++", tmp_path / "data", tmp_path / "results")
