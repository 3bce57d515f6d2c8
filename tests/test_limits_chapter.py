"""Tests of the limits chapter's settings, summaries and guidance (swig_lib.experiments.limits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from swig_lib.core.io import MissingFileError
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.arms.guided import FilterParams
from swig_lib.experiments.config import PROFILES, load_profile
from swig_lib.experiments.limits import chapter as C
from swig_lib.experiments.limits import mismatch as M
from swig_lib.experiments.limits.settings import LimitsSettings
from swig_lib.experiments.subjects.anatomy import TISSUE_VALUES, TISSUES, mix_tissues
from swig_lib.experiments.subjects.dataset import acquire, tissue_labels
from swig_lib.experiments.training.checkpoints import CHECKPOINT_FORMAT, save_checkpoint
from swig_lib.experiments.training.variants import GUIDE_ORDER


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
        "With guides shifted by 3 mm, SWIG falls below Q_l (−100 % of its gain); the guided filter falls below Q_l "
        "(−100 % of its gain). To keep at least 50 % of SWIG's gain, register the guides to the maps within 1 mm.")
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


def _model_checkpoint(path: Path, use_ql: bool) -> torch.nn.Module:
    """A small seeded SwigResNet (Q_l and both guides, or the guides only), saved as a checkpoint at ``path``."""
    torch.manual_seed(1)
    model = SwigResNet(GUIDE_ORDER, use_ql, [70.0, 1000.0, 80.0], width=4, n_blocks=1).eval()
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": model.spec, "model_state": model.state_dict(),
                           "log": []})
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[C.LimitsSubject, dict[str, C.Method]]:
    """A 64 x 64 disc subject (WM core, GM ring, CSF rim) on 2 slices, and every method of :data:`C.METHODS`."""
    x, y = np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, indexing="ij")
    r = np.repeat(np.hypot(x, y)[..., None], 2, axis=2)
    wm, csf = np.clip(21.5 - r, 0.0, 1.0), np.clip(r - 27.5, 0.0, 1.0)
    mask = r < 30.0
    fractions = np.where(mask, np.stack([1.0 - wm - csf, wm, csf]), 0.0)
    q_h = (mix_tissues(fractions, [(TISSUE_VALUES[t].pd, TISSUE_VALUES[t].t1, TISSUE_VALUES[t].t2) for t in TISSUES])
           * mask).astype(np.float32)
    acq = acquire(q_h, mask, np.eye(4), 0.5, 0.1, 5)
    slices = np.arange(2)
    subject = C.LimitsSubject("sub-x", 0, q_h, mask, tissue_labels(fractions, mask), np.eye(4), 5, slices, q_h,
                              np.asarray(acq.q_l, np.float32), {g: np.asarray(v) for g, v in acq.guides.items()}, mask)
    folder = tmp_path_factory.mktemp("arms")
    for name, file in C.ARM_CHECKPOINTS.items():
        _model_checkpoint(folder / file, use_ql=name != "Q2MRI-like")
    methods = {"SWIG": C.swig_method(_model_checkpoint(folder / "swig.pt", True), 2),
               "guided filter": lambda q_l, guides, m: C.guided_maps(
                   q_l, guides, m, {n: FilterParams("guided", 2, 0.01) for n in ("PD", "T1", "T2")})}
    return subject, methods | C.arm_methods(folder, "smoke", "cpu", 2)


def _settings(**sizes) -> LimitsSettings:
    base = {"n_subjects": 1, "slices_per_subject": 2, "seed": 0, "ms_radii_mm": (1.5, 3.0), "tumour_mm": (3.0, 7.0),
            "ring_mm": 2.0, "bias": (), "protocol_pct": (), "fse_etl": (), "shift_mm": (), "rotation_deg": (),
            "noise": (), "keep_gain": 0.5}
    return LimitsSettings(**(base | sizes))


def test_lesion_and_mismatch_tables_hold_every_method(tiny) -> None:
    subject, methods = tiny
    rows, crops = C.lesion_rows(subject, _settings(), 0.5, 0.1, methods)
    table = pd.DataFrame(rows)
    assert tuple(table["method"].unique()) == C.METHODS
    assert len(table) == 4 * len(C.METHODS) * 3 * 4  # 2 MS lesions + tumour core and oedema; cases; maps
    assert {f"{m}, {case}" for m in C.METHODS[1:] for case in C.CASES} <= set(crops[0].maps)
    # Q2MRI-like reads the guides alone: lesions only in the maps leave it exactly as without lesions
    q2 = table[table["method"] == "Q2MRI-like"].set_index(["lesion", "part", "map", "case"])["contrast"]
    assert np.array_equal(q2.xs("maps only", level="case"), q2.xs("none", level="case"))
    mismatch, missing, _ = C.mismatch_rows(subject, _settings(shift_mm=(1.0,)), methods, {})
    assert set(pd.DataFrame(mismatch)["method"]) == set(C.METHODS)
    assert set(pd.DataFrame(missing)["method"]) == set(C.MISSING_WAYS) - {"SWIG trained without it"}
    summary = C.lesion_summary(table)
    assert set(summary.index.get_level_values("method")) == set(C.METHODS)
    assert set(C.lesion_advice(summary)) == {"both", "maps_only", "guides_only", "tumour", "act_session",
                                             "act_invented"}


def test_zero_size_mismatches_reproduce_every_method_exactly(tiny) -> None:
    subject, methods = tiny
    zero = _settings(bias=(0.0,), protocol_pct=(0.0,), shift_mm=(0.0,), rotation_deg=(0.0,), noise=(0.0,))
    rows, _, _ = C.mismatch_rows(subject, zero, methods, {})
    table = pd.DataFrame(rows)
    kinds = ["bias", *M.PROTOCOL_PARAMETERS, "shift", "rotation", "noise"]
    for kind in kinds:
        for method in methods:
            scores = table[(table["kind"] == kind) & (table["method"] == method)]
            assert len(scores) == 6  # unperturbed, then size 0: three maps each
            first, again = scores.iloc[:3][["ssim", "hfen"]].to_numpy(), scores.iloc[3:][["ssim", "hfen"]].to_numpy()
            assert np.array_equal(first, again), (kind, method)


def test_missing_arm_checkpoint_names_the_file_and_the_chapter(tmp_path: Path) -> None:
    checkpoints = tmp_path / "results" / "smoke" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "M12++.pt").touch()  # SWIG's checkpoint exists; the arms' do not
    with pytest.raises(MissingFileError) as error:
        C.run_limits(load_profile("smoke"), "M12++", tmp_path / "data", tmp_path / "results")
    assert str(error.value) == (f"{checkpoints / 'arm-supervised.pt'}: no checkpoint of the supervised arm; it is "
                                f"trained by the comparison chapter: run notebook 08_comparison first (`swig reproduce "
                                f"--profile smoke --only 08`)")
    _model_checkpoint(checkpoints / "arm-supervised.pt", True)
    with pytest.raises(MissingFileError, match=r"arm-q2mri\.pt: no checkpoint of the Q2MRI-like arm; it is trained"):
        C.arm_methods(checkpoints, "smoke", "cpu", 2)
