"""Tests of the digital subjects (swig_lib.experiments.subjects.anatomy and .dataset) on the smoke profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from swig_lib.cli import main as cli_main
from swig_lib.core.io import DataValidationError
from swig_lib.experiments.config import Profile, load_profile
from swig_lib.experiments.subjects import anatomy
from swig_lib.experiments.subjects import dataset as data
from swig_lib.experiments.subjects.anatomy import (
    MAP_MAX,
    TISSUE_VALUES,
    AnatomySettings,
)


def _tiny(**overrides: object) -> dict:
    """Smoke profile shrunk to 2 subjects x 2 slices: for the tests that build several times."""
    settings = {"data.n_subjects": 2, "data.split": [1, 0, 1], "data.slices": [88, 92],
                "data.slice_step": 2}
    settings.update({f"data.{k}": v for k, v in overrides.items()})
    return load_profile("smoke", settings)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, data.Dataset]:
    """The tiny dataset, built once for the module by two worker processes."""
    root = tmp_path_factory.mktemp("data")
    data.build_dataset(_tiny(), root, progress=False, workers=2)
    return root, data.load_dataset(_tiny(), root, build=False, progress=False)


def test_split_sizes_follow_profile(tiny: tuple[Path, data.Dataset]) -> None:
    for name in ("smoke", "quick", "paper"):
        profile = load_profile(name)["data"]
        split = data.DataSettings.from_profile(load_profile(name)).split_ids()
        assert [len(split[s]) for s in data.SPLITS] == list(profile["split"])
        ids = sum(split.values(), [])
        assert len(set(ids)) == profile["n_subjects"] and ids[0] == "sub-01"
    _, ds = tiny
    assert ds.subject_ids("train") == ["sub-01"] and ds.subject_ids("test") == ["sub-02"]
    assert ds.subject_ids("val") == []
    with pytest.raises(ValueError, match="unknown split"):
        ds.subject_ids("training")


def test_acquired_and_reference(tiny: tuple[Path, data.Dataset]) -> None:
    _, ds = tiny
    acq = ds.acquired("sub-01")
    assert acq.q_l.shape[0] == 3 and acq.q_l.shape[-1] == 2 and acq.q_l.dtype == np.float32
    assert set(acq.guides) == {"T1w", "T2w"} and acq.mask.dtype == bool
    assert acq.mask.shape[0] % 2 == 0 and acq.mask.shape[1] % 2 == 0  # even in-plane sizes
    assert not hasattr(acq, "q_h")
    np.testing.assert_allclose(np.diag(acq.affine)[:3], [1, 1, ds.settings["slice_step"]])
    assert ds.manifest["slices"] == [88, 90]
    np.testing.assert_allclose(acq.affine[2, 3], 88 - 72)  # world z of MNI152 slice k is k − 72 mm
    q_h = ds.reference("sub-01")
    assert q_h.shape == acq.q_l.shape
    assert ds.settings["keep"] == 0.5 and ds.settings["sigma"] == 0.1


def test_maps_lie_in_documented_ranges(tiny: tuple[Path, data.Dataset]) -> None:
    _, ds = tiny
    for sid in ("sub-01", "sub-02"):
        acq, q_h = ds.acquired(sid), ds.reference(sid)
        for maps in (q_h, acq.q_l):
            assert np.all(maps >= 0) and np.all(maps[:, ~acq.mask] == 0)
            for m, upper in enumerate(MAP_MAX):
                assert maps[m].max() <= upper
        inside = q_h[:, acq.mask]
        assert np.all(inside > 0)
        assert TISSUE_VALUES["WM"].pd * 0.8 < np.median(inside[0]) < TISSUE_VALUES["CSF"].pd
        assert TISSUE_VALUES["WM"].t1 * 0.8 < np.median(inside[1]) < TISSUE_VALUES["GM"].t1 * 1.3
        assert TISSUE_VALUES["WM"].t2 * 0.8 < np.median(inside[2]) < TISSUE_VALUES["GM"].t2 * 1.3
        assert inside[1].max() > 3000 and inside[2].max() > 1000  # some pure CSF


def test_tissue_labels(tiny: tuple[Path, data.Dataset]) -> None:
    fractions = np.array([[0.95, 0.5, 0.0, 0.6, 0.3], [0.05, 0.45, 0.0, 0.0, 0.0],
                          [0.0, 0.05, 1.0, 0.4, 0.7]])
    mask = np.array([True, True, True, True, False])
    labels = data.tissue_labels(fractions[..., None, None], mask[:, None, None])
    # GM, GM/WM partial volume, CSF, CSF partial volume, outside
    np.testing.assert_array_equal(labels[:, 0, 0], [1, 5, 3, 4, 0])
    with pytest.raises(ValueError, match="purity"):
        data.tissue_labels(fractions, np.ones(5, bool), purity=0.5)
    _, ds = tiny
    labels, acq, q_h = ds.labels("sub-01"), ds.acquired("sub-01"), ds.reference("sub-01")
    assert labels.dtype == np.uint8 and labels.shape == acq.mask.shape
    np.testing.assert_array_equal(labels > 0, acq.mask)
    assert set(np.unique(labels)) == set(data.TISSUE_LABELS)
    for label, name in ((1, "GM"), (2, "WM"), (3, "CSF")):  # pure voxels carry their tissue's T1
        assert abs(np.median(q_h[1][labels == label]) / TISSUE_VALUES[name].t1 - 1) < 0.2


def test_subjects_differ(tiny: tuple[Path, data.Dataset]) -> None:
    _, ds = tiny
    a, b = ds.reference("sub-01"), ds.reference("sub-02")
    assert np.mean(np.abs(a[1] - b[1])) > 50.0  # ms, mean T1 difference
    seeds = [ds.manifest["subjects"][sid]["noise_seed"] for sid in ("sub-01", "sub-02")]
    assert seeds[0] != seeds[1]


def test_stored_lr_maps_are_the_fit_of_the_recomputed_contrasts(tiny: tuple[Path, data.Dataset]) -> None:
    _, ds = tiny
    acq = ds.acquired("sub-02")
    contrasts = acq.lr_contrasts()
    assert contrasts.shape == (12, *acq.mask.shape) and contrasts.dtype == np.float32
    np.testing.assert_array_equal(contrasts, acq.lr_contrasts())
    np.testing.assert_allclose(data.fit_maps(contrasts, acq.mask), acq.q_l, rtol=1e-5, atol=1e-3)
    # The noise is seeded: another seed gives other contrasts (noise σ = 0.1 a.u.).
    other = data.lr_contrasts(ds.reference(acq.subject), 0.5, 0.1, seed=12345)
    assert 0 < np.abs(other - contrasts).max() < 1.0


def test_build_is_deterministic_and_independent_of_workers(tiny: tuple[Path, data.Dataset],
                                                            tmp_path: Path) -> None:
    root, ds = tiny  # built by 2 processes; here by one
    folder, reused = data.build_dataset(_tiny(), tmp_path, progress=False, workers=1)
    assert not reused
    sums = [{sid: {k: f["sha256"] for k, f in entry["files"].items()}
             for sid, entry in manifest["subjects"].items()}
            for manifest in (ds.manifest, json.loads((folder / data.MANIFEST).read_text()))]
    assert sums[0] == sums[1]
    assert not list(folder.rglob("*.tmp*"))  # atomic writes leave no temporary file


def test_reuse_and_rebuild(tiny: tuple[Path, data.Dataset], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root, ds = tiny
    profile = _tiny()
    folder = tmp_path / ds.folder.name
    shutil.copytree(ds.folder, folder)
    assert data.build_dataset(profile, tmp_path, progress=False) == (folder, True)

    victim = folder / data.subject_files("sub-02")["T2w"]
    content = bytearray(victim.read_bytes())
    content[-10] ^= 0xFF
    victim.write_bytes(bytes(content))
    settings = data.DataSettings.from_profile(profile)
    assert data.check_dataset(folder, settings) == f"checksum mismatch for {data.subject_files('sub-02')['T2w']}"
    stale = [victim.parent / f".{victim.name}.k1ll3d.tmp.nii.gz", folder / ".manifest.json.x9.tmp.json"]
    for path in stale:  # what a build killed while writing leaves
        path.write_bytes(b"partial")
    capsys.readouterr()
    assert data.build_dataset(profile, tmp_path, progress=False) == (folder, False)
    assert "checksum mismatch" in capsys.readouterr().out
    assert data.check_dataset(folder, settings) is None
    assert not any(path.exists() for path in stale) and not list(folder.rglob("*.tmp*"))

    changed = _tiny(keep=0.4)
    assert data.check_dataset(folder, data.DataSettings.from_profile(changed)) == "settings changed (keep)"
    with pytest.raises(FileNotFoundError, match="settings changed"):
        data.load_dataset(changed, tmp_path, build=False)
    edited = {**data.code_fingerprint(), "fitter.py": "0" * 64}
    with monkeypatch.context() as patch:
        patch.setattr(data, "code_fingerprint", lambda: edited)
        assert data.check_dataset(folder, settings) == "code changed (fitter.py)"
    (folder / data.subject_files("sub-01")["PDmap"]).unlink()
    assert data.check_dataset(folder, settings) == f"missing file {data.subject_files('sub-01')['PDmap']}"
    (folder / data.MANIFEST).unlink()
    assert data.check_dataset(folder, settings).startswith("no manifest.json")


def test_cli_reports_reuse(tiny: tuple[Path, data.Dataset], monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tiny
    monkeypatch.setattr("swig_lib.experiments.config.load_profile", lambda name: _tiny())
    assert cli_main(["data", "--profile", "smoke", "--root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "reusing" in out and "train 1, val 0, test 1" in out


def test_scaling_and_squaring_is_invertible() -> None:
    shape = (24, 24, 24)
    velocity = 1.5 * torch.from_numpy(anatomy.gaussian_noise(np.random.default_rng(0), shape, 3.0, count=3))
    # The displacement x + v(x) of such a field folds; its exponential never does.
    assert anatomy.jacobian_determinant(velocity).min() < 0
    assert anatomy.jacobian_determinant(anatomy.integrate_velocity(velocity)).min() > 0


def test_subject_deformations_are_invertible(tiny: tuple[Path, data.Dataset]) -> None:
    _, ds = tiny
    assert all(entry["min_jacobian"] > 0 for entry in ds.manifest["subjects"].values())


def test_noise_fields_are_exact_in_blocks() -> None:
    full = anatomy.gaussian_noise(np.random.default_rng(3), (20, 16, 40), 1.5)
    block = anatomy.gaussian_noise(np.random.default_rng(3), (20, 16, 40), 1.5, z_range=(10, 18))
    np.testing.assert_array_equal(full[..., 10:18], block)
    assert abs(float(full.std()) - 1.0) < 0.05


def test_mixing_model() -> None:
    wm, csf = TISSUE_VALUES["WM"], TISSUE_VALUES["CSF"]
    values = [(np.float32(v.pd), np.float32(v.t1), np.float32(v.t2)) for v in TISSUE_VALUES.values()]
    pure = anatomy.mix_tissues(np.array([[0.0], [1.0], [0.0]]), values)[:, 0]
    np.testing.assert_allclose(pure, [wm.pd, wm.t1, wm.t2], rtol=1e-6)
    half = anatomy.mix_tissues(np.array([[0.0], [0.5], [0.5]]), values)[:, 0]
    water = np.array([0.5 * wm.pd, 0.5 * csf.pd])
    weights = water / water.sum()
    np.testing.assert_allclose(half[0], water.sum(), rtol=1e-6)
    np.testing.assert_allclose(half[1], 1 / (weights[0] / wm.t1 + weights[1] / csf.t1), rtol=1e-5)
    np.testing.assert_allclose(half[2], 1 / (weights[0] / wm.t2 + weights[1] / csf.t2), rtol=1e-5)
    assert np.all(anatomy.mix_tissues(np.zeros((3, 1)), values) == 0)


def test_subject_from_tissue_fractions_and_maps() -> None:
    shape = (32, 32, 6)
    x, y = np.meshgrid(np.arange(32) - 15.5, np.arange(32) - 15.5, indexing="ij")
    radius = np.broadcast_to(np.hypot(x, y)[..., None], shape)
    mask = radius < 13
    wm = (radius < 7).astype(np.float32)
    csf = ((radius > 11) & mask).astype(np.float32)
    gm = (mask & (wm == 0) & (csf == 0)).astype(np.float32)
    subject = data.subject_from_tissue_fractions(gm, wm, csf, mask, seed=1, anatomy=AnatomySettings.plain())
    assert subject.q_h.shape == (3, *shape) and subject.q_l.shape == (3, *shape)
    np.testing.assert_array_equal(subject.mask, mask)
    assert abs(np.median(subject.q_h[1][wm > 0]) / TISSUE_VALUES["WM"].t1 - 1) < 0.15

    again = data.subject_from_maps(*subject.q_h, mask=subject.mask, seed=subject.noise_seed)
    np.testing.assert_allclose(again.q_l, subject.q_l, rtol=1e-5, atol=1e-3)
    with pytest.raises(DataValidationError, match="T1 array: T1 values look like seconds"):
        data.subject_from_maps(subject.q_h[0], subject.q_h[1] / 1000, subject.q_h[2], mask=subject.mask)
    with pytest.raises(TypeError, match="either all as NIfTI paths or all as arrays"):
        data.subject_from_maps("pd.nii.gz", subject.q_h[1], subject.q_h[2])


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="must sum to"):
        data.DataSettings.from_profile(_tiny(split=[1, 1, 1]))
    smoke = load_profile("smoke")
    sharp = Profile.from_dict(smoke | {"data": {**smoke["data"], "anatomy": {"sharpness": 2}}})
    with pytest.raises(KeyError, match="unknown anatomy setting"):
        data.DataSettings.from_profile(sharp)


def test_anatomy_redraws_the_stored_maps(tiny: tuple[Path, data.Dataset]) -> None:
    _, ds = tiny
    whole = ds.anatomy("sub-02")
    q_h = ds.reference("sub-02")
    assert whole.fractions.shape == (3, *q_h.shape[1:]) and whole.mask.shape == q_h.shape[1:]
    np.testing.assert_allclose(whole.maps, q_h, rtol=1e-4, atol=1e-3)
    one = ds.anatomy("sub-02", [ds.manifest["slices"][1]])
    np.testing.assert_allclose(one.maps[..., 0], q_h[..., 1], rtol=1e-4, atol=1e-3)
    sums = whole.fractions.sum(0)[whole.mask]
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    with pytest.raises(KeyError, match="sub-99"):
        ds.anatomy("sub-99")


@pytest.mark.parametrize(("flag", "source", "dataset"), [
    ([], "mni152", "mni152-smoke"),
    (["--anatomy-source", "mni152"], "mni152", "mni152-smoke"),
    (["--anatomy-source", "synthsr"], "synthsr", "synthsr-heldout-smoke"),  # the [generalisation] dataset
    (["--anatomy-source", "mix"], "mix", "mix-smoke"),
])
def test_cli_anatomy_source_picks_its_own_dataset(flag: list[str], source: str, dataset: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    class Stop(Exception):
        pass

    def fake_build(profile, root, **kwargs):
        seen.update(source=profile.data["anatomy_source"], dataset=profile.data["dataset"], root=str(root))
        raise Stop

    monkeypatch.setattr("swig_lib.experiments.subjects.dataset.build_dataset", fake_build)
    with pytest.raises(Stop):
        from swig_lib.cli import build_parser
        from swig_lib.cli.data import run

        run(build_parser().parse_args(["data", "--profile", "smoke", "--data", str(tmp_path), *flag]))
    assert seen == {"source": source, "dataset": dataset, "root": str(tmp_path)}
