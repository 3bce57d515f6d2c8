"""Digital lesions in a test subject's HR maps, acquired through the dataset's own pipeline, and their measures.

The paper trains and tests on healthy subjects, while its motivation is patients (Sec. V-F). This
module inserts seeded lesions into the HR maps Q_h of a digital subject
(:meth:`swig_lib.experiments.subjects.dataset.Dataset.reference`) and acquires the result with the
functions that built the dataset: Φ and the fit (:func:`~swig_lib.experiments.subjects.dataset.lr_contrasts`,
:func:`~swig_lib.experiments.subjects.dataset.fit_maps`) give Q_l, the signal equations give the
guides (:func:`~swig_lib.experiments.subjects.dataset.synthesize_guides`).

Two kinds of lesion (:class:`Lesion`), spheres in world coordinates (mm) centred on a voxel:

* **MS-like white-matter lesion** (``"ms"``): the voxel's own tissue with R1 = 1/T1 lowered by
  35 %, R2 = 1/T2 lowered by 21 % and PD raised by 23 %, the mean differences between plaques and
  normal-appearing white matter that Hagiwara et al. measured with QRAPMASTER-based synthetic MRI
  ("Utility of a multiparametric quantitative MRI model that assesses myelin and edema for
  evaluating plaques, periplaque white matter, and normal-appearing white matter in patients with
  multiple sclerosis", AJNR Am. J. Neuroradiol. 38:237-242, 2017): T1, T2 and PD all up. The
  lesion's rim voxels mix lesion and tissue under fast exchange, as the dataset mixes tissues
  (:func:`swig_lib.experiments.subjects.anatomy.mix_tissues`), so every voxel stays
  mono-exponential: the model the fit and SWIG assume.
* **Tumour** (``"tumour"``) with a necrotic core and oedema: a compartment of free, protein-rich
  fluid (:data:`FREE_WATER`) in *slow* exchange with the voxel's tissue, fraction
  :data:`CORE_WATER` in the core and falling linearly from :data:`OEDEMA_WATER` at the core to 0
  at the outer radius. Each voxel's signal is the sum of the two compartments' signals (eq. 13-17
  applied to each), so its T2 decay is bi-exponential, as measured in glioblastoma and its
  oedema (e.g. the T2 distributions of J. Neurol. 264:2205-2214, 2017, "Characterization of brain
  tumours with spin-spin relaxation"), while the fit and the loss assume one exponential. The
  reference maps of the tumour are what the fit makes of noise-free HR contrasts: the apparent
  mono-exponential PD, T1 and T2 a perfect HR scan with the paper's protocol would show.

Acquisition (:func:`acquire_lesioned`). Φ is linear plus noise of level σ, so the LR contrasts of
the two compartments are Φ of the tissue compartment with the subject's noise seed plus the
noise-free Φ of the fluid compartment: exactly the data model of the summed contrasts, and with
no fluid exactly the dataset's contrasts. Without lesions the function returns the stored subject
(Q_l, guides, Q_h) bit for bit.

Measures (:func:`lesion_regions`, :func:`relative_contrast`, :func:`relative_bias`): on the
lesion's centre slice, the contrast of each part (an MS lesion; the tumour's core and oedema)
against a ring of surrounding brain tissue, and the relative bias of a map inside a part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from swig_lib.core import physics
from swig_lib.experiments.subjects.anatomy import MAP_MAX, TissueValues, mix_tissues
from swig_lib.experiments.subjects.dataset import fit_maps, lr_contrasts, synthesize_guides

#: Lesion kinds.
KINDS: tuple[str, str] = ("ms", "tumour")

#: MS lesion against its tissue (Hagiwara et al. 2017, plaques vs normal-appearing WM): relative
#: change of PD, of R1 = 1/T1 and of R2 = 1/T2.
MS_CHANGE: dict[str, float] = {"pd": 0.23, "r1": -0.35, "r2": -0.21}

#: The slowly exchanging fluid of the tumour's necrosis and oedema: PD of pure water (a.u.), T1 and T2
#: (ms) chosen between tissue and CSF (3900 / 1700 ms here), protein-rich fluid relaxing faster
#: than CSF; the long T2 component of oedema and necrosis lies at several hundred ms.
FREE_WATER = TissueValues(pd=100.0, t1=3000.0, t2=500.0)
#: Fraction of the free-water compartment in the necrotic core (dimensionless).
CORE_WATER = 0.8
#: Fraction of the free-water compartment in the oedema next to the core; it falls linearly to 0
#: at the tumour's outer radius.
OEDEMA_WATER = 0.4
#: Label of pure white matter in the dataset's tissue labels
#: (:data:`~swig_lib.experiments.subjects.dataset.TISSUE_LABELS`).
WM_LABEL = 2
#: Tissue labels a lesion's surrounding ring may contain: GM, WM, GM/WM partial volume (no CSF).
RING_LABELS: tuple[int, ...] = (1, 2, 5)
#: Extra distance between neighbouring lesions beyond their radii and rings, mm.
GAP_MM = 1.0


@dataclass(frozen=True)
class Lesion:
    """One spherical lesion.

    Attributes
    ----------
    kind : {"ms", "tumour"}
        MS-like white-matter lesion or tumour (:data:`KINDS`).
    centre : (float, float, float)
        Voxel indices (x, y, z) of its centre on the subject's grid.
    radius_mm : float
        MS: the lesion's radius; tumour: the outer radius of its oedema (mm, ≥ 0; 0 = no lesion).
    core_mm : float
        Tumour: radius of the necrotic core, mm (0 ≤ core ≤ radius); MS: 0.
    """

    kind: str
    centre: tuple[float, float, float]
    radius_mm: float
    core_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"lesion kind must be one of {KINDS}, got {self.kind!r}")
        if not 0 <= self.core_mm <= self.radius_mm or (self.kind == "ms" and self.core_mm != 0):
            raise ValueError(f"need 0 <= core_mm <= radius_mm (core 0 for MS lesions); got "
                             f"{self.core_mm}, {self.radius_mm}")

    @property
    def parts(self) -> tuple[str, ...]:
        """Names of the measured parts: ``("lesion",)`` or the tumour's ``("core", "oedema")``."""
        return ("lesion",) if self.kind == "ms" else ("core", "oedema")

    @property
    def slice(self) -> int:
        """Index of the axial slice through its centre."""
        return int(round(self.centre[2]))


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (3,) in mm: the norms of the affine's columns."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def distance_mm(shape: Sequence[int], affine: np.ndarray, centre: Sequence[float]) -> np.ndarray:
    """World distance (mm) of every voxel centre of a grid from a point given in voxel indices.

    Parameters
    ----------
    shape : sequence of int
        Grid shape (X, Y, Z).
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    centre : sequence of float
        The point, voxel indices (x, y, z).

    Returns
    -------
    ndarray, shape ``shape``, float64
    """
    axes = [np.arange(n, dtype=np.float64) - c for n, c in zip(shape, centre, strict=True)]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return np.linalg.norm(offsets @ np.asarray(affine, dtype=np.float64)[:3, :3].T, axis=-1)


