"""NIfTI input/output with validation: atomic writes and loaders for users' own maps and guides.

Every loader checks what would otherwise fail silently later (a map in seconds, a guide on another
voxel grid, NaNs from a failed fit inside the brain) and raises :class:`DataValidationError`, whose
message names the offending file and says how to fix it. Only voxels inside the brain mask are
validated: fitted maps often carry NaN in the background, and the loaders replace such non-finite
voxels outside the mask by 0.

Errors a user can fix derive from :class:`UserError`; the ``swig`` command prints their message as
one line and exits with their :attr:`UserError.exit_code`.

Conventions: arrays in NIfTI voxel order (X, Y, Z) with Z the axial (slice) axis; images are
reoriented to the closest canonical (RAS+) orientation on loading, so for an axial acquisition
the last axis is the slice axis. Units: PD in a.u., T1 and T2 in ms.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import nibabel as nib
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike

#: Maximum difference (mm) between two affines that still counts as the same voxel grid.
AFFINE_ATOL_MM = 1e-3

#: A T1 map whose median inside the mask is below this (ms) is taken to be in seconds.
T1_SECONDS_THRESHOLD = 10.0
#: A T2 map whose median inside the mask is below this (ms) is taken to be in seconds.
T2_SECONDS_THRESHOLD = 1.0

#: Names of the three quantitative maps, in stacking order.
MAP_NAMES: tuple[str, str, str] = ("PD", "T1", "T2")

#: Physically plausible range (low, high] of each map inside the brain: PD ≥ 0 in a.u. (any
#: scale), T1 and T2 > 0 in ms; 10 s and 5 s lie well above pure water's T1 (≈ 4.5 s at 37 °C) and
#: T2 (≈ 2-3 s) at any clinical field strength. PD's low end is inclusive.
MAP_RANGES: dict[str, tuple[float, float]] = {"PD": (0.0, float("inf")), "T1": (0.0, 10_000.0),
                                              "T2": (0.0, 5_000.0)}

#: Fraction of the brain voxels with T2 > T1 above which the T1 and T2 maps look swapped.
SWAPPED_FRACTION = 0.5

#: Marks the hidden temporary files of :func:`atomic_path` (``.<name>.<random>.tmp<suffixes>``).
TEMPORARY_MARK = ".tmp"


class UserError(Exception):
    """A problem the user can fix; the message names the file or setting, the problem and the fix.

    ``swig`` prints the message as one line ``swig <command>: error: <message>`` and exits with
    :attr:`exit_code`: 2 when the command line itself is wrong (see ``swig_lib.cli``), 1 when a
    file or folder it names cannot be used.
    """

    exit_code: int = 1


class DataValidationError(UserError, ValueError):
    """An input image cannot be used; the message names the file and the fix."""


class MissingFileError(UserError, FileNotFoundError):
    """A file that was named, or that an earlier step should have written, does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """Writing would replace an existing file, and replacing was not asked for."""


@dataclass(frozen=True)
class QMRIMaps:
    """Validated quantitative maps on one voxel grid.

    Attributes
    ----------
    maps : ndarray, shape (3, X, Y, Z), float32
        PD (a.u.), T1 (ms), T2 (ms).
    mask : ndarray, shape (X, Y, Z), bool
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    """

    maps: np.ndarray
    mask: np.ndarray
    affine: np.ndarray


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    The temporary file lives in the destination folder (so :func:`os.replace` is an atomic rename
    on the same file system), is hidden (leading dot) and keeps the destination's suffixes (so
    writers that choose the format from the name, such as nibabel's ``.nii.gz``, behave the
    same). If the body raises, the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMPORARY_MARK + "".join(target.suffixes),
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the permissions of a plain open()
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_paths(paths: Sequence[PathLike]) -> Iterator[list[Path]]:
    """Yield temporary paths for files written as one set: all are moved into place, or none.

    Each path is an :func:`atomic_path`; if the body raises, every temporary file is removed and no
    destination is touched. On success the files are renamed one after the other (renames in one
    folder do not fail for want of space).
    """
    with ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


