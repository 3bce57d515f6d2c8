"""The NIST/ISMRM phantom data: DICOM reading (synthetic and real), the converted copy, spheres, references."""

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from swig_lib.core.io import sha256
from swig_lib.core.relaxometry import fit_inversion_recovery, fit_multi_echo_t2
from swig_lib.core.sequences import GuideProtocol, read_sidecar
from swig_lib.experiments.phantom import convert
from swig_lib.experiments.phantom.reference import (
    Sphere,
    batch_folder,
    read_spheres,
    reference_table,
    sphere_masks,
    sphere_medians,
)

ROOT = Path(__file__).resolve().parents[1]
COPY = ROOT / "datasets" / "nist-phantom"
SHARED = ROOT.parent / "shared" / "data" / "nist-phantom-mrbias"
needs_shared = pytest.mark.skipif(
    not (SHARED / "data" / "mrbias_testset_A").is_dir(),
    reason=f"the MR-BIAS originals are not at {SHARED} (tests and CI only; the product never reads them)",
)
TIS_S = [0.035, 0.075, 0.1, 0.125, 0.15, 0.25, 1.0, 1.5, 2.0, 3.0]
TES_S = [round(0.01 * (i + 1), 2) for i in range(32)]

# ---------------------------------------------------------------------------------------------
# Synthetic DICOM
# ---------------------------------------------------------------------------------------------

ROW = np.array([math.cos(0.3), math.sin(0.3), 0.0])  # an oblique orientation (LPS)
COL = np.array([0.0, 0.0, -1.0])
NORMAL = np.cross(ROW, COL)
CORNER = np.array([-20.0, 5.0, 30.0])
SPACING = (0.8, 0.5)  # PixelSpacing: between rows, between columns (mm)
STEP = 2.5  # slice spacing, mm


