"""Digital subjects: the synthetic dataset of the paper (Sec. III-A.1) on stored, verified NIfTI files.

For every subject (Fig. 1a of the paper):

1. HR maps Q_h = (PD, T1, T2) and a brain mask: from tissue fractions (:mod:`swig_lib.experiments.subjects.anatomy`;
   MNI152 by default, any tissue maps via :func:`subject_from_tissue_fractions`), from the label
   maps of five real brains (:mod:`swig_lib.experiments.subjects.synthsr`, the ``anatomy_source``
   setting) or from a user's own HR maps (:func:`subject_from_maps`);
2. the 12 HR contrasts C_h = M(Q_h) (eq. 13-14, :func:`swig_lib.core.physics.qmri_contrasts`);
3. Φ (eq. 3) on every 2-D axial slice: centred k-space truncation (``keep`` of each in-plane axis)
   with complex Gaussian noise σ, seeded per subject → the LR contrasts C_l (:func:`lr_contrasts`);
   with degradation randomisation (``[data.degradation]``,
   :class:`~swig_lib.experiments.training.augment.DegradationSettings`) each subject of the chosen
   splits is acquired with its own Φ (:meth:`DataSettings.subject_phi`, recorded in the manifest);
4. the voxel-wise maximum-likelihood fit inside the mask → Q_l (:func:`fit_maps`);
5. the HR guides W = M_g(Q_h) (eq. 15-17): T1w (IR-SPGR) and T2w (SE) (:func:`synthesize_guides`).

A dataset (:func:`build_dataset`, ``swig data``) stores Q_h, Q_l, the guides, the mask and a tissue
label map (:func:`tissue_labels`, for evaluation in white and grey matter) of each subject as
NIfTI (float32; the labels uint8) with qMRI-BIDS-like names under ``<root>/<dataset>/`` plus a
``manifest.json`` with the settings, seeds, split and SHA-256 checksums. The 12 LR contrasts are
not stored: they are cheap and seeded, and :meth:`Acquired.lr_contrasts` recomputes exactly those
that were fitted. :func:`load_dataset` reuses a dataset whose manifest settings and code
fingerprint (the sources of :data:`DATA_MODULES`) match and whose checksums verify, and rebuilds it
otherwise, saying why. Every file is written atomically and the manifest last.

Training code uses :meth:`Dataset.acquired` (what a scanner gives: Q_l, guides, mask, C_l) and
never :meth:`Dataset.reference` nor :meth:`Dataset.labels` (Q_h and the tissue labels, for
evaluation only).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from swig_lib import __version__
from swig_lib.core import physics
from swig_lib.core.fitter import fit_qmri
from swig_lib.core.io import (
    DataValidationError,
    PathLike,
    atomic_path,
    atomic_write_bytes,
    load_nifti,
    load_qmri_maps,
    remove_stale_temporaries,
    save_nifti,
    sha256,
    validate_maps,
    zero_nonfinite,
)
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.protocols import GUIDE_PROTOCOLS, QMRIProtocol
from swig_lib.experiments.config import Profile
from swig_lib.experiments.subjects.anatomy import (
    MAP_MAX,
    TISSUE_VALUES,
    AnatomySettings,
    SubjectAnatomy,
    Template,
    mni152_template,
    prepare_template,
    subject_anatomy,
)
from swig_lib.experiments.subjects.synthsr import (
    LabelTemplate,
    SynthSRSettings,
    label_anatomy,
    label_template,
    provenance,
)
from swig_lib.experiments.training.augment import (
    DegradationSettings,
    draw_phi,
    phi_from_record,
    phi_record,
    sample_rng,
)

SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: Values of the ``anatomy_source`` setting: subjects from MNI152, from the SynthSR label maps, or both.
ANATOMY_SOURCES: dict[str, str] = {
    "mni152": "nilearn MNI152 2009 (1 mm)",
    "synthsr": "SynthSR label maps of five real brains (1 mm)",
    "mix": "nilearn MNI152 2009 (1 mm) and SynthSR label maps of five real brains (1 mm)",
}

#: Modules whose code determines the stored files; a change to any of them forces a rebuild.
DATA_MODULES: tuple[str, ...] = (
    "experiments/subjects/anatomy.py", "experiments/subjects/dataset.py", "experiments/subjects/synthsr.py",
    "core/fitter.py", "core/io.py", "core/kspace.py", "core/physics.py", "core/protocols.py",
)
#: Modules that also determine the files of a dataset with degradation randomisation (its Φs).
DEGRADATION_MODULES: tuple[str, ...] = ("experiments/training/augment.py", "core/radial.py")

#: File keys of a subject and the BIDS-like suffix of each file name.
HR_KEYS: tuple[str, str, str] = ("PDmap", "T1map", "T2map")
LR_KEYS: tuple[str, str, str] = ("acq-lowres_PDmap", "acq-lowres_T1map", "acq-lowres_T2map")
MASK_KEY = "desc-brain_mask"
#: File key of the tissue label map (BIDS discrete segmentation, ``sub-01_dseg.nii.gz``).
DSEG_KEY = "dseg"
FILE_KEYS: tuple[str, ...] = (*HR_KEYS, *LR_KEYS, *GUIDE_PROTOCOLS, MASK_KEY, DSEG_KEY)

#: Values of the tissue label map (:func:`tissue_labels`): 1-3 where one tissue makes up at least
#: :data:`LABEL_PURITY` of the voxel (in the order of :data:`swig_lib.experiments.subjects.anatomy.TISSUES`); the other
#: brain voxels are 4 when they hold at least 1 − :data:`LABEL_PURITY` of CSF (CSF partial volume:
#: sulci, ventricle walls), else 5 (GM/WM partial volume).
TISSUE_LABELS: dict[int, str] = {0: "background", 1: "GM", 2: "WM", 3: "CSF",
                                 4: "CSF partial volume", 5: "GM/WM partial volume"}
#: Smallest tissue fraction for a voxel to carry that tissue's label.
LABEL_PURITY = 0.9

MANIFEST = "manifest.json"
#: Infix of a randomised dataset's name, ``<dataset>-dr-<digest>``
#: (:func:`swig_lib.experiments.training.augment.randomised_profile`).
RANDOMISED_INFIX = "-dr-"


@dataclass(frozen=True)
class DataSettings:
    """The ``[<profile>.data]`` section of a profile (see ``profiles.toml`` for the meaning of each).

    Attributes
    ----------
    dataset : str
        Folder name under the data root.
    n_subjects : int
        Number of digital subjects.
    split : tuple of int
        Number of train, validation and test subjects (summing to ``n_subjects``).
    seed : int
        Dataset seed; subject i uses ``numpy.random.SeedSequence([seed, i])``.
    keep, sigma : float
        Φ of eq. 3: fraction of each in-plane k-space axis kept, and k-space noise σ (a.u.).
    slices : tuple of int
        Axial slab ``[start, stop)`` in voxel indices k of the MNI152 1 mm grid (z = k − 72 mm).
    slice_step : int
        Keep every ``slice_step``-th slice of the slab.
    margin : int
        Voxels (mm) kept in-plane around the template brain.
    anatomy : AnatomySettings
        Construction of the subjects (defaults of :class:`~swig_lib.experiments.subjects.anatomy.AnatomySettings`,
        overridden by an optional ``[<profile>.data.anatomy]`` table).
    anatomy_source : str
        A key of :data:`ANATOMY_SOURCES`: MNI152-derived subjects, label-derived ones
        (:mod:`swig_lib.experiments.subjects.synthsr`), or per split the last ``synthsr.split``
        label-derived and the others MNI152-derived (``"mix"``).
    synthsr : SynthSRSettings
        The ``[<profile>.data.synthsr]`` table (defaults where absent).
    degradation : DegradationSettings
        The ``[<profile>.data.degradation]`` table (defaults, i.e. off, where absent).
    """

    dataset: str
    n_subjects: int
    split: tuple[int, int, int]
    seed: int
    keep: float
    sigma: float
    slices: tuple[int, int]
    slice_step: int
    margin: int
    anatomy: AnatomySettings = AnatomySettings()
    anatomy_source: str = "mni152"
    synthsr: SynthSRSettings = SynthSRSettings()
    degradation: DegradationSettings = DegradationSettings()

    @classmethod
    def from_profile(cls, profile: Profile) -> DataSettings:
        """Read and check ``profile.data``."""
        section = profile.data.to_dict()
        anatomy = AnatomySettings.from_dict(section.pop("anatomy", {}))
        synthsr = SynthSRSettings.from_dict(section.pop("synthsr", {}))
        degradation = DegradationSettings.from_dict(section.pop("degradation", {}))
        required = {f for f in cls.__dataclass_fields__ if f not in ("anatomy", "synthsr", "degradation")}
        missing, unknown = required - set(section), set(section) - required
        if missing or unknown:
            raise KeyError(f"[data] section: missing {sorted(missing)}, unknown {sorted(unknown)}")
        settings = cls(
            dataset=str(section["dataset"]), n_subjects=int(section["n_subjects"]),
            split=tuple(int(n) for n in section["split"]), seed=int(section["seed"]),  # type: ignore[arg-type]
            keep=float(section["keep"]), sigma=float(section["sigma"]),
            slices=tuple(int(k) for k in section["slices"]),  # type: ignore[arg-type]
            slice_step=int(section["slice_step"]), margin=int(section["margin"]), anatomy=anatomy,
            anatomy_source=str(section["anatomy_source"]), synthsr=synthsr, degradation=degradation,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError on inconsistent settings."""
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be at least 1, got {self.n_subjects}")
        if len(self.split) != 3 or sum(self.split) != self.n_subjects or min(self.split) < 0:
            raise ValueError(f"split {list(self.split)} (train, val, test) must sum to "
                             f"n_subjects = {self.n_subjects}")
        if len(self.slices) != 2 or not 0 <= self.slices[0] < self.slices[1] or self.slice_step < 1:
            raise ValueError(f"slices [start, stop) = {list(self.slices)} with step "
                             f"{self.slice_step}: need 0 <= start < stop and step >= 1")
        if not 0 < self.keep <= 1 or self.sigma < 0:
            raise ValueError(f"need 0 < keep <= 1 and sigma >= 0; got {self.keep}, {self.sigma}")
        if self.anatomy_source not in ANATOMY_SOURCES:
            raise ValueError(f"anatomy_source {self.anatomy_source!r}: choose one of {', '.join(ANATOMY_SOURCES)}")
        if self.anatomy_source == "mix" and any(m > n for m, n in zip(self.synthsr.split, self.split)):
            raise ValueError(f"synthsr.split {list(self.synthsr.split)} exceeds split {list(self.split)}")

    def to_dict(self) -> dict[str, Any]:
        """The settings the data depend on, JSON-ready: these, the protocols and the tissue values.

        Compared with a manifest to decide reuse (together with :func:`code_fingerprint`). For
        ``anatomy_source = "mni152"`` the keys are those of the MNI152-only datasets before the
        label source existed, so their manifests still match; the other sources add
        ``anatomy_source`` and :func:`swig_lib.experiments.subjects.synthsr.provenance`; with
        degradation randomisation on, ``degradation`` (off, the keys are those of before it existed).
        """
        protocol = QMRIProtocol()
        brains = {b for b in self.subject_brains() if b is not None}
        extra = {} if self.anatomy_source == "mni152" else {
            "anatomy_source": self.anatomy_source, **provenance(self.synthsr, brains)}
        if self.degradation.enabled:
            extra["degradation"] = self.degradation.to_dict()
        return json.loads(json.dumps({
            "source": ANATOMY_SOURCES[self.anatomy_source],
            "dataset": self.dataset, "n_subjects": self.n_subjects, "split": self.split,
            "seed": self.seed, "keep": self.keep, "sigma": self.sigma, "slices": self.slices,
            "slice_step": self.slice_step, "margin": self.margin,
            "anatomy": self.anatomy.to_dict(),
            "tissue_values": {k: vars(v) for k, v in TISSUE_VALUES.items()},
            "map_max": MAP_MAX,
            "labels": {"values": TISSUE_LABELS, "purity": LABEL_PURITY},
            "protocol": {"tr": protocol.tr, "te": protocol.te},
            "guides": {k: {"type": type(p).__name__, **vars(p)} for k, p in GUIDE_PROTOCOLS.items()},
            **extra,
        }))

    def subject_brains(self) -> list[int | None]:
        """Per subject (in :meth:`subject_ids` order), its SynthSR brain, or None when MNI152-derived.

        Label-derived subjects are all of them (``"synthsr"``) or the last ``synthsr.split[s]``
        of split s (``"mix"``). Counting them over all splits in subject order, the j-th uses brain
        ``synthsr.brains[s][j % len(synthsr.brains[s])]``, s its split: with the same brains in
        every split they cycle through the dataset (a small dataset tests other brains than it
        trains on); disjoint lists keep the test brains unseen in training.
        """
        brains: list[int | None] = []
        j = 0
        for s, n in enumerate(self.split):
            labelled = {"mni152": 0, "synthsr": n, "mix": self.synthsr.split[s]}[self.anatomy_source]
            pool = self.synthsr.brains[s]
            brains += [None] * (n - labelled) + [pool[(j + i) % len(pool)] for i in range(labelled)]
            j += labelled
        return brains

    def subject_phi(self, index: int) -> KSpaceTruncation:
        """Φ of subject ``index``: drawn from ``sample_rng(seed, index)`` when randomised, else the profile's.

        A subject is randomised when :attr:`degradation` is enabled and its split is one of
        ``degradation.splits``; the draw depends only on the dataset seed and the index
        (:func:`~swig_lib.experiments.training.augment.draw_phi`), never on the build order.
        """
        phi = KSpaceTruncation(self.keep, self.sigma)
        split = SPLITS[int(np.searchsorted(np.cumsum(self.split), index, side="right"))]
        if split not in self.degradation.splits:
            return phi
        return draw_phi(self.degradation, phi, sample_rng(self.seed, index))

    def subject_ids(self) -> list[str]:
        """``sub-01`` … in subject order (train first, then validation, then test)."""
        width = max(2, len(str(self.n_subjects)))
        return [f"sub-{i + 1:0{width}d}" for i in range(self.n_subjects)]

    def split_ids(self) -> dict[str, list[str]]:
        """Subject ids per split: the first ``split[0]`` train, the next ``split[1]`` val, the rest test."""
        ids = self.subject_ids()
        bounds = np.cumsum([0, *self.split])
        return {name: ids[bounds[i]:bounds[i + 1]] for i, name in enumerate(SPLITS)}

    def unrandomised(self) -> DataSettings | None:
        """The profile dataset that a randomised dataset shares its unrandomised subjects with, or None.

        A dataset ``<name>-dr-<digest>`` with degradation randomisation
        (:func:`~swig_lib.experiments.training.augment.randomised_profile`) draws its own Φ only
        for the subjects of ``degradation.splits``; every other subject (the test split) has the
        same seed, anatomy and Φ as in the dataset ``<name>`` of these settings with the
        randomisation off, so its files are the same bytes and :func:`build_dataset` links them
        from there instead of building them again.

        Returns
        -------
        DataSettings or None
            These settings with the randomisation off and the dataset ``<name>``; None when the
            randomisation is off, when every split is randomised, or when the name has no
            ``-dr-`` part.
        """
        name, infix, _ = self.dataset.rpartition(RANDOMISED_INFIX)
        if not self.degradation.enabled or not infix or set(SPLITS) <= set(self.degradation.splits):
            return None
        return replace(self, dataset=name, degradation=DegradationSettings())