@contextmanager
def new_folder(path: PathLike) -> Iterator[Path]:
    """Create ``path`` (and missing parents) for the body; remove those it created if the body raises.

    Folders are removed only while empty, so nothing written by others is lost.
    """
    folder = Path(path)
    created = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for made in created:  # deepest first
            with suppress(OSError):
                made.rmdir()
        raise


def destination_of(path: PathLike) -> Path:
    """Return the file that an :func:`atomic_path` temporary file stands for (any other path unchanged)."""
    file = Path(path)
    match = re.fullmatch(rf"\.(.+)\.[^.]+{re.escape(TEMPORARY_MARK)}.*", file.name)
    return file.with_name(match.group(1)) if match else file


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_path` writes left under ``folder``.

    Call it only while no write into ``folder`` is under way (e.g. under a lock).

    Returns
    -------
    list of Path
        The files removed.
    """
    stale = sorted(path for path in Path(folder).rglob(f".*{TEMPORARY_MARK}*")
                   if path.is_file() and TEMPORARY_MARK in path.name)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def writable_folder_problem(path: PathLike) -> str | None:
    """Why files cannot be written into folder ``path`` (to be created if missing), or None.

    Checks, without creating anything, that ``path`` is a writable folder or that its nearest
    existing parent is one.
    """
    folder = Path(path)
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return None


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        _write_with(tmp, lambda fh: fh.write(data))


def atomic_write_json(path: PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON (UTF-8, final newline) to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def write_csv(frame: pd.DataFrame, path: PathLike, index: bool = False) -> None:
    """Write a table as CSV to ``path`` atomically (:func:`atomic_path`); ``index`` as for ``to_csv``."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)


def read_csv(path: PathLike) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv`, floats back to the exact values written.

    pandas 3 parses floats exactly by default; pandas 2 (the newest for Python 3.10) needs the
    ``round_trip`` parser, without which values can come back one unit in the last place off.
    """
    import pandas as pd

    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, **exact)


def _write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Open ``path`` for binary writing, call ``write`` and flush to disk."""
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def sha256(path: PathLike) -> str:
    """Hex SHA-256 checksum of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nifti_image(array: np.ndarray, affine: np.ndarray, dtype: np.dtype | type | None = None,
                like: nib.Nifti1Header | None = None) -> nib.Nifti1Image:
    """Build a NIfTI-1 image of ``array``, with the header of a source image if given.

    Parameters
    ----------
    array : ndarray
        Image data in (X, Y, Z) order.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    dtype : dtype, optional
        Stored type; default float32, or uint8 for boolean arrays.
    like : nibabel.Nifti1Header, optional
        Header of the image this one derives from (same grid): its qform and sform (with their
        codes), units and ``descrip`` are kept. Default: both forms ``affine`` with code 1
        (scanner), units mm and s.
    """
    data = np.asarray(array)
    if dtype is None:
        dtype = np.uint8 if data.dtype == bool else np.float32
    image = nib.Nifti1Image(data.astype(dtype), np.asarray(affine, dtype=np.float64))
    if like is None:
        image.header.set_xyzt_units(xyz="mm", t="sec")
        image.header.set_qform(image.affine, code=1)
        image.header.set_sform(image.affine, code=1)
    else:
        image.header.set_xyzt_units(*like.get_xyzt_units())
        image.header.set_qform(like.get_qform(), code=int(like["qform_code"]))
        image.header.set_sform(like.get_sform(), code=int(like["sform_code"]))
        image.header["descrip"] = like["descrip"]
    return image


def save_nifti(path: PathLike, array: np.ndarray, affine: np.ndarray,
               dtype: np.dtype | type | None = None) -> Path:
    """Write a NIfTI-1 image (:func:`nifti_image`) atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination; ``.nii.gz`` is compressed (deterministically: nibabel writes no time stamp or
        file name into the gzip header, so equal data give equal bytes).
    array : ndarray
        Image data in (X, Y, Z) order.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    dtype : dtype, optional
        Stored type; default float32, or uint8 for boolean arrays.

    Returns
    -------
    Path
        ``path``.
    """
    image = nifti_image(array, affine, dtype)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return Path(path)


def load_nifti(path: PathLike, canonical: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI image as float32 data and its affine.

    Parameters
    ----------
    path : str or PathLike
        ``.nii`` or ``.nii.gz`` file.
    canonical : bool
        Reorient to the closest canonical (RAS+) orientation, so the last axis is the
        inferior-superior (axial slice) axis.

    Returns
    -------
    data : ndarray, float32
    affine : ndarray, shape (4, 4)

    Raises
    ------
    DataValidationError
        If the file does not exist or is not a readable NIfTI image.
    """
    file = Path(path)
    if not file.is_file():
        raise DataValidationError(f"{file}: no such file; check the path")
    try:
        image = nib.load(file)
        if canonical:
            image = nib.as_closest_canonical(image)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as err:  # nibabel raises many types for unreadable files
        raise DataValidationError(
            f"{file}: not a readable NIfTI image ({err}); convert it to .nii or .nii.gz "
            "(e.g. with dcm2niix for DICOM)"
        ) from err
    return data, np.asarray(image.affine, dtype=np.float64)


