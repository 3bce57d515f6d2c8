"""A user's dataset in a BIDS-like folder, read into the interface that training takes.

Layout (``<name>`` is any BIDS-like prefix, e.g. ``sub-01_ses-1``; files may lie in sub-folders
such as ``anat/``; ``.nii`` or ``.nii.gz``)::

    DIR/
      swig_dataset.json                  the LR acquisition (see DatasetDescription)
      sub-01/
        <name>_PDmap.nii.gz              LR maps on the HR grid: PD (a.u.), T1, T2 (ms) ...
        <name>_T1map.nii.gz
        <name>_T2map.nii.gz
        <name>_contrasts.nii.gz          ... and/or the 4-D LR qMRI contrasts (a.u.) in the order
                                         of the declared protocol (saturation recovery by TR,
                                         then spin echo by TE)
        <name>_T1w.nii.gz + .json        every guide of "Guides", with its BIDS sidecar
        <name>_T2w.nii.gz + .json
        <name>_mask.nii.gz               brain mask (e.g. <name>_desc-brain_mask.nii.gz)
      sub-02/ ...

Every image of a subject lies on one voxel grid (the HR grid: the LR maps and contrasts are
resampled onto it, as the paper's Q_l is); all subjects share the in-plane matrix (Φ acts on it)
but may differ in slices. No HR quantitative map is read.

:class:`OwnDataset` checks the layout, the dataset file and every sidecar when it opens (each
problem is a one-line :class:`~swig_lib.core.io.DataValidationError` naming the file and the
field), and loads a subject's images, validated by :mod:`swig_lib.core.io`, when
:meth:`OwnDataset.acquired` asks for them: ``subject_ids(split)``, ``acquired(sid)``,
``settings`` (``keep``, ``sigma``), ``guide_protocols`` and ``qmri_protocol`` are what
:func:`swig_lib.experiments.training.windows.prepare_data` reads.

The data term without LR contrasts
----------------------------------
Where a subject has LR maps but no contrasts, the data term L_l (eq. 9) compares Φ(M(Q̂_h)) with
contrasts synthesised from the maps, M(Q_l), under the declared protocol (:func:`synthesised_contrasts`),
on the brain mask only (``train.dc_dilation`` = 0). Why that is a sound surrogate: Q_l is the
voxel-wise maximum-likelihood fit of the acquired C_l, so inside the mask M(Q_l) is C_l projected
onto the signal model, C_l = M(Q_l) + r with r the fit residual (noise, and the part of a voxel's
partial-volume signal that one (PD, T1, T2) cannot explain). M(Q_l) keeps what the data term
works with, the LR blur of the contrasts: Φ(M(Q_l)) ≠ M(Q_l) wherever Q_l is not band-limited,
so the term still pulls the prediction towards maps whose degraded contrasts match the
measurement. Outside the mask nothing was fitted (Q_l = 0 there while the acquired C_l holds the
blurred brain edge), hence the mask as region. On a digital subject whose Q_l comes from the
real fitter, the surrogate's gradient at Q_l points where the true term's does (cosine 0.998),
its directional derivative towards Q_h is 91 % of the true one's, and it prefers Q_h to Q_l by a
factor of 6.5; with the dilated region it would prefer Q_l (``tests/test_owndata.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swig_lib.core.fitter import fit_qmri
from swig_lib.core.io import (
    AFFINE_ATOL_MM,
    DataValidationError,
    PathLike,
    QMRIMaps,
    _volume,
    check_finite,
    check_same_grid,
    load_nifti,
    load_qmri_maps,
    validate_maps,
    zero_nonfinite,
)
from swig_lib.core.physics import qmri_contrasts
from swig_lib.core.protocols import QMRIProtocol
from swig_lib.core.sequences import MAX_TIME_MS, GuideProtocol, seconds_to_ms
from swig_lib.experiments.config import Profile
from swig_lib.experiments.owndata.protocols import (
    DEFAULT_TOLERANCE,
    ProtocolMismatchError,
    ProtocolTolerance,
    protocol_difference,
    read_guide_sidecar,
    sidecar_path,
)
from swig_lib.experiments.subjects.dataset import Acquired

#: The dataset-level file, next to the ``sub-*`` folders.
DATASET_FILE = "swig_dataset.json"
#: File suffix of each LR map (BIDS qMRI), by map name.
MAP_SUFFIXES: dict[str, str] = {"PD": "PDmap", "T1": "T1map", "T2": "T2map"}
#: File suffix of the brain mask and of the 4-D LR contrasts.
MASK_SUFFIX, CONTRASTS_SUFFIX = "mask", "contrasts"
#: Guides used when the dataset file names none.
DEFAULT_GUIDES: tuple[str, ...] = ("T1w", "T2w")
#: The variant trained on own data: every guide of the dataset, Q_l input, data consistency.
OWN_VARIANT = "SWIG"


def is_own_data(folder: PathLike) -> bool:
    """Whether ``folder`` is a user's dataset (it holds :data:`DATASET_FILE` or ``sub-*`` folders)."""
    root = Path(folder)
    return (root / DATASET_FILE).is_file() or any(p.is_dir() for p in root.glob("sub-*"))