@dataclass(frozen=True)
class Subject:
    """A digital subject in memory.

    Attributes
    ----------
    q_h, q_l : ndarray, shape (3, X, Y, Z), float32
        HR and LR maps: PD (a.u.), T1 (ms), T2 (ms); zero outside the mask.
    guides : dict of str to ndarray
        HR weighted images (X, Y, Z), float32: ``"T1w"`` and ``"T2w"``.
    mask : ndarray, shape (X, Y, Z), bool
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    noise_seed : int
        Seed of the k-space noise of Φ (:func:`lr_contrasts`).
    labels : ndarray, shape (X, Y, Z), uint8, or None
        Tissue labels (:func:`tissue_labels`, values :data:`TISSUE_LABELS`) when the subject was
        built from tissue fractions; None for subjects built from maps.
    """

    q_h: np.ndarray
    q_l: np.ndarray
    guides: dict[str, np.ndarray]
    mask: np.ndarray
    affine: np.ndarray
    noise_seed: int
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class Acquired:
    """What a scanner gives for one subject (no HR quantitative map).

    Attributes
    ----------
    subject : str
        Subject id.
    q_l : ndarray, shape (3, X, Y, Z), float32
        LR maps: PD (a.u.), T1 (ms), T2 (ms).
    guides : dict of str to ndarray
        HR weighted guides (X, Y, Z), float32.
    mask : ndarray, shape (X, Y, Z), bool
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    phi : KSpaceTruncation or None
        The Φ that acquired C_l (its own with degradation randomisation); None: the dataset's.
    """

    subject: str
    q_l: np.ndarray
    guides: dict[str, np.ndarray]
    mask: np.ndarray
    affine: np.ndarray
    _contrasts: Callable[[], np.ndarray] = field(repr=False, compare=False)
    phi: KSpaceTruncation | None = None

    def lr_contrasts(self) -> np.ndarray:
        """The 12 LR contrasts C_l (12, X, Y, Z), float32.

        Exactly those that were fitted into ``q_l`` (recomputed with the subject's noise seed).
        """
        return self._contrasts()