def _volume(data: np.ndarray, name: str) -> np.ndarray:
    """Squeeze trailing singleton axes and require a 3-D volume."""
    squeezed = data
    while squeezed.ndim > 3 and squeezed.shape[-1] == 1:
        squeezed = squeezed[..., 0]
    if squeezed.ndim != 3:
        raise DataValidationError(
            f"{name}: expected a 3-D volume, got shape {data.shape}; pass one 3-D volume per "
            "file (split a 4-D series, e.g. with nibabel.funcs.four_to_three)"
        )
    return squeezed


def check_same_grid(name: str, shape: tuple[int, ...], affine: np.ndarray, ref_name: str,
                    ref_shape: tuple[int, ...], ref_affine: np.ndarray,
                    atol: float = AFFINE_ATOL_MM) -> None:
    """Raise unless (shape, affine) equal (ref_shape, ref_affine) within ``atol`` mm."""
    if tuple(shape) != tuple(ref_shape):
        raise DataValidationError(
            f"{name}: shape {tuple(shape)} differs from {tuple(ref_shape)} of {ref_name}; "
            "resample it onto the same voxel grid (e.g. nilearn.image.resample_to_img)"
        )
    diff = float(np.max(np.abs(np.asarray(affine) - np.asarray(ref_affine))))
    if diff > atol:
        raise DataValidationError(
            f"{name}: its affine differs from that of {ref_name} by up to {diff:.3g} mm "
            f"(tolerance {atol:g} mm); register and resample it onto the same voxel grid "
            "(e.g. nilearn.image.resample_to_img), or fix the header if it is the same grid"
        )


def check_finite(name: str, data: np.ndarray, mask: np.ndarray | None = None) -> None:
    """Raise if ``data`` (inside ``mask``, if given) holds NaN or infinite values, saying how many."""
    inside = data if mask is None else data[mask]
    bad = int(np.size(inside) - np.count_nonzero(np.isfinite(inside)))
    if bad:
        where = "" if mask is None else " inside the mask"
        raise DataValidationError(
            f"{name}: {bad} non-finite voxel(s) (NaN or inf){where}; replace them "
            "(e.g. numpy.nan_to_num) or exclude them from the mask"
        )


def zero_nonfinite(data: np.ndarray) -> np.ndarray:
    """Return ``data`` with NaN and infinite values replaced by 0 (``data`` itself when there are none)."""
    finite = np.isfinite(data)
    return data if finite.all() else np.where(finite, data, np.zeros((), dtype=data.dtype))


