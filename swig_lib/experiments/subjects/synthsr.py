"""Digital subjects from real-subject label maps: the second anatomy source (``anatomy_source = "synthsr"``).

The MNI152 source (:mod:`swig_lib.experiments.subjects.anatomy`) deforms one population average,
smoother and more uniform than any brain. This source starts from the whole-brain label maps of
five real subjects (FreeSurfer label codes, 1 mm) published with SynthSR (Billot et al.,
GitHub ``BBillot/SynthSR``, Apache-2.0), kept in the repository with their licence in
``swig_lib/datasets/synthsr-labels/`` (:data:`LABELS_FOLDER`); the package reads only that copy. Each
digital subject is built in five steps (:func:`label_anatomy`):

1. **Classes.** Every label code maps to one of :data:`CLASSES` (:data:`FREESURFER_CLASSES`): cortex,
   hippocampus/amygdala, white matter, thalamus, caudate (with accumbens), putamen, pallidum,
   brain stem (with the ventral diencephalon), cerebellar cortex, ventricular CSF and sulcal CSF.
2. **Sulcal CSF** (:func:`add_sulcal_csf`), which the maps lack: the labelled brain is closed
   morphologically with a ball of radius ``closing_mm`` (Euclidean distance transforms: dilation
   then erosion) and its enclosed holes filled; what the closing adds (the unlabelled voxels in
   sulci, fissures and cisterns narrower than 2·``closing_mm``) and a layer of ``csf_shell_mm``
   outside the closed surface (the subarachnoid space over the gyri) become sulcal CSF.
3. **Deformation.** The random diffeomorphism of the MNI152 source
   (:func:`~swig_lib.experiments.subjects.anatomy.deformation`, the same ``anatomy`` settings and
   random stream), so one brain gives many subjects. The sharpening, ribbon and sulcus carving
   of the MNI152 source are not applied: these maps are of individual brains.
4. **Partial volumes.** Each class indicator is resampled trilinearly through the deformation.
   The mean, over a 1 mm cube centred at p, of a function constant on the label map's 1 mm cubes
   is the trilinear interpolation of the cube values at p, so this gives the exact partial
   volume of every subject voxel in the label map's cubes; as the deformation moves voxels off
   the label grid, boundary voxels get fractions between 0 and 1, not hard 1 mm labels. Before
   that each indicator is smoothed by a Gaussian of standard deviation ``smoothing_mm``
   (:meth:`LabelTemplate.indicator`; 0.4 mm moves about 3 % of a voxel's weight to each face
   neighbour), which rounds the 1 mm staircase of oblique boundaries; the fractions are
   renormalised to sum to 1 in the brain. The sharpness of the maps depends on it: on brain 1
   the Q_l baseline HFEN of T1 is 0.16 at 0 mm, 0.13 at 0.4 mm and 0.10 at 0.5 mm (MNI152
   subjects: 0.09).
5. **Tissue values.** Literature PD/T1/T2 per class (:data:`CLASS_VALUES`), varied per subject
   and modulated by smooth random fields, mixed under fast exchange
   (:func:`~swig_lib.experiments.subjects.anatomy.tissue_maps`, as for MNI152).

The subjects share the in-plane grid of the MNI152 source (``margin`` around its brain), so both
sources and their mixtures make one dataset grid; axially the slab settings keep their MNI152
meaning: a label map's slice z stands for MNI152 slice k = z + k0, where k0 aligns the axial
centres of mass of the cerebral white matter (:func:`label_template`). For evaluation the classes
are grouped into GM, WM and CSF (:data:`CLASS_TISSUE`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from swig_lib.core.io import load_nifti
from swig_lib.experiments.config import check_known_fields
from swig_lib.experiments.subjects.anatomy import (
    TISSUE_VALUES,
    TISSUES,
    AnatomySettings,
    SubjectAnatomy,
    TissueValues,
    axial_range,
    deformation,
    mni152_template,
    sample,
    thick_slices,
    through_plane,
    tissue_maps,
)

#: The package's copy of the label maps (``swig_lib/datasets/synthsr-labels``, package data, so that
#: a non-editable install has it too).
LABELS_FOLDER = Path(__file__).resolve().parents[2] / "datasets" / "synthsr-labels"
#: Public source of the label maps and the commit they were copied from.
SOURCE_REPOSITORY = "https://github.com/BBillot/SynthSR"
SOURCE_COMMIT = "9e63935503d97a433fcf7082b9f69abc5e7a1ddd"
#: The brains of the copy: ``brain{n}_labels.nii.gz``.
BRAINS: tuple[int, ...] = (1, 2, 3, 4, 5)

#: Tissue classes of the label-derived subjects, in the order of every fraction stack.
CLASSES: tuple[str, ...] = (
    "cortex", "hippocampus", "WM", "thalamus", "caudate", "putamen", "pallidum", "brainstem",
    "cerebellum", "ventricle CSF", "sulcal CSF",
)
#: The class that :func:`add_sulcal_csf` adds.
SULCAL_CSF = "sulcal CSF"

#: FreeSurfer label code → class; left- and right-hemisphere codes (the SynthSR maps use the left
#: ones for both). Cerebellar WM is WM; amygdala goes with hippocampus, accumbens with caudate
#: (ventral striatum), the ventral diencephalon with the brain stem; choroid plexus (a small
#: vascular tissue inside the ventricles, with poorly documented relaxation times) and the 5th
#: ventricle are ventricular CSF; "undetermined" (4 voxels of brain 1, inside the WM) and WM
#: hypointensities are WM; FreeSurfer's CSF label (24) is sulcal CSF.
FREESURFER_CLASSES: dict[int, str] = {
    2: "WM", 41: "WM", 7: "WM", 46: "WM", 29: "WM", 61: "WM", 77: "WM", 85: "WM",
    3: "cortex", 42: "cortex",
    17: "hippocampus", 53: "hippocampus", 18: "hippocampus", 54: "hippocampus",
    9: "thalamus", 10: "thalamus", 48: "thalamus", 49: "thalamus",
    11: "caudate", 50: "caudate", 26: "caudate", 58: "caudate",
    12: "putamen", 51: "putamen",
    13: "pallidum", 52: "pallidum",
    16: "brainstem", 28: "brainstem", 60: "brainstem",
    8: "cerebellum", 47: "cerebellum",
    4: "ventricle CSF", 43: "ventricle CSF", 5: "ventricle CSF", 44: "ventricle CSF",
    14: "ventricle CSF", 15: "ventricle CSF", 72: "ventricle CSF", 31: "ventricle CSF",
    63: "ventricle CSF",
    24: "sulcal CSF",
}

#: Representative healthy-adult PD (a.u., % water), T1 and T2 (ms) at 1.5 T per class, chosen, not
#: fitted to one study, on the scale of the MNI152 source's :data:`TISSUE_VALUES`:
#:
#: * cortex, WM and both CSF classes take the MNI152 source's GM, WM and CSF values (Stanisz et
#:   al., MRM 54:507, 2005; Warntjes et al., MRM 60:320, 2008; Gelman et al., MRM 45:71, 2001;
#:   Rooney et al., MRM 57:308, 2007): ventricular and sulcal CSF are the same fluid; they are two
#:   classes so that each varies on its own between and within subjects;
#: * deep grey nuclei: T1 and T2 shorten with the non-haem iron content, pallidum < putamen <
#:   caudate (Vymazal et al., Radiology 211:489, 1999, at 1.5 T), and with myelinated fibres
#:   (pallidum, thalamus); the water content of pallidum and thalamus lies between WM and cortex,
#:   that of caudate and putamen near the cortex's (Gelman et al. 2001). At 1.5 T the caudate's
#:   T2 groups with the neocortex's (Georgiades et al., AJNR 22:1732, 2001);
#: * hippocampus/amygdala: the longest T2 of the grey matter at 1.5 T (Georgiades et al. 2001),
#:   and more water than the neocortex;
#: * brain stem / ventral diencephalon: tracts and nuclei, between WM and the deep grey nuclei;
#: * cerebellar cortex: close to the cerebral cortex, slightly shorter T1.
CLASS_VALUES: dict[str, TissueValues] = {
    "cortex": TISSUE_VALUES["GM"],
    "hippocampus": TissueValues(pd=85.0, t1=1200.0, t2=105.0),
    "WM": TISSUE_VALUES["WM"],
    "thalamus": TissueValues(pd=76.0, t1=840.0, t2=82.0),
    "caudate": TissueValues(pd=82.0, t1=1050.0, t2=92.0),
    "putamen": TissueValues(pd=81.0, t1=950.0, t2=82.0),
    "pallidum": TissueValues(pd=74.0, t1=760.0, t2=70.0),
    "brainstem": TissueValues(pd=72.0, t1=780.0, t2=78.0),
    "cerebellum": TissueValues(pd=84.0, t1=1050.0, t2=98.0),
    "ventricle CSF": TISSUE_VALUES["CSF"],
    "sulcal CSF": TISSUE_VALUES["CSF"],
}

#: The tissue (:data:`~swig_lib.experiments.subjects.anatomy.TISSUES`) each class counts as in the
#: GM/WM/CSF fractions and tissue labels used for evaluation.
CLASS_TISSUE: dict[str, str] = {
    "cortex": "GM", "hippocampus": "GM", "WM": "WM", "thalamus": "GM", "caudate": "GM",
    "putamen": "GM", "pallidum": "GM", "brainstem": "WM", "cerebellum": "GM",
    "ventricle CSF": "CSF", "sulcal CSF": "CSF",
}


@dataclass(frozen=True)
class SynthSRSettings:
    """The optional ``[<profile>.data.synthsr]`` table: how label-derived subjects are built and used.

    Attributes
    ----------
    split : tuple of int
        With ``anatomy_source = "mix"``: the number of label-derived subjects in the train,
        validation and test splits (the last ones of each split; the others are MNI152-derived).
        Ignored by the other sources.
    brains : tuple of tuple of int
        Brains (numbers of :data:`BRAINS`) that the label-derived subjects of the train,
        validation and test split are drawn from, cycled in subject order. The default uses all
        five everywhere; disjoint lists keep the test brains unseen in training.
    smoothing_mm : float
        Standard deviation of the Gaussian applied to each class indicator (sub-voxel partial
        volume); 0 keeps hard 1 mm labels.
    closing_mm : float
        Radius of the morphological closing that finds the sulcal CSF, mm.
    csf_shell_mm : float
        Thickness of the CSF layer added outside the closed brain surface, mm.
    """

    split: tuple[int, int, int] = (0, 0, 0)
    brains: tuple[tuple[int, ...], ...] = (BRAINS, BRAINS, BRAINS)
    smoothing_mm: float = 0.4
    closing_mm: float = 3.0
    csf_shell_mm: float = 1.0

    def __post_init__(self) -> None:
        if len(self.split) != 3 or min(self.split) < 0:
            raise ValueError(f"synthsr.split must be three non-negative counts, got {list(self.split)}")
        if len(self.brains) != 3 or any(not b or set(b) - set(BRAINS) for b in self.brains):
            raise ValueError(f"synthsr.brains must be three non-empty lists of brains from {list(BRAINS)}, "
                             f"got {[list(b) for b in self.brains]}")
        if min(self.smoothing_mm, self.closing_mm, self.csf_shell_mm) < 0:
            raise ValueError("synthsr.smoothing_mm, closing_mm and csf_shell_mm must be >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthSRSettings:
        """Build from a dict (a profile's ``data.synthsr`` table); unknown keys raise."""
        check_known_fields(cls, values, "synthsr")
        converted = dict(values)
        if "split" in converted:
            converted["split"] = tuple(int(n) for n in converted["split"])
        if "brains" in converted:
            converted["brains"] = tuple(tuple(int(b) for b in split) for split in converted["brains"])
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable; tuples become lists)."""
        values = asdict(self)
        return values | {"split": list(self.split), "brains": [list(b) for b in self.brains]}


def label_file(brain: int, folder: Path = LABELS_FOLDER) -> Path:
    """Path of brain ``brain``'s label map in ``folder``."""
    if brain not in BRAINS:
        raise ValueError(f"no brain {brain}: choose from {list(BRAINS)}")
    path = Path(folder) / f"brain{brain}_labels.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label map missing; the repository keeps the SynthSR label maps in "
                                f"swig_lib/datasets/synthsr-labels/ (from {SOURCE_REPOSITORY} at {SOURCE_COMMIT})")
    return path