def lr_contrasts(q_h: np.ndarray, keep: float, sigma: float, seed: int,
                 protocol: QMRIProtocol = QMRIProtocol(), phi: KSpaceTruncation | None = None) -> np.ndarray:
    """LR contrasts C_l = Φ(M(Q_h)) (eq. 3, 13, 14) on every axial slice, seeded.

    Φ is :class:`swig_lib.core.kspace.KSpaceTruncation` ``(keep, sigma)``, its noisy data model, or
    ``phi`` when given (a subject's own, :meth:`DataSettings.subject_phi`).

    Computed in float32 (complex64 k-space; the rounding error, ~1e-5 a.u., is far below the
    noise σ); the same inputs always give the same output.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        HR maps PD (a.u.), T1 (ms), T2 (ms); axial slices along the last axis.
    keep : float
        Fraction of each in-plane k-space axis kept (0.5: one quarter of k-space, the paper's).
    sigma : float
        k-space noise σ, a.u. (the paper's 0.1).
    seed : int
        Seed of the noise generator (``torch.Generator.manual_seed``).
    protocol : QMRIProtocol
        TR and TE, ms.
    phi : KSpaceTruncation, optional
        Φ instead of ``KSpaceTruncation(keep, sigma)`` (its ``keep`` and ``sigma`` then rule).

    Returns
    -------
    ndarray, shape (12, X, Y, Z), float32
        Saturation-recovery contrasts first, then spin-echo ones.
    """
    maps = torch.from_numpy(np.ascontiguousarray(q_h, dtype=np.float32))
    contrasts = physics.qmri_contrasts(maps[0], maps[1], maps[2], protocol)
    generator = torch.Generator().manual_seed(int(seed))
    phi = KSpaceTruncation(keep, sigma) if phi is None else phi
    axial = phi(contrasts.permute(0, 3, 1, 2), generator)
    return axial.permute(0, 2, 3, 1).contiguous().numpy()