def check_plausible(maps: np.ndarray, mask: np.ndarray, source: str) -> None:
    """Raise unless the stacked PD/T1/T2 ``maps`` lie in :data:`MAP_RANGES` inside ``mask``.

    Parameters
    ----------
    maps : ndarray, shape (3, X, Y, Z)
        PD (a.u.), T1 (ms), T2 (ms).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    source : str
        What made the maps, for the message (e.g. ``"model M12++.pt"``).
    """
    for label, data in zip(MAP_NAMES, maps):
        low, high = MAP_RANGES[label]
        inside = data[mask]
        finite = np.isfinite(inside)
        bad = ~finite | (inside > high) | ((inside < low) if label == "PD" else (inside <= low))
        if bad.any():
            wrong = inside[bad]
            worst = "non-finite" if not finite.all() else f"from {wrong.min():.3g} to {wrong.max():.3g}"
            unit = "a.u." if label == "PD" else "ms"
            raise DataValidationError(
                f"{source}: {int(bad.sum())} {label} value(s) inside the mask outside the physical "
                f"range ({worst} {unit}; allowed {'[' if label == 'PD' else '('}{low:g}, {high:g}]); the "
                "model's weights may be damaged or the inputs unlike its training data; nothing was "
                "written; check the inputs' units and contrasts, or retrain the model"
            )


def validate_maps(maps: np.ndarray, mask: np.ndarray, names: tuple[str, str, str] = MAP_NAMES,
                  mask_name: str = "mask") -> None:
    """Check stacked PD/T1/T2 maps (3, X, Y, Z) and a boolean mask; raise on the first problem.

    Checks: non-empty mask; finite, PD ≥ 0 and T1, T2 > 0 inside the mask; T1 and T2 in ms (a
    median inside the mask below :data:`T1_SECONDS_THRESHOLD` or :data:`T2_SECONDS_THRESHOLD` means
    seconds). Voxels outside the mask are not checked. Warns (:class:`UserWarning`) when T2 > T1 in
    more than :data:`SWAPPED_FRACTION` of the mask: T1 and T2 look swapped.

    Parameters
    ----------
    maps : ndarray, shape (3, X, Y, Z)
        PD (a.u.), T1 (ms), T2 (ms).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    names : tuple of str
        How to name each map in messages (e.g. its file).
    mask_name : str
        How to name the mask in messages.
    """
    if not mask.any():
        raise DataValidationError(
            f"{mask_name}: empty mask (no voxel selected); pass the brain mask, non-zero inside "
            "the brain"
        )
    for name, data in zip(names, maps):
        check_finite(name, data, mask)
    pd_name, t1_name, t2_name = names
    negative = int(np.count_nonzero(maps[0][mask] < 0))
    if negative:
        raise DataValidationError(
            f"{pd_name}: {negative} voxel(s) inside the mask have PD < 0; clip them at 0 or "
            "exclude them from the mask"
        )
    for name, data, label, threshold in ((t1_name, maps[1], "T1", T1_SECONDS_THRESHOLD),
                                         (t2_name, maps[2], "T2", T2_SECONDS_THRESHOLD)):
        inside = data[mask]
        bad = int(np.count_nonzero(inside <= 0))
        if bad:
            raise DataValidationError(
                f"{name}: {bad} voxel(s) inside the mask have {label} <= 0 ms (failed fit or "
                "background); exclude them from the mask (e.g. mask & (map > 0)) or fill them"
            )
        median = float(np.median(inside))
        if median < threshold:
            raise DataValidationError(
                f"{name}: {label} values look like seconds (median {median:.3g} inside the mask); "
                "multiply the map by 1000 to give milliseconds"
            )
    swapped = float(np.mean(maps[2][mask] > maps[1][mask]))
    if swapped > SWAPPED_FRACTION:
        warnings.warn(
            f"{t1_name}, {t2_name}: T2 > T1 in {100 * swapped:.0f} % of the mask, where tissue has "
            "T1 > T2; the T1 and T2 maps look swapped, check which file is which",
            UserWarning, stacklevel=2,
        )


