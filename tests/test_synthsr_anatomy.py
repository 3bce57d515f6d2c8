"""Tests of the label-derived digital subjects (swig_lib.experiments.subjects.synthsr) and anatomy_source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from swig_lib.core.io import load_nifti
from swig_lib.experiments.config import load_profile
from swig_lib.experiments.subjects import dataset as data
from swig_lib.experiments.subjects import synthsr
from swig_lib.experiments.subjects.anatomy import TISSUE_VALUES, TISSUES, AnatomySettings, deformation, sample
from swig_lib.experiments.subjects.synthsr import (
    CLASS_TISSUE,
    CLASS_VALUES,
    CLASSES,
    FREESURFER_CLASSES,
    LABELS_FOLDER,
    LabelTemplate,
    SynthSRSettings,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "synthsr-labels"
#: DataSettings.to_dict() of the three profiles before the label source existed (MNI152 datasets
#: must keep matching their manifests).
MNI_SETTINGS = json.loads((Path(__file__).parent / "data" / "mni152_data_settings.json").read_text())


def _codes(brain: int) -> set[int]:
    codes, _ = load_nifti(synthsr.label_file(brain))
    return {int(c) for c in np.unique(np.rint(codes))}


def test_copy_is_intact_and_licensed() -> None:
    assert LABELS_FOLDER == ROOT / "swig_lib" / "datasets" / "synthsr-labels"
    sums = dict(reversed(line.split()) for line in (LABELS_FOLDER / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {f"brain{b}_labels.nii.gz" for b in synthsr.BRAINS} | {"LICENSE.txt"}
    for name, digest in sums.items():
        assert hashlib.sha256((LABELS_FOLDER / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (LABELS_FOLDER / "LICENSE.txt").read_text()
    readme = (LABELS_FOLDER / "README.md").read_text()
    assert synthsr.SOURCE_COMMIT in readme and "BBillot/SynthSR" in readme
    if SHARED.is_dir():  # the copy is the public originals, byte for byte
        for name in sums:
            assert (SHARED / name).read_bytes() == (LABELS_FOLDER / name).read_bytes(), name


def test_label_table_is_complete_for_the_five_maps() -> None:
    present = set().union(*(_codes(b) for b in synthsr.BRAINS)) - {0}
    assert present <= set(FREESURFER_CLASSES), sorted(present - set(FREESURFER_CLASSES))
    assert present >= {2, 3, 4, 10, 11, 12, 13, 16}  # the README's codes are really there
    assert set(FREESURFER_CLASSES.values()) == set(CLASSES)  # every class is reachable
    assert set(CLASS_VALUES) == set(CLASS_TISSUE) == set(CLASSES)
    assert set(CLASS_TISSUE.values()) == set(TISSUES)


def test_classify_maps_every_code_and_rejects_unknown_ones() -> None:
    codes = np.array([[0, 2, 3], [10, 29, 31]])
    classes = synthsr.classify(codes)
    assert classes.tolist() == [[0, CLASSES.index("WM") + 1, CLASSES.index("cortex") + 1],
                                [CLASSES.index("thalamus") + 1, CLASSES.index("WM") + 1,
                                 CLASSES.index("ventricle CSF") + 1]]
    with pytest.raises(ValueError, match=r"label codes \[99, 1000\] have no tissue class"):
        synthsr.classify(np.array([0, 2, 99, 1000]))


def test_tissue_values_are_distinct_and_ordered() -> None:
    deep = ["thalamus", "caudate", "putamen", "pallidum"]
    t1 = {name: CLASS_VALUES[name].t1 for name in CLASSES}
    assert len({(v.pd, v.t1, v.t2) for k, v in CLASS_VALUES.items() if k in [*deep, "cortex", "WM"]}) == 6
    # Iron: pallidum < putamen < caudate for T1 and T2 (Vymazal et al. 1999).
    assert t1["pallidum"] < t1["putamen"] < t1["caudate"] < t1["cortex"]
    assert CLASS_VALUES["pallidum"].t2 < CLASS_VALUES["putamen"].t2 < CLASS_VALUES["caudate"].t2
    assert all(TISSUE_VALUES["WM"].t1 < t1[n] < TISSUE_VALUES["GM"].t1 for n in deep)
    assert CLASS_VALUES["cortex"] == TISSUE_VALUES["GM"] and CLASS_VALUES["WM"] == TISSUE_VALUES["WM"]
    assert CLASS_VALUES["ventricle CSF"] == CLASS_VALUES["sulcal CSF"] == TISSUE_VALUES["CSF"]


def test_sulcal_csf_fills_narrow_gaps_and_lines_the_surface() -> None:
    wm, cortex, sulcal = (CLASSES.index(n) + 1 for n in ("WM", "cortex", "sulcal CSF"))
    classes = np.zeros((40, 30, 30), dtype=np.uint8)
    classes[8:14, 8:22, 8:22] = cortex  # block A
    classes[16:22, 8:22, 8:22] = wm  # block B: a 2-voxel gap (x = 14, 15) to A
    classes[32:36, 8:22, 8:22] = cortex  # block C: a 10-voxel gap (x = 22-31) to B
    out = synthsr.add_sulcal_csf(classes, closing_mm=3.0, shell_mm=1.0)
    assert np.array_equal(out[classes > 0], classes[classes > 0])  # labelled voxels keep their class
    assert (out[14:16, 9:21, 9:21] == sulcal).all()  # the narrow gap becomes CSF
    assert (out[26:28, 12:18, 12:18] == 0).all()  # the middle of the wide gap stays outside
    assert (out[22, 9:21, 9:21] == sulcal).all() and (out[31, 9:21, 9:21] == sulcal).all()  # 1 mm layer
    assert (out[23, 9:21, 9:21] == 0).all() and (out[8:14, 8:22, 6] == 0).all()  # but not 2 mm
    assert (out[8:14, 8:22, 7] == sulcal).all()
    no_closing = synthsr.add_sulcal_csf(classes, closing_mm=0.0, shell_mm=0.0)
    assert np.array_equal(no_closing, classes)


def _toy_template(smoothing_mm: float) -> LabelTemplate:
    """A 44 × 40 × 24 ball brain: WM core, cortex, a ventricle and a sulcal-CSF shell."""
    x, y, z = np.meshgrid(np.arange(44), np.arange(40), np.arange(24), indexing="ij")
    radius = np.sqrt((x - 21.5) ** 2 + (y - 19.5) ** 2 + ((z - 11.5) * 1.6) ** 2)
    classes = np.zeros(radius.shape, dtype=np.uint8)
    for name, r in (("sulcal CSF", 14), ("cortex", 12.5), ("WM", 10), ("thalamus", 5), ("ventricle CSF", 2.5)):
        classes[radius < r] = CLASSES.index(name) + 1
    return LabelTemplate(classes, np.eye(4), (0, 0, 0), 1, smoothing_mm)


def test_indicator_blocks_equal_the_whole_volume_and_sum_to_one() -> None:
    template = _toy_template(0.7)
    whole = [template.indicator(i, 0, 24) for i in range(len(CLASSES))]
    background = ndimage.gaussian_filter((template.classes == 0).astype(np.float32), 0.7, mode="nearest")
    np.testing.assert_allclose(sum(whole) + background, 1.0, atol=1e-5)
    for i in (CLASSES.index("cortex"), CLASSES.index("ventricle CSF")):
        np.testing.assert_array_equal(template.indicator(i, 9, 14), whole[i][..., 9:14])


def test_partial_volumes_sum_to_one_and_lie_in_the_unit_interval() -> None:
    settings = AnatomySettings(scale_sd=0.0, deform_mm=0.8, deform_scale_mm=8.0, fine_deform_mm=0.2)
    built = synthsr.label_anatomy(_toy_template(0.5), np.random.default_rng(0), settings, np.array([9, 11, 13]))
    fractions, mask = built.fractions, built.mask
    assert fractions.shape == (3, 44, 40, 3) and mask.any()
    assert fractions.min() >= 0.0 and fractions.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(fractions.sum(0)[mask], 1.0, atol=1e-5)
    assert (fractions[:, ~mask] == 0).all() and (built.maps[:, ~mask] == 0).all()
    mixed = (fractions.max(0) < 0.99) & mask
    assert mixed.sum() > 0.1 * mask.sum()  # sub-voxel partial volumes at every boundary
    assert set(built.tissue_values) == set(CLASSES)
    # Hard labels without deformation: every voxel is one class (up to the resampling's rounding).
    hard = synthsr.label_anatomy(_toy_template(0.0), np.random.default_rng(0), AnatomySettings.plain(),
                                 np.array([11]))
    inside = hard.fractions[:, hard.mask]
    assert ((inside < 1e-5) | (inside > 1 - 1e-5)).all()
    ventricle = _toy_template(0.0).classes[..., 11] == CLASSES.index("ventricle CSF") + 1
    assert (hard.fractions[TISSUES.index("CSF"), ..., 0][ventricle] > 1 - 1e-5).all()


def test_trilinear_resampling_is_the_partial_volume_of_a_voxel() -> None:
    """The module's claim: the mean over a unit cube at p of cube-wise constant values = trilinear at p."""
    rng = np.random.default_rng(1)
    volume = (rng.random((6, 6, 6)) > 0.5).astype(np.float32)
    n = 40  # midpoint rule, exact for cube boundaries on the 1/40 lattice: p on that lattice
    offsets = (np.arange(n) + 0.5) / n - 0.5
    for p, expected in (([1.5, 3.2, 2.9], 0.59), ([3.425, 1.8, 2.275], 0.450375)):
        grid = np.stack(np.meshgrid(*(p[a] + offsets for a in range(3)), indexing="ij"))
        cube_mean = volume[tuple(np.rint(grid).astype(int))].mean()
        trilinear = sample(torch.from_numpy(volume)[None], torch.tensor(p, dtype=torch.float32).view(3, 1))
        assert cube_mean == pytest.approx(expected, abs=1e-12)  # a partial volume, not a hard label
        assert float(trilinear) == pytest.approx(cube_mean, abs=1e-6)