def synthesised_contrasts(q_l: np.ndarray, protocol: QMRIProtocol) -> np.ndarray:
    """The LR contrasts M(Q_l) that the maps explain (eq. 13-14), the surrogate of C_l.

    Parameters
    ----------
    q_l : numpy.ndarray
        (3, X, Y, Z) LR maps: PD (a.u.), T1, T2 (ms); zero outside the mask.
    protocol : QMRIProtocol
        TR and TE of the contrasts, ms.

    Returns
    -------
    numpy.ndarray
        (n_c, X, Y, Z) float32, saturation recovery first; zero where PD is zero.
    """
    maps = torch.from_numpy(np.ascontiguousarray(q_l, dtype=np.float32))
    return qmri_contrasts(maps[0], maps[1], maps[2], protocol).numpy()


# ---------------------------------------------------------------------------------------------
# The dataset file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetDescription:
    """The LR acquisition of a dataset, read from :data:`DATASET_FILE`.

    Keys of the file (times in seconds, as in BIDS)::

        {"KSpaceFraction": 0.5,          Φ: fraction of each in-plane k-space axis kept, (0, 1]
         "NoiseLevel": 0.1,              σ: noise of the LR contrasts, a.u. (> 0)
         "QMRIProtocol": {"RepetitionTime": [0.36, ...], "EchoTime": [0.01, ...]},   optional
         "Guides": ["T1w", "T2w"],       optional: the guides' file suffixes
         "ValidationSubjects": ["sub-09"]}   optional

    Attributes
    ----------
    keep : float
        Φ's kept fraction of each in-plane k-space axis (the paper's 0.5).
    sigma : float
        Noise level σ of the LR contrasts, a.u.
    qmri_protocol : QMRIProtocol
        TR of the saturation-recovery and TE of the spin-echo contrasts, ms (default the paper's).
    guides : tuple of str
        Guide names, the file suffixes (default :data:`DEFAULT_GUIDES`).
    validation : tuple of str or None
        Validation subjects (None: the last fifth of the sorted subjects, at least one).
    """

    keep: float
    sigma: float
    qmri_protocol: QMRIProtocol = QMRIProtocol()
    guides: tuple[str, ...] = DEFAULT_GUIDES
    validation: tuple[str, ...] | None = None

    KEYS = ("KSpaceFraction", "NoiseLevel", "QMRIProtocol", "Guides", "ValidationSubjects")

    @classmethod
    def read(cls, path: PathLike) -> DatasetDescription:
        """Read and check the dataset file.

        Raises
        ------
        swig_lib.core.io.DataValidationError
            For a missing or unreadable file, an unknown key, or a missing or implausible value;
            the message names the file and the key.
        """
        source = Path(path)
        if not source.is_file():
            raise DataValidationError(
                f"{source.parent}: no {DATASET_FILE}; write it next to the sub-* folders with "
                '{"KSpaceFraction": ..., "NoiseLevel": ...} (see the book page "Use it on your data")')
        try:
            meta = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataValidationError(f"{source}: not readable as JSON ({err}); fix the file") from err
        if not isinstance(meta, dict):
            raise DataValidationError(f'{source}: not a JSON object; write {{"KSpaceFraction": ..., ...}}')
        unknown = sorted(set(meta) - set(cls.KEYS))
        if unknown:
            raise DataValidationError(f"{source}: unknown key {unknown[0]!r}; use {', '.join(cls.KEYS)}")
        keep = _number(meta, "KSpaceFraction", source, "the fraction of each in-plane k-space axis the LR "
                       "acquisition keeps, in (0, 1] (0.5: a quarter of k-space)")
        if not 0.0 < keep <= 1.0:
            raise DataValidationError(f"{source}: KSpaceFraction = {keep:g} is outside (0, 1]; give the fraction "
                                      "of each in-plane k-space axis kept")
        sigma = _number(meta, "NoiseLevel", source, "the noise standard deviation of the LR contrasts in their "
                        "units (a.u.)")
        if not sigma > 0.0:
            raise DataValidationError(f"{source}: NoiseLevel = {sigma:g} is not positive; give the noise standard "
                                      "deviation of the LR contrasts")
        return cls(keep, sigma, _qmri_protocol(meta, source), _guides(meta, source), _validation(meta, source))