def partial_volume(distance: np.ndarray, radius: float) -> np.ndarray:
    """Fraction of a voxel inside a sphere of ``radius`` mm: a linear ramp over the 1 mm rim.

    ``clip(min(radius, radius + 0.5 − d), 0, 1)``: 1 inside, 0 beyond radius + 0.5 mm, and never
    more than the radius itself, so a sphere of radius 0 occupies nothing.
    """
    return np.clip(np.minimum(radius, radius + 0.5 - distance), 0.0, 1.0)


def lesion_fractions(lesions: Sequence[Lesion], mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MS-lesion fraction φ and free-water fraction w of every voxel (zero outside the mask).

    Parameters
    ----------
    lesions : sequence of Lesion
        The lesions (MS lesions add to φ, tumours to w; overlapping ones take the maximum).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.

    Returns
    -------
    phi, water : ndarray, shape (X, Y, Z), float64
        In [0, 1].
    """
    phi = np.zeros(mask.shape)
    water = np.zeros(mask.shape)
    for lesion in lesions:
        d = distance_mm(mask.shape, affine, lesion.centre)
        if lesion.kind == "ms":
            phi = np.maximum(phi, partial_volume(d, lesion.radius_mm))
        else:
            span = max(lesion.radius_mm - lesion.core_mm, 1e-9)
            oedema = OEDEMA_WATER * np.clip((lesion.radius_mm - d) / span, 0.0, 1.0)
            water = np.maximum(water, oedema + (CORE_WATER - OEDEMA_WATER) * partial_volume(d, lesion.core_mm))
    inside = np.asarray(mask, dtype=bool)
    return np.where(inside, phi, 0.0), np.where(inside, water, 0.0)


def compartments(lesions: Sequence[Lesion], mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Volume fractions (3, X, Y, Z) of healthy tissue, MS-lesion tissue and free water; they sum to 1.

    Healthy (1 − φ)(1 − w), MS lesion φ(1 − w), free water w, with φ and w of
    :func:`lesion_fractions`.
    """
    return _compartments(*lesion_fractions(lesions, mask, affine))


def _compartments(phi: np.ndarray, water: np.ndarray) -> np.ndarray:
    """Healthy, MS-lesion and free-water fractions (3, ...) from φ and w."""
    return np.stack([(1.0 - phi) * (1.0 - water), phi * (1.0 - water), water])


def ms_tissue(q_h: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Maps with MS-lesion fraction ``phi`` mixed into the tissue under fast exchange (mono-exponential).

    Where φ > 0 the voxel's maps and the lesion's (its own maps changed by :data:`MS_CHANGE`) mix
    by :func:`~swig_lib.experiments.subjects.anatomy.mix_tissues`, clipped to
    :data:`~swig_lib.experiments.subjects.anatomy.MAP_MAX`; elsewhere the maps are ``q_h`` unchanged.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        PD (a.u.), T1 (ms), T2 (ms).
    phi : ndarray, shape (X, Y, Z)
        MS-lesion fraction in [0, 1].

    Returns
    -------
    ndarray, shape (3, X, Y, Z), float32
    """
    inside = phi > 0
    pd, t1, t2 = (np.asarray(x, dtype=np.float64)[inside] for x in q_h)
    lesion = (pd * (1.0 + MS_CHANGE["pd"]), t1 / (1.0 + MS_CHANGE["r1"]), t2 / (1.0 + MS_CHANGE["r2"]))
    mixed = mix_tissues(np.stack([1.0 - phi[inside], phi[inside]]), [(pd, t1, t2), lesion])
    maps = np.array(q_h, dtype=np.float32)
    maps[:, inside] = np.clip(mixed, 0.0, np.asarray(MAP_MAX, dtype=np.float32)[:, None])
    return maps


@dataclass(frozen=True)
class LesionedSubject:
    """A subject with lesions, on the requested axial slices.

    Attributes
    ----------
    q_h : ndarray, shape (3, X, Y, n), float32
        Reference HR maps: Q_h with the lesions (in the tumour: the apparent mono-exponential maps).
    q_l : ndarray, shape (3, X, Y, n), float32
        LR maps fitted from the lesioned subject's LR contrasts.
    guides : dict of str to ndarray
        HR guides (X, Y, n), float32, of the lesioned subject.
    compartments : ndarray, shape (3, X, Y, n)
        Healthy tissue, MS-lesion tissue and free-water fractions (:func:`compartments`).
    """

    q_h: np.ndarray
    q_l: np.ndarray
    guides: dict[str, np.ndarray]
    compartments: np.ndarray


def acquire_lesioned(q_h: np.ndarray, mask: np.ndarray, affine: np.ndarray, lesions: Sequence[Lesion],
                     keep: float, sigma: float, noise_seed: int, slices: Sequence[int]) -> LesionedSubject:
    """Insert lesions into Q_h and acquire the subject as the dataset build does, on ``slices``.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        The subject's HR maps (PD a.u., T1 and T2 ms), zero outside the mask.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    lesions : sequence of Lesion
        The lesions (none: the subject as stored).
    keep, sigma, noise_seed
        Φ and the subject's noise seed (the dataset's ``keep``, ``sigma`` and the manifest's
        ``noise_seed``), as in :func:`~swig_lib.experiments.subjects.dataset.lr_contrasts`.
    slices : sequence of int
        Axial slices to fit and return (Φ acts on whole slices, its noise is drawn for the whole
        volume as in the build, so every slice gets the noise the dataset's slice got).

    Returns
    -------
    LesionedSubject
    """
    slices = np.asarray(slices, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    phi, water = lesion_fractions(lesions, mask, affine)
    tissue = ms_tissue(q_h, phi)
    tissue_part = np.stack([tissue[0] * (1.0 - water), tissue[1], tissue[2]]).astype(np.float32)
    fluid = water > 0
    fluid_part = np.where(fluid, np.stack([FREE_WATER.pd * water, np.full_like(water, FREE_WATER.t1),
                                           np.full_like(water, FREE_WATER.t2)]), 0.0).astype(np.float32)
    contrasts = lr_contrasts(tissue_part, keep, sigma, noise_seed)
    guides = synthesize_guides(tissue_part[..., slices])
    reference = tissue[..., slices].copy()
    if fluid.any():
        contrasts = contrasts + lr_contrasts(fluid_part, keep, 0.0, noise_seed)
        extra = synthesize_guides(fluid_part[..., slices])
        guides = {name: image + extra[name] for name, image in guides.items()}
        inside = fluid[..., slices]
        reference[:, inside] = _apparent_maps(tissue_part[..., slices][:, inside], fluid_part[..., slices][:, inside])
    q_l = fit_maps(contrasts[..., slices], mask[..., slices])
    return LesionedSubject(reference, q_l, guides, _compartments(phi, water)[..., slices])


def _apparent_maps(*parts: np.ndarray) -> np.ndarray:
    """The fit of the noise-free HR contrasts of compartments (3, N) summed: apparent mono-exponential maps (3, N)."""
    contrasts = sum(physics.qmri_contrasts(*torch.from_numpy(np.asarray(p, dtype=np.float64))) for p in parts)
    return fit_maps(contrasts.numpy(), np.ones(contrasts.shape[1:], dtype=bool))


def place_lesions(labels: np.ndarray, mask: np.ndarray, affine: np.ndarray, slices: Sequence[int],
                  ms_radii_mm: Sequence[float], tumour_mm: tuple[float, float], ring_mm: float,
                  rng: np.random.Generator) -> list[Lesion]:
    """Seeded lesion positions on the given axial slices: the tumour first, then MS lesions, largest first.

    An MS lesion's centre is drawn among the voxels whose in-plane distance to anything but pure
    white matter (label :data:`WM_LABEL`) is at least its radius + 0.5 mm, so its cross-section on
    the centre slice lies in white matter. The tumour's core lies in white matter in the same
    sense, its outer radius inside the brain mask. Every lesion keeps its radius, its ring and
    :data:`GAP_MM` from every other one (3-D distance of the centres).

    Parameters
    ----------
    labels : ndarray of uint8, shape (X, Y, Z)
        Tissue labels (:meth:`~swig_lib.experiments.subjects.dataset.Dataset.labels`).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    slices : sequence of int
        Axial slices that may hold a lesion centre.
    ms_radii_mm : sequence of float
        One MS lesion per radius, mm.
    tumour_mm : (float, float)
        Core radius and outer radius of the tumour, mm (outer 0: no tumour).
    ring_mm : float
        Width of the measuring ring (:func:`lesion_regions`), kept free of other lesions.
    rng : numpy.random.Generator
        Source of the positions.

    Returns
    -------
    list of Lesion

    Raises
    ------
    ValueError
        When no position satisfies the constraints (the message names the lesion).
    """
    spacing = voxel_sizes(affine)
    slices = np.asarray(slices, dtype=np.int64)
    wm_depth = np.stack([ndimage.distance_transform_edt(labels[..., z] == WM_LABEL, sampling=spacing[:2])
                         for z in slices], axis=-1)
    brain_depth = np.stack([ndimage.distance_transform_edt(mask[..., z], sampling=spacing[:2])
                            for z in slices], axis=-1)
    wanted = ([("tumour", tumour_mm[1], tumour_mm[0])] if tumour_mm[1] > 0 else []) + [
        ("ms", r, 0.0) for r in sorted(ms_radii_mm, reverse=True)]
    placed: list[Lesion] = []
    for kind, radius, core in wanted:
        if kind == "ms":
            allowed = wm_depth >= radius + 0.5
        else:
            allowed = (wm_depth >= core + 0.5) & (brain_depth >= radius + 0.5)
        candidates = np.argwhere(allowed).astype(np.float64)
        candidates[:, 2] = slices[candidates[:, 2].astype(np.int64)]
        for other in placed:
            world = (candidates - np.asarray(other.centre)) * spacing
            far = np.linalg.norm(world, axis=1) >= radius + other.radius_mm + ring_mm + GAP_MM
            candidates = candidates[far]
        if len(candidates) == 0:
            raise ValueError(f"no room for a {kind} lesion of radius {radius:g} mm on slices {slices.tolist()}: "
                             "use more slices (limits.slices_per_subject) or smaller lesions")
        centre = candidates[rng.integers(len(candidates))]
        placed.append(Lesion(kind, (float(centre[0]), float(centre[1]), float(centre[2])), float(radius), float(core)))
    return placed


def lesion_regions(lesion: Lesion, others: Sequence[Lesion], mask: np.ndarray, labels: np.ndarray,
                   affine: np.ndarray, ring_mm: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each measured part of a lesion and its ring of surrounding tissue, on the lesion's centre slice.

    Parts: an MS lesion's voxels with distance ≤ radius (lesion fraction ≥ 0.5); a tumour's core
    (≤ core radius) and oedema (core < distance ≤ outer radius). The ring: brain voxels of labels
    :data:`RING_LABELS` at distance (radius + 1, radius + 1 + ``ring_mm``] mm, outside every lesion.

    Parameters
    ----------
    lesion : Lesion
        The lesion.
    others : sequence of Lesion
        Every lesion of the subject (may include ``lesion``); their voxels are kept out of the ring.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    labels : ndarray of uint8, shape (X, Y, Z)
        Tissue labels.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    ring_mm : float
        Width of the ring, mm.

    Returns
    -------
    dict of str to (ndarray, ndarray)
        Per part, the (X, Y) boolean masks of the part and of its ring.
    """
    z = lesion.slice
    d = distance_mm(mask.shape, affine, lesion.centre)[..., z]
    phi, water = lesion_fractions(others, mask, affine)
    free = (phi[..., z] == 0) & (water[..., z] == 0)
    ring = ((d > lesion.radius_mm + 1.0) & (d <= lesion.radius_mm + 1.0 + ring_mm) & mask[..., z] & free
            & np.isin(labels[..., z], RING_LABELS))
    inside = mask[..., z]
    if lesion.kind == "ms":
        return {"lesion": (inside & (d <= lesion.radius_mm), ring)}
    return {"core": (inside & (d <= lesion.core_mm), ring),
            "oedema": (inside & (d > lesion.core_mm) & (d <= lesion.radius_mm), ring)}


def relative_contrast(image: np.ndarray, region: np.ndarray, ring: np.ndarray) -> float:
    """Contrast of a region against its ring: mean(region) / mean(ring) − 1 (dimensionless)."""
    if not region.any() or not ring.any():
        raise ValueError("a lesion part or its ring has no voxel")
    return float(np.mean(image[region], dtype=np.float64) / np.mean(image[ring], dtype=np.float64) - 1.0)


def relative_bias(image: np.ndarray, reference: np.ndarray, region: np.ndarray) -> float:
    """Relative bias of a map in a region: mean(image) / mean(reference) − 1 (dimensionless)."""
    if not region.any():
        raise ValueError("the region has no voxel")
    return float(np.mean(image[region], dtype=np.float64) / np.mean(reference[region], dtype=np.float64) - 1.0)