def provenance(settings: SynthSRSettings, brains: set[int], folder: Path = LABELS_FOLDER) -> dict[str, Any]:
    """What label-derived data depend on besides the common settings: for a dataset's settings record.

    Returns the source, ``settings``, the class of every label code, the class values and the
    SHA-256 of the label maps of ``brains``.
    """
    return {
        "synthsr": settings.to_dict(),
        "synthsr_source": f"{SOURCE_REPOSITORY} at {SOURCE_COMMIT}",
        "synthsr_classes": {str(code): name for code, name in sorted(FREESURFER_CLASSES.items())},
        "synthsr_values": {name: vars(value) for name, value in CLASS_VALUES.items()},
        "synthsr_labels": {f"brain{b}": hashlib.sha256(label_file(b, folder).read_bytes()).hexdigest()
                           for b in sorted(brains)},
    }


def classify(codes: np.ndarray) -> np.ndarray:
    """Class map of a FreeSurfer label map: 0 background, i + 1 for ``CLASSES[i]``.

    Raises
    ------
    ValueError
        Naming the label codes that :data:`FREESURFER_CLASSES` does not map.
    """
    codes = np.asarray(codes)
    present = {int(c) for c in np.unique(codes)} - {0}
    unknown = sorted(present - set(FREESURFER_CLASSES))
    if unknown:
        raise ValueError(f"label codes {unknown} have no tissue class; add them to FREESURFER_CLASSES")
    lookup = np.zeros(max(FREESURFER_CLASSES) + 1, dtype=np.uint8)
    for code, name in FREESURFER_CLASSES.items():
        lookup[code] = CLASSES.index(name) + 1
    return lookup[codes.astype(np.int64)]