def _number(meta: Mapping[str, Any], key: str, source: Path, what: str) -> float:
    """A required finite number of the dataset file."""
    value = meta.get(key)
    if value is None:
        raise DataValidationError(f"{source}: {key} is missing; give {what}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataValidationError(f"{source}: {key} = {value!r} is not a finite number; give {what}")
    return float(value)


def _qmri_protocol(meta: Mapping[str, Any], source: Path) -> QMRIProtocol:
    """``QMRIProtocol`` of the dataset file (seconds) in ms; the paper's when absent."""
    if "QMRIProtocol" not in meta:
        return QMRIProtocol()
    section = meta["QMRIProtocol"]
    if not isinstance(section, dict) or set(section) != {"RepetitionTime", "EchoTime"}:
        raise DataValidationError(f'{source}: QMRIProtocol must be {{"RepetitionTime": [...], "EchoTime": [...]}} '
                                  "(seconds: the saturation-recovery TRs, the spin-echo TEs)")
    times = {}
    for key, values in section.items():
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in values):
            raise DataValidationError(f"{source}: QMRIProtocol.{key} = {values!r} is not a list of positive "
                                      "numbers; give the times in seconds")
        if max(values) > MAX_TIME_MS / 1000.0:
            raise DataValidationError(f"{source}: QMRIProtocol.{key} holds {max(values):g}, which looks like "
                                      f"milliseconds; BIDS gives seconds: write {max(values) / 1000.0:g}")
        times[key] = tuple(seconds_to_ms(v) for v in values)
    return QMRIProtocol(tr=times["RepetitionTime"], te=times["EchoTime"])


def _guides(meta: Mapping[str, Any], source: Path) -> tuple[str, ...]:
    """``Guides`` of the dataset file: distinct suffixes other than the maps', the mask's and the contrasts'."""
    guides = meta.get("Guides", list(DEFAULT_GUIDES))
    reserved = {*MAP_SUFFIXES.values(), MASK_SUFFIX, CONTRASTS_SUFFIX}
    if (not isinstance(guides, list) or not guides or len(set(guides)) != len(guides)
            or not all(isinstance(g, str) and g and "_" not in g and g not in reserved for g in guides)):
        raise DataValidationError(f"{source}: Guides = {guides!r} is not a list of distinct file suffixes; give "
                                  f'e.g. ["T1w", "T2w"] (not {", ".join(sorted(reserved))})')
    return tuple(guides)