def fit_maps(contrasts: np.ndarray, mask: np.ndarray, protocol: QMRIProtocol = QMRIProtocol()) -> np.ndarray:
    """Q_l: maximum-likelihood fit of the contrasts inside the mask (:func:`swig_lib.core.fitter.fit_qmri`).

    The maps are clipped to the paper's ranges :data:`~swig_lib.experiments.subjects.anatomy.MAP_MAX` (like MAGiC's
    maps, which stop at 4300 ms and 2000 ms) and are zero outside the mask.

    Parameters
    ----------
    contrasts : ndarray, shape (12, X, Y, Z)
        Contrasts in the order of :func:`swig_lib.core.physics.qmri_contrasts`.
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to fit.
    protocol : QMRIProtocol
        TR and TE, ms.

    Returns
    -------
    ndarray, shape (3, X, Y, Z), float32
        PD (a.u.), T1 (ms), T2 (ms).
    """
    fitted = fit_qmri(torch.from_numpy(np.ascontiguousarray(contrasts)), protocol=protocol,
                      mask=torch.from_numpy(np.asarray(mask, dtype=bool)))
    upper = torch.tensor(MAP_MAX, dtype=fitted.dtype).view(3, *([1] * (fitted.ndim - 1)))
    return torch.minimum(fitted.clamp(min=0.0), upper).numpy().astype(np.float32)


def synthesize_guides(q_h: np.ndarray) -> dict[str, np.ndarray]:
    """HR guides W = M_g(Q_h) (eq. 4, 15-17) for every protocol of ``GUIDE_PROTOCOLS``, float32."""
    maps = torch.from_numpy(np.ascontiguousarray(q_h, dtype=np.float32)).to(torch.float64)
    return {name: physics.weighted_image(protocol, maps[0], maps[1], maps[2]).to(torch.float32).numpy()
            for name, protocol in GUIDE_PROTOCOLS.items()}


def tissue_labels(fractions: np.ndarray, mask: np.ndarray, purity: float = LABEL_PURITY) -> np.ndarray:
    """Discrete tissue labels from tissue fractions (values :data:`TISSUE_LABELS`).

    A brain voxel gets the label of its largest tissue fraction (1 GM, 2 WM, 3 CSF) when that
    fraction is at least ``purity``; otherwise 4 ("CSF partial volume") when its CSF fraction is
    at least 1 − ``purity``, else 5 ("GM/WM partial volume"). Voxels outside the mask get 0.

    Parameters
    ----------
    fractions : ndarray, shape (3, X, Y, Z)
        GM, WM and CSF fractions in [0, 1] (:data:`swig_lib.experiments.subjects.anatomy.TISSUES` order).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    purity : float
        Smallest fraction of a pure-tissue voxel, in (0.5, 1].

    Returns
    -------
    ndarray, shape (X, Y, Z), uint8
    """
    if not 0.5 < purity <= 1:
        raise ValueError(f"purity must lie in (0.5, 1], got {purity}")
    fractions = np.asarray(fractions)
    pure = fractions.max(axis=0) >= purity
    mixed = np.where(fractions[2] >= 1.0 - purity, 4, 5)
    labels = np.where(pure, fractions.argmax(axis=0) + 1, mixed)
    return np.where(np.asarray(mask, dtype=bool), labels, 0).astype(np.uint8)


def acquire(q_h: np.ndarray, mask: np.ndarray, affine: np.ndarray, keep: float = 0.5,
            sigma: float = 0.1, seed: int = 0, phi: KSpaceTruncation | None = None) -> Subject:
    """Simulate the acquisitions of a subject with HR maps ``q_h``: Φ → fit → Q_l, and the guides.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        HR maps PD (a.u.), T1 (ms), T2 (ms), zero outside the mask.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine.
    keep, sigma, seed, phi
        Φ settings (or Φ itself) and noise seed (:func:`lr_contrasts`).
    """
    q_h = np.where(mask, np.asarray(q_h, dtype=np.float32), np.float32(0))
    q_l = fit_maps(lr_contrasts(q_h, keep, sigma, seed, phi=phi), mask)
    return Subject(q_h, q_l, synthesize_guides(q_h), np.asarray(mask, dtype=bool),
                   np.asarray(affine, dtype=np.float64), int(seed))