def test_deterministic_per_seed_and_different_between_seeds() -> None:
    template, settings = _toy_template(0.5), AnatomySettings(deform_mm=0.8, deform_scale_mm=8.0)
    slices = np.array([10, 12])

    def build(seed: int) -> np.ndarray:
        return synthsr.label_anatomy(template, np.random.default_rng(seed), settings, slices).maps

    first = build(3)
    assert np.array_equal(first, build(3))
    assert not np.array_equal(first, build(4))
    coords_3 = deformation(template.shape, np.random.default_rng(3), settings, slices)[0]
    coords_4 = deformation(template.shape, np.random.default_rng(4), settings, slices)[0]
    assert float((coords_3 - coords_4).abs().max()) > 0.5  # different deformations (voxels)


def test_default_mni152_settings_are_unchanged() -> None:
    for name in ("smoke", "quick", "paper"):
        settings = data.DataSettings.from_profile(load_profile(name))
        assert settings.anatomy_source == "mni152" and settings.subject_brains() == [None] * settings.n_subjects
        assert json.dumps(settings.to_dict(), sort_keys=True) == json.dumps(MNI_SETTINGS[name], sort_keys=True)


def test_sources_and_splits() -> None:
    mix = load_profile("smoke", {"data.anatomy_source": "mix", "data.dataset": "mix-smoke",
                                 "data.synthsr.split": [1, 0, 2], "data.synthsr.brains": [[1, 2], [3], [4, 5]]})
    settings = data.DataSettings.from_profile(mix)
    assert settings.split == (2, 1, 2)
    assert settings.subject_brains() == [None, 1, None, 5, 4]  # label-derived subjects 0, 1, 2
    record = settings.to_dict()
    assert record["anatomy_source"] == "mix" and record["synthsr"]["split"] == [1, 0, 2]
    assert set(record["synthsr_labels"]) == {"brain1", "brain4", "brain5"}
    assert record["synthsr_classes"]["13"] == "pallidum"
    only = data.DataSettings.from_profile(load_profile("smoke", {"data.anatomy_source": "synthsr"}))
    assert only.subject_brains() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="anatomy_source 'brainweb': choose one of mni152, synthsr, mix"):
        data.DataSettings.from_profile(load_profile("smoke", {"data.anatomy_source": "brainweb"}))
    with pytest.raises(ValueError, match=r"synthsr.split \[3, 0, 0\] exceeds split \[2, 1, 2\]"):
        data.DataSettings.from_profile(load_profile("smoke", {"data.anatomy_source": "mix",
                                                              "data.synthsr.split": [3, 0, 0]}))
    with pytest.raises(ValueError, match="synthsr.brains must be three non-empty lists"):
        SynthSRSettings(brains=((1,), (6,), (2,)))
    assert SynthSRSettings.from_dict(SynthSRSettings().to_dict()) == SynthSRSettings()