def _validation(meta: Mapping[str, Any], source: Path) -> tuple[str, ...] | None:
    """``ValidationSubjects`` of the dataset file (None when absent)."""
    if "ValidationSubjects" not in meta:
        return None
    subjects = meta["ValidationSubjects"]
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, str) for s in subjects):
        raise DataValidationError(f'{source}: ValidationSubjects = {subjects!r} is not a list of subject folders; '
                                  'give e.g. ["sub-09"]')
    return tuple(subjects)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def load_named_guides(files: Mapping[str, PathLike], maps: QMRIMaps,
                      atol: float = AFFINE_ATOL_MM) -> dict[str, np.ndarray]:
    """Load guide images of any name on the grid of ``maps``, finite inside its mask.

    The checks and messages of :func:`swig_lib.core.io.load_guides` (``<name> guide <file>: ...``)
    for guides named by the caller.

    Parameters
    ----------
    files : mapping of str to path
        Guide images by name (``{"T1w": ..., "FLAIR": ...}``).
    maps : QMRIMaps
        The validated maps: their affine, grid and mask.
    atol : float
        Tolerance (mm) on the affines.

    Returns
    -------
    dict of str to numpy.ndarray
        (X, Y, Z) float32 per guide, non-finite voxels outside the mask replaced by 0.
    """
    guides = {}
    for name, path in files.items():
        label = f"{name} guide {path}"
        data, affine = load_nifti(path)
        data = _volume(data, label)
        check_same_grid(label, data.shape, affine, "the quantitative maps", maps.mask.shape, maps.affine, atol)
        check_finite(label, data, maps.mask)
        guides[name] = zero_nonfinite(data)
    return guides


def load_contrasts(path: PathLike, maps_grid: tuple[tuple[int, ...], np.ndarray], protocol: QMRIProtocol,
                   mask: np.ndarray, grid_name: str, atol: float = AFFINE_ATOL_MM) -> np.ndarray:
    """Load 4-D LR contrasts (X, Y, Z, n_c) as (n_c, X, Y, Z) float32, checked against the protocol and grid.

    Parameters
    ----------
    path : path
        The 4-D NIfTI, contrasts along the last axis in the order of ``protocol``.
    maps_grid : (shape, affine)
        The (X, Y, Z) shape and affine every image of the subject shares.
    protocol : QMRIProtocol
        Its TR/TE, ms: ``protocol.n_contrasts`` volumes are expected.
    mask : numpy.ndarray
        Brain mask: the contrasts must be finite inside it.
    grid_name : str
        The image that defines the grid, for messages.
    atol : float
        Tolerance (mm) on the affines.
    """
    name = f"LR contrasts {path}"
    data, affine = load_nifti(path)
    expected = protocol.n_contrasts
    if data.ndim != 4 or data.shape[-1] != expected:
        raise DataValidationError(
            f"{name}: shape {data.shape} is not (X, Y, Z, {expected}); give the {len(protocol.tr)} saturation-"
            f"recovery then {len(protocol.te)} spin-echo contrasts of the declared QMRIProtocol as one 4-D image")
    check_same_grid(name, data.shape[:3], affine, grid_name, maps_grid[0], maps_grid[1], atol)
    contrasts = np.ascontiguousarray(np.moveaxis(data, -1, 0), dtype=np.float32)
    check_finite(name, contrasts, np.broadcast_to(mask, contrasts.shape))
    return zero_nonfinite(contrasts)


def fitted_maps(contrasts: np.ndarray, mask: np.ndarray, protocol: QMRIProtocol, source: str) -> np.ndarray:
    """Q_l fitted from LR contrasts inside ``mask`` (:func:`swig_lib.core.fitter.fit_qmri`), validated.

    Returns
    -------
    numpy.ndarray
        (3, X, Y, Z) float32: PD (a.u.), T1, T2 (ms); zero outside the mask.

    Raises
    ------
    swig_lib.core.io.DataValidationError
        When a voxel of the mask has no fit (PD, T1 or T2 = 0), naming ``source``.
    """
    fitted = fit_qmri(torch.from_numpy(contrasts), protocol=protocol, mask=torch.from_numpy(mask))
    maps = fitted.clamp(min=0.0).numpy().astype(np.float32)
    validate_maps(maps, mask, tuple(f"{label} map fitted from {source}" for label in MAP_SUFFIXES))
    return maps


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectFiles:
    """The files of one subject (paths; nothing loaded).

    Attributes
    ----------
    subject : str
        The folder name, e.g. ``"sub-01"``.
    maps : dict of str to Path, or None
        ``{"PD": ..., "T1": ..., "T2": ...}``; None when the maps are fitted from the contrasts.
    contrasts : Path or None
        The 4-D LR contrasts; None when the data term uses :func:`synthesised_contrasts`.
    mask : Path
        Brain mask.
    guides : dict of str to Path
        Guide images by name.
    """

    subject: str
    maps: dict[str, Path] | None
    contrasts: Path | None
    mask: Path
    guides: dict[str, Path]