def subject_from_maps(pd: PathLike | np.ndarray, t1: PathLike | np.ndarray, t2: PathLike | np.ndarray,
                      mask: PathLike | np.ndarray | None = None, affine: np.ndarray | None = None,
                      keep: float = 0.5, sigma: float = 0.1, seed: int = 0) -> Subject:
    """A digital subject from a user's own HR maps (e.g. BrainWeb-derived or their own qMRI).

    The maps go through the same Φ → fit pipeline as the built-in subjects.

    Parameters
    ----------
    pd, t1, t2 : path or ndarray
        HR maps (PD a.u., T1 and T2 in ms), NIfTI files (validated by
        :func:`swig_lib.core.io.load_qmri_maps`) or arrays (X, Y, Z) with axial slices last.
    mask : path or ndarray, optional
        Brain mask; default the voxels where all three maps are > 0.
    affine : ndarray, optional
        Affine for array inputs (default identity: 1 mm voxels); ignored for files.
    keep, sigma, seed
        Φ settings and noise seed (:func:`lr_contrasts`).

    Raises
    ------
    DataValidationError
        On invalid maps (see :func:`swig_lib.core.io.validate_maps`).
    """
    inputs = (pd, t1, t2) if mask is None else (pd, t1, t2, mask)
    if all(isinstance(x, (str, os.PathLike)) for x in inputs):
        loaded = load_qmri_maps(pd, t1, t2, mask)  # type: ignore[arg-type]
        return acquire(loaded.maps, loaded.mask, loaded.affine, keep, sigma, seed)
    if not all(isinstance(x, np.ndarray) for x in inputs):
        raise TypeError("pass the maps (and mask) either all as NIfTI paths or all as arrays")
    shapes = [np.shape(x) for x in (pd, t1, t2)]
    if len(set(shapes)) != 1 or len(shapes[0]) != 3:
        raise DataValidationError(f"PD, T1, T2 arrays: expected three 3-D arrays of one shape, "
                                  f"got {shapes}")
    maps = np.stack([np.asarray(x, dtype=np.float32) for x in (pd, t1, t2)])
    mask_b = np.all(maps > 0, axis=0) if mask is None else np.asarray(mask) != 0
    if mask_b.shape != maps.shape[1:]:
        raise DataValidationError(f"mask array: shape {mask_b.shape} differs from the maps' "
                                  f"{maps.shape[1:]}; pass a mask on the maps' voxel grid")
    validate_maps(maps, mask_b, ("PD array", "T1 array", "T2 array"), "mask array")
    return acquire(zero_nonfinite(maps), mask_b, np.eye(4) if affine is None else affine, keep, sigma, seed)


def _array(x: PathLike | np.ndarray) -> np.ndarray:
    """A float32 array from an array or a NIfTI path."""
    return load_nifti(x)[0] if isinstance(x, (str, os.PathLike)) else np.asarray(x, dtype=np.float32)


def subject_from_tissue_fractions(
    gm: PathLike | np.ndarray, wm: PathLike | np.ndarray, csf: PathLike | np.ndarray,
    mask: PathLike | np.ndarray, affine: np.ndarray | None = None, seed: int = 0,
    anatomy: AnatomySettings = AnatomySettings(), slices: Sequence[int] | None = None,
    keep: float = 0.5, sigma: float = 0.1,
) -> Subject:
    """A digital subject from tissue probability maps.

    MNI152 by default; BrainWeb fuzzy models converted to NIfTI, or any 1 mm GM/WM/CSF maps.

    Parameters
    ----------
    gm, wm, csf, mask : path or ndarray
        Tissue probabilities and brain mask on one 1 mm grid (X, Y, Z), axial slices last.
    affine : ndarray, optional
        Affine for array inputs (default identity); for files, that of ``gm``.
    seed : int
        Subject seed: ``SeedSequence([seed, 0])`` draws the anatomy and the k-space noise.
    anatomy : AnatomySettings
        Construction; :meth:`AnatomySettings.plain` for maps of one individual (no deformation,
        sharpening or folding).
    slices : sequence of int, optional
        Axial indices to produce (evenly spaced); default all slices with brain.
    keep, sigma
        Φ settings (:func:`lr_contrasts`).
    """
    volumes = [_array(x) for x in (gm, wm, csf, mask)]
    if len({v.shape for v in volumes}) != 1 or volumes[0].ndim != 3:
        raise DataValidationError(f"GM, WM, CSF, mask: expected 3-D volumes of one shape, "
                                  f"got {[v.shape for v in volumes]}; resample them onto one grid")
    if affine is None:
        affine = load_nifti(gm)[1] if isinstance(gm, (str, os.PathLike)) else np.eye(4)
    template = prepare_template(*volumes, affine)
    if slices is None:
        slices = np.flatnonzero(template.mask.any(axis=(0, 1)))
    return _digital_subject(template, seed, 0, np.asarray(slices), anatomy, keep, sigma)[0]


def _seeds(seed: int, index: int) -> tuple[np.random.Generator, int]:
    """Anatomy random stream and k-space noise seed of subject ``index`` of a dataset."""
    anatomy_seq, noise_seq = np.random.SeedSequence([seed, index]).spawn(2)
    return np.random.default_rng(anatomy_seq), int(noise_seq.generate_state(1, np.uint64)[0] >> 1)


def _slab_affine(template: Template, slices: np.ndarray) -> np.ndarray:
    """Affine of the stored slab: template affine, first slice ``slices[0]``, axial step."""
    step = int(slices[1] - slices[0]) if len(slices) > 1 else 1
    local = np.eye(4)
    local[2, 2], local[2, 3] = step, slices[0]
    return template.affine @ local


def subject_template(margin: int, brain: int | None, synthsr: SynthSRSettings) -> Template | LabelTemplate:
    """The template a subject is drawn from: MNI152 (``brain`` None) or SynthSR brain ``brain``.

    Parameters
    ----------
    margin : int
        In-plane margin, voxels (mm) (:func:`~swig_lib.experiments.subjects.anatomy.mni152_template`).
    brain : int or None
        SynthSR brain number (:func:`~swig_lib.experiments.subjects.synthsr.label_template`).
    synthsr : SynthSRSettings
        Construction of the label template.
    """
    return mni152_template(margin) if brain is None else label_template(brain, synthsr, margin)


