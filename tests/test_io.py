"""Tests of swig_lib.core.io: atomic NIfTI writing and the validated loaders of users' maps and guides."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from swig_lib.core import io

SHAPE = (12, 10, 8)


def _maps(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible PD (a.u.), T1 and T2 (ms) volumes and a mask."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:-2, 2:-2, 1:-1] = True
    return {
        "pd": np.where(mask, 70 + 10 * rng.random(SHAPE), 0).astype(np.float32),
        "t1": np.where(mask, 700 + 400 * rng.random(SHAPE), 0).astype(np.float32),
        "t2": np.where(mask, 75 + 20 * rng.random(SHAPE), 0).astype(np.float32),
        "mask": mask,
    }


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The maps of :func:`_maps` written as NIfTI files."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    return {name: io.save_nifti(tmp_path / f"{name}.nii.gz", data, affine)
            for name, data in _maps(np.random.default_rng(0)).items()}


def _rewrite(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Overwrite ``path`` with ``data`` (keeping its affine unless given)."""
    return io.save_nifti(path, data, nib.load(path).affine if affine is None else affine)


def test_save_load_roundtrip_and_determinism(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    affine = np.array([[1, 0, 0, -5], [0, 1, 0, 3], [0, 0, 2, 7], [0, 0, 0, 1]], dtype=float)
    first = io.save_nifti(tmp_path / "a.nii.gz", data, affine)
    second = io.save_nifti(tmp_path / "b.nii.gz", data, affine)
    loaded, loaded_affine = io.load_nifti(first)
    np.testing.assert_array_equal(loaded, data)
    np.testing.assert_allclose(loaded_affine, affine)
    assert io.sha256(first) == io.sha256(second)  # no time stamp or name in the gzip header
    mask = io.save_nifti(tmp_path / "m.nii.gz", data > 0.5, affine)
    assert nib.load(mask).get_data_dtype() == np.uint8


def test_load_reorients_to_canonical(tmp_path: Path) -> None:
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    flipped_x = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS: first axis runs right to left
    path = io.save_nifti(tmp_path / "las.nii.gz", data, flipped_x)
    loaded, affine = io.load_nifti(path)
    np.testing.assert_array_equal(loaded, data[::-1])
    assert affine[0, 0] > 0


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "map.nii.gz"
    io.save_nifti(target, np.ones(SHAPE), np.eye(4))
    before = io.sha256(target)

    def broken_save(image: nib.Nifti1Image, filename: Path) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(io.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_nifti(target, np.zeros(SHAPE), np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz"]
    assert io.sha256(target) == before
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "other.json") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.nii.gz"]


def test_write_csv_writes_the_table_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = pd.DataFrame({"model": ["Q_l", "M12++"], "ssim": [0.5, 0.75]}).set_index("model")
    io.write_csv(table, tmp_path / "t.csv")
    io.write_csv(table, tmp_path / "i.csv", index=True)
    assert (tmp_path / "t.csv").read_text() == "ssim\n0.5\n0.75\n"
    assert (tmp_path / "i.csv").read_text() == "model,ssim\nQ_l,0.5\nM12++,0.75\n"

    def broken(self: pd.DataFrame, path: Path, index: bool) -> None:
        Path(path).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_csv(table, tmp_path / "t.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.csv", "t.csv"]
    assert (tmp_path / "t.csv").read_text() == "ssim\n0.5\n0.75\n"


def test_load_qmri_maps_accepts_valid_maps(files: dict[str, Path]) -> None:
    loaded = io.load_qmri_maps(files["pd"], files["t1"], files["t2"], files["mask"])
    assert loaded.maps.shape == (3, *SHAPE) and loaded.maps.dtype == np.float32
    assert loaded.mask.sum() == _maps(np.random.default_rng(0))["mask"].sum()
    derived = io.load_qmri_maps(files["pd"], files["t1"], files["t2"])
    np.testing.assert_array_equal(derived.mask, loaded.mask)


@pytest.mark.parametrize(
    ("case", "culprit", "fix"),
    [
        ("shape", "t1", "resample"),
        ("affine", "t2", "resample"),
        ("nonfinite", "pd", "nan_to_num"),
        ("t1_seconds", "t1", "multiply the map by 1000"),
        ("t2_seconds", "t2", "multiply the map by 1000"),
        ("t1_nonpositive", "t1", "exclude them from the mask"),
        ("empty_mask", "mask", "pass the brain mask"),
        ("four_d", "t2", "3-D volume"),
        ("missing", "pd", "check the path"),
    ],
)
def test_load_qmri_maps_rejections_name_file_and_fix(
    files: dict[str, Path], case: str, culprit: str, fix: str
) -> None:
    maps = _maps(np.random.default_rng(0))
    path = files[culprit]
    if case == "shape":
        _rewrite(path, np.ones((12, 10, 9), dtype=np.float32))
    elif case == "affine":
        _rewrite(path, maps["t2"], np.diag([1.0, 1.0, 1.2, 1.0]))
    elif case == "nonfinite":
        bad = maps["pd"].copy()
        bad[5, 5, 4] = np.nan
        bad[6, 5, 4] = np.inf
        _rewrite(path, bad)
    elif case == "t1_seconds":
        _rewrite(path, maps["t1"] / 1000)
    elif case == "t2_seconds":
        _rewrite(path, maps["t2"] / 1000)
    elif case == "t1_nonpositive":
        bad = maps["t1"].copy()
        bad[5, 5, 4] = 0.0
        bad[6, 5, 4] = -3.0
        _rewrite(path, bad)
    elif case == "empty_mask":
        _rewrite(path, np.zeros(SHAPE, dtype=np.uint8))
    elif case == "four_d":
        _rewrite(path, np.stack([maps["t2"], maps["t2"]], axis=-1))
    elif case == "missing":
        path.unlink()
    with pytest.raises(io.DataValidationError) as err:
        io.load_qmri_maps(files["pd"], files["t1"], files["t2"], files["mask"])
    message = str(err.value)
    assert str(path) in message and fix in message
    if case == "nonfinite":
        assert "2 non-finite" in message
    if case == "t1_nonpositive":
        assert "2 voxel(s)" in message


def test_trailing_singleton_axis_is_accepted(files: dict[str, Path]) -> None:
    _rewrite(files["t2"], _maps(np.random.default_rng(0))["t2"][..., None])
    assert io.load_qmri_maps(files["pd"], files["t1"], files["t2"], files["mask"]).maps.shape == (3, *SHAPE)


def test_load_guides(files: dict[str, Path], tmp_path: Path) -> None:
    t1w = io.save_nifti(tmp_path / "t1w.nii.gz", np.ones(SHAPE), np.eye(4))
    t2w = io.save_nifti(tmp_path / "t2w.nii.gz", np.ones(SHAPE), np.diag([1.0, 1.0, 2.0, 1.0]))
    guides = io.load_guides(t1w=t1w, reference_affine=np.eye(4), reference_shape=SHAPE)
    assert list(guides) == ["T1w"] and guides["T1w"].shape == SHAPE
    with pytest.raises(io.DataValidationError, match="t2w.nii.gz.*affine.*resample"):
        io.load_guides(t1w=t1w, t2w=t2w)
    with pytest.raises(io.DataValidationError, match="t1w.nii.gz.*shape.*resample"):
        io.load_guides(t1w=t1w, reference_affine=np.eye(4), reference_shape=(12, 10, 9))
    with pytest.raises(io.DataValidationError, match="no guide"):
        io.load_guides()


def test_validate_maps_on_arrays() -> None:
    maps = _maps(np.random.default_rng(0))
    stack = np.stack([maps["pd"], maps["t1"], maps["t2"]])
    io.validate_maps(stack, maps["mask"])
    stack[1] /= 1000
    with pytest.raises(io.DataValidationError, match="T1: T1 values look like seconds"):
        io.validate_maps(stack, maps["mask"])


def test_nonfinite_outside_the_mask_is_accepted_and_zeroed(files: dict[str, Path]) -> None:
    maps = _maps(np.random.default_rng(0))
    for name in ("pd", "t1"):
        bad = maps[name].copy()
        bad[0, 0, 0], bad[11, 9, 7] = np.nan, np.inf  # background
        _rewrite(files[name], bad)
    loaded = io.load_qmri_maps(files["pd"], files["t1"], files["t2"], files["mask"])
    assert np.isfinite(loaded.maps).all() and loaded.maps[0, 0, 0, 0] == 0 and loaded.maps[1, 11, 9, 7] == 0
    np.testing.assert_array_equal(loaded.maps[1][loaded.mask], maps["t1"][maps["mask"]])
    derived = io.load_qmri_maps(files["pd"], files["t1"], files["t2"])  # NaN voxels leave the derived mask
    np.testing.assert_array_equal(derived.mask, loaded.mask)
    guide = np.ones(SHAPE, dtype=np.float32)
    guide[0, 0, 0] = np.nan
    t1w = io.save_nifti(files["pd"].parent / "t1w_nan.nii.gz", guide, np.eye(4))
    with pytest.raises(io.DataValidationError, match="t1w_nan.nii.gz: 1 non-finite voxel"):
        io.load_guides(t1w=t1w)
    assert io.load_guides(t1w=t1w, mask=loaded.mask)["T1w"][0, 0, 0] == 0


def test_swapped_t1_and_t2_warn(files: dict[str, Path]) -> None:
    swapped = r"T1 map \S*t2.nii.gz, T2 map \S*t1.nii.gz: T2 > T1 in 100 % of the mask.*look swapped"
    with pytest.warns(UserWarning, match=swapped):
        io.load_qmri_maps(files["pd"], files["t2"], files["t1"], files["mask"])


def test_nifti_image_keeps_the_source_header(tmp_path: Path) -> None:
    affine = np.array([[-1.0, 0, 0, 5], [0, 1.2, 0, -3], [0, 0, 2, 1], [0, 0, 0, 1]])
    source = nib.Nifti1Image(np.ones(SHAPE, dtype=np.int16), affine)
    source.header.set_sform(affine, code=4)  # MNI
    source.header.set_qform(affine, code=2)
    source.header["descrip"] = b"fitted with qMRLab"
    nib.save(source, tmp_path / "src.nii.gz")
    loaded = nib.load(tmp_path / "src.nii.gz")
    nib.save(io.nifti_image(np.zeros(SHAPE), loaded.affine, like=loaded.header), tmp_path / "out.nii.gz")
    out = nib.load(tmp_path / "out.nii.gz")
    assert (int(out.header["sform_code"]), int(out.header["qform_code"])) == (4, 2)
    assert out.header["descrip"].tobytes().rstrip(b"\0") == b"fitted with qMRLab"
    np.testing.assert_allclose(out.affine, affine)
    assert out.get_data_dtype() == np.float32


def test_atomic_paths_write_all_or_nothing(tmp_path: Path) -> None:
    names = [tmp_path / "a.txt", tmp_path / "b.txt"]
    names[0].write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_paths(names) as temporaries:
            temporaries[0].write_text("new")
            raise RuntimeError("second file failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and names[0].read_text() == "old"
    with io.atomic_paths(names) as temporaries:
        for tmp in temporaries:
            tmp.write_text("new")
    assert [p.read_text() for p in names] == ["new", "new"] and len(list(tmp_path.iterdir())) == 2


def test_new_folder_removes_only_what_it_created(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with io.new_folder(tmp_path / "a" / "b"):
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("x")
    with pytest.raises(RuntimeError):
        with io.new_folder(tmp_path / "a" / "b"):
            raise RuntimeError
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["keep.txt"]


def test_stale_temporaries_and_writable_folders(tmp_path: Path) -> None:
    io.save_nifti(tmp_path / "sub" / "map.nii.gz", np.ones(SHAPE), np.eye(4))
    stale = tmp_path / "sub" / ".map.nii.gz.abc123.tmp.nii.gz"
    stale.write_bytes(b"partial")
    (tmp_path / ".lock").write_text("")
    assert io.destination_of(stale) == tmp_path / "sub" / "map.nii.gz"
    assert io.destination_of(tmp_path / "map.nii.gz") == tmp_path / "map.nii.gz"
    assert io.remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".lock", "map.nii.gz", "sub"]
    assert io.writable_folder_problem(tmp_path / "new" / "deeper") is None
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    assert io.writable_folder_problem(blocker / "out") == f"{blocker} is not a folder"


def test_read_csv_returns_the_exact_floats_write_csv_wrote(tmp_path):
    import pandas as pd

    from swig_lib.core.io import read_csv, write_csv

    values = np.random.default_rng(3).standard_normal(500) * 10.0 ** np.arange(-250, 250)
    path = tmp_path / "t.csv"
    write_csv(pd.DataFrame({"x": values}), path)
    assert np.array_equal(read_csv(path)["x"].to_numpy(), values)