def _find(folder: Path, suffix: str) -> list[Path]:
    """Images ``*_<suffix>.nii[.gz]`` under ``folder`` (any depth), sorted."""
    return sorted(p for p in folder.rglob(f"*_{suffix}.nii*") if p.name.endswith((f"_{suffix}.nii",
                                                                                     f"_{suffix}.nii.gz")))


def _one(folder: Path, suffix: str, what: str, required: bool = True) -> Path | None:
    """The single image ``*_<suffix>`` of a subject (None if absent and not ``required``)."""
    found = _find(folder, suffix)
    if len(found) > 1:
        raise DataValidationError(f"{folder}: {len(found)} files *_{suffix}.nii* ({found[0].name}, {found[1].name}); "
                                  f"keep one {what} per subject")
    if not found and required:
        raise DataValidationError(f"{folder}: no *_{suffix}.nii.gz ({what}); add it")
    return found[0] if found else None


def _subject_files(folder: Path, description: DatasetDescription) -> SubjectFiles:
    """Find a subject's files; raise on a missing, duplicated or incomplete set."""
    maps = {label: _one(folder, suffix, f"LR {label} map", required=False) for label, suffix in MAP_SUFFIXES.items()}
    contrasts = _one(folder, CONTRASTS_SUFFIX, "4-D LR contrasts", required=False)
    given = [label for label, path in maps.items() if path is not None]
    if given and len(given) < len(maps):
        missing = next(label for label in maps if maps[label] is None)
        raise DataValidationError(f"{folder}: has the LR {', '.join(given)} map(s) but no *_{MAP_SUFFIXES[missing]}"
                                  ".nii.gz; give all three LR maps, or none and the 4-D LR contrasts")
    if not given and contrasts is None:
        raise DataValidationError(f"{folder}: no LR maps (*_PDmap, *_T1map, *_T2map .nii.gz) and no LR contrasts "
                                  f"(*_{CONTRASTS_SUFFIX}.nii.gz); add the maps, the contrasts or both")
    guides = {name: _one(folder, name, f"guide {name} of {DATASET_FILE}") for name in description.guides}
    for image in guides.values():
        if not sidecar_path(image).is_file():
            raise DataValidationError(
                f"{image}: no sidecar {sidecar_path(image).name}; write the guide's BIDS sidecar (RepetitionTime, "
                "EchoTime, InversionTime in seconds, FlipAngle in degrees, and the sequence type)")
    return SubjectFiles(folder.name, maps if given else None, contrasts,
                        _one(folder, MASK_SUFFIX, "brain mask, e.g. *_desc-brain_mask.nii.gz"), guides)


