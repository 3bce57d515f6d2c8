"""Convert the NIST/ISMRM system phantom DICOM series of MR-BIAS test set A to NIfTI + BIDS-style sidecars.

The project may not read the third-party copy at run time, so this converter writes the small,
licence-noted copy that the book uses (``datasets/nist-phantom/``)::

    python -m swig_lib.experiments.phantom.convert SOURCE DEST

``SOURCE`` is a checkout of the public originals laid out as in GitHub ``JamesCKorte/mrbias`` at
:data:`SOURCE_COMMIT` (``data/mrbias_testset_A``, ``mrbias/roi_reference_values``,
``mrbias/roi_detection_templates``, ``LICENSE``). What is written (all images int16, the stored
12-bit magnitude values, no rescaling; affines in RAS+ mm):

* ``t1plate_ir``: the T1 plate, one 6 mm slice, 2-D inversion-recovery TSE, the 10 TIs as volumes;
* ``t2plate_mese``: the T2 plate, one 6 mm slice, 2-D multi-echo spin echo, the 32 echoes as volumes;
* ``t{1,2}plate_gre``: the 1 mm 3-D spoiled GRE, cropped to the slices whose centres lie within
  the plate slice's half-thickness plus :data:`SLAB_MARGIN_MM` of its centre plane (what a
  resampling of the GRE to that slice needs);
* ``t{1,2}plate_tse``: the 0.49 mm 2-D TSE slice nearest each plate slice;
* sidecars (``.json``): BIDS keys, times in seconds; a series whose TI or TE varies lists it per
  volume (``InversionTime``, ``EchoTime``), the guides carry ``SwigSequence`` and read back with
  :func:`swig_lib.core.sequences.read_sidecar`;
* ``spheres.tsv``: the sphere centres (RAS+ mm) of the MR-BIAS ROI templates, whose voxel
  coordinates refer to the 1 mm GRE of this very session;
* ``reference/`` and ``rois/``: the phantom's reference T1/T2 tables and the ROI templates, copied;
* ``LICENSE`` (BSD-3-Clause), ``README.md`` and ``SHA256SUMS`` (``sha256sum -c`` format).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSfloat

from swig_lib.core.io import atomic_write_bytes, atomic_write_json, save_nifti, sha256
from swig_lib.core.sequences import ms_to_seconds

#: Public source of the originals and the commit they were copied from.
SOURCE_REPOSITORY = "https://github.com/JamesCKorte/mrbias"
SOURCE_COMMIT = "e455051affc56e65157047bb0fe0e07c8299386b"
#: Serial number of the scanned phantom: not in the DICOM headers; MR-BIAS's configuration for this
#: test set (``tests/end_to_end_test/e2e_config.yaml``) gives it. It decides the reference batch.
PHANTOM_SERIAL = "130-0093"
#: Extra 3-D GRE slices kept on each side of a plate slice's slab, mm.
SLAB_MARGIN_MM = 2.0
#: ROI templates (voxel coordinates on the 1 mm GRE) of each plate.
ROI_TEMPLATES = {"T1": "default_T1_rois.yaml", "T2": "default_T2_rois.yaml"}

_TESTSET = Path("data", "mrbias_testset_A")
_REFERENCE = Path("mrbias", "roi_reference_values", "caliber_system_phantom")
_TEMPLATES = Path("mrbias", "roi_detection_templates", "siemens_skyra_3p0T")
# Orientation and position agree within this (direction cosines, mm).
_GEOMETRY_ATOL = 1e-3
# DICOM keys copied into sidecars; the times among them are converted from ms to s.
_SIDECAR_KEYS = (
    "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength", "SeriesDescription", "ProtocolName",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "SequenceName", "MRAcquisitionType", "SliceThickness",
    "EchoTrainLength", "PercentSampling", "PercentPhaseFieldOfView", "PixelBandwidth",
    "InPlanePhaseEncodingDirection", "ImageType", "BitsStored", "FlipAngle", "RepetitionTime", "EchoTime",
    "InversionTime",
)
_TIME_KEYS = ("RepetitionTime", "EchoTime", "InversionTime")
# BIDS names of DICOM keywords that differ.
_BIDS_NAMES = {"ManufacturerModelName": "ManufacturersModelName", "PercentPhaseFieldOfView": "PercentPhaseFOV",
               "InPlanePhaseEncodingDirection": "InPlanePhaseEncodingDirectionDICOM"}


@dataclass(frozen=True)
class DicomSeries:
    """Images of one geometry stacked as a NIfTI array.

    Attributes
    ----------
    data : ndarray, shape (X, Y, Z, V)
        Stored pixel values: X the DICOM column, Y the row, Z the slice (ascending along the slice
        normal), V the volume (images at the same position, ordered by TE, then TI, then
        instance number).
    affine : ndarray, shape (4, 4)
        Voxel to RAS+ world coordinates, mm.
    headers : tuple of Dataset
        The header of each volume's first slice.
    """

    data: np.ndarray
    affine: np.ndarray
    headers: tuple[Dataset, ...]


def _orientation(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and slice normal (LPS unit vectors) of an image."""
    cosines = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    row, col = cosines[:3], cosines[3:]
    return row, col, np.cross(row, col)