def test_real_brain_template() -> None:
    template = synthsr.label_template(1, SynthSRSettings(), 12)
    mni_grid = data.mni152_template(12).shape[:2]
    assert template.shape[:2] == mni_grid
    inside = np.argwhere(template.classes > 0)
    assert inside[:, :2].min() >= 12 and (np.array(mni_grid) - 1 - inside[:, :2].max(0) >= 12).all()
    counts = np.bincount(template.classes.ravel(), minlength=len(CLASSES) + 1)
    assert (counts[1:] > 0).all()  # every class, sulcal CSF included
    assert 0.05 < counts[CLASSES.index("sulcal CSF") + 1] / counts[1:].sum() < 0.3
    # Slice z stands for MNI152 slice k = z + offset[2]: the axial WM centres of mass coincide.
    mni = data.mni152_template(12)
    wm = template.classes == CLASSES.index("WM") + 1
    k_mni = synthsr.axial_centre(mni.fractions[TISSUES.index("WM")]) + mni.offset[2]
    assert abs(synthsr.axial_centre(wm) + template.offset[2] - k_mni) <= 0.5


def test_swig_data_builds_a_label_dataset(tmp_path: Path) -> None:
    profile = load_profile("smoke", {
        "data.anatomy_source": "synthsr", "data.dataset": "synthsr-tiny", "data.n_subjects": 2,
        "data.split": [1, 0, 1], "data.slices": [88, 92], "data.slice_step": 2,
        "data.synthsr.brains": [[1], [1], [1]]})
    folder, reused = data.build_dataset(profile, tmp_path, progress=False, workers=1, log=lambda _: None)
    assert not reused and data.build_dataset(profile, tmp_path, progress=False, workers=1)[1]  # then reused
    ds = data.load_dataset(profile, tmp_path, build=False)
    assert ds.settings["anatomy_source"] == "synthsr" and ds.manifest["slices"] == [88, 90]
    assert [r["synthsr_brain"] for r in ds.manifest["subjects"].values()] == [1, 1]
    assert set(ds.manifest["subjects"]["sub-01"]["tissue_values"]) == set(CLASSES)
    assert ds.manifest["shape"] == [*data.mni152_template(12).shape[:2], 2]
    q_h, labels, acq = ds.reference("sub-02"), ds.labels("sub-02"), ds.acquired("sub-02")
    assert set(np.unique(labels[acq.mask])) >= {1, 2, 3, 4}  # GM, WM, CSF and CSF partial volume
    redrawn = ds.anatomy("sub-02")
    np.testing.assert_allclose(redrawn.maps, q_h, rtol=1e-5, atol=1e-3)
    assert not np.array_equal(q_h, ds.reference("sub-01"))  # two subjects of one brain differ
