"""The real-scan chapter (notebook 07): the NIST/ISMRM phantom fitted, degraded by Φ and super-resolved.

For each plate (:data:`swig_lib.experiments.phantom.plates.PLATES`) of the repository's converted
copy of the real 3 T scans, :func:`run_phantom_chapter`

1. fits the HR maps (T1 from the IR series, T2 from the multi-echo SE series): the **HR fit**;
2. degrades the real images with the paper's Φ, k-space truncation to ``keep`` of each axis
   with *no* added noise (the scan's own noise stays in), and fits the LR maps **Q_l** from the
   truncated series (T2: samples that Φ mixed with clipped ones excluded);
3. super-resolves Q_l scan-specifically (:mod:`swig_lib.experiments.phantom.superres`): an INR
   of this slice's maps fitted with the SWIG loss through the series' own signal model and the
   guide from the same session (T1 plate: the 1 mm 3-D GRE averaged over the slice; T2 plate: the
   0.49 mm TSE averaged over each voxel): **SR**;
4. compares the three per sphere with the manufacturer's reference (batch from the phantom's
   serial number, temperature chosen from the data: the table temperature whose T1 best fits the
   HR fit, :func:`swig_lib.experiments.phantom.reference.choose_temperature`) and with the HR fit;
   scores the relaxation maps against the HR fit by SSIM and HFEN in the phantom mask; and measures,
   in rings from each sphere's centre out past its wall, how far out each source still holds the
   sphere's value.

Only the repository copy is read (``datasets/nist-phantom``, relative to the repository root,
the notebooks' working directory). Outputs under ``<results_dir>/<profile>/phantom/``: the tables
as CSV (``spheres``, ``metrics``, ``rings``, ``recovery``, ``temperature``, ``terms``, ``losses``) and
``info.json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from swig_lib.core.io import atomic_write_json, write_csv
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.metrics import hfen, ssim
from swig_lib.experiments.arms.scan_specific import INRSettings
from swig_lib.experiments.config import Profile, check_known_fields, load_profile
from swig_lib.experiments.phantom.convert import PHANTOM_SERIAL
from swig_lib.experiments.phantom.plates import (
    PLATES,
    Plate,
    PlateData,
    clip_leak,
    degrade,
    fit_maps,
    load_plate,
    measurable_range,
)
from swig_lib.experiments.phantom.reference import (
    Sphere,
    batch_folder,
    choose_temperature,
    read_spheres,
    reference_table,
    sphere_masks,
    sphere_medians,
)
from swig_lib.experiments.phantom.superres import SeriesProblem, SRFit, phantom_loss, super_resolve

#: The converted copy, relative to the repository root.
COPY = Path("datasets", "nist-phantom")
#: Map sources, in table order: the HR fit, the LR fit of the truncated series, the SR output.
SOURCES: tuple[str, str, str] = ("HR", "Q_l", "SR")
#: Edges of the rings of the recovery analysis, mm from the sphere centre: a 3 mm central disc
#: (about 30 voxels; the inner 1 mm rings hold too few for a median), then 1 mm rings past the wall.
RING_EDGES_MM: tuple[int, ...] = (0, 3, 4, 5, 6, 7, 8, 9)
#: The sphere wall is where the HR amplitude falls below this fraction of its value at the centre.
WALL_FRACTION = 0.5
#: Keys of ``[phantom.inr]``: the :class:`INRSettings` fields a profile sets (the seed is the
#: profile's, the start is Q_l).
INR_KEYS = ("n_frequencies", "sigma_freq", "width", "depth", "steps", "lr")


@dataclass(frozen=True)
class PhantomSettings:
    """The ``[phantom]`` section of a profile (see ``profiles.toml``).

    Attributes
    ----------
    keep : float
        Φ's kept fraction of each k-space axis.
    dc_dilation : int
        Voxels by which the phantom mask is dilated for L_l.
    tolerance : float
        Relative error below which a ring's value counts as recovered.
    crop : (int, int)
        In-plane window around the plate's spheres, voxels; (0, 0) keeps the whole field of view.
    inr : INRSettings
        The scan-specific INR (seeded with the profile's seed).
    """

    keep: float
    dc_dilation: int
    tolerance: float
    crop: tuple[int, int]
    inr: INRSettings

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> PhantomSettings:
        """Read ``profile["phantom"]`` and its ``inr`` table; unknown or missing keys raise KeyError."""
        section = dict(profile["phantom"])
        inr = dict(section.pop("inr"))
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "inr"]
        check_known_fields(cls, section, "phantom")
        unknown = set(inr) - set(INR_KEYS)
        if unknown:
            raise KeyError(f"unknown phantom.inr setting(s) {sorted(unknown)}; known: {list(INR_KEYS)}")
        missing = [f"phantom.{k}" for k in fields if k not in section] + [
            f"phantom.inr.{k}" for k in INR_KEYS if k not in inr]
        if missing:
            raise KeyError(f"missing setting(s) {missing}")
        crop = (int(section["crop"][0]), int(section["crop"][1]))
        return cls(keep=float(section["keep"]), dc_dilation=int(section["dc_dilation"]),
                   tolerance=float(section["tolerance"]), crop=crop,
                   inr=INRSettings(**inr, seed=int(profile["seed"])))

    @property
    def window(self) -> tuple[int, int] | None:
        """The crop window, or None for the whole field of view."""
        return None if self.crop == (0, 0) else self.crop


@dataclass(frozen=True)
class PlateResult:
    """One plate through the chapter.

    Attributes
    ----------
    data : PlateData
        The series, guide and masks.
    maps : dict of str to Tensor
        ``"HR"``, ``"Q_l"``, ``"SR"``: (n_maps, X, Y) maps, a.u. and ms.
    sr : SRFit
        The SR fit (loss history, α, time).
    spheres : list of Sphere
        The plate's spheres.
    masks : ndarray
        (14, X, Y) bool: each sphere's 5 mm region of interest.
    measurable : (float, float)
        Relaxation times the series can measure, ms.
    seconds : dict of str to float
        Wall time of the HR fit, the LR fit and the SR fit, s.
    terms : dict of str to (float, float)
        The SR loss's two terms (L_l, L_h) at each source's maps (on the SR support).
    """

    data: PlateData
    maps: dict[str, Tensor]
    sr: SRFit
    spheres: list[Sphere]
    masks: np.ndarray
    measurable: tuple[float, float]
    seconds: dict[str, float]
    terms: dict[str, tuple[float, float]]

    @property
    def plate(self) -> Plate:
        """The plate."""
        return self.data.plate

    def relaxation(self, source: str) -> np.ndarray:
        """The (X, Y) relaxation-time map (T1 or T2, ms) of ``source`` as float64."""
        return self.maps[source][self.plate.relaxation].double().numpy()


@dataclass(frozen=True)
class PhantomResults:
    """Everything :func:`run_phantom_chapter` produces.

    Attributes
    ----------
    spheres : DataFrame
        Per plate and sphere: ``reference_ms``, ``measurable``, ``HR_ms``, ``Q_l_ms``, ``SR_ms``
        (ROI medians) and the errors ``<source>_vs_reference_pct``, ``Q_l_vs_HR_pct``,
        ``SR_vs_HR_pct``.
    metrics : DataFrame
        Per plate and source (Q_l, SR): ``map``, ``ssim``, ``hfen`` against the HR fit.
    rings : DataFrame
        Per plate, measurable sphere and ring (:data:`RING_EDGES_MM`): ``inner_mm``, ``outer_mm``,
        the sphere's value ``sphere_HR_ms`` (its HR ROI median), the ring medians ``<source>_ms``
        and their errors ``<source>_error_pct`` against the sphere's value.
    recovery : DataFrame
        Per plate, source and ring: ``outer_mm``, ``median_abs_error_pct`` over the measurable
        spheres, ``recovered`` (every ring out to this one within the tolerance).
    temperature : DataFrame
        The temperature choice: ``temperature_C``, ``n_spheres``, ``rms_log_ratio``.
    terms : DataFrame
        Per plate and source: ``loss_lr`` (L_l) and ``loss_guide`` (L_h) of the SR loss at its maps.
    plates : dict of str to PlateResult
    info : dict
        Serial number, batch, temperature, Φ, tolerance, per plate σ, α, measurable range, wall
        radius, recovered radius per source, timings; the settings.
    """

    spheres: pd.DataFrame
    metrics: pd.DataFrame
    rings: pd.DataFrame
    recovery: pd.DataFrame
    temperature: pd.DataFrame
    terms: pd.DataFrame
    plates: dict[str, PlateResult]
    info: dict[str, Any]


def run_plate(folder: Path, plate: Plate, settings: PhantomSettings, device: torch.device | str = "cpu") -> PlateResult:
    """Fit, degrade and super-resolve one plate (steps 1-3 of the module notes)."""
    data = load_plate(folder, plate, settings.window)
    phi = KSpaceTruncation(settings.keep)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    q_h = fit_maps(plate, data.images, data.times, data.mask)
    seconds["fit_hr"] = time.perf_counter() - start
    c_l = degrade(data.images, phi)
    exclude = clip_leak(data.images, phi) if plate.name == "T2" else None
    start = time.perf_counter()
    q_l = fit_maps(plate, c_l, data.times, data.mask, exclude)
    seconds["fit_lr"] = time.perf_counter() - start
    problem = SeriesProblem.build(data, c_l, q_l, phi, settings.dc_dilation, device)
    sr = super_resolve(problem, q_l, settings.inr)
    seconds["sr"] = sr.seconds
    maps = {"HR": q_h, "Q_l": q_l, "SR": sr.maps}
    with torch.no_grad():
        terms = {source: phantom_loss(maps[source].to(problem.c_l) * problem.support, problem, 0.0)
                 for source in SOURCES}
    spheres = read_spheres(folder / "spheres.tsv", plate.name)
    shape = (data.images.shape[1], data.images.shape[2], 1)
    return PlateResult(
        data=data, maps=maps, sr=sr, spheres=spheres, masks=sphere_masks(shape, data.affine, spheres)[..., 0],
        measurable=measurable_range(plate, data.times), seconds=seconds,
        terms={source: (float(t.data), float(t.guide)) for source, t in terms.items()},
    )


def _medians(result: PlateResult, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Median relaxation time of every source in each mask, over the voxels it fitted (> 0)."""
    return {source: sphere_medians(result.relaxation(source), masks, result.relaxation(source) > 0)
            for source in SOURCES}


def sphere_table(plates: Mapping[str, PlateResult], references: Mapping[str, pd.DataFrame],
                 temperature: float) -> pd.DataFrame:
    """Per-sphere ROI medians of the three sources against the reference and the HR fit."""
    rows = []
    for name, result in plates.items():
        table = references[name]
        reference = table[table["temperature_C"] == temperature].set_index("sphere")[f"{name}_ms"]
        medians = _medians(result, result.masks)
        lo, hi = result.measurable
        for index, sphere in enumerate(result.spheres):
            ref = float(reference[sphere.number])
            row: dict[str, Any] = {"plate": name, "sphere": sphere.number, "reference_ms": ref,
                                   "measurable": bool(lo <= ref <= hi)}
            row |= {f"{source}_ms": float(medians[source][index]) for source in SOURCES}
            row |= {f"{source}_vs_reference_pct": 100.0 * (row[f"{source}_ms"] / ref - 1.0) for source in SOURCES}
            row |= {f"{source}_vs_HR_pct": 100.0 * (row[f"{source}_ms"] / row["HR_ms"] - 1.0) for source in SOURCES[1:]}
            rows.append(row)
    return pd.DataFrame(rows)


def map_metrics(plates: Mapping[str, PlateResult]) -> pd.DataFrame:
    """SSIM and HFEN of the Q_l and SR relaxation maps against the HR fit, in the phantom mask.

    The mask keeps the phantom voxels where the HR fit has a value (not the fluid whose echoes are
    clipped), and every map is first clipped to the plate's measurable range: outside it (sphere
    walls, the shortest and longest times) no source holds a reliable value, and fit failures
    would set SSIM's data range and dominate HFEN's norms.
    """
    rows = []
    for name, result in plates.items():
        lo, hi = result.measurable
        mask = result.data.mask.numpy() & (result.relaxation("HR") > 0)
        reference = np.clip(result.relaxation("HR"), lo, hi)
        for source in SOURCES[1:]:
            candidate = np.clip(result.relaxation(source), lo, hi)
            rows.append({"plate": name, "map": name, "source": source, "ssim": ssim(candidate, reference, mask),
                         "hfen": hfen(candidate, reference, mask)})
    return pd.DataFrame(rows)


def _ring_masks(result: PlateResult, spheres: list[Sphere]) -> np.ndarray:
    """(len(spheres), len(RING_EDGES_MM) − 1, X, Y) bool: ring k holds the voxels at edge_k < r ≤ edge_k+1.

    The first ring is the whole central disc, its centre included.
    """
    shape = (result.data.images.shape[1], result.data.images.shape[2], 1)
    discs = np.stack([sphere_masks(shape, result.data.affine,
                                   [dataclasses.replace(s, radius=float(r)) for s in spheres])[..., 0]
                      for r in RING_EDGES_MM], axis=1)  # discs[:, k]: within RING_EDGES_MM[k]
    rings = discs[:, 1:] & ~discs[:, :-1]
    rings[:, 0] = discs[:, 1]
    return rings


def ring_table(plates: Mapping[str, PlateResult], spheres: pd.DataFrame) -> pd.DataFrame:
    """Ring medians of the measurable spheres against the sphere's value (its HR ROI median).

    Columns: ``plate``, ``sphere``, ``inner_mm``, ``outer_mm``, ``sphere_HR_ms``, and per source
    the ring median ``<source>_ms`` and its error ``<source>_error_pct`` against ``sphere_HR_ms``.
    """
    rows = []
    for name, result in plates.items():
        own = spheres[(spheres["plate"] == name) & spheres["measurable"]].set_index("sphere")
        chosen = [s for s in result.spheres if s.number in own.index]
        if not chosen:
            continue
        rings = _ring_masks(result, chosen)
        for index, sphere in enumerate(chosen):
            medians = _medians(result, rings[index])
            value = float(own.loc[sphere.number, "HR_ms"])
            for k in range(len(RING_EDGES_MM) - 1):
                row: dict[str, Any] = {"plate": name, "sphere": sphere.number, "inner_mm": float(RING_EDGES_MM[k]),
                                       "outer_mm": float(RING_EDGES_MM[k + 1]), "sphere_HR_ms": value}
                for source in SOURCES:
                    row[f"{source}_ms"] = float(medians[source][k])
                    row[f"{source}_error_pct"] = 100.0 * (row[f"{source}_ms"] / value - 1.0)
                rows.append(row)
    return pd.DataFrame(rows)


def recovery_table(rings: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per plate, source and ring: the median ``|error|`` over the spheres, and whether it is recovered.

    A ring is ``recovered`` when its median ``|error|`` and that of every ring inside it are at most
    ``tolerance`` (relative).
    """
    rows = []
    for (name, outer), group in rings.groupby(["plate", "outer_mm"]):
        for source in SOURCES:
            rows.append({"plate": name, "source": source, "outer_mm": outer,
                         "median_abs_error_pct": float(group[f"{source}_error_pct"].abs().median())})
    table = pd.DataFrame(rows).sort_values(["plate", "source", "outer_mm"], ignore_index=True)
    within = table["median_abs_error_pct"] <= 100.0 * tolerance
    table["recovered"] = within.groupby([table["plate"], table["source"]]).cummin()
    return table


def wall_radius(result: PlateResult, spheres: list[Sphere]) -> float:
    """Radius (mm) at which the HR amplitude first falls below :data:`WALL_FRACTION` of the centre's.

    The median over ``spheres`` of the inner radius of the first such ring; the sphere wall (no
    signal) begins there.
    """
    amplitude = result.maps["HR"][0].double().numpy()
    rings = _ring_masks(result, spheres)
    radii = []
    for index in range(len(spheres)):
        medians = sphere_medians(amplitude, rings[index])
        below = np.nonzero(medians < WALL_FRACTION * medians[0])[0]
        radii.append(float(RING_EDGES_MM[below[0]]) if below.size else float("nan"))
    return float(np.nanmedian(radii))


def run_phantom_chapter(
    profile: Profile | str,
    results_dir: str | Path,
    folder: str | Path = COPY,
    device: torch.device | str = "cpu",
) -> PhantomResults:
    """Run the real-scan chapter: both plates, the reference comparison, metrics and rings.

    Parameters
    ----------
    profile : Profile or str
        The profile (its ``[phantom]`` section and ``seed``) or its name.
    results_dir : str or Path
        Results root; outputs go to ``<results_dir>/<profile>/phantom/``.
    folder : str or Path
        The converted copy of the phantom scans (default :data:`COPY`).
    device : torch.device or str
        Where the SR fit runs (the voxel-wise fits run on the CPU in float64).

    Returns
    -------
    PhantomResults
    """
    config = load_profile(profile) if isinstance(profile, str) else profile
    settings = PhantomSettings.from_profile(config)
    folder = Path(folder)
    plates = {name: run_plate(folder, plate, settings, device) for name, plate in PLATES.items()}
    batch = batch_folder(folder / "reference", PHANTOM_SERIAL)
    references = {name: reference_table(batch, name) for name in PLATES}
    t1 = plates["T1"]
    hr_t1 = pd.Series(_medians(t1, t1.masks)["HR"], index=[s.number for s in t1.spheres])
    temperature, fits = choose_temperature(references["T1"], "T1", hr_t1, t1.measurable)
    spheres = sphere_table(plates, references, temperature)
    rings = ring_table(plates, spheres)
    recovery = recovery_table(rings, settings.tolerance)
    info: dict[str, Any] = {
        "profile": config["name"], "serial": PHANTOM_SERIAL, "batch": batch.name, "temperature_C": temperature,
        "keep": settings.keep, "tolerance": settings.tolerance, "crop": list(settings.crop),
        "inr": dataclasses.asdict(settings.inr), "plates": {},
    }
    for name, result in plates.items():
        measurable = [s for s in result.spheres
                      if s.number in set(spheres[(spheres["plate"] == name) & spheres["measurable"]]["sphere"])]
        recovered = {source: float(part.loc[part["recovered"], "outer_mm"].max()) if part["recovered"].any() else 0.0
                     for source, part in recovery[recovery["plate"] == name].groupby("source")}
        info["plates"][name] = {
            "series": result.plate.series, "guide": result.plate.guide, "sigma": result.data.sigma,
            "alpha": result.sr.alpha, "measurable_ms": list(result.measurable),
            "measurable_spheres": [s.number for s in measurable],
            "wall_radius_mm": wall_radius(result, measurable) if measurable else float("nan"),
            "recovered_to_mm": recovered, "seconds": result.seconds,
            "sr_seconds_per_step": result.sr.seconds / max(1, len(result.sr.history)),
        }
    terms = pd.DataFrame([{"plate": name, "source": source, "loss_lr": lr, "loss_guide": guide}
                          for name, result in plates.items() for source, (lr, guide) in result.terms.items()])
    results = PhantomResults(spheres=spheres, metrics=map_metrics(plates), rings=rings, recovery=recovery,
                             temperature=fits, terms=terms, plates=plates, info=info)
    _write(results, Path(results_dir) / config["name"] / "phantom")
    return results


def _write(results: PhantomResults, out: Path) -> None:
    """Write the tables, the SR loss histories and ``info.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("spheres", "metrics", "rings", "recovery", "temperature", "terms"):
        write_csv(getattr(results, name), out / f"{name}.csv")
    losses = pd.concat([r.sr.history.assign(plate=name) for name, r in results.plates.items()], ignore_index=True)
    write_csv(losses, out / "losses.csv")
    atomic_write_json(out / "info.json", results.info)
