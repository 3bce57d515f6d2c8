"""The two plates of the phantom as relaxometry experiments: series, signal models, guides, fits.

The chapter (:mod:`swig_lib.experiments.phantom.chapter`) treats each plate of the converted copy
(:mod:`swig_lib.experiments.phantom.convert`) as one single-slice experiment, :class:`Plate`:

* **T1 plate**: magnitude inversion recovery over 10 TIs (IR-TSE, TR 4.5 s); maps (a, b, T1) of
  ``S(TI) = |a − b·e^(−TI/T1)|`` (:func:`swig_lib.core.relaxometry.fit_inversion_recovery`);
  guide: the 1 mm 3-D spoiled GRE, averaged over the 6 mm slice.
* **T2 plate**: 32-echo spin echo (TR 5 s, TE 10-320 ms); maps (A, T2) of ``S(TE) = A·e^(−TE/T2)``
  with clipped samples excluded (:func:`swig_lib.core.relaxometry.fit_multi_echo_t2`); guide: the
  0.49 mm 2-D TSE, averaged over each map voxel.

Images are the stored 12-bit magnitudes (a.u.); a sample at :data:`CLIP_12BIT` is clipped. The
series' own signal models (:func:`synthesise_series`) end in that clipping, so they describe the
stored images exactly where the maps are right. Units: times in ms, lengths in mm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from swig_lib.core.io import load_nifti
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.relaxometry import CLIP_12BIT, fit_inversion_recovery, fit_multi_echo_t2
from swig_lib.core.sequences import GuideProtocol, guide_signal, read_sidecar
from swig_lib.experiments.phantom.reference import read_spheres

#: Weight of clipped HR samples in an LR sample (Φ of the clipped-sample indicator) above which the
#: LR fit treats the LR sample as clipped too. At keep 0.5 it marks a clipped region (Φ of its
#: indicator is about 0.73 on its edge voxels, 0.24 one voxel out) and an isolated clipped voxel
#: (0.28), but not the Gibbs side lobes of a large clipped region (up to 0.09), which would
#: otherwise wipe out the spheres next to the clipped fluid.
CLIP_LEAK = 0.25
#: Fraction of the 99th percentile of the brightest image above which a voxel is phantom (the
#: background holds noise of about 1 % of it); holes (sphere walls, plate) are filled.
MASK_THRESHOLD = 0.1
#: Voxels between the phantom and the background used to estimate the noise (ghosts, ringing).
BACKGROUND_MARGIN = 10
#: A fit whose amplitude exceeds this many times the clip value extrapolated from the last few
#: unclipped samples alone; :func:`fit_maps` reports such voxels as not fitted.
AMPLITUDE_LIMIT = 100.0


@dataclass(frozen=True)
class Plate:
    """One plate of the phantom and how the chapter measures it.

    Attributes
    ----------
    name : str
        ``"T1"`` or ``"T2"``: the plate, and the relaxation time it measures.
    series : str
        File stem of the relaxometry series in the converted copy.
    times_key : str
        Sidecar key listing the time that varies along the series (seconds).
    guide : str
        File stem of the guide (an image of the same session at higher resolution).
    maps : tuple of str
        Names of the fitted maps, in channel order (the relaxation time last).
    first_factor : float
        A relaxation time T counts as measurable when ``first_factor·t_1 ≤ T ≤ t_N`` for the
        series' times t_1 < ... < t_N (:func:`measurable_range`).
    """

    name: str
    series: str
    times_key: str
    guide: str
    maps: tuple[str, ...]
    first_factor: float

    @property
    def relaxation(self) -> int:
        """Channel index of the relaxation time in :attr:`maps`."""
        return len(self.maps) - 1


#: The two plates. T1: the recovery must be sampled before it is half done (TI_1 ≤ T1/2) and the
#: last TI must reach T1. T2: at least three echoes within one T2 (3·TE_1 ≤ T2; shorter T2 leave
#: the fit to the noise floor of the late echoes), and the train must decay by 1/e (T2 ≤ TE_N).
PLATES: dict[str, Plate] = {
    "T1": Plate("T1", "t1plate_ir", "InversionTime", "t1plate_gre", ("a", "b", "T1"), 2.0),
    "T2": Plate("T2", "t2plate_mese", "EchoTime", "t2plate_tse", ("A", "T2"), 3.0),
}


@dataclass(frozen=True)
class PlateData:
    """A plate's series, guide and masks on the series' (possibly cropped) grid.

    Attributes
    ----------
    plate : Plate
    images : Tensor
        (N, X, Y) float64, the stored magnitudes (a.u.), sorted by time.
    times : tuple of float
        The N inversion or echo times, ms, ascending.
    repetition_time : float
        TR of the series, ms.
    affine : ndarray
        (4, 4) voxel-to-RAS+ affine of the grid, mm (the third column spans the slice thickness).
    guide : Tensor
        (X, Y) float64 guide resampled to the grid (:func:`resample_to_grid`), a.u.
    guide_clipped : Tensor
        (X, Y) bool: voxels whose resampled guide averages at least one clipped guide sample.
    guide_protocol : GuideProtocol
        The guide's sequence, read from its sidecar.
    mask : Tensor
        (X, Y) bool phantom mask (:func:`phantom_mask`).
    sigma : float
        Noise standard deviation of the images, a.u. (:func:`noise_sigma`, full field of view).
    """

    plate: Plate
    images: Tensor
    times: tuple[float, ...]
    repetition_time: float
    affine: np.ndarray
    guide: Tensor
    guide_clipped: Tensor
    guide_protocol: GuideProtocol
    mask: Tensor
    sigma: float


def measurable_range(plate: Plate, times: tuple[float, ...]) -> tuple[float, float]:
    """Relaxation times (ms) the series can measure: ``[first_factor·t_1, t_N]``."""
    return plate.first_factor * min(times), max(times)


def phantom_mask(images: Tensor) -> Tensor:
    """Voxels of the phantom: the brightest time point above :data:`MASK_THRESHOLD`, holes filled.

    Parameters
    ----------
    images : Tensor
        (N, X, Y) magnitude series, a.u.

    Returns
    -------
    Tensor
        (X, Y) bool, the largest connected region with its holes (sphere walls, the plate) filled.
    """
    brightest = images.max(0).values.numpy()
    bright = brightest > MASK_THRESHOLD * np.percentile(brightest, 99)
    labels, count = ndimage.label(bright)
    if count == 0:
        raise ValueError("no phantom signal above the threshold")
    largest = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return torch.from_numpy(ndimage.binary_fill_holes(largest))


def noise_sigma(images: Tensor, mask: Tensor) -> float:
    """Noise σ of magnitude images from their background: σ = √(mean(M²)/2) (Rayleigh).

    The background is every voxel farther than :data:`BACKGROUND_MARGIN` voxels from the mask;
    there a magnitude image holds only noise, whose second moment is 2σ² for Gaussian noise of
    standard deviation σ in each channel.

    Raises
    ------
    ValueError
        If fewer than 100 background voxels remain.
    """
    far = ~ndimage.binary_dilation(mask.numpy(), iterations=BACKGROUND_MARGIN)
    if far.sum() < 100:
        raise ValueError(f"only {int(far.sum())} background voxels to estimate the noise from")
    background = images.numpy()[:, far]
    return float(np.sqrt(np.mean(background**2) / 2.0))


def resample_to_grid(
    volume: np.ndarray, volume_affine: np.ndarray, shape: tuple[int, int], affine: np.ndarray
) -> np.ndarray:
    """Average a volume over each voxel of a single-slice grid (box footprint, trilinear samples).

    Each target voxel is sampled at n_x·n_y·n_z points spread evenly over its footprint, n_k the
    ratio of the target's to the source's voxel size along axis k (at least 1), and the samples
    are averaged: an area (and, across a thick slice, slab) average for a finer source, plain
    interpolation for an equal one. Along a source axis of one voxel the nearest value is used.

    Parameters
    ----------
    volume : ndarray
        (I, J, K) source image.
    volume_affine : ndarray
        (4, 4) voxel-to-world affine of the source, mm.
    shape : (int, int)
        In-plane shape of the target grid.
    affine : ndarray
        (4, 4) voxel-to-world affine of the target; its third column spans the slice thickness.

    Returns
    -------
    ndarray
        (X, Y) float64.
    """
    source_size = np.linalg.norm(volume_affine[:3, :3], axis=0)
    target_size = np.linalg.norm(affine[:3, :3], axis=0)
    counts = [max(1, round(target_size[k] / source_size[k])) for k in range(3)]
    if volume.shape[2] == 1:
        counts[2] = 1
    offsets = [(np.arange(n) + 0.5) / n - 0.5 for n in counts]
    grid = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"), -1).reshape(-1, 2)
    to_source = np.linalg.inv(volume_affine) @ affine
    total = np.zeros(len(grid))
    for dx in offsets[0]:
        for dy in offsets[1]:
            for dz in offsets[2]:
                points = np.c_[grid[:, 0] + dx, grid[:, 1] + dy, np.full(len(grid), dz), np.ones(len(grid))]
                source = points @ to_source.T
                total += ndimage.map_coordinates(volume, source[:, :3].T, order=1, mode="nearest")
    return (total / (counts[0] * counts[1] * counts[2])).reshape(shape)


def crop_window(centre: np.ndarray, shape: tuple[int, int], size: tuple[int, int]) -> tuple[slice, slice]:
    """In-plane window of ``size`` voxels centred on voxel ``centre``, shifted inside ``shape``."""
    starts = [int(np.clip(round(c - n / 2), 0, full - n)) for c, n, full in zip(centre, size, shape)]
    return tuple(slice(s, s + n) for s, n in zip(starts, size))  # type: ignore[return-value]


def load_plate(folder: str | Path, plate: Plate, crop: tuple[int, int] | None = None) -> PlateData:
    """Read a plate's series and guide from the converted copy.

    Parameters
    ----------
    folder : str or Path
        The converted copy (``datasets/nist-phantom``).
    plate : Plate
    crop : (int, int), optional
        Keep a window of this many voxels centred on the plate's spheres (tests and the smoke
        profile); the noise is estimated on the full field of view first.

    Returns
    -------
    PlateData
    """
    folder = Path(folder)
    data, affine = load_nifti(folder / f"{plate.series}.nii.gz", canonical=False)
    meta = json.loads((folder / f"{plate.series}.json").read_text(encoding="utf-8"))
    times_s = np.asarray(meta[plate.times_key], dtype=np.float64)
    order = np.argsort(times_s)
    images = torch.from_numpy(np.moveaxis(data[:, :, 0].astype(np.float64), -1, 0)[order].copy())
    mask = phantom_mask(images)
    sigma = noise_sigma(images, mask)
    guide_data, guide_affine = load_nifti(folder / f"{plate.guide}.nii.gz", canonical=False)
    shape = (images.shape[1], images.shape[2])
    if crop is not None:
        centres = np.array([sphere.centre for sphere in read_spheres(folder / "spheres.tsv", plate.name)])
        voxel = (np.linalg.inv(affine) @ np.c_[centres, np.ones(len(centres))].T)[:2].mean(axis=1)
        rows, cols = crop_window(voxel, shape, crop)
        images, mask = images[:, rows, cols].contiguous(), mask[rows, cols].contiguous()
        affine = affine @ np.array([[1, 0, 0, rows.start], [0, 1, 0, cols.start], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        shape = (crop[0], crop[1])
    guide = resample_to_grid(guide_data.astype(np.float64), guide_affine, shape, affine)
    guide_clipped = resample_to_grid((guide_data >= CLIP_12BIT).astype(np.float64), guide_affine, shape, affine) > 0
    return PlateData(
        plate=plate,
        images=images,
        times=tuple(float(1000.0 * t) for t in times_s[order]),
        repetition_time=1000.0 * float(meta["RepetitionTime"]),
        affine=affine,
        guide=torch.from_numpy(guide),
        guide_clipped=torch.from_numpy(guide_clipped),
        guide_protocol=read_sidecar(folder / f"{plate.guide}.json"),
        mask=mask,
        sigma=sigma,
    )


def degrade(images: Tensor, phi: KSpaceTruncation) -> Tensor:
    """LR images of the real scan: C_l = Φ(C_h), noise-free Φ (the scan's own noise stays in).

    Parameters
    ----------
    images : Tensor
        (N, X, Y) HR magnitude series, a.u.
    phi : KSpaceTruncation
        Φ of eq. 3; only its noise-free part is applied (:meth:`KSpaceTruncation.forward`).
    """
    return phi.forward(images)


def clip_leak(images: Tensor, phi: KSpaceTruncation) -> Tensor:
    """LR samples into which Φ mixed clipped HR samples: Φ(1[C_h ≥ clip]) > :data:`CLIP_LEAK`.

    A clipped HR sample holds less than the true signal, so an LR sample built from it is biased
    low by an unknown amount; the LR fit treats such samples as clipped (excludes them).

    Returns
    -------
    Tensor
        (N, X, Y) bool.
    """
    return phi.forward((images >= CLIP_12BIT).to(images.dtype)) > CLIP_LEAK


def fit_maps(plate: Plate, images: Tensor, times: tuple[float, ...], mask: Tensor,
             exclude: Tensor | None = None) -> Tensor:
    """Fit a plate's maps voxel by voxel inside ``mask``.

    Parameters
    ----------
    plate : Plate
    images : Tensor
        (N, X, Y) magnitude series, a.u.
    times : tuple of float
        TIs or TEs, ms.
    mask : Tensor
        (X, Y) bool.
    exclude : Tensor, optional
        (N, X, Y) bool: samples to treat as clipped (T2 plate only; e.g. :func:`clip_leak`).

    Returns
    -------
    Tensor
        (len(plate.maps), X, Y): (a, b, T1) or (A, T2), a.u. and ms; 0 where not fitted, which
        includes an amplitude above :data:`AMPLITUDE_LIMIT` times the clip value (on the T2
        plate: fluid whose echoes are clipped but for the last few).
    """
    if plate.name == "T1":
        if exclude is not None:
            raise ValueError("the inversion-recovery fit cannot exclude samples")
        maps = fit_inversion_recovery(images, times, mask)
    else:
        if exclude is not None:
            images = torch.where(exclude, torch.full_like(images, CLIP_12BIT), images)
        maps = fit_multi_echo_t2(images, times, mask)
    return torch.where(maps[0] > AMPLITUDE_LIMIT * CLIP_12BIT, 0.0, maps)


def synthesise_series(plate: Plate, maps: Tensor, times: Tensor) -> Tensor:
    """The series' own signal model, stored as 12 bits: min(S(maps, t), :data:`CLIP_12BIT`).

    T1 plate: ``S = |a − b·e^(−TI/T1)|``; T2 plate: ``S = A·e^(−TE/T2)`` (the models that
    :func:`fit_maps` fits). Differentiable in ``maps``.

    Parameters
    ----------
    plate : Plate
    maps : Tensor
        (len(plate.maps), X, Y) maps, a.u. and ms.
    times : Tensor
        (N,) TIs or TEs, ms.

    Returns
    -------
    Tensor
        (N, X, Y), a.u.
    """
    t = times.to(maps.dtype)[:, None, None]
    relaxation = maps[plate.relaxation].clamp_min(1e-3)
    if plate.name == "T1":
        signal = (maps[0] - maps[1] * torch.exp(-t / relaxation)).abs()
    else:
        signal = maps[0] * torch.exp(-t / relaxation)
    return signal.clamp(max=CLIP_12BIT)


def synthesise_guide(data: PlateData, maps: Tensor) -> Tensor:
    """The guide synthesised from a plate's maps with the guide's own signal model.

    T1 plate (maps a, b, T1; guide a spoiled GRE): PD := a and T2* → ∞, i.e. the GRE's decay at
    its TE of 2.8 ms is ignored (a already holds the IR's at 6.9 ms). T2 plate (maps A, T2; guide a
    TSE): the MESE amplitude is A = PD·(1 − e^(−TR/T1)) with the TSE's TR, so PD := A and
    T1 → 0 (full recovery) give exactly A·e^(−TE/T2).

    Raises
    ------
    ValueError
        On the T2 plate, if the guide's TR differs from the series'.
    """
    protocol = data.guide_protocol
    if data.plate.name == "T1":
        return guide_signal(protocol, maps[0], maps[2], torch.full_like(maps[2], float("inf")))
    if protocol.tr != data.repetition_time:
        raise ValueError(f"the guide's TR ({protocol.tr} ms) differs from the series' ({data.repetition_time} ms): "
                         "the MESE amplitude does not hold the guide's T1 weighting")
    return guide_signal(protocol, maps[0], torch.zeros_like(maps[1]), maps[1])