def template_slices(template: Template | LabelTemplate, slices: np.ndarray) -> np.ndarray:
    """Axial indices in ``template`` of the MNI152 slices k ``slices``; ValueError outside its range."""
    offset = template.offset[2]
    if slices[0] < offset or slices[-1] - offset >= template.shape[2]:
        raise ValueError(f"slices [{slices[0]}, {slices[-1]}] leave the template's axial range "
                         f"[{offset}, {offset + template.shape[2]})")
    return slices - offset


def draw_anatomy(template: Template | LabelTemplate, rng: np.random.Generator, settings: AnatomySettings,
                 slices: np.ndarray) -> SubjectAnatomy:
    """One subject's anatomy on template ``slices``, by the template's kind.

    :func:`~swig_lib.experiments.subjects.anatomy.subject_anatomy` for MNI152,
    :func:`~swig_lib.experiments.subjects.synthsr.label_anatomy` for a label template.
    """
    draw = label_anatomy if isinstance(template, LabelTemplate) else subject_anatomy
    return draw(template, rng, settings, slices)


def _digital_subject(template: Template | LabelTemplate, seed: int, index: int, slices: np.ndarray,
                     anatomy: AnatomySettings, keep: float, sigma: float,
                     phi: KSpaceTruncation | None = None) -> tuple[Subject, SubjectAnatomy]:
    """Acquisitions and anatomy of subject ``index`` of a dataset with seed ``seed`` (Φ: ``phi`` if given)."""
    if len(slices) == 0 or len(np.unique(np.diff(slices))) > 1 or np.any(np.diff(slices) <= 0):
        raise ValueError(f"slices must be increasing and evenly spaced; got {list(slices)}")
    rng, noise_seed = _seeds(seed, index)
    built = draw_anatomy(template, rng, anatomy, slices)
    subject = acquire(built.maps, built.mask, _slab_affine(template, slices), keep, sigma, noise_seed, phi)
    return replace(subject, labels=tissue_labels(built.fractions, built.mask)), built


# ----------------------------------------------------------------------------------------------
# Datasets on disk


def subject_files(sid: str) -> dict[str, str]:
    """Relative paths of a subject's files, by key (BIDS-like: ``sub-01/anat/sub-01_T1map.nii.gz``)."""
    return {key: f"{sid}/anat/{sid}_{key}.nii.gz" for key in FILE_KEYS}


def dataset_folder(settings: DataSettings, root: PathLike = "data") -> Path:
    """``<root>/<settings.dataset>``."""
    return Path(root) / settings.dataset


def code_fingerprint(modules: Sequence[str] = DATA_MODULES) -> dict[str, str]:
    """SHA-256 of the source of each of ``modules``, by path inside the package."""
    package = resources.files("swig_lib")
    return {name: hashlib.sha256(package.joinpath(name).read_bytes()).hexdigest() for name in modules}


def _dataset_code(settings: DataSettings) -> dict[str, str]:
    """The code fingerprint of a dataset: :data:`DATA_MODULES`, plus :data:`DEGRADATION_MODULES` when randomised."""
    extra = code_fingerprint(DEGRADATION_MODULES) if settings.degradation.enabled else {}
    return {**code_fingerprint(), **extra}