def add_sulcal_csf(classes: np.ndarray, closing_mm: float, shell_mm: float) -> np.ndarray:
    """Label the CSF the maps lack: what a closing of the brain adds, plus a layer outside it.

    With B the labelled voxels, the closing C = erode(dilate(B, r), r) ∪ B by a ball of radius
    r = ``closing_mm`` (Euclidean distance ≤ r), its enclosed holes filled; sulcal CSF is
    (C ∪ {x : 0 < d(x, C) ≤ ``shell_mm``}) minus B. Labelled voxels keep their class.

    Parameters
    ----------
    classes : ndarray of uint8, shape (X, Y, Z)
        Class map (:func:`classify`), 1 mm voxels, with at least ``closing_mm + shell_mm`` + 1
        background voxels around the brain.
    closing_mm, shell_mm : float
        r and the layer thickness, mm.

    Returns
    -------
    ndarray of uint8, shape (X, Y, Z)
    """
    brain = classes > 0
    closed = brain
    if closing_mm > 0:
        dilated = ndimage.distance_transform_edt(~brain) <= closing_mm
        closed = (ndimage.distance_transform_edt(dilated) > closing_mm) | brain
    closed = ndimage.binary_fill_holes(closed)
    outer = closed | (ndimage.distance_transform_edt(~closed) <= shell_mm) if shell_mm > 0 else closed
    return np.where(outer & ~brain, np.uint8(CLASSES.index(SULCAL_CSF) + 1), classes).astype(np.uint8)