def load_qmri_maps(pd: PathLike, t1: PathLike, t2: PathLike, mask: PathLike | None = None,
                   atol: float = AFFINE_ATOL_MM) -> QMRIMaps:
    """Load and validate a user's PD, T1 and T2 maps (and brain mask) on one voxel grid.

    Parameters
    ----------
    pd, t1, t2 : str or PathLike
        NIfTI files of PD (a.u., any scale), T1 (ms) and T2 (ms).
    mask : str or PathLike, optional
        Brain mask (non-zero inside). Default: the voxels where PD, T1 and T2 are all > 0.
    atol : float
        Tolerance (mm) on the affines.

    Returns
    -------
    QMRIMaps
        Non-finite voxels (only outside the mask, where they are allowed) replaced by 0.

    Raises
    ------
    DataValidationError
        Not a 3-D volume; shapes or affines differ; non-finite mask; empty mask; non-finite
        values, PD < 0 or T1/T2 ≤ 0 inside the mask; T1/T2 apparently in seconds. The message
        names the file.
    """
    paths = {"PD": Path(pd), "T1": Path(t1), "T2": Path(t2)}
    volumes, affine = [], None
    for label, path in paths.items():
        name = f"{label} map {path}"
        data, aff = load_nifti(path)
        data = _volume(data, name)
        if affine is None:
            affine, ref = aff, (name, data.shape)
        else:
            check_same_grid(name, data.shape, aff, ref[0], ref[1], affine, atol)
        volumes.append(data)
    maps = np.stack(volumes).astype(np.float32)
    names = tuple(f"{label} map {path}" for label, path in paths.items())
    if mask is None:
        mask_b = np.all(np.isfinite(maps) & (maps > 0), axis=0)
        mask_name = f"mask derived from {paths['PD']} (PD, T1, T2 > 0)"
    else:
        mask_name = f"mask {Path(mask)}"
        data, aff = load_nifti(mask)
        data = _volume(data, mask_name)
        check_same_grid(mask_name, data.shape, aff, ref[0], ref[1], affine, atol)
        check_finite(mask_name, data)
        mask_b = data != 0
    validate_maps(maps, mask_b, names, mask_name)  # type: ignore[arg-type]
    return QMRIMaps(zero_nonfinite(maps), mask_b, affine)


def load_guides(t1w: PathLike | None = None, t2w: PathLike | None = None,
                reference_affine: np.ndarray | None = None,
                reference_shape: tuple[int, int, int] | None = None,
                atol: float = AFFINE_ATOL_MM, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Load and validate the weighted guide images (any intensity scale).

    Parameters
    ----------
    t1w, t2w : str or PathLike, optional
        NIfTI files of the T1-weighted and T2-weighted guides; at least one.
    reference_affine, reference_shape : optional
        The grid of the quantitative maps; every guide must lie on it (default: the first guide's).
    atol : float
        Tolerance (mm) on the affines.
    mask : ndarray of bool, optional
        Brain mask on the reference grid: only its voxels must be finite (default: every voxel).

    Returns
    -------
    dict
        ``{"T1w": (X, Y, Z) float32, "T2w": ...}`` for the guides given, non-finite voxels
        (outside ``mask``) replaced by 0.

    Raises
    ------
    DataValidationError
        No guide; not a 3-D volume; non-finite values (inside ``mask``); grid differs from the
        reference.
    """
    given = {name: Path(p) for name, p in (("T1w", t1w), ("T2w", t2w)) if p is not None}
    if not given:
        raise DataValidationError("no guide image given; pass t1w=... and/or t2w=... (NIfTI files)")
    guides: dict[str, np.ndarray] = {}
    ref_name = "the quantitative maps"
    for label, path in given.items():
        name = f"{label} guide {path}"
        data, aff = load_nifti(path)
        data = _volume(data, name)
        if reference_affine is None:
            reference_affine, reference_shape, ref_name = aff, data.shape, name
        check_same_grid(name, data.shape, aff, ref_name,
                        data.shape if reference_shape is None else reference_shape,
                        reference_affine, atol)
        check_finite(name, data, mask)
        guides[label] = zero_nonfinite(data)
    return guides
