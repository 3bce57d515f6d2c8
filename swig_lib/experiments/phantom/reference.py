"""Sphere positions and reference values of the NIST/ISMRM system phantom, and per-sphere statistics.

Works on the converted copy (:mod:`swig_lib.experiments.phantom.convert`): ``spheres.tsv`` gives
each sphere's centre in RAS+ mm, ``reference/`` the manufacturer's T1 and T2 per batch, field
strength and temperature. Sphere k of a plate (``t1_roi_k``, ``t2_roi_k`` in MR-BIAS) holds
solution ``T1-k`` or ``T2-k`` of the reference tables; k = 1 has the longest relaxation times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Sphere:
    """One sphere of the phantom.

    Attributes
    ----------
    plate : str
        ``"T1"`` or ``"T2"``: the plate (array) holding it.
    number : int
        Sphere number 1-14 on its plate.
    centre : tuple of float
        Centre, RAS+ mm.
    radius : float
        Radius of the region of interest, mm (MR-BIAS uses 5 mm, well inside the sphere).
    """

    plate: str
    number: int
    centre: tuple[float, float, float]
    radius: float


def read_spheres(path: str | Path, plate: str | None = None) -> list[Sphere]:
    """Read ``spheres.tsv``; keep one plate's spheres if ``plate`` is given.

    Parameters
    ----------
    path : str or Path
        The ``spheres.tsv`` of the converted copy.
    plate : str, optional
        ``"T1"`` or ``"T2"``.
    """
    table = pd.read_csv(path, sep="\t")
    if plate is not None:
        table = table[table["plate"] == plate]
    return [Sphere(str(r.plate), int(r.sphere), (float(r.x_mm), float(r.y_mm), float(r.z_mm)), float(r.radius_mm))
            for r in table.itertuples()]


def sphere_masks(shape: tuple[int, ...], affine: np.ndarray, spheres: list[Sphere]) -> np.ndarray:
    """Boolean masks of the spheres' regions of interest on an image grid.

    A voxel belongs to a sphere's region if its centre lies within the radius of the sphere's
    centre in the image plane, i.e. after removing the component along the image's third
    (slice) axis: a disc on a single slice, the same disc on every slice of a slab.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape (X, Y, Z) of the image.
    affine : ndarray, shape (4, 4)
        Voxel-to-RAS+ affine, mm.
    spheres : list of Sphere

    Returns
    -------
    ndarray of bool, shape (len(spheres), X, Y, Z)
    """
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape[:3]), indexing="ij"), axis=-1)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    masks = np.empty((len(spheres), *shape[:3]), dtype=bool)
    for n, sphere in enumerate(spheres):
        offset = world - np.asarray(sphere.centre)
        in_plane = offset - (offset @ normal)[..., None] * normal
        masks[n] = np.einsum("...i,...i->...", in_plane, in_plane) <= sphere.radius**2
    return masks


def sphere_medians(image: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Median of ``image`` in each mask (NaN for an empty region).

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
    masks : ndarray of bool, shape (n, X, Y, Z)
    valid : ndarray of bool, shape (X, Y, Z), optional
        Voxels to use (e.g. those the fit could fit); default all.
    """
    keep = masks if valid is None else masks & valid
    return np.array([np.median(image[m]) if m.any() else np.nan for m in keep])


def batch_folder(reference: str | Path, serial: str) -> Path:
    """Find the reference folder of the batch that holds phantom ``serial`` (format ``130-0093``).

    Folders are named ``batch<id>_sn_<lte|gte>_<serial>``: a ``lte`` batch holds serial numbers
    up to its own, a ``gte`` batch those from its own to the next ``gte`` batch's.

    Raises
    ------
    ValueError
        If no batch holds ``serial``.
    """
    key = _serial_key(serial)
    lower, upper = [], []
    for folder in Path(reference).iterdir():
        match = re.fullmatch(r"batch\w*?_sn_(lte|gte)_(\d+-\d+)", folder.name)
        if match:
            (upper if match[1] == "lte" else lower).append((_serial_key(match[2]), folder))
    for bound, folder in sorted(upper):
        if key <= bound:
            return folder
    starts = [(bound, folder) for bound, folder in sorted(lower) if bound <= key]
    if not starts:
        raise ValueError(f"no reference batch in {reference} holds serial number {serial}")
    return starts[-1][1]