@dataclass(frozen=True)
class LabelTemplate:
    """One real brain's classes on the dataset grid (:func:`label_template`).

    Attributes
    ----------
    classes : ndarray of uint8, shape (X, Y, Z)
        0 background, i + 1 for ``CLASSES[i]``; sulcal CSF added.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of this grid (the label map's world frame), mm.
    offset : tuple of int
        In-plane: index in the label map of this grid's first voxel (negative where padded).
        Axially: the MNI152 slice index k that this grid's first slice stands for, so that
        MNI152 slice k is slice ``k − offset[2]`` here, as for a cropped MNI152 template.
    brain : int
        Brain number.
    smoothing_mm : float
        Standard deviation of the partial-volume Gaussian, mm.
    """

    classes: np.ndarray
    affine: np.ndarray
    offset: tuple[int, int, int]
    brain: int
    smoothing_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (X, Y, Z)."""
        return tuple(self.classes.shape)  # type: ignore[return-value]

    def indicator(self, index: int, zlo: int, zhi: int) -> np.ndarray:
        """Smoothed indicator of class ``CLASSES[index]`` on slices ``[zlo, zhi)``, float32.

        The Gaussian (``smoothing_mm``, ``scipy.ndimage.gaussian_filter``, nearest-value edges) is
        applied to a block padded by its radius, so the result equals that of the whole volume.
        The indicators of all classes and of the background sum to 1.
        """
        radius = int(4.0 * self.smoothing_mm + 0.5)
        lo, hi = max(0, zlo - radius), min(self.shape[2], zhi + radius)
        block = (self.classes[..., lo:hi] == index + 1).astype(np.float32)
        if self.smoothing_mm > 0:
            block = ndimage.gaussian_filter(block, self.smoothing_mm, mode="nearest")
        return block[..., zlo - lo:zhi - lo]


@lru_cache(maxsize=len(BRAINS))
def label_template(brain: int, settings: SynthSRSettings = SynthSRSettings(), margin: int = 12,
                   folder: Path = LABELS_FOLDER) -> LabelTemplate:
    """Brain ``brain`` on the dataset grid, with sulcal CSF (cached).

    The in-plane grid is that of :func:`~swig_lib.experiments.subjects.anatomy.mni152_template`
    (``margin``), the brain (with its CSF) centred in it; axially the brain's extent plus
    ``margin``. The axial offset k0 (:attr:`LabelTemplate.offset`) is the difference of the
    axial centres of mass of the MNI152 WM probability map and of this brain's cerebral WM,
    rounded.

    Raises
    ------
    ValueError
        On unknown label codes, or when the brain does not fit the grid with ``margin``.
    """
    codes, affine = load_nifti(label_file(brain, folder))
    classes = classify(np.rint(codes))
    pad = int(np.ceil(settings.closing_mm + settings.csf_shell_mm)) + 2
    classes = add_sulcal_csf(np.pad(classes, pad), settings.closing_mm, settings.csf_shell_mm)
    inside = np.argwhere(classes > 0)
    lo, hi = inside.min(0), inside.max(0) + 1
    mni = mni152_template(margin)
    size = (*mni.shape[:2], int(hi[2] - lo[2]) + 2 * margin)
    if any(hi[a] - lo[a] + 2 * margin > size[a] for a in (0, 1)):
        raise ValueError(f"brain {brain} ({hi[0] - lo[0]} x {hi[1] - lo[1]} mm) does not fit the "
                         f"{size[0]} x {size[1]} grid with a margin of {margin}")
    start = [int((lo[a] + hi[a] - size[a]) // 2) for a in (0, 1)] + [int(lo[2]) - margin]
    grid = np.zeros(size, dtype=np.uint8)
    src = tuple(slice(max(s, 0), min(s + n, classes.shape[a])) for a, (s, n) in enumerate(zip(start, size)))
    dst = tuple(slice(r.start - s, r.stop - s) for r, s in zip(src, start))
    grid[dst] = classes[src]
    wm = grid == CLASSES.index("WM") + 1
    k_mni = axial_centre(mni.fractions[TISSUES.index("WM")]) + mni.offset[2]
    k0 = int(round(k_mni - axial_centre(wm)))
    origin = np.eye(4)
    origin[:3, 3] = [s - pad for s in start]
    return LabelTemplate(grid, affine @ origin, (start[0] - pad, start[1] - pad, k0), brain,
                         settings.smoothing_mm)


def axial_centre(weights: np.ndarray) -> float:
    """Centre of mass of ``weights`` (X, Y, Z) along the last axis, in slice indices."""
    profile = weights.sum(axis=(0, 1), dtype=np.float64)
    return float((profile * np.arange(profile.size)).sum() / profile.sum())


def group_fractions(fractions: np.ndarray) -> np.ndarray:
    """Sum class fractions (len(CLASSES), ...) into GM, WM, CSF fractions (3, ...) (:data:`CLASS_TISSUE`)."""
    grouped = np.zeros((len(TISSUES), *fractions.shape[1:]), dtype=fractions.dtype)
    for i, name in enumerate(CLASSES):
        grouped[TISSUES.index(CLASS_TISSUE[name])] += fractions[i]
    return grouped


def label_anatomy(template: LabelTemplate, rng: np.random.Generator, settings: AnatomySettings,
                  slices: np.ndarray) -> SubjectAnatomy:
    """Build one label-derived digital subject on the axial ``slices`` of the template grid.

    Steps 3-5 of the module notes. ``settings`` supplies the deformation (``scale_sd``,
    ``deform_mm``, ``deform_scale_mm``, ``fine_deform_mm``, ``fine_scale_mm``), the slice
    thickness and the tissue variation (``subject_cv``, ``spatial_cv``, ``spatial_scale_mm``);
    its sharpening and folding fields do not apply.

    Parameters
    ----------
    template : LabelTemplate
        The brain (:func:`label_template`).
    rng : numpy.random.Generator
        The subject's random stream: deformation, tissue values, modulation.
    settings : AnatomySettings
        Construction parameters.
    slices : ndarray of int
        Axial indices of the template grid to produce.

    Returns
    -------
    SubjectAnatomy
        Maps and mask; ``fractions`` are the GM, WM, CSF groups (:func:`group_fractions`) and
        ``tissue_values`` this subject's values per class.

    Raises
    ------
    RuntimeError
        If the deformation folds or moves the brain onto the in-plane border.
    """
    slices = np.asarray(slices, dtype=np.int64)
    shape = template.shape
    coords, min_jac = deformation(shape, rng, settings, thick_slices(slices, shape[2], settings.slice_thickness))
    zlo, zhi = axial_range(coords, shape[2])
    local = coords - torch.tensor([0.0, 0.0, float(zlo)]).view(3, 1, 1, 1)
    warped = np.stack([sample(torch.from_numpy(template.indicator(i, zlo, zhi))[None], local)[0].numpy()
                       for i in range(len(CLASSES))])
    total = warped.sum(0)
    brain = total > 0.5
    fractions = np.where(brain, warped / np.maximum(total, 1e-6), 0.0)
    fractions, mask, coords = through_plane(fractions, brain, coords, slices.size, settings.slice_thickness)
    maps, values = tissue_maps(fractions, mask, coords, shape, rng, settings, CLASS_VALUES)
    return SubjectAnatomy(maps, mask, group_fractions(fractions).astype(np.float32), values, min_jac)