def write_image(path, pixels, slice_index, te, instance, **overrides):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = "MR", "TEST", "synthetic"
    ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "SE", ["SK", "SP"], "2D"
    ds.RepetitionTime, ds.EchoTime, ds.FlipAngle, ds.SliceThickness = "2000", str(te), "90", "2.5"
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [f"{v:.10f}" for v in (*ROW, *COL)]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in CORNER + slice_index * STEP * NORMAL]
    ds.PixelSpacing = [str(v) for v in SPACING]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in overrides.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def synthetic_series(tmp_path):
    """3 slices x 2 echoes of a 4 x 5 matrix, files in scrambled order, plus a non-DICOM file."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(3, 2, 4, 5))  # slice, echo, row, column
    files, instance = [], 0
    for k in (2, 0, 1):
        for e in (1, 0):
            instance += 1
            path = tmp_path / f"img{k}{e}.dcm"
            write_image(path, pixels[k, e], k, te=(10, 30)[e], instance=instance)
            files.append(path)
    (tmp_path / "VERSION").write_text("not dicom")
    return files, pixels


def test_read_synthetic_dicom_series(synthetic_series):
    files, pixels = synthetic_series
    series = convert.read_dicom_series(files)
    assert series.data.shape == (5, 4, 3, 2)  # columns, rows, slices, echoes
    assert np.array_equal(series.data, pixels.transpose(3, 2, 0, 1))
    assert [float(h.EchoTime) for h in series.headers] == [10.0, 30.0]
    # voxel (i, j, k) lies at corner + i·Δc·row + j·Δr·col + k·step·normal (LPS); RAS negates x, y.
    for i, j, k in [(0, 0, 0), (4, 3, 2), (2, 1, 1)]:
        lps = CORNER + i * SPACING[1] * ROW + j * SPACING[0] * COL + k * STEP * NORMAL
        expected = lps * np.array([-1.0, -1.0, 1.0])
        assert np.allclose(series.affine @ np.array([i, j, k, 1.0]), [*expected, 1.0], atol=1e-5)
    sidecar = convert.sidecar_from_headers(series.headers)
    assert sidecar["EchoTime"] == [0.01, 0.03] and sidecar["RepetitionTime"] == 2.0
    assert sidecar["SequenceVariant"] == ["SK", "SP"] and sidecar["ScanningSequence"] == "SE"
    index = convert.index_dicom(files[0].parent)
    assert sorted(Path(h.filename).name for h in index) == sorted(f.name for f in files)  # VERSION skipped


def test_read_single_slice_uses_the_slice_thickness(tmp_path):
    write_image(tmp_path / "a.dcm", np.zeros((4, 5)), 0, te=10, instance=1)
    series = convert.read_dicom_series([tmp_path / "a.dcm"])
    assert series.data.shape == (5, 4, 1, 1)
    assert np.allclose(series.affine[:3, 2], 2.5 * NORMAL * np.array([-1.0, -1.0, 1.0]))


def test_read_dicom_series_errors(tmp_path):
    with pytest.raises(ValueError, match="no DICOM files given"):
        convert.read_dicom_series([])
    for k in (0, 1, 3):  # slices 0, 1 and 3: uneven spacing
        write_image(tmp_path / f"s{k}.dcm", np.zeros((4, 5)), k, te=10, instance=k + 1)
    with pytest.raises(ValueError, match="slices are unevenly spaced"):
        convert.read_dicom_series(sorted(tmp_path.glob("s*.dcm")))
    write_image(tmp_path / "echo.dcm", np.zeros((4, 5)), 0, te=20, instance=9)
    with pytest.raises(ValueError, match=r"slice positions hold different numbers of images: \[2, 1, 1\]"):
        convert.read_dicom_series([tmp_path / n for n in ("s0.dcm", "echo.dcm", "s1.dcm", "s3.dcm")])
    write_image(tmp_path / "tilted.dcm", np.zeros((4, 5)), 1, te=10, instance=5,
                ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])
    with pytest.raises(ValueError, match="orientation, pixel spacing or matrix differs from"):
        convert.read_dicom_series([tmp_path / "s0.dcm", tmp_path / "tilted.dcm"])
    write_image(tmp_path / "scaled.dcm", np.zeros((4, 5)), 0, te=10, instance=6, RescaleSlope="2")
    with pytest.raises(ValueError, match="rescaled pixel values are not supported"):
        convert.read_dicom_series([tmp_path / "scaled.dcm"])


# ---------------------------------------------------------------------------------------------
# The converted copy in the repository
# ---------------------------------------------------------------------------------------------


def test_converted_copy_checksums_licence_and_size():
    lines = (COPY / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    for name, digest in listed.items():
        assert sha256(COPY / name) == digest, name
    on_disk = {p.relative_to(COPY).as_posix() for p in COPY.rglob("*") if p.is_file()}
    assert on_disk == set(listed) | {"SHA256SUMS"}
    assert sum((COPY / name).stat().st_size for name in on_disk) < 10 * 2**20
    assert "BSD 3-Clause License" in (COPY / "LICENSE").read_text()
    readme = (COPY / "README.md").read_text()
    assert convert.SOURCE_COMMIT in readme and "JamesCKorte/mrbias" in readme
    assert all(f"`{digest}`" in readme for name, digest in listed.items() if name != "README.md")


def load(name):
    image = nib.load(COPY / f"{name}.nii.gz")
    return image, json.loads((COPY / f"{name}.json").read_text())


def test_converted_copy_header_facts():
    ir, meta = load("t1plate_ir")
    assert ir.shape == (256, 256, 1, 10) and ir.get_data_dtype() == np.int16
    assert np.allclose(ir.header.get_zooms()[:3], (0.9765625, 0.9765625, 6.0))
    assert meta["InversionTime"] == TIS_S and meta["RepetitionTime"] == 4.5 and meta["EchoTime"] == 0.0069
    assert meta["ScanningSequence"] == ["SE", "IR"] and meta["MagneticFieldStrength"] == 3.0
    mese, meta = load("t2plate_mese")
    assert mese.shape == (256, 256, 1, 32) and meta["EchoTime"] == TES_S and meta["RepetitionTime"] == 5.0
    assert int(np.asarray(mese.dataobj).max()) == 4095  # clipped samples are kept as stored
    for plate in ("t1plate", "t2plate"):
        gre, meta = load(f"{plate}_gre")
        assert gre.shape == (256, 256, 10) and np.allclose(gre.header.get_zooms(), (0.9765625, 0.9765625, 1.0))
        assert read_sidecar(COPY / f"{plate}_gre.json") == GuideProtocol("SPGR", tr=6.3, te=2.79, flip=10.0)
        tse, meta = load(f"{plate}_tse")
        assert tse.shape == (512, 512, 1) and np.allclose(tse.header.get_zooms(), (0.48828125, 0.48828125, 4.0))
        assert read_sidecar(COPY / f"{plate}_tse.json") == GuideProtocol("SE", tr=5000.0, te=63.0)


def test_spheres_lie_in_their_plate_slice_and_masks_are_discs():
    for plate, name in (("T1", "t1plate_ir"), ("T2", "t2plate_mese")):
        image, _ = load(name)
        spheres = read_spheres(COPY / "spheres.tsv", plate)
        assert [s.number for s in spheres] == list(range(1, 15))
        normal = image.affine[:3, 2] / np.linalg.norm(image.affine[:3, 2])
        centre = image.affine @ np.array([127.5, 127.5, 0.0, 1.0])
        for s in spheres:
            assert abs((np.asarray(s.centre) - centre[:3]) @ normal) < 3.0  # within the 6 mm slice
        masks = sphere_masks(image.shape[:3], image.affine, spheres)
        sizes = masks.sum((1, 2, 3))
        assert (np.abs(sizes - math.pi * 25 / 0.9765625**2) < 10).all()  # 5 mm discs, about 82 voxels
        assert masks.sum(0).max() == 1  # disjoint


def test_sphere_masks_and_medians_on_a_known_grid():
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    spheres = [Sphere("T1", 1, (10.0, 10.0, 7.0), 2.5), Sphere("T1", 2, (30.0, 30.0, 0.0), 2.0)]
    masks = sphere_masks((20, 20, 2), affine, spheres)
    # Voxel centres at even mm: within 2.5 mm of (10, 10) lie (10, 10) and its 4 neighbours at 2 mm
    # (the diagonal ones are 2.83 mm away); the through-plane offset (z = 7 mm) does not count.
    assert masks[0, :, :, 0].sum() == 5 and masks[0, 5, 5, 0] and np.array_equal(masks[0, ..., 0], masks[0, ..., 1])
    assert masks[1, :, :, 0].sum() == 5 and masks[1, 15, 15, 0]
    image = np.arange(20 * 20 * 2, dtype=float).reshape(20, 20, 2)
    assert sphere_medians(image, masks)[0] == np.median(image[masks[0]])
    none = np.zeros_like(image, dtype=bool)
    assert np.isnan(sphere_medians(image, masks, valid=none)).all()


def test_reference_batches_and_tables():
    reference = COPY / "reference"
    assert batch_folder(reference, convert.PHANTOM_SERIAL).name == "batch2_sn_gte_130-0042"
    assert batch_folder(reference, "130-0041").name == "batch1_sn_lte_130-0041"
    assert batch_folder(reference, "130-0001").name == "batch1_sn_lte_130-0041"
    assert batch_folder(reference, "130-0132").name == "batch2_sn_gte_130-0042"
    assert batch_folder(reference, "130-0133").name == "batch2p5_sn_gte_130-0133"
    t1 = reference_table(batch_folder(reference, "130-0093"), "T1")
    assert sorted(t1.temperature_C.unique()) == [16.0, 18.0, 20.0, 22.0, 24.0, 26.0]
    row = t1[(t1.sphere == 1) & (t1.temperature_C == 20.0)]
    assert row.T1_ms.item() == 1883.97 and row.T2_ms.item() == 1489.41
    t2 = reference_table(batch_folder(reference, "130-0041"), "T2")  # thousands separators, no solution column
    assert t2.sphere.tolist() == list(range(1, 15)) and t2.T1_ms.iloc[0] == 2376.0 and t2.T2_ms.iloc[0] == 939.4
    with pytest.raises(ValueError, match="no T1 reference table at 3 T"):
        reference_table(batch_folder(reference, "130-0133"), "T1")


def test_real_fits_match_the_reference_where_the_timings_can_measure():
    """T1 spheres 1-10 within 4 % of batch 2 at 22 °C; T2 spheres 2-4 and 6-9 biased +5 to +20 %."""
    table = {p: reference_table(batch_folder(COPY / "reference", "130-0093"), p) for p in ("T1", "T2")}
    for plate, name in (("T1", "t1plate_ir"), ("T2", "t2plate_mese")):
        image, meta = load(name)
        spheres = read_spheres(COPY / "spheres.tsv", plate)
        masks = sphere_masks(image.shape[:3], image.affine, spheres)[..., 0]
        signal = torch.from_numpy(np.moveaxis(np.asarray(image.dataobj, dtype=np.float64)[:, :, 0], -1, 0).copy())
        mask = torch.from_numpy(masks.any(0))
        if plate == "T1":
            fitted = fit_inversion_recovery(signal, [1000 * t for t in meta["InversionTime"]], mask)[2]
        else:
            fitted = fit_multi_echo_t2(signal, [1000 * t for t in meta["EchoTime"]], mask)[1]
        medians = sphere_medians(fitted.numpy()[..., None], masks[..., None])
        ref = table[plate][table[plate].temperature_C == 22.0].sort_values("sphere")[f"{plate}_ms"].to_numpy()
        ratio = medians / ref
        if plate == "T1":
            assert (np.abs(ratio[:10] - 1) < 0.04).all(), ratio
            assert (np.abs(ratio[10:] - 1) > 0.15).all(), ratio  # T1 <= 60 ms: below what TI >= 35 ms resolves
        else:
            assert ((ratio[[1, 2, 3, 5, 6, 7, 8]] > 1.05) & (ratio[[1, 2, 3, 5, 6, 7, 8]] < 1.2)).all(), ratio
            assert ratio[0] < 0.5, ratio  # sphere 1: 30 of 32 echoes clipped, T2 >> the last TE


# ---------------------------------------------------------------------------------------------
# The originals (tests and CI only)
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_real_dicom_headers():
    headers = convert.index_dicom(SHARED / "data" / "mrbias_testset_A")
    ir = convert.read_dicom_series(convert.select_files(headers, prefix="T1-VIR-"))
    assert [float(h.InversionTime) for h in ir.headers] == [1000 * t for t in TIS_S]
    assert {float(h.EchoTime) for h in ir.headers} == {6.9} and {float(h.RepetitionTime) for h in ir.headers} == {4500}
    assert np.allclose(np.linalg.norm(ir.affine[:3, :3], axis=0), (0.9765625, 0.9765625, 6.0))
    mese = convert.read_dicom_series(convert.select_files(headers, description="T2"))
    assert mese.data.shape == (256, 256, 1, 32)
    assert [float(h.EchoTime) for h in mese.headers] == [10.0 * (i + 1) for i in range(32)]
    assert int(mese.data.max()) == 4095


@needs_shared
def test_conversion_reproduces_the_copy_byte_for_byte(tmp_path):
    written = convert.convert(SHARED, tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        p.relative_to(COPY).as_posix() for p in COPY.rglob("*") if p.is_file()
    }
    for path in written:
        assert path.read_bytes() == (COPY / path.relative_to(tmp_path)).read_bytes(), path.name