def dicom_affine(ds: Dataset, slice_step: np.ndarray) -> np.ndarray:
    """Voxel-to-RAS+ affine of a stack whose first slice is ``ds``.

    Voxel (i, j, k) is column i, row j of slice k; in DICOM's LPS frame it lies at
    ``ImagePositionPatient + i·Δc·row + j·Δr·col + k·slice_step`` (PixelSpacing = (Δr, Δc));
    RAS+ negates x and y.

    Parameters
    ----------
    ds : Dataset
        Header of the first slice.
    slice_step : ndarray, shape (3,)
        LPS displacement from one slice to the next, mm.

    Returns
    -------
    ndarray, shape (4, 4)
    """
    row, col, _ = _orientation(ds)
    d_row, d_col = (float(v) for v in ds.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * d_col, col * d_row, slice_step
    lps[:3, 3] = [float(v) for v in ds.ImagePositionPatient]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _number(ds: Dataset, keyword: str) -> float:
    """Return a numeric header value, or -inf where absent (sorts first)."""
    value = ds.get(keyword)
    return float(value) if value is not None else -np.inf


def read_dicom_series(files: Iterable[str | Path]) -> DicomSeries:
    """Read DICOM images of one geometry into a (X, Y, Z, V) array with its RAS+ affine.

    Images are grouped by their position along the slice normal (Z) and, at one position, ordered
    into volumes by EchoTime, InversionTime and InstanceNumber (V): a multi-echo series gives one
    volume per echo, images of several inversion times at one slice one volume per TI.

    Parameters
    ----------
    files : iterable of path
        DICOM files (uncompressed or any transfer syntax pydicom decodes).

    Returns
    -------
    DicomSeries

    Raises
    ------
    ValueError
        If no file is given, orientations, pixel spacings or matrix sizes differ, positions do not
        all hold the same number of images, slices are unevenly spaced, or an image is rescaled
        (RescaleSlope ≠ 1 or RescaleIntercept ≠ 0).
    """
    headers = [pydicom.dcmread(f) for f in files]
    if not headers:
        raise ValueError("no DICOM files given")
    first = headers[0]
    row, col, normal = _orientation(first)
    for ds in headers:
        if not np.allclose(np.concatenate(_orientation(ds)[:2]), np.concatenate((row, col)), atol=_GEOMETRY_ATOL) \
                or [float(v) for v in ds.PixelSpacing] != [float(v) for v in first.PixelSpacing] \
                or (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise ValueError(f"{ds.filename}: orientation, pixel spacing or matrix differs from {first.filename}")
        if float(ds.get("RescaleSlope", 1)) != 1.0 or float(ds.get("RescaleIntercept", 0)) != 0.0:
            raise ValueError(f"{ds.filename}: rescaled pixel values are not supported")
    position = {id(ds): float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in headers}
    slices = sorted({round(p, 3) for p in position.values()})
    by_slice = [sorted((ds for ds in headers if round(position[id(ds)], 3) == z),
                       key=lambda ds: (_number(ds, "EchoTime"), _number(ds, "InversionTime"),
                                       _number(ds, "InstanceNumber")))
                for z in slices]
    n_volumes = len(by_slice[0])
    if any(len(images) != n_volumes for images in by_slice):
        raise ValueError(f"slice positions hold different numbers of images: {[len(i) for i in by_slice]}")
    corners = np.asarray([[float(v) for v in images[0].ImagePositionPatient] for images in by_slice])
    if len(slices) > 1:
        steps = np.diff(corners, axis=0)
        if not np.allclose(steps, steps[0], atol=_GEOMETRY_ATOL):
            raise ValueError(f"slices are unevenly spaced (positions along the normal: {slices})")
        step = steps[0]
    else:
        step = normal * float(first.SliceThickness)
    data = np.stack([np.stack([ds.pixel_array.T for ds in images], axis=-1) for images in by_slice], axis=2)
    return DicomSeries(data, dicom_affine(by_slice[0][0], step), tuple(by_slice[0]))


def index_dicom(root: str | Path) -> list[Dataset]:
    """Headers (no pixel data) of every DICOM file under ``root``, in path order; other files are skipped."""
    headers = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except InvalidDicomError:
            continue
    return headers


def _json_value(keyword: str, value: object) -> object:
    """Convert a DICOM value to JSON: times in s, numbers as int or float, multi-values as lists of str."""
    if keyword in _TIME_KEYS:
        return ms_to_seconds(str(value))
    if isinstance(value, MultiValue):
        return [str(v) for v in value]
    if isinstance(value, (IS, int)):
        return int(value)
    if isinstance(value, (DSfloat, float)):
        return float(value)
    return str(value)


def sidecar_from_headers(headers: Sequence[Dataset]) -> dict[str, object]:
    """BIDS-style sidecar of a series: DICOM keys (times in s); a value that varies is a per-volume list.

    Parameters
    ----------
    headers : sequence of Dataset
        One header per volume (:attr:`DicomSeries.headers`).
    """
    sidecar: dict[str, object] = {}
    for keyword in _SIDECAR_KEYS:
        values = [_json_value(keyword, ds.get(keyword)) for ds in headers if ds.get(keyword) not in (None, "")]
        if values:
            same = all(v == values[0] for v in values)
            sidecar[_BIDS_NAMES.get(keyword, keyword)] = values[0] if same else values
    return sidecar


def select_files(headers: Sequence[Dataset], description: str | None = None, prefix: str | None = None) -> list[str]:
    """Return the files whose SeriesDescription equals ``description`` or starts with ``prefix``.

    Parameters
    ----------
    headers : sequence of Dataset
        Headers read with their file names (:func:`index_dicom`).
    description, prefix : str, optional
        Exact SeriesDescription, or its beginning.
    """
    return [ds.filename for ds in headers
            if (description is not None and ds.SeriesDescription == description)
            or (prefix is not None and str(ds.SeriesDescription).startswith(prefix))]


def _slice_centres(series: DicomSeries) -> np.ndarray:
    """RAS+ position (mm) of the central voxel of each slice, shape (Z, 3)."""
    x, y, z = series.data.shape[:3]
    index = np.stack([np.full(z, (x - 1) / 2), np.full(z, (y - 1) / 2), np.arange(z), np.ones(z)])
    return (series.affine @ index)[:3].T


def _plane(series: DicomSeries) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre (RAS+ mm), unit normal and thickness (mm) of the slice of a single-slice series."""
    normal = series.affine[:3, 2] / np.linalg.norm(series.affine[:3, 2])
    return _slice_centres(series)[0], normal, float(series.headers[0].SliceThickness)


def _write(dest: Path, name: str, series: DicomSeries, extra: dict[str, object] | None = None) -> list[Path]:
    """Write ``name.nii.gz`` (int16) and ``name.json``; return both paths."""
    data = series.data[..., 0] if series.data.shape[-1] == 1 else series.data
    if data.max() > np.iinfo(np.int16).max:
        raise ValueError(f"{name}: values above {np.iinfo(np.int16).max} do not fit int16")
    image = save_nifti(dest / f"{name}.nii.gz", data, series.affine, dtype=np.int16)
    sidecar = sidecar_from_headers(series.headers) | (extra or {})
    atomic_write_json(dest / f"{name}.json", sidecar)
    return [image, dest / f"{name}.json"]


def _read_rois(path: Path) -> list[tuple[int, tuple[int, int, int], float]]:
    """(sphere number, voxel index on the 1 mm GRE, radius mm) of each ROI of an MR-BIAS template."""
    rois, current = [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text and not line[0].isspace() and text.endswith(":"):
            current = {"number": int(text[:-1].rsplit("_", 1)[1])}
        elif text.startswith("roi_radius_mm:"):
            current["radius"] = float(text.split(":")[1])
        elif text.startswith("ctr_vox_coords:"):
            index = tuple(int(v) for v in text.split("[")[1].split("]")[0].split(","))
            rois.append((current["number"], index, current["radius"]))
    return rois


def _sphere_table(templates: Path, gre: DicomSeries) -> str:
    """``spheres.tsv``: plate, sphere, centre (RAS+ mm) and radius of every template ROI."""
    lines = ["plate\tsphere\tx_mm\ty_mm\tz_mm\tradius_mm\tgre_i\tgre_j\tgre_k"]
    for plate, file in ROI_TEMPLATES.items():
        for number, index, radius in _read_rois(templates / file):
            x, y, z = (gre.affine @ np.array([*index, 1.0]))[:3]
            lines.append(f"{plate}\t{number}\t{x:.3f}\t{y:.3f}\t{z:.3f}\t{radius:g}\t" + "\t".join(map(str, index)))
    return "\n".join(lines) + "\n"


def convert(source: str | Path, dest: str | Path) -> list[Path]:
    """Convert the series the phantom chapter needs and copy the licence, references and ROIs.

    Parameters
    ----------
    source : str or Path
        Root of the originals (see the module docstring).
    dest : str or Path
        Output folder (created).

    Returns
    -------
    list of Path
        Every file written, ``README.md`` and ``SHA256SUMS`` last.
    """
    source, dest = Path(source), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    headers = index_dicom(source / _TESTSET)
    ir = read_dicom_series(select_files(headers, prefix="T1-VIR-"))
    mese = read_dicom_series(select_files(headers, description="T2"))
    gre = read_dicom_series(select_files(headers, description="gre"))
    written = _write(dest, "t1plate_ir", ir) + _write(dest, "t2plate_mese", mese)
    tse_files = select_files(headers, description="tse")
    tse_headers = [ds for ds in headers if ds.filename in tse_files]
    notes = []
    for plate, series in (("t1plate", ir), ("t2plate", mese)):
        point, normal, thickness = _plane(series)
        distance = (_slice_centres(gre) - point) @ normal
        keep = np.flatnonzero(np.abs(distance) <= thickness / 2 + SLAB_MARGIN_MM)
        start, stop = int(keep[0]), int(keep[-1]) + 1
        shift = np.eye(4)
        shift[2, 3] = start
        slab = DicomSeries(gre.data[:, :, start:stop], gre.affine @ shift, gre.headers)
        written += _write(dest, f"{plate}_gre", slab, {"SwigSequence": "SPGR"})
        tse = [read_dicom_series([ds.filename]) for ds in tse_headers]
        tse_distance = [abs(float((_slice_centres(t)[0] - point) @ normal)) for t in tse]
        nearest = int(np.argmin(tse_distance))
        if tse_distance[nearest] > thickness / 2:
            raise ValueError(f"no TSE slice within {thickness / 2:g} mm of the {plate} slice")
        written += _write(dest, f"{plate}_tse", tse[nearest], {"SwigSequence": "SE"})
        notes.append(f"| `{plate}_gre` | GRE slices {start}-{stop - 1} of {gre.data.shape[2]} "
                     f"(centres within {thickness / 2 + SLAB_MARGIN_MM:g} mm of the plate slice) |")
        header = tse[nearest].headers[0]
        notes.append(f"| `{plate}_tse` | TSE series {header.SeriesNumber}, image {header.InstanceNumber} "
                     f"({header.SliceThickness} mm slice), centre {tse_distance[nearest]:.2f} mm from the plate "
                     "slice centre |")
    shutil.copyfile(source / "LICENSE", dest / "LICENSE")
    written.append(dest / "LICENSE")
    for csv in sorted((source / _REFERENCE).rglob("*.csv")):
        target = dest / "reference" / csv.relative_to(source / _REFERENCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(csv, target)
        written.append(target)
    for file in ROI_TEMPLATES.values():
        (dest / "rois").mkdir(exist_ok=True)
        shutil.copyfile(source / _TEMPLATES / file, dest / "rois" / file)
        written.append(dest / "rois" / file)
    atomic_write_bytes(dest / "spheres.tsv", _sphere_table(source / _TEMPLATES, gre).encode("utf-8"))
    written.append(dest / "spheres.tsv")
    sums = "".join(f"{sha256(p)}  {p.relative_to(dest).as_posix()}\n" for p in written)
    atomic_write_bytes(dest / "README.md", _readme(notes, sums).encode("utf-8"))
    sums += f"{sha256(dest / 'README.md')}  README.md\n"
    atomic_write_bytes(dest / "SHA256SUMS", sums.encode("utf-8"))
    return [*written, dest / "README.md", dest / "SHA256SUMS"]


def _readme(notes: list[str], sums: str) -> str:
    """Write the dataset's README: source, licence, what was converted and why, checksums."""
    table = "\n".join(f"| `{line.split('  ', 1)[1]}` | `{line.split('  ', 1)[0]}` |" for line in sums.splitlines())
    return f"""# NIST/ISMRM system phantom, 3 T (MR-BIAS test set A), converted

Real scans of the NIST/ISMRM (CaliberMRI) system phantom, serial number {PHANTOM_SERIAL}, on a Siemens
Skyra 3 T on 2019-09-14, from MR-BIAS test set A: GitHub `JamesCKorte/mrbias`
({SOURCE_REPOSITORY}) at commit `{SOURCE_COMMIT}`, folders `data/mrbias_testset_A`,
`mrbias/roi_reference_values/caliber_system_phantom` (CSV) and
`mrbias/roi_detection_templates/siemens_skyra_3p0T` (`default_T1_rois.yaml`, `default_T2_rois.yaml`).
Licence: BSD-3-Clause, copyright (c) 2021 JamesCKorte; see `LICENSE`, which applies to every file here.

Written by `python -m swig_lib.experiments.phantom.convert SOURCE DEST` (the DICOM read with pydicom;
rerunning it gives these exact bytes). Images are int16 NIfTI holding the stored 12-bit magnitude
values (no rescaling; 4095 means clipped), affines in RAS+ mm. Sidecars are BIDS-style JSON with
times in seconds; a series whose inversion or echo time varies lists it per volume.

| file | content |
| --- | --- |
| `t1plate_ir` | T1 plate, one 6 mm slice, 0.98 mm, 2-D IR-TSE (TR 4.5 s, TE 6.9 ms): 10 TIs 35-3000 ms |
| `t2plate_mese` | T2 plate, one 6 mm slice, 0.98 mm, 2-D multi-echo SE (TR 5 s): 32 echoes TE 10-320 ms |
{chr(10).join(notes)}
| `spheres.tsv` | sphere centres (RAS+ mm), ROI radii; `gre_i/j/k`: voxel index on the full 1 mm GRE |
| `reference/` | reference T1/T2 per batch, field strength and temperature (copied unchanged) |
| `rois/` | the MR-BIAS ROI templates (copied unchanged) |

Why these slices: the chapter fits T1 on the T1 plate and T2 on the T2 plate, each a single 6 mm
slice, and uses the 1 mm 3-D GRE (resampled to the plate slice) and the 0.49 mm TSE as guides from
the same session. Of the 256 GRE slices only those a resampling to the plate slices needs are kept;
the variable-flip-angle GRE, the localiser, the single-slice TSE of another plate and the repeated
spin-echo pair are left out. The serial number {PHANTOM_SERIAL} (from MR-BIAS's configuration of this
test set; the DICOM headers do not hold it) selects reference batch 2 (serial numbers 130-0042 to
130-0132).

## SHA-256

| file | sha256 |
| --- | --- |
{table}
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m swig_lib.experiments.phantom.convert SOURCE DEST``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="root of the MR-BIAS originals (data/, mrbias/, LICENSE)")
    parser.add_argument("dest", type=Path, help="output folder")
    args = parser.parse_args(argv)
    for path in convert(args.source, args.dest):
        print(path)


if __name__ == "__main__":
    main()