def _serial_key(serial: str) -> tuple[int, ...]:
    """``"130-0093"`` as (130, 93), for ordering."""
    return tuple(int(part) for part in serial.split("-"))


def reference_table(folder: str | Path, plate: str, field_strength: float = 3.0) -> pd.DataFrame:
    """Read the reference T1 and T2 of a plate's spheres in one batch, at every temperature listed.

    Parameters
    ----------
    folder : str or Path
        A batch folder (:func:`batch_folder`).
    plate : str
        ``"T1"`` or ``"T2"``.
    field_strength : float
        Tesla; the file whose field strength rounds to it (3.00672 T files count as 3 T).

    Returns
    -------
    DataFrame
        Columns ``sphere``, ``temperature_C``, ``T1_ms``, ``T2_ms``; files without a solution
        column list spheres 1-14 in order.

    Raises
    ------
    ValueError
        If the batch has no table for ``plate`` at ``field_strength``.
    """
    for path in sorted(Path(folder).glob(f"{plate}-*.csv")):
        table = pd.read_csv(path, thousands=",")
        fields = pd.to_numeric(table["Field strength (T)"], errors="coerce")
        if not np.allclose(fields.round(1), field_strength):
            continue
        sphere = (table["Solution"].str.split("-").str[1].astype(int) if "Solution" in table
                  else pd.Series(np.arange(1, len(table) + 1)))
        return pd.DataFrame({"sphere": sphere, "temperature_C": table["Temp (C)"].astype(float),
                             "T1_ms": table["T1 reported (ms)"].astype(float),
                             "T2_ms": table["T2 reported (ms)"].astype(float)})
    raise ValueError(f"{folder}: no {plate} reference table at {field_strength:g} T")


def choose_temperature(table: pd.DataFrame, quantity: str, measured: pd.Series,
                       measurable: tuple[float, float]) -> tuple[float, pd.DataFrame]:
    """Choose the reference temperature from the data: the best fit of measured to reference values.

    The scans do not record the phantom's temperature, but its relaxation times depend on it. For
    every temperature of ``table``, the root mean square of ln(measured/reference) over the
    spheres whose reference value lies in the ``measurable`` range at every temperature; the
    temperature with the smallest wins.

    Parameters
    ----------
    table : DataFrame
        :func:`reference_table` of one plate.
    quantity : str
        ``"T1"`` or ``"T2"``: the column ``<quantity>_ms`` compared.
    measured : Series
        Measured values (ms) indexed by sphere number; NaN where not measured.
    measurable : (float, float)
        Range of values (ms) the measurement can resolve.

    Returns
    -------
    temperature : float
        °C.
    fits : DataFrame
        Columns ``temperature_C``, ``n_spheres``, ``rms_log_ratio``, one row per temperature.

    Raises
    ------
    ValueError
        If no measured sphere is measurable at every temperature.
    """
    values = table.pivot(index="sphere", columns="temperature_C", values=f"{quantity}_ms")
    lo, hi = measurable
    usable = values.index[((values >= lo) & (values <= hi)).all(axis=1)]
    usable = [s for s in usable if s in measured.index and np.isfinite(measured[s]) and measured[s] > 0]
    if not usable:
        raise ValueError(f"no measured sphere has a reference {quantity} in [{lo:g}, {hi:g}] ms at every temperature")
    logs = np.log(measured[usable].to_numpy()[:, None] / values.loc[usable].to_numpy())
    fits = pd.DataFrame({"temperature_C": values.columns.astype(float), "n_spheres": len(usable),
                         "rms_log_ratio": np.sqrt(np.mean(logs**2, axis=0))})
    return float(fits.loc[fits["rms_log_ratio"].idxmin(), "temperature_C"]), fits