def check_dataset(folder: Path, settings: DataSettings) -> str | None:
    """Why the dataset in ``folder`` cannot be reused, or None when it is intact and up to date."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {MANIFEST} in {folder}"
    except (OSError, ValueError) as err:
        return f"unreadable {MANIFEST} ({err})"
    if manifest.get("settings") != settings.to_dict():
        stored = manifest.get("settings") or {}
        wanted = settings.to_dict()
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        return f"settings changed ({', '.join(changed)})"
    stored_code, code = manifest.get("code") or {}, _dataset_code(settings)
    if stored_code != code:
        changed = sorted(k for k in set(stored_code) | set(code) if stored_code.get(k) != code.get(k))
        return f"code changed ({', '.join(changed)})"
    for entry in manifest.get("subjects", {}).values():
        for item in entry["files"].values():
            path = folder / item["path"]
            if not path.is_file():
                return f"missing file {item['path']}"
            if sha256(path) != item["sha256"]:
                return f"checksum mismatch for {item['path']}"
    if sorted(manifest.get("subjects", {})) != settings.subject_ids():
        return "subject list differs from the settings"
    return None


@contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``folder`` (POSIX ``flock``) so concurrent builds do not interleave."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_dataset(profile: Profile, root: PathLike = "data", force: bool = False,
                  progress: bool = True, log: Callable[[str], None] = print,
                  workers: int | None = None) -> tuple[Path, bool]:
    """Build the digital subjects of ``profile`` under ``root``, unless an intact copy exists.

    Parameters
    ----------
    profile : Profile
        A profile (:func:`swig_lib.experiments.config.load_profile`); reads its ``data`` section.
    root : str or PathLike
        Data root; the dataset goes to ``<root>/<data.dataset>``.
    force : bool
        Rebuild even if the dataset is intact.
    progress : bool
        Show a tqdm progress bar.
    log : callable
        Receives a one-line message saying why the dataset is (re)built, before building.
    workers : int, optional
        Processes that build subjects in parallel (default :func:`default_workers`). Every subject
        draws from its own seed, so the files do not depend on it.

    Returns
    -------
    folder : Path
        The dataset folder.
    reused : bool
        True when an intact dataset was found and nothing was built.
    """
    return _build_settings(DataSettings.from_profile(profile), root, force, progress, log,
                           default_workers() if workers is None else workers)


def _build_settings(settings: DataSettings, root: PathLike, force: bool, progress: bool,
                    log: Callable[[str], None], workers: int) -> tuple[Path, bool]:
    """:func:`build_dataset` on ``settings``; a randomised dataset first builds (or reuses) its profile dataset.

    The subjects that a randomised dataset does not randomise are linked from the profile dataset
    (:meth:`DataSettings.unrandomised`), which is therefore made intact first.
    """
    folder = dataset_folder(settings, root)
    with _lock(folder):
        reason = "--force" if force else check_dataset(folder, settings)
        if reason is None:
            return folder, True
        base = settings.unrandomised()
        shared = None
        if base is not None:
            shared, _ = _build_settings(base, root, False, progress, log, workers)
        log(f"building {folder}: {reason}")
        _build(folder, settings, progress, workers, shared)
    return folder, False


def default_workers(limit: int = 4) -> int:
    """Worker processes for per-subject work: the CPU cores this process may use, at most ``limit``."""
    return max(1, min(limit, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch with ``count`` intra-op threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _build(folder: Path, settings: DataSettings, progress: bool, workers: int = 1,
           shared: Path | None = None) -> None:
    """Write every subject, remove stale ones, then the manifest (last, so a crash leaves none).

    With ``shared`` (the intact profile dataset of a randomised one, :meth:`DataSettings.unrandomised`)
    the subjects outside ``degradation.splits`` are not built but linked from there
    (:func:`_link_subject`).

    Hidden temporary files that a killed build left (:func:`swig_lib.core.io.atomic_path`) are
    removed first; the caller holds the folder's lock, so no other build is writing.

    Subjects are built by ``workers`` processes (spawned: clean interpreters, no forked OpenMP
    state), each running torch single-threaded: the per-voxel fit and the FFTs work on many small
    tensors, where OpenMP threads gain little and, when another process competes for the cores,
    spin so long that the build slows down by 10-50x. Processes, one per core, do scale.
    """
    (folder / MANIFEST).unlink(missing_ok=True)
    remove_stale_temporaries(folder)
    start = time.perf_counter()
    slices = np.arange(*settings.slices, settings.slice_step)
    ids, brains = settings.subject_ids(), settings.subject_brains()
    if None in brains:
        template_slices(mni152_template(settings.margin), slices)
    source = {} if shared is None else json.loads((shared / MANIFEST).read_text())
    linked = {sid: source["subjects"][sid] for split, split_ids in settings.split_ids().items()
              if shared is not None and split not in settings.degradation.splits for sid in split_ids}
    tasks = [(folder, settings, index, sid, slices, brain)
             for index, (sid, brain) in enumerate(zip(ids, brains)) if sid not in linked]
    bar = {"total": len(tasks), "desc": f"digital subjects ({settings.dataset})", "unit": "subject",
           "disable": not progress}
    if workers > 1 and len(tasks) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            records = list(tqdm(pool.map(_build_subject, *zip(*tasks)), **bar))
    else:
        records = list(tqdm(itertools.starmap(_build_subject, tasks), **bar))
    built = {task[3]: record for task, (record, _) in zip(tasks, records)}
    subjects = {sid: built[sid] if sid in built else _link_subject(shared, folder, sid, index, settings, linked[sid])
                for index, sid in enumerate(ids)}
    for stale in sorted(folder.glob("sub-*")):
        if stale.is_dir() and stale.name not in subjects:
            shutil.rmtree(stale)
    manifest = {
        "settings": settings.to_dict(),
        "code": _dataset_code(settings),
        "split": settings.split_ids(),
        "subjects": subjects,
        "shape": source["shape"] if ids[-1] in linked else records[-1][1],
        "slices": slices.tolist(),
        "build": {"seconds": round(time.perf_counter() - start, 1), "swig_lib": __version__,
                  "numpy": np.__version__, "torch": torch.__version__},
    }
    atomic_write_bytes(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def _build_subject(folder: Path, settings: DataSettings, index: int, sid: str, slices: np.ndarray,
                   brain: int | None) -> tuple[dict[str, Any], list[int]]:
    """Build and write subject ``index`` (in this or a worker process); its manifest record and grid.

    ``slices`` are MNI152 slice indices k; ``brain`` is the subject's SynthSR brain (None: MNI152),
    recorded as ``synthsr_brain``; with degradation randomisation the subject's Φ is recorded as
    ``phi`` (:func:`~swig_lib.experiments.training.augment.phi_record`).
    """
    with torch_threads(1):
        template = subject_template(settings.margin, brain, settings.synthsr)
        phi = settings.subject_phi(index)
        subject, built = _digital_subject(template, settings.seed, index, template_slices(template, slices),
                                          settings.anatomy, settings.keep, settings.sigma, phi)
        record = {"seed": [settings.seed, index], "noise_seed": subject.noise_seed,
                  "min_jacobian": round(built.min_jacobian, 4),
                  "tissue_values": {k: {p: round(x, 2) for p, x in vars(v).items()}
                                    for k, v in built.tissue_values.items()},
                  "files": _write_subject(folder, sid, subject)}
        if brain is not None:
            record["synthsr_brain"] = brain
        if settings.degradation.enabled:
            record["phi"] = phi_record(phi)
    return record, list(subject.mask.shape)


def _link_subject(shared: Path | None, folder: Path, sid: str, index: int, settings: DataSettings,
                  record: dict[str, Any]) -> dict[str, Any]:
    """Link subject ``sid``'s files from the dataset in ``shared`` into ``folder``; its manifest record.

    Each file becomes a hard link to the shared one (a copy where the file system has none),
    moved into place atomically, and its SHA-256 is checked against ``record`` (the subject's
    record in the shared manifest). The record is the shared one with, as :func:`_build_subject`
    writes it, the subject's Φ (the profile's) when ``settings`` randomise the degradation.
    """
    for key, item in record["files"].items():
        with atomic_path(folder / item["path"]) as tmp:
            tmp.unlink()
            try:
                os.link(shared / item["path"], tmp)
            except OSError:
                shutil.copyfile(shared / item["path"], tmp)
            if sha256(tmp) != item["sha256"]:
                raise DataValidationError(f"{shared / item['path']}: checksum differs from its manifest "
                                          f"({key} of {sid}); rebuild {shared}")
    if settings.degradation.enabled:
        record = {**record, "phi": phi_record(settings.subject_phi(index))}
    return record


def _write_subject(folder: Path, sid: str, subject: Subject) -> dict[str, dict[str, str]]:
    """Write one subject's files atomically; returns their relative paths and checksums."""
    if subject.labels is None:
        raise ValueError(f"{sid}: a stored subject needs its tissue labels")
    arrays = {**dict(zip(HR_KEYS, subject.q_h)), **dict(zip(LR_KEYS, subject.q_l)),
              **subject.guides, MASK_KEY: subject.mask, DSEG_KEY: subject.labels}
    files = {}
    for key, relative in subject_files(sid).items():
        path = save_nifti(folder / relative, arrays[key], subject.affine,
                          dtype=np.uint8 if key == DSEG_KEY else None)
        files[key] = {"path": relative, "sha256": sha256(path)}
    return files


