"""Digital-subject anatomy: tissue fractions → individual-like PD, T1, T2 maps at 1.5 T.

The paper's 27 QRAPMASTER subjects are private. This module builds stand-ins from any set of
tissue probability maps (grey matter GM, white matter WM, cerebrospinal fluid CSF) on a 1 mm grid;
the default source is the MNI152 2009 template bundled with ``nilearn`` (:func:`mni152_template`).
A second source, the label maps of five real brains, reuses the deformation and tissue-value steps
(:mod:`swig_lib.experiments.subjects.synthsr`).

An average template is far smoother than one brain (its GM/WM boundaries are blurred over several
millimetres and secondary sulci are averaged away), which would make super-resolution nearly
pointless: the LR T1 map of the plain template keeps SSIM ≈ 0.99. Each subject is therefore built
in six steps (:func:`subject_anatomy`):

1. **Deformation.** A random diffeomorphism φ = φ_c ∘ φ_f, each the exponential of a stationary
   velocity field integrated by scaling and squaring (Arsigny et al., MICCAI 2006; Ashburner,
   NeuroImage 38:95, 2007): φ_c = global anisotropic scaling + a smooth large-scale field (brain
   shape, ventricles, deep GM), φ_f = a small high-frequency field that roughens every boundary.
   Both Jacobian determinants are checked to be positive.
2. **Sharpening.** The CSF/tissue split and the GM/WM split are sharpened separately,
   (b_t·f_t)^γ/Σ(b_s·f_s)^γ: GM/WM boundaries become about one voxel wide while CSF is kept
   softer (sulcal CSF is partial-volumed in the paper's QRAPMASTER maps). A random field on the
   WM bias moves the GM/WM boundary in and out: individual WM fingers and ribbon thickness.
3. **Cortical ribbon.** Tissue within ``cortex_mm`` of the exterior becomes GM: WM never reaches
   the brain surface.
4. **Sulci.** Thin CSF sheets are carved radially into the cortical GM from a seeded random
   pattern on the outer surface, each to a seeded depth (secondary folding the average lacks).
5. **Tissue values.** Literature PD/T1/T2 per tissue (:data:`TISSUE_VALUES`), varied per subject and
   modulated by smooth random fields so the maps are not piecewise constant.
6. **Mixing.** Partial volumes are mixed under fast exchange (:func:`mix_tissues`).

Array convention: NIfTI order (X, Y, Z) with Z the axial (slice) axis, 1 mm voxels in the template.
Units: PD in a.u. (percent of pure water, so CSF ≈ 100), T1 and T2 in ms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, special

from swig_lib.experiments.config import check_known_fields

#: Tissue classes, in the order of every fraction stack.
TISSUES: tuple[str, ...] = ("GM", "WM", "CSF")

#: Upper limits of the maps (PD a.u., T1 ms, T2 ms): the value ranges of the paper's QRAPMASTER
#: maps (Sec. III-A.1: "up to 160 a.u., 4300 ms, and 2000 ms"). Maps are clipped to them.
MAP_MAX: tuple[float, float, float] = (160.0, 4300.0, 2000.0)


@dataclass(frozen=True)
class TissueValues:
    """Mean proton density and relaxation times of one tissue at 1.5 T.

    Attributes
    ----------
    pd : float
        Proton density, a.u. (percent water content; pure water = 100, the QRAPMASTER scale).
    t1, t2 : float
        Relaxation times, ms.
    """

    pd: float
    t1: float
    t2: float


#: Representative healthy-adult values at 1.5 T (chosen, not fitted to any one study):
#:
#: * WM and GM T1/T2: inversion-recovery/CPMG measurements at 1.5 T give WM 884 / 72 ms and GM
#:   1124 / 95 ms (Stanisz et al., MRM 54:507, 2005). Saturation-recovery based QRAPMASTER maps
#:   (Warntjes et al., MRM 60:320, 2008), the paper's data, report shorter WM T1; we take WM
#:   700 ms and GM 1100 ms, with T2 75 and 95 ms.
#: * PD is the water content in percent (QRAPMASTER's scale, pure water = 100): about 70 % in WM
#:   and 80-85 % in cortical GM (Gelman et al., MRM 45:71, 2001).
#: * CSF is nearly pure water, T1 ≈ 4 s and T2 of 1.5-2 s at 1.5 T (e.g. Rooney et al.,
#:   MRM 57:308, 2007 for T1); we take 3900 / 1700 ms, below the paper's map limits of
#:   4300 / 2000 ms (:data:`MAP_MAX`) so that the subject and spatial variation rarely clip.
TISSUE_VALUES: dict[str, TissueValues] = {
    "GM": TissueValues(pd=82.0, t1=1100.0, t2=95.0),
    "WM": TissueValues(pd=69.0, t1=700.0, t2=75.0),
    "CSF": TissueValues(pd=100.0, t1=3900.0, t2=1700.0),
}


@dataclass(frozen=True)
class AnatomySettings:
    """Parameters of the digital-subject construction (lengths in mm of the 1 mm template grid).

    Attributes
    ----------
    scale_sd : float
        Standard deviation of the per-axis global log-scaling (brain size and shape), e.g. 0.03
        for ±3 %.
    deform_mm, deform_scale_mm : float
        RMS amplitude of each component of the smooth large-scale velocity field and its Gaussian
        correlation width (anatomical variability of gyri, ventricles, deep GM).
    fine_deform_mm, fine_scale_mm : float
        RMS amplitude and correlation width of the high-frequency velocity component that makes
        tissue boundaries individually irregular.
    sharpen_power, wm_bias : float
        Sharpening of the GM/WM split of the tissue (power γ and WM bias b, see
        :func:`sharpen_fractions`): the boundary settles where b·f_WM = f_GM, so b > 1 thins the
        template's blurred, too thick cortical ribbon. γ = 1 and b = 1 leave the split unchanged.
    boundary_jitter, boundary_scale_mm : float
        Standard deviation and correlation width of a random field r added to ln b_WM: the GM/WM
        boundary moves in and out irregularly (individual fine structure of the WM fingers and
        the cortical ribbon) without affecting CSF.
    csf_power, csf_bias : float
        The same for the CSF/tissue split, applied first. CSF is kept softer than the GM/WM
        boundary because a 1.5 T QRAPMASTER T2 map (the paper's reference data) shows sulcal CSF
        partial-volumed; b > 1 turns the faint CSF ridges the template keeps in its sulci into
        CSF sheets.
    cortex_mm : float
        Minimum thickness of the cortical ribbon: WM closer than this to the exterior (background
        or the CSF connected to it) turns into GM, so WM never reaches the brain surface.
    sulcus_scale_mm : float
        Correlation width of the random surface pattern whose zero lines become sulci; the mean
        spacing of zero lines of such a field is π·√2 times it (Rice's formula).
    sulcus_width_mm : float
        Width of the CSF core of a carved sulcus; 0 disables the carving.
    sulcus_depth_mm : tuple of float
        Range (min, max) of the depth of carved sulci below the outer brain surface.
    slice_thickness : int
        Axial thickness (mm, odd) over which tissue fractions are averaged: through-plane partial
        volume of the paper's 2-D multi-slice QRAPMASTER maps, whose slices are several mm thick
        (1: none).
    subject_cv : float
        Coefficient of variation of each tissue's PD, T1 and T2 between subjects.
    spatial_cv : float
        Coefficient of variation of the smooth spatial modulation of each tissue's values within
        a subject (shared by PD, T1 and T2, which all increase with water content).
    spatial_scale_mm : tuple of float
        Correlation widths of the two components (coarse, fine) of that modulation.
    """

    scale_sd: float = 0.03
    deform_mm: float = 2.0
    deform_scale_mm: float = 20.0
    fine_deform_mm: float = 0.3
    fine_scale_mm: float = 1.5
    sharpen_power: float = 6.0
    wm_bias: float = 1.3
    boundary_jitter: float = 0.9
    boundary_scale_mm: float = 2.0
    csf_power: float = 1.5
    csf_bias: float = 1.0
    cortex_mm: float = 2.0
    sulcus_scale_mm: float = 2.5
    sulcus_width_mm: float = 1.0
    sulcus_depth_mm: tuple[float, float] = (5.0, 14.0)
    slice_thickness: int = 1
    subject_cv: float = 0.03
    spatial_cv: float = 0.04
    spatial_scale_mm: tuple[float, float] = (20.0, 4.0)

    @classmethod
    def plain(cls) -> AnatomySettings:
        """Settings that only assign tissue values: no deformation, sharpening or carving.

        For tissue maps that already describe one individual (e.g. BrainWeb fuzzy models).
        """
        return cls(scale_sd=0.0, deform_mm=0.0, fine_deform_mm=0.0, sharpen_power=1.0,
                   wm_bias=1.0, boundary_jitter=0.0, csf_power=1.0, csf_bias=1.0, cortex_mm=0.0,
                   sulcus_width_mm=0.0, slice_thickness=1)

    @classmethod
    def from_dict(cls, values: dict) -> AnatomySettings:
        """Build from a dict (e.g. a profile's ``data.anatomy`` table); unknown keys raise."""
        check_known_fields(cls, values, "anatomy")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable; tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Template:
    """Tissue fractions on a 1 mm grid plus the geometry the folding step needs.

    Attributes
    ----------
    fractions : ndarray, shape (3, X, Y, Z), float32
        GM, WM, CSF fractions in [0, 1]; they sum to 1 inside the mask and to 0 outside.
    mask : ndarray, shape (X, Y, Z), bool
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine (mm).
    depth : ndarray, shape (X, Y, Z), float32
        Distance (mm) to the exterior: background or CSF connected to it (sulci, cisterns, the
        interhemispheric fissure), but not the enclosed ventricles.
    surface_index : ndarray, shape (X, Y, Z), int64
        Flat index of the nearest exterior voxel.
    offset : tuple of int
        Index, in the source grid, of this grid's first voxel (non-zero after cropping).
    """

    fractions: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    depth: np.ndarray
    surface_index: np.ndarray
    offset: tuple[int, int, int] = (0, 0, 0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (X, Y, Z)."""
        return tuple(self.mask.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class SubjectAnatomy:
    """One digital subject on the requested axial slices.

    Attributes
    ----------
    maps : ndarray, shape (3, X, Y, n_slices), float32
        PD (a.u.), T1 (ms), T2 (ms); zero outside the mask.
    mask : ndarray, shape (X, Y, n_slices), bool
        Brain mask.
    fractions : ndarray, shape (3, X, Y, n_slices), float32
        GM, WM, CSF fractions after deformation, sharpening and folding.
    tissue_values : dict
        This subject's mean PD/T1/T2 per tissue.
    min_jacobian : float
        Smallest Jacobian determinant of the deformation (> 0: invertible).
    """

    maps: np.ndarray
    mask: np.ndarray
    fractions: np.ndarray
    tissue_values: dict[str, TissueValues]
    min_jacobian: float


def prepare_template(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, mask: np.ndarray, affine: np.ndarray,
    offset: tuple[int, int, int] = (0, 0, 0),
) -> Template:
    """Normalise tissue probability maps into a :class:`Template`.

    Fractions are clipped to [0, 1], zeroed outside the mask and rescaled to sum to 1 inside it
    (voxels of the mask with no tissue at all become CSF).

    Parameters
    ----------
    gm, wm, csf : ndarray, shape (X, Y, Z)
        Tissue probabilities (any non-negative scale; they are normalised per voxel).
    mask : ndarray, shape (X, Y, Z)
        Brain mask (non-zero inside).
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of the 1 mm grid.
    offset : tuple of int
        Index of the first voxel in a larger source grid these maps were cropped from.
    """
    mask_b = np.asarray(mask) > 0
    stack = np.clip(np.stack([gm, wm, csf]).astype(np.float32), 0.0, 1.0) * mask_b
    total = stack.sum(0)
    stack[2] = np.where(mask_b & (total <= 0), 1.0, stack[2])
    stack /= np.maximum(stack.sum(0), 1e-12)
    exterior = _exterior(stack[2] > 0.5, mask_b)
    depth, index = ndimage.distance_transform_edt(~exterior, return_indices=True)
    surface_index = np.ravel_multi_index(tuple(index), mask_b.shape)
    return Template(stack, mask_b, np.asarray(affine, dtype=np.float64),
                    depth.astype(np.float32), surface_index, tuple(int(o) for o in offset))


def _exterior(csf: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Background plus the CSF connected to it (6-connectivity); excludes enclosed ventricles."""
    candidate = csf | ~mask
    labels, _ = ndimage.label(np.pad(candidate, 1, constant_values=True))
    return (labels == labels[0, 0, 0])[1:-1, 1:-1, 1:-1]


@lru_cache(maxsize=2)
def mni152_template(margin: int = 12) -> Template:
    """The MNI152 2009 template of ``nilearn``, cropped to the brain bounding box plus ``margin``.

    GM and WM are ``load_mni152_gm_template`` / ``load_mni152_wm_template`` (resolution 1 mm,
    197 × 233 × 189); CSF = brain mask − GM − WM, clipped at 0 (Fonov et al., NeuroImage 54:313,
    2011). The in-plane crop is widened to even sizes (X, Y) so the centred k-space of every axial
    slice has its DC sample at N/2. The result is cached.

    Parameters
    ----------
    margin : int
        Voxels (mm) kept around the brain in X and Y, and in Z where the volume allows; room for
        the subject deformations.
    """
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    gm = np.asarray(gm_img.get_fdata(dtype=np.float32))
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32)) > 0
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    box = crop_box(mask, margin, even_axes=(0, 1))
    offset = [s.start for s in box]
    affine = gm_img.affine @ _translation(offset)
    return prepare_template(gm[box], wm[box], csf[box], mask[box], affine, tuple(offset))


def crop_box(mask: np.ndarray, margin: int, even_axes: tuple[int, ...] = ()) -> tuple[slice, ...]:
    """Bounding box of ``mask`` widened by ``margin`` (within the array); even length on ``even_axes``."""
    nonzero = np.argwhere(mask)
    if nonzero.size == 0:
        raise ValueError("crop_box: the mask is empty")
    box = []
    for axis, (lo, hi) in enumerate(zip(nonzero.min(0), nonzero.max(0) + 1)):
        n = mask.shape[axis]
        lo, hi = max(0, int(lo) - margin), min(n, int(hi) + margin)
        if axis in even_axes and (hi - lo) % 2:
            hi, lo = (hi + 1, lo) if hi < n else (hi, lo - 1)
        box.append(slice(lo, hi))
    return tuple(box)


def _translation(offset: list[int]) -> np.ndarray:
    """4×4 affine translating voxel indices by ``offset``."""
    out = np.eye(4)
    out[:3, 3] = offset
    return out


def _kernel_power(sigma: float) -> float:
    """Σ k_i² of the normalised 1-D Gaussian kernel of :func:`scipy.ndimage.gaussian_filter`."""
    if sigma <= 0:
        return 1.0
    radius = int(4.0 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    return float(np.sum(kernel**2))


def gaussian_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float, count: int = 1,
    z_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """Stationary Gaussian random fields of unit variance with Gaussian correlation.

    White noise convolved (periodic boundaries) with the normalised Gaussian kernel of
    :func:`scipy.ndimage.gaussian_filter` of standard deviation ``sigma`` voxels, divided by the
    kernel's L2 norm so the variance is exactly 1. With ``z_range`` only those indices of the last
    axis are filtered and returned; they equal the corresponding part of the whole field (the
    white noise of the whole grid is drawn either way, so ``rng`` advances identically).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the white noise.
    shape : tuple of int
        Grid shape.
    sigma : float
        Gaussian width, voxels (isotropic).
    count : int
        Number of independent fields.
    z_range : tuple of int, optional
        ``(start, stop)`` of the last axis to return.

    Returns
    -------
    ndarray, shape (count, *shape) or (count, ..., stop − start), float32
    """
    white = rng.standard_normal((count, *shape), dtype=np.float32)
    norm = math.sqrt(_kernel_power(sigma) ** len(shape))
    n = shape[-1]
    zlo, zhi = (0, n) if z_range is None else z_range
    radius = int(4.0 * sigma + 0.5)
    if zhi - zlo + 2 * radius >= n:
        return np.stack([ndimage.gaussian_filter(w, sigma, mode="wrap")[..., zlo:zhi] / norm
                         for w in white])
    block = white[..., np.arange(zlo - radius, zhi + radius) % n]
    modes = ["wrap"] * (len(shape) - 1) + ["constant"]
    return np.stack([ndimage.gaussian_filter(w, sigma, mode=modes)[..., radius:radius + zhi - zlo] / norm
                     for w in block])


@dataclass(frozen=True)
class LatticeField:
    """Smooth random fields stored on a lattice of nodes every ``spacing`` voxels.

    A field of correlation width σ is sampled every ⌊σ/2⌋ voxels (at least 1) and interpolated
    trilinearly in between: the cost of wide fields no longer grows with the grid. Fields on the
    image grid itself (``spacing`` 1) may hold only an axial block starting at ``z0``.

    Attributes
    ----------
    values : Tensor, shape ``(count, *lattice_shape)``
        Unit-variance fields at the lattice nodes.
    spacing : int
        Voxels between nodes.
    z0 : int
        Axial index of the first stored node.
    """

    values: torch.Tensor
    spacing: int
    z0: int = 0

    @classmethod
    def random(cls, rng: np.random.Generator, shape: tuple[int, int, int], sigma: float,
               count: int = 1, z_range: tuple[int, int] | None = None) -> LatticeField:
        """Draw ``count`` fields of correlation width ``sigma`` voxels covering grid ``shape``.

        ``z_range`` (``(start, stop)`` axial indices) limits the work to that block when the
        lattice is the image grid; the field is the same as without it.
        """
        spacing = max(1, int(sigma // 2))
        lattice = tuple(-(-(n - 1) // spacing) + 1 for n in shape)
        if spacing > 1 or z_range is None:
            return cls(torch.from_numpy(gaussian_noise(rng, lattice, sigma / spacing, count)), spacing)
        zlo, zhi = max(0, z_range[0]), min(shape[2], z_range[1])
        return cls(torch.from_numpy(gaussian_noise(rng, lattice, sigma, count, (zlo, zhi))), 1, zlo)

    def at(self, coords: torch.Tensor) -> torch.Tensor:
        """Values at voxel coordinates ``coords`` (3, ...); returns (count, ...)."""
        shift = torch.tensor([0.0, 0.0, float(self.z0)]).view(3, *([1] * (coords.ndim - 1)))
        return sample(self.values, (coords - shift) / self.spacing, padding="border")


def sample(volume: torch.Tensor, coords: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Trilinear interpolation of ``volume`` at voxel coordinates.

    Parameters
    ----------
    volume : Tensor, shape (C, X, Y, Z)
        Channels to interpolate.
    coords : Tensor, shape (3, ...)
        Voxel coordinates (x, y, z) of the sample points.
    padding : {"zeros", "border"}
        Value outside the grid: zero, or the nearest border value.

    Returns
    -------
    Tensor, shape (C, ...)
    """
    sizes = torch.tensor(volume.shape[1:], dtype=volume.dtype)
    scale = 2.0 / (sizes - 1).clamp(min=1)
    grid = (coords.reshape(3, -1).T.to(volume.dtype) * scale - 1.0).flip(-1)
    out = F.grid_sample(volume[None], grid.view(1, 1, 1, -1, 3), mode="bilinear",
                        padding_mode=padding, align_corners=True)
    return out.view(volume.shape[0], *coords.shape[1:])


def integrate_velocity(velocity: torch.Tensor, spacing: float = 1.0, max_step: float = 0.25) -> torch.Tensor:
    """Displacement u of φ = exp(v) by scaling and squaring: φ(x) = x + u(x).

    v is divided by 2^K so that its largest displacement is below ``max_step`` lattice spacings,
    then the map is composed with itself K times: u ← u + u∘(id + u) (Arsigny et al., MICCAI
    2006). Beyond the lattice the border value is used.

    Parameters
    ----------
    velocity : Tensor, shape (3, X, Y, Z)
        Stationary velocity field on a lattice, in voxels of the image grid.
    spacing : float
        Image voxels between lattice nodes.
    max_step : float
        Largest displacement, in lattice spacings, of the initial small step.

    Returns
    -------
    Tensor, shape (3, X, Y, Z)
        Displacement field at the lattice nodes, image voxels.
    """
    peak = float(velocity.abs().max()) / spacing
    steps = max(0, math.ceil(math.log2(peak / max_step))) if peak > 0 else 0
    disp = velocity / 2**steps
    identity = identity_grid(velocity.shape[1:], velocity.dtype)
    for _ in range(steps):
        disp = disp + sample(disp, identity + disp / spacing, padding="border")
    return disp


def identity_grid(shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32,
                  z: np.ndarray | None = None) -> torch.Tensor:
    """Voxel coordinates, shape ``(3, *shape)``; with ``z``, only those axial indices (last axis)."""
    axes = [torch.arange(n, dtype=dtype) for n in shape]
    if z is not None:
        axes[2] = torch.as_tensor(z, dtype=dtype)
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def jacobian_determinant(disp: np.ndarray | torch.Tensor, spacing: float = 1.0) -> np.ndarray:
    """Jacobian determinant of x ↦ x + u(x) by central differences.

    Parameters
    ----------
    disp : array, shape (3, X, Y, Z)
        Displacement field u on a lattice, in image voxels.
    spacing : float
        Image voxels between lattice nodes.

    Returns
    -------
    ndarray, shape (X, Y, Z), float64
        det(I + ∇u); positive everywhere for an invertible, orientation-preserving map.
    """
    u = disp.detach().cpu().numpy() if isinstance(disp, torch.Tensor) else np.asarray(disp)
    j = [[g + (r == c) for c, g in enumerate(np.gradient(u[r].astype(np.float64), spacing))]
         for r in range(3)]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


def sharpen_fractions(fractions: np.ndarray, power: float, bias: tuple[float, ...]) -> np.ndarray:
    """Sharpen tissue boundaries: (b_t·f_t)^γ / Σ_s (b_s·f_s)^γ, times the local Σ_s f_s.

    Pure voxels stay pure; a boundary settles where the biased fractions b_t·f_t are equal and its
    width shrinks by about the factor γ. The sum over tissues is preserved (1 in the brain).

    Parameters
    ----------
    fractions : ndarray, shape (T, ...)
        Tissue fractions.
    power : float
        γ ≥ 1.
    bias : tuple of float
        One positive b_t per tissue.
    """
    total = fractions.sum(0)
    weights = np.asarray(bias, dtype=np.float32).reshape(-1, *([1] * (fractions.ndim - 1)))
    powered = np.power(np.clip(fractions * weights, 0.0, None), power)
    return powered / np.maximum(powered.sum(0), 1e-30) * total


def sharpen_tissues(fractions: np.ndarray, settings: AnatomySettings,
                    wm_bias: np.ndarray | float | None = None) -> np.ndarray:
    """Sharpen the CSF/tissue split, then the GM/WM split of the tissue (:func:`sharpen_fractions`).

    Parameters
    ----------
    fractions : ndarray, shape (3, ...)
        GM, WM, CSF fractions summing to 1 (or 0 outside the brain).
    settings : AnatomySettings
        ``csf_power``, ``csf_bias``, ``sharpen_power`` and ``wm_bias``.
    wm_bias : ndarray or float, optional
        WM bias per voxel, replacing ``settings.wm_bias``.
    """
    gm, wm, csf = fractions
    tissue = gm + wm
    csf, tissue = sharpen_fractions(np.stack([csf, tissue]), settings.csf_power, (settings.csf_bias, 1.0))
    bias = settings.wm_bias if wm_bias is None else wm_bias
    split = sharpen_fractions(np.stack([gm, wm * bias]), settings.sharpen_power, (1.0, 1.0))
    share = split / np.maximum(split.sum(0), 1e-12)
    return np.stack([tissue * share[0], tissue * share[1], csf])


def carve_sulci(
    fractions: np.ndarray, depth: np.ndarray, distance: np.ndarray, sulcus_depth: np.ndarray,
    width: float, cortex: float,
) -> np.ndarray:
    """Fold the cortex: a continuous cortical ribbon and thin CSF sulci carved into it.

    With r(x) = clip(x + 1/2, 0, 1), a one-voxel partial-volume ramp, and ``depth`` δ (mm) the
    distance to the exterior:

    * ribbon: the fraction r(cortex − δ) of the WM turns into GM (no WM at the brain surface);
    * sulci: a voxel at ``distance`` d (mm, in the surface pattern) from a sulcus line loses the
      fraction c = r(width/2 − d)·r(D − δ) of its GM to CSF, D being the local ``sulcus_depth``.
      Only GM is carved, so a sulcus cuts through the cortical ribbon and stops at the WM (the GM
      on both banks stays) and never reaches deep GM below depth D.

    Fractions keep their sum.

    Parameters
    ----------
    fractions : ndarray, shape (3, ...)
        GM, WM, CSF fractions.
    depth, distance, sulcus_depth : ndarray, shape (...)
        δ, d and D in mm.
    width : float
        Width of the CSF sheet, mm (0: no sulci).
    cortex : float
        Minimum ribbon thickness, mm (0: no ribbon).

    Returns
    -------
    ndarray, shape (3, ...)
    """
    gm, wm, csf = fractions
    to_gm = wm * np.clip(cortex - depth + 0.5, 0.0, 1.0) if cortex > 0 else 0.0
    gm, wm = gm + to_gm, wm - to_gm
    core = np.clip(width / 2 - distance + 0.5, 0.0, 1.0) * np.clip(sulcus_depth - depth + 0.5, 0.0, 1.0)
    return np.stack([gm * (1.0 - core), wm, csf + gm * core])


def mix_tissues(fractions: np.ndarray, values: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Partial-volume mixing of tissue values under fast exchange.

    PD = Σ_t f_t·PD_t (water adds up), and the relaxation RATES mix with the water weights
    w_t = f_t·PD_t/PD: 1/T1 = Σ_t w_t/T1_t, 1/T2 = Σ_t w_t/T2_t (the fast-exchange limit of
    Zimmerman & Brittin, J. Phys. Chem. 61:1328, 1957). Voxels without water get 0 for all maps.

    Parameters
    ----------
    fractions : ndarray, shape (3, ...)
        GM, WM, CSF fractions.
    values : list of (pd, t1, t2)
        Per tissue, arrays broadcasting against a fraction (a.u., ms, ms).

    Returns
    -------
    ndarray, shape (3, ...), float32
        PD (a.u.), T1 (ms), T2 (ms).
    """
    water = [f * v[0] for f, v in zip(fractions, values)]
    pd = sum(water)
    safe = np.maximum(pd, 1e-12)
    r1 = sum(w / v[1] for w, v in zip(water, values)) / safe
    r2 = sum(w / v[2] for w, v in zip(water, values)) / safe
    inside = pd > 0
    t1 = np.where(inside, 1.0 / np.maximum(r1, 1e-12), 0.0)
    t2 = np.where(inside, 1.0 / np.maximum(r2, 1e-12), 0.0)
    return np.stack([pd, t1, t2]).astype(np.float32)


def sample_tissue_values(rng: np.random.Generator, cv: float,
                         table: dict[str, TissueValues] = TISSUE_VALUES) -> dict[str, TissueValues]:
    """One subject's tissue values: ``table`` times independent log-normal factors.

    Each PD, T1 and T2 of each tissue is multiplied by exp(cv·z), z ~ N(0, 1), drawn in the order
    of ``table`` (default :data:`TISSUE_VALUES`, in the order of :data:`TISSUES`).
    """
    factors = np.exp(cv * rng.standard_normal((len(table), 3)))
    return {
        name: TissueValues(*(float(x) * float(f) for x, f in zip((mean.pd, mean.t1, mean.t2), factors[i])))
        for i, (name, mean) in enumerate(table.items())
    }


def subject_anatomy(
    template: Template, rng: np.random.Generator, settings: AnatomySettings, slices: np.ndarray
) -> SubjectAnatomy:
    """Build one digital subject on the axial ``slices`` of the template grid.

    The subject is defined on the whole template grid: every random field is drawn for the whole
    grid, so a subject does not depend (up to float rounding) on which slices are requested; only
    what those slices need is computed. With ``settings.slice_thickness`` > 1 the fractions of the
    neighbouring 1 mm slices are averaged into each requested slice.

    Parameters
    ----------
    template : Template
        Tissue fractions and surface geometry (:func:`prepare_template`, :func:`mni152_template`).
    rng : numpy.random.Generator
        The subject's random stream (deformation, folding pattern, tissue values, heterogeneity).
    settings : AnatomySettings
        Construction parameters.
    slices : ndarray of int
        Axial (last-axis) indices of the template grid to produce.

    Returns
    -------
    SubjectAnatomy
        Maps, mask and fractions of shape (…, X, Y, len(slices)).

    Raises
    ------
    RuntimeError
        If the deformation folds (Jacobian ≤ 0) or moves the brain onto the in-plane border.
    """
    slices = np.asarray(slices, dtype=np.int64)
    shape = template.shape
    thick = thick_slices(slices, shape[2], settings.slice_thickness)
    coords, min_jac = deformation(shape, rng, settings, thick)
    zlo, zhi = axial_range(coords, shape[2])
    distance, sulcus_depth = _sulcal_pattern(template, rng, settings, zlo, zhi)
    part = np.s_[..., zlo:zhi]
    channels = torch.from_numpy(np.concatenate([
        template.fractions[part], template.mask[None, ..., zlo:zhi].astype(np.float32),
        template.depth[None, ..., zlo:zhi], distance[None], sulcus_depth[None],
    ]))
    offset = torch.tensor([0.0, 0.0, float(zlo)]).view(3, 1, 1, 1)
    warped = sample(channels, coords - offset).numpy()
    brain = warped[3] > 0.5
    fractions = np.where(brain, warped[:3] / np.maximum(warped[:3].sum(0), 1e-6), 0.0)
    jitter = LatticeField.random(rng, shape, settings.boundary_scale_mm, z_range=(zlo, zhi))
    wm_bias = settings.wm_bias * np.exp(settings.boundary_jitter * jitter.at(coords)[0].numpy())
    fractions = sharpen_tissues(fractions, settings, wm_bias)
    fractions = carve_sulci(fractions, warped[4], warped[5], warped[6], settings.sulcus_width_mm,
                            settings.cortex_mm)
    fractions, mask, coords = through_plane(fractions, brain, coords, slices.size, settings.slice_thickness)
    maps, values = tissue_maps(fractions, mask, coords, shape, rng, settings)
    return SubjectAnatomy(maps, mask, fractions.astype(np.float32), values, min_jac)


def axial_range(coords: torch.Tensor, n_slices: int) -> tuple[int, int]:
    """Template slices ``[zlo, zhi)`` that sampling at ``coords`` (3, ...) reads, 2 to spare each side."""
    zlo = max(0, int(math.floor(float(coords[2].min()))) - 2)
    zhi = min(n_slices, int(math.ceil(float(coords[2].max()))) + 3)
    return zlo, zhi


def thick_slices(slices: np.ndarray, n_slices: int, thickness: int) -> np.ndarray:
    """The 1 mm grid slices that the requested axial ``slices`` average over.

    Parameters
    ----------
    slices : ndarray of int
        Requested axial indices, in [0, ``n_slices``).
    n_slices : int
        Axial size of the grid.
    thickness : int
        Slice thickness, mm (odd; ``AnatomySettings.slice_thickness``).

    Returns
    -------
    ndarray of int, shape (len(slices)·thickness,)
        For each requested slice, the ``thickness`` grid slices centred on it (clipped to the
        grid), slice by slice.
    """
    if slices.size == 0 or slices.min() < 0 or slices.max() >= n_slices:
        raise ValueError(f"slices must lie in [0, {n_slices}), got {slices.tolist()}")
    if thickness < 1 or thickness % 2 == 0:
        raise ValueError(f"slice_thickness must be an odd number of mm, got {thickness}")
    half = thickness // 2
    return np.clip(slices[:, None] + np.arange(-half, half + 1), 0, n_slices - 1).ravel()


def through_plane(fractions: np.ndarray, brain: np.ndarray, coords: torch.Tensor, n_slices: int,
                  thickness: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Average the :func:`thick_slices` of each requested slice: fractions, mask and coordinates.

    Parameters
    ----------
    fractions : ndarray, shape (T, X, Y, n_slices·thickness)
        Tissue fractions on the thick slices.
    brain : ndarray of bool, shape (X, Y, n_slices·thickness)
        Brain mask on the thick slices.
    coords : Tensor, shape (3, X, Y, n_slices·thickness)
        Template coordinates of the thick slices.
    n_slices : int
        Requested slices.
    thickness : int
        Slice thickness, mm (odd).

    Returns
    -------
    fractions : ndarray, shape (T, X, Y, n_slices)
        Averaged and renormalised to sum to 1 in the mask, 0 outside.
    mask : ndarray of bool, shape (X, Y, n_slices)
        Where the brain covers more than half of the thick slice.
    coords : Tensor, shape (3, X, Y, n_slices)
        Coordinates of the central 1 mm slice.

    Raises
    ------
    RuntimeError
        If the mask touches the in-plane border of the grid.
    """
    half, shape = thickness // 2, brain.shape[:2]
    fractions = fractions.reshape(len(fractions), *shape, n_slices, thickness).mean(-1)
    mask = brain.reshape(*shape, n_slices, thickness).mean(-1) > 0.5
    if mask[[0, -1]].any() or mask[:, [0, -1]].any():
        raise RuntimeError("the deformed brain touches the in-plane border of the grid; "
                           "increase the crop margin or lower scale_sd/deform_mm")
    fractions = np.where(mask, fractions / np.maximum(fractions.sum(0), 1e-6), 0.0)
    return fractions, mask, coords.reshape(3, *shape, n_slices, thickness)[..., half]


def tissue_maps(
    fractions: np.ndarray, mask: np.ndarray, coords: torch.Tensor, shape: tuple[int, int, int],
    rng: np.random.Generator, settings: AnatomySettings, table: dict[str, TissueValues] = TISSUE_VALUES,
) -> tuple[np.ndarray, dict[str, TissueValues]]:
    """Steps 5 and 6: this subject's tissue values, their smooth spatial modulation, and mixing.

    Parameters
    ----------
    fractions : ndarray, shape (T, X, Y, Z)
        Fractions of the T tissues of ``table``, in its order.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask; the maps are 0 outside.
    coords : Tensor, shape (3, X, Y, Z)
        Template coordinates of the voxels (the modulation fields live on the template grid).
    shape : tuple of int
        Template grid shape.
    rng : numpy.random.Generator
        Draws the tissue values (:func:`sample_tissue_values`), then the coarse and the fine
        modulation fields (T each).
    settings : AnatomySettings
        ``subject_cv``, ``spatial_cv`` and ``spatial_scale_mm``.
    table : dict of str to TissueValues
        Mean values per tissue (default :data:`TISSUE_VALUES`).

    Returns
    -------
    maps : ndarray, shape (3, X, Y, Z), float32
        PD (a.u.), T1 (ms), T2 (ms), clipped to :data:`MAP_MAX`.
    values : dict of str to TissueValues
        This subject's mean values per tissue.
    """
    values = sample_tissue_values(rng, settings.subject_cv, table)
    coarse, fine = settings.spatial_scale_mm
    modulation = sum(w * LatticeField.random(rng, shape, s, count=len(table)).at(coords).numpy()
                     for w, s in ((0.8, coarse), (0.6, fine)))
    per_tissue = [
        tuple(np.float32(v) * np.exp(settings.spatial_cv * modulation[i])
              for v in (values[name].pd, values[name].t1, values[name].t2))
        for i, name in enumerate(table)
    ]
    maps = mix_tissues(fractions, per_tissue)
    maps = np.clip(maps, 0.0, np.asarray(MAP_MAX, dtype=np.float32)[:, None, None, None]) * mask
    return maps.astype(np.float32), values


def deformation(shape: tuple[int, int, int], rng: np.random.Generator, settings: AnatomySettings,
                slices: np.ndarray) -> tuple[torch.Tensor, float]:
    """Template coordinates φ(x) of the subject voxels x on ``slices``, and min det ∇φ.

    φ = φ_c ∘ φ_f. The coarse map φ_c = exp(v_c), v_c = global log-scaling about the grid centre
    plus a smooth field, is integrated on a lattice; the fine map φ_f = exp(v_f) on the image grid,
    within the axial range the requested slices can reach. Both Jacobian determinants are
    checked; the composition's is their product, so it is positive too.

    Parameters
    ----------
    shape : tuple of int
        Template grid (X, Y, Z), 1 mm voxels.
    rng : numpy.random.Generator
        Draws the coarse field, the global scaling, then the fine field.
    settings : AnatomySettings
        ``scale_sd``, ``deform_mm``, ``deform_scale_mm``, ``fine_deform_mm``, ``fine_scale_mm``.
    slices : ndarray of int
        Axial indices of the subject voxels.

    Returns
    -------
    coords : Tensor, shape (3, X, Y, len(slices))
        Template voxel coordinates.
    min_jacobian : float
        Smallest Jacobian determinant of the two maps.
    """
    coarse = LatticeField.random(rng, shape, settings.deform_scale_mm, count=3)
    lattice = coarse.values.shape[1:]
    velocity_c = settings.deform_mm * coarse.values
    if settings.scale_sd > 0:
        log_scale = settings.scale_sd * rng.standard_normal(3)
        nodes = identity_grid(lattice) * coarse.spacing
        centre = torch.tensor([(n - 1) / 2 for n in shape]).view(3, 1, 1, 1)
        velocity_c = velocity_c + torch.tensor(log_scale, dtype=torch.float32).view(3, 1, 1, 1) * (nodes - centre)
    disp_c = integrate_velocity(velocity_c, coarse.spacing)
    pad = _FINE_PAD
    zlo, zhi = max(0, int(slices.min()) - pad), min(shape[2], int(slices.max()) + pad + 1)
    fine = gaussian_noise(rng, shape, settings.fine_scale_mm, count=3, z_range=(zlo, zhi))
    disp_f = integrate_velocity(torch.from_numpy(settings.fine_deform_mm * fine))
    if float(disp_f.abs().max()) > pad / 2:
        raise RuntimeError("fine deformation too large for its integration margin; lower fine_deform_mm")
    min_jac = min(float(jacobian_determinant(disp_c, coarse.spacing).min()),
                  float(jacobian_determinant(disp_f).min()))
    if min_jac <= 0:
        raise RuntimeError(f"deformation is not invertible (min Jacobian {min_jac:.3g}); "
                           "lower deform_mm or fine_deform_mm")
    points = identity_grid(shape, z=slices)
    points = points + disp_f[..., slices - zlo]
    return points + sample(disp_c, points / coarse.spacing, padding="border"), min_jac


#: Axial margin (voxels) of the fine-deformation integration around the requested slices.
_FINE_PAD = 8


def _sulcal_pattern(template: Template, rng: np.random.Generator, settings: AnatomySettings,
                    zlo: int, zhi: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) to the nearest sulcus line and sulcal depth D (mm) on template slices zlo:zhi.

    A random field n on the grid defines sulcus lines where it is zero on the exterior surface.
    Every voxel inherits the values of its nearest exterior voxel p, so sulci run radially
    inward; its distance to the line is |n(p)|/|∇n(p)| (first order), lightly smoothed to remove
    the one-voxel jitter of p. D = D_min + (D_max − D_min)·Φ(m(p)), with m a wider random field
    and Φ the standard normal CDF. Voxels deeper than D_max, where nothing is carved, get an
    infinite distance (their p may lie outside the block of n that is computed).
    """
    reach = int(math.ceil(settings.sulcus_depth_mm[1])) + 5  # > D_max + the smoothing radius
    plo, phi = max(0, zlo - reach), min(template.shape[2], zhi + reach)
    pattern = gaussian_noise(rng, template.shape, settings.sulcus_scale_mm, z_range=(plo, phi))[0]
    wide = LatticeField.random(rng, template.shape, 4.0 * settings.sulcus_scale_mm)
    index = np.unravel_index(template.surface_index[..., zlo:zhi], template.shape)
    shallow = template.depth[..., zlo:zhi] < reach
    local = (index[0], index[1], np.clip(index[2] - plo, 0, phi - plo - 1))
    gradient = np.sqrt(sum(g * g for g in np.gradient(pattern)))
    floor = 0.2 / settings.sulcus_scale_mm
    distance = np.abs(pattern[local]) / np.maximum(gradient[local], floor)
    distance = ndimage.gaussian_filter(np.where(shallow, distance, 1e3).astype(np.float32), 0.7)
    surface = torch.from_numpy(np.stack(index).astype(np.float32))
    lo, hi = settings.sulcus_depth_mm
    depth = lo + (hi - lo) * special.ndtr(wide.at(surface)[0].numpy())
    return distance, depth.astype(np.float32)