class OwnDataset:
    """A user's dataset (see the module docstring), with the interface training reads.

    Attributes
    ----------
    folder : Path
        The dataset folder.
    description : DatasetDescription
        The dataset file.
    subjects : dict of str to SubjectFiles
        Every subject, sorted by name.
    split : dict of str to list of str
        ``"train"`` and ``"val"`` subjects.
    guide_protocols : dict of str to GuideProtocol
        The protocol of each guide (that of the first training subject's sidecar; the others
        agree within the tolerance), in the order of ``description.guides``.
    qmri_protocol : QMRIProtocol
        The LR contrasts' protocol.
    settings : dict
        ``{"keep": ..., "sigma": ...}``: Φ of eq. 3.
    synthesised : bool
        True when the subjects have no LR contrasts and the data term uses :func:`synthesised_contrasts`.
    """

    def __init__(self, folder: Path, description: DatasetDescription, subjects: dict[str, SubjectFiles],
                 split: dict[str, list[str]], guide_protocols: dict[str, GuideProtocol]) -> None:
        self.folder = folder
        self.description = description
        self.subjects = subjects
        self.split = split
        self.guide_protocols = guide_protocols
        self.qmri_protocol = description.qmri_protocol
        self.settings = {"keep": description.keep, "sigma": description.sigma}
        self.synthesised = next(iter(subjects.values())).contrasts is None

    @classmethod
    def open(cls, folder: PathLike, tolerance: ProtocolTolerance = DEFAULT_TOLERANCE) -> OwnDataset:
        """Check the layout, the dataset file and the sidecars (the images are read by :meth:`acquired`).

        Parameters
        ----------
        folder : path
            The dataset folder.
        tolerance : ProtocolTolerance
            How far one guide's protocol may differ between subjects.

        Raises
        ------
        swig_lib.core.io.DataValidationError
            For the first problem found, naming the file (and field) and the fix.
        """
        root = Path(folder)
        if not root.is_dir():
            raise DataValidationError(f"{root}: not a folder; give the dataset folder (with {DATASET_FILE} and "
                                      "the sub-* folders)")
        description = DatasetDescription.read(root / DATASET_FILE)
        folders = sorted(p for p in root.glob("sub-*") if p.is_dir())
        if len(folders) < 2:
            raise DataValidationError(f"{root}: {len(folders)} subject folder(s) sub-*; training needs at least two "
                                      "(one for validation)")
        subjects = {p.name: _subject_files(p, description) for p in folders}
        with_contrasts = [s for s, files in subjects.items() if files.contrasts is not None]
        if with_contrasts and len(with_contrasts) < len(subjects):
            without = next(s for s in subjects if s not in with_contrasts)
            raise DataValidationError(f"{root / without}: has no *_{CONTRASTS_SUFFIX}.nii.gz but "
                                      f"{with_contrasts[0]} has; give the LR contrasts for every subject or for none")
        split = _split(root, list(subjects), description)
        return cls(root, description, subjects, split, _guide_protocols(subjects, split["train"][0], tolerance))

    def subject_ids(self, split: str) -> list[str]:
        """Subjects of ``split`` (``"train"``, ``"val"``; ``"test"`` is empty)."""
        return list(self.split.get(split, []))

    def acquired(self, sid: str) -> Acquired:
        """Load and validate subject ``sid``: Q_l, the guides, the mask and C_l (given or synthesised).

        Raises
        ------
        swig_lib.core.io.DataValidationError
            For an unusable image (not 3-D, another grid, non-finite inside the mask, T1/T2 in
            seconds, ...), naming the file.
        """
        files = self.subjects[sid]
        protocol = self.qmri_protocol
        if files.maps is not None:
            maps = load_qmri_maps(files.maps["PD"], files.maps["T1"], files.maps["T2"], files.mask)
            grid_name = f"PD map {files.maps['PD']}"
        else:
            mask, affine = load_nifti(files.mask)
            mask = _volume(mask, f"mask {files.mask}")
            check_finite(f"mask {files.mask}", mask)
            grid_name = f"mask {files.mask}"
        if files.contrasts is not None:
            grid = (maps.mask.shape, maps.affine) if files.maps is not None else (mask.shape, affine)
            contrasts = load_contrasts(files.contrasts, grid, protocol,
                                       maps.mask if files.maps is not None else mask != 0, grid_name)
            if files.maps is None:
                maps = QMRIMaps(fitted_maps(contrasts, mask != 0, protocol, str(files.contrasts)), mask != 0, affine)
        else:
            contrasts = synthesised_contrasts(maps.maps * maps.mask, protocol)
        guides = load_named_guides(files.guides, maps)
        return Acquired(sid, maps.maps * maps.mask, guides, maps.mask, maps.affine, lambda: contrasts)

    def record(self) -> dict[str, Any]:
        """The dataset as plain data, stored as the run's ``data`` settings (compared on ``--resume``)."""
        return {
            "source": "own data",
            "keep": self.description.keep,
            "sigma": self.description.sigma,
            "qmri_protocol": {"tr": list(self.qmri_protocol.tr), "te": list(self.qmri_protocol.te)},
            "guide_protocols": {name: asdict(p) for name, p in self.guide_protocols.items()},
            "contrasts": "synthesised from the LR maps" if self.synthesised else "given",
            "split": {name: list(ids) for name, ids in self.split.items()},
        }

    def training_profile(self, profile: Profile, alpha: float | None = None) -> Profile:
        """``profile`` for training on this dataset.

        Its ``data`` section becomes :meth:`record`; ``train.dc_dilation`` is 0 when the contrasts
        are synthesised (the data term on the mask only, see the module docstring); ``train.alpha``
        becomes ``alpha`` when given.
        """
        train = profile.train.to_dict()
        if self.synthesised:
            train["dc_dilation"] = 0
        if alpha is not None:
            train["alpha"] = float(alpha)
        return Profile.from_dict(profile.to_dict() | {"data": self.record(), "train": train})

    def summary(self) -> Iterator[str]:
        """Lines describing the dataset: subjects, split, Φ, protocols and the data term."""
        yield f"{self.folder}: {len(self.subjects)} subjects, train {', '.join(self.split['train'])}; " \
              f"validation {', '.join(self.split['val'])}"
        yield f"LR acquisition: KSpaceFraction {self.description.keep:g}, NoiseLevel {self.description.sigma:g}; " \
              f"QMRIProtocol TR {list(self.qmri_protocol.tr)} ms, TE {list(self.qmri_protocol.te)} ms"
        yield "data term: " + ("contrasts synthesised from the LR maps, on the brain mask" if self.synthesised
                               else "the LR contrasts given")
        for name, protocol in self.guide_protocols.items():
            fields = ", ".join(f"{key} {value:g}" for key, value in asdict(protocol).items()
                               if key != "sequence" and value is not None)
            yield f"guide {name}: {protocol.sequence} ({fields}; ms, degrees)"