class Dataset:
    """A built, verified dataset of digital subjects (see :func:`load_dataset`).

    Attributes
    ----------
    folder : Path
        The dataset folder.
    settings : dict
        The data settings it was built with (Φ's keep and sigma, protocol, seeds, anatomy, ...).
    manifest : dict
        The whole ``manifest.json``: settings, split, per-subject seeds and checksums, grid
        ``shape``, stored MNI152 axial ``slices``, and the ``build`` record (seconds, versions).
    """

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder = folder
        self.manifest = manifest
        self.settings: dict[str, Any] = manifest["settings"]

    def subject_ids(self, split: str) -> list[str]:
        """Subject ids of ``split`` ("train", "val" or "test"), e.g. ``["sub-01", ...]``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        return list(self.manifest["split"][split])

    def _load(self, sid: str, keys: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """Arrays of ``sid``'s files ``keys`` and their (shared) affine."""
        if sid not in self.manifest["subjects"]:
            raise KeyError(f"no subject {sid!r} in {self.folder}")
        files = subject_files(sid)
        loaded = [load_nifti(self.folder / files[key], canonical=False) for key in keys]
        return [data for data, _ in loaded], loaded[0][1]

    def acquired(self, sid: str) -> Acquired:
        """What a scanner gives for subject ``sid``: Q_l, the guides, the mask and C_l."""
        (mask, *arrays), affine = self._load(sid, [MASK_KEY, *LR_KEYS, *GUIDE_PROTOCOLS])
        noise_seed = int(self.manifest["subjects"][sid]["noise_seed"])
        phi = self.phi(sid)
        return Acquired(sid, np.stack(arrays[:3]), dict(zip(GUIDE_PROTOCOLS, arrays[3:])), mask > 0,
                        affine, lambda: lr_contrasts(self.reference(sid), phi.keep, phi.sigma, noise_seed, phi=phi),
                        phi)

    def phi(self, sid: str) -> KSpaceTruncation:
        """The Φ that acquired subject ``sid``: its recorded own (degradation randomisation) or the dataset's."""
        record = self.manifest["subjects"][sid].get("phi")
        if record is None:
            return KSpaceTruncation(float(self.settings["keep"]), float(self.settings["sigma"]))
        return phi_from_record(record)

    def reference(self, sid: str) -> np.ndarray:
        """Q_h (3, X, Y, Z) float32 of ``sid``.

        For evaluation only, never for training or model selection.
        """
        return np.stack(self._load(sid, HR_KEYS)[0])

    def labels(self, sid: str) -> np.ndarray:
        """Tissue labels (X, Y, Z) uint8 of ``sid`` (:data:`TISSUE_LABELS`): for evaluation only."""
        return np.rint(self._load(sid, [DSEG_KEY])[0][0]).astype(np.uint8)

    def anatomy(self, sid: str, slices: Sequence[int] | None = None) -> SubjectAnatomy:
        """Re-draw the anatomy of ``sid`` from its seed: tissue fractions, tissue values, HR maps.

        Nothing of it is stored but Q_h; the subject is defined on the whole template grid
        (:func:`~swig_lib.experiments.subjects.anatomy.subject_anatomy`), so any axial slices can be drawn, and on the
        stored ones the maps equal :meth:`reference` up to float rounding. For figures and checks.

        Parameters
        ----------
        sid : str
            Subject id.
        slices : sequence of int, optional
            Axial indices k of the MNI152 1 mm grid (as ``manifest["slices"]``); default the
            stored slices.

        Returns
        -------
        SubjectAnatomy
            Arrays of shape (…, X, Y, len(slices)) on the dataset's in-plane grid.
        """
        if sid not in self.manifest["subjects"]:
            raise KeyError(f"no subject {sid!r} in {self.folder}")
        record = self.manifest["subjects"][sid]
        seed, index = record["seed"]
        template = subject_template(int(self.settings["margin"]), record.get("synthsr_brain"),
                                    SynthSRSettings.from_dict(self.settings.get("synthsr", {})))
        wanted = np.asarray(self.manifest["slices"] if slices is None else slices, dtype=np.int64)
        rng, _ = _seeds(int(seed), int(index))
        settings = AnatomySettings.from_dict(self.settings["anatomy"])
        return draw_anatomy(template, rng, settings, wanted - template.offset[2])


def load_dataset(profile: Profile, root: PathLike = "data", build: bool = True,
                 progress: bool = True) -> Dataset:
    """Open the dataset of ``profile``, building (or rebuilding) it first if missing or stale.

    Parameters
    ----------
    profile : Profile
        A profile; reads its ``data`` section.
    root : str or PathLike
        Data root.
    build : bool
        Build when missing or stale; when False, raise instead.
    progress : bool
        Progress bar while building.

    Raises
    ------
    FileNotFoundError
        With ``build=False``, when the dataset is missing or stale (with the reason).
    """
    settings = DataSettings.from_profile(profile)
    folder = dataset_folder(settings, root)
    if build:
        build_dataset(profile, root, progress=progress)
    else:
        reason = check_dataset(folder, settings)
        if reason is not None:
            raise FileNotFoundError(f"dataset {folder} is not usable ({reason}); run "
                                    f"`swig data --profile {profile.name}`")
    return Dataset(folder, json.loads((folder / MANIFEST).read_text()))


def folder_size(folder: Path) -> int:
    """Total size in bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