def _split(root: Path, subjects: Sequence[str], description: DatasetDescription) -> dict[str, list[str]]:
    """Training and validation subjects: the declared validation subjects, or the last fifth."""
    if description.validation is None:
        count = max(1, len(subjects) // 5)
        return {"train": list(subjects[:-count]), "val": list(subjects[-count:])}
    unknown = [s for s in description.validation if s not in subjects]
    if unknown:
        raise DataValidationError(f"{root / DATASET_FILE}: ValidationSubjects names {unknown[0]!r}, which is not a "
                                  f"subject folder; use some of {', '.join(subjects)}")
    train = [s for s in subjects if s not in description.validation]
    if not train:
        raise DataValidationError(f"{root / DATASET_FILE}: ValidationSubjects holds every subject; leave at least "
                                  "one for training")
    return {"train": train, "val": list(description.validation)}


def _guide_protocols(subjects: Mapping[str, SubjectFiles], first: str,
                     tolerance: ProtocolTolerance) -> dict[str, GuideProtocol]:
    """Each guide's protocol, from ``first``'s sidecar; every other subject's must agree within ``tolerance``."""
    reference = {name: sidecar_path(path) for name, path in subjects[first].guides.items()}
    protocols = {name: read_guide_sidecar(path) for name, path in reference.items()}
    for files in subjects.values():
        for name, image in files.guides.items():
            sidecar = sidecar_path(image)
            difference = protocol_difference(read_guide_sidecar(sidecar), protocols[name], tolerance)
            if difference is not None:
                raise ProtocolMismatchError(
                    f"{sidecar}: {difference.describe(str(reference[name]))}; one model needs one protocol per "
                    f"guide: leave the subject out, or list the {name} guides of one protocol only")
    return protocols
