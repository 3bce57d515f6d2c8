"""Cross-sequence validation (paper Sec. III-D.2, IV-B, Table II, Fig. 4), in simulation.

The paper applies its selected model, unchanged, to PD/T1/T2 maps of another qMRI sequence that
training never saw (3-D radial MuPa-ZTE with dictionary fitting) at three quality levels, and
judges the result by how well images synthesised from the maps match independently acquired
clinical images. Here, for the test subjects of a dataset (:func:`run_cross_sequence`):

1. **Maps of another sequence**: Acq1 and Acq5 from the simulated radial transient-state sequence
   (:func:`swig_lib.experiments.crossseq.sequence.simulate_protocols`); Acq5^R = Acq5 passed through a supervised
   CNN trained on training subjects (:mod:`swig_lib.experiments.crossseq.reconcnn`).
2. **Acquired images**: T1w, T2w (the guides) and T2-FLAIR (never a guide) from Q_h with noise and
   a receive-bias field (:mod:`swig_lib.experiments.crossseq.acquisition`).
3. **SR**: the selected SWIG model applied with Q_l := the protocol's maps and the acquired
   T1w/T2w as guides (:func:`swig_lib.experiments.inference.predict_volume`).
4. **Table II**: SSIM and HFEN (:mod:`swig_lib.core.metrics`) of the T1w, T2w and T2-FLAIR synthesised
   from Q_l and from Q̂_h (:func:`swig_lib.experiments.crossseq.acquisition.synthesize`, acquisition-matched
   parameters) against the acquired ones, per axial slice inside the brain mask; summarised as
   mean ± standard deviation over the slices of all subjects (the paper: over the slices of its
   one volunteer). The acquired images carry an unknown scale and bias, so by default each
   synthesised volume is first matched to the acquired one by a least-squares affine map
   a·S + b over the brain (``intensity_match="affine"``, :func:`match_intensity`; ``"none"``
   compares raw intensities). Images synthesised from Q_h itself give the floor that noise and
   bias leave (rows with protocol and source ``"Q_h"``).
5. **Ground truth** (which the paper lacked): SSIM and HFEN of every map against Q_h, the mean
   absolute percentage error of PD, T1 and T2 in pure white and grey matter (the dataset's tissue
   labels, :meth:`swig_lib.experiments.subjects.dataset.Dataset.labels`), and the T2-FLAIR error in sulcal CSF, where the
   paper saw partial volumes escape the fluid suppression.

Outputs under ``<results_dir>/<profile>/crosssequence/``: ``synthesis.csv`` (per slice),
``table2.csv`` (mean ± sd), ``maps.csv`` (per slice), ``tissue.csv`` and ``sulci.csv`` (per
subject; :func:`tissue_errors`, :func:`sulcal_flair_errors`), ``run.json`` (what produced them:
settings, model checksums, package fingerprint); the display slice of Fig. 4 goes to
``<results_dir>/<profile>/cache/crosssequence/example.npz``. A second call with the same inputs
reads these instead of recomputing (notebook 05 reuses notebook 04's run).

Users' own data (no Q_h): :func:`evaluate_user_data` runs steps 3-4 on NIfTI files.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from swig_lib import paper
from swig_lib.book.reproduce import package_fingerprint
from swig_lib.core.io import (
    DataValidationError,
    PathLike,
    _volume,
    atomic_path,
    atomic_write_bytes,
    check_finite,
    check_same_grid,
    load_guides,
    load_nifti,
    load_qmri_maps,
    sha256,
)
from swig_lib.core.metrics import map_metrics, slice_metrics
from swig_lib.core.models import MAP_NAMES, SwigResNet
from swig_lib.core.protocols import FlairProtocol
from swig_lib.experiments.crossseq.acquisition import (
    IMAGE_NAMES,
    ImageSettings,
    WeightedProtocol,
    acquire_images,
    image_protocols,
    synthesize,
)
from swig_lib.experiments.crossseq.reconcnn import (
    RECON_NAME,
    ReconSettings,
    subject_seed,
    train_recon_cnn,
)
from swig_lib.experiments.crossseq.sequence import (
    AcquisitionSettings,
    simulate_protocols,
)
from swig_lib.experiments.evaluation.evaluate import write_csv
from swig_lib.experiments.evaluation.ranking import mean_sd
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.subjects.dataset import (
    TISSUE_LABELS,
    load_dataset,
    torch_threads,
)
from swig_lib.experiments.training.checkpoints import checkpoint_paths
from swig_lib.experiments.training.loop import train_variant
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import select_slices

#: Quality levels of the cross-sequence validation, in table order.
PROTOCOLS: tuple[str, str, str] = ("Acq1", "Acq5", RECON_NAME)
#: How the protocols are printed in figures (matplotlib mathtext).
PROTOCOL_LABELS: dict[str, str] = {"Acq1": "Acq1", "Acq5": "Acq5", RECON_NAME: "Acq5$^R$"}
#: Map sources: the protocol's maps (input) and the SR output.
SOURCES: tuple[str, str] = ("Q_l", "SR")
#: How the sources are printed (matplotlib mathtext).
SOURCE_LABELS: dict[str, str] = {"Q_l": "$Q_l$", "SR": r"$\hat{Q}_h$", "Q_h": "$Q_h$"}
#: Protocol and source name of the images synthesised from Q_h (the noise and bias floor).
REFERENCE = "Q_h"
#: Tissues of the percentage errors, by name: their value in :data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`.
TISSUES: dict[str, int] = {name: code for code, name in sorted(TISSUE_LABELS.items(), reverse=True)
                           if name in ("WM", "GM")}
#: The paper's model selection (Table III), used when no selection file exists.
DEFAULT_VARIANT = "M12++"
#: JSON file (under ``<results_dir>/<profile>``) with the model selected by notebook 03 under the
#: key ``"selected"`` (and the ranking that chose it).
SELECTION_FILE = Path("metrics") / "selected_model.json"

#: Per-subject tables of :class:`CrossSequenceResults`, each written to ``<name>.csv``.
TABLES: tuple[str, ...] = ("synthesis", "maps", "tissue", "sulci")

#: Random streams of the test subjects' radial acquisitions and weighted images.
TEST_STREAM, IMAGE_STREAM = 2, 3

#: Side of the square zoom window on sulcal CSF (voxels) and the depth (mm) that separates
#: sulcal CSF (near the brain surface) from the ventricles.
ZOOM_SIZE, SULCAL_DEPTH_MM = 40, 12.0

def paper_table2() -> pd.DataFrame:
    """Table II of the paper as data: SSIM and HFEN of synthesised vs acquired in-vivo images.

    Mean ± sd over axial slices 40-140 of one volunteer, MuPa-ZTE protocols Acq1, Acq5 and Acq5^R
    (here ``"Acq5R"``), images synthesised from Q_l and from the SR output Q̂_h (``"SR"``).
    Source: Samadifardheris et al., "Self-Supervised Weighted Image Guided Quantitative MRI
    Super-Resolution", Table II.

    Returns
    -------
    pandas.DataFrame
        Long table: protocol, contrast (``T1w``, ``T2w``, ``FLAIR``), source, metric
        (``ssim``, ``hfen``), mean, sd.
    """
    rows = []
    for (protocol, contrast), values in paper.TABLE2.items():
        cells = zip((("ssim", "Q_l"), ("ssim", "SR"), ("hfen", "Q_l"), ("hfen", "SR")), values)
        for (metric, source), (mean, sd) in cells:
            rows.append({"protocol": protocol, "contrast": contrast, "source": source,
                         "metric": metric, "mean": mean, "sd": sd})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CrossSequenceSettings:
    """The ``[<profile>.crosssequence]`` section (see ``profiles.toml`` for each setting).

    Attributes
    ----------
    n_subjects : int
        Test subjects used, the first ones of the split (0 = all).
    slice_stride : int
        Every n-th of the stored slices whose brain area is at least ``min_brain_fraction`` of the
        largest (:func:`swig_lib.experiments.training.windows.select_slices`).
    min_brain_fraction : float
        See ``slice_stride``.
    intensity_match : {"affine", "none"}
        Synthesised images are matched to the acquired ones by a least-squares affine intensity
        map before the metrics, or compared raw.
    batch_size : int
        Slices per forward pass of the networks.
    workers : int
        Processes over which the test subjects are spread (1 = this process; more need as many
        free CPU cores, and a dataset object that pickles). Results do not depend on it.
    variant : str
        SWIG model to apply; "" = the one selected by notebook 03 (:func:`selected_variant`).
    acquisition : AcquisitionSettings
        The radial sequence (fields overridden by ``[...crosssequence.acquisition]``).
    images : ImageSettings
        The acquired weighted images (``[...crosssequence.images]``).
    recon : ReconSettings
        The Acq5^R CNN (``[...crosssequence.recon]``).
    """

    n_subjects: int = 0
    slice_stride: int = 2
    min_brain_fraction: float = 0.25
    intensity_match: str = "affine"
    batch_size: int = 8
    workers: int = 1
    variant: str = ""
    acquisition: AcquisitionSettings = field(default_factory=AcquisitionSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    recon: ReconSettings = field(default_factory=ReconSettings)

    def __post_init__(self) -> None:
        if self.intensity_match not in ("affine", "none"):
            raise ValueError(f"intensity_match must be 'affine' or 'none', got {self.intensity_match!r}")
        if self.n_subjects < 0 or self.slice_stride < 1 or self.workers < 1:
            raise ValueError("need n_subjects >= 0, slice_stride >= 1 and workers >= 1")
        if self.variant and self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose from {list(VARIANTS)}")

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> CrossSequenceSettings:
        """Read ``profile["crosssequence"]`` and its ``acquisition``, ``images``, ``recon`` tables."""
        if "crosssequence" not in profile:
            raise KeyError(f"profile {profile.get('name', '?')!r} has no [crosssequence] section")
        section = dict(profile["crosssequence"])
        tables = {
            "acquisition": AcquisitionSettings.from_dict(section.pop("acquisition", {})),
            "images": ImageSettings.from_dict(section.pop("images", {})),
            "recon": ReconSettings.from_dict(section.pop("recon", {})),
        }
        known = {f.name for f in dataclasses.fields(cls)} - set(tables)
        unknown = set(section) - known
        if unknown:
            raise KeyError(f"[crosssequence] section: unknown setting(s) {sorted(unknown)}")
        return cls(**section, **tables)


# ----------------------------------------------------------------------------------------------
# Building blocks (shared by the simulation and users' own data)
# ----------------------------------------------------------------------------------------------


def match_intensity(image: np.ndarray, reference: np.ndarray, region: np.ndarray) -> np.ndarray:
    """a·image + b with (a, b) minimising Σ_region (reference − a·image − b)² (least squares).

    Parameters
    ----------
    image, reference : ndarray, same shape
        Synthesised and acquired image (any units).
    region : ndarray of bool, same shape
        Voxels of the fit (the brain on the evaluated slices).

    Returns
    -------
    ndarray, float32
        The matched image, in the reference's units.
    """
    x = np.asarray(image, dtype=np.float64)[region]
    y = np.asarray(reference, dtype=np.float64)[region]
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("the affine intensity match needs a non-constant image on >= 2 voxels")
    a, b = np.polyfit(x, y, 1)
    return (a * np.asarray(image, dtype=np.float64) + b).astype(np.float32)


def synthesized_images(
    maps: Mapping[tuple[str, str], np.ndarray],
    acquired: Mapping[str, np.ndarray],
    protocols: Mapping[str, WeightedProtocol],
    mask: np.ndarray,
    slices: np.ndarray,
    intensity_match: str = "affine",
) -> dict[tuple[str, str, str], np.ndarray]:
    """Images synthesised from every map set for every acquired contrast (Table II, Fig. 4b-c).

    Parameters
    ----------
    maps : mapping of (protocol, source) to ndarray (3, X, Y, Z)
        Map sets: PD (a.u.), T1 (ms), T2 (ms).
    acquired : mapping of str to ndarray (X, Y, Z)
        Acquired images by contrast name (keys of ``protocols``).
    protocols : mapping of str to protocol
        Acquisition-matched protocol of each contrast.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    slices : ndarray of int
        Evaluated axial slices; the affine match is fitted on the brain of these slices.
    intensity_match : {"affine", "none"}
        See :class:`CrossSequenceSettings`.

    Returns
    -------
    dict of (protocol, source, contrast) to ndarray (X, Y, Z), float32
        Zero outside the mask.
    """
    region = np.zeros(mask.shape, dtype=bool)
    region[..., slices] = mask[..., slices]
    images = {}
    for contrast, reference in acquired.items():
        for (protocol, source), q in maps.items():
            image = synthesize(protocols[contrast], q)
            if intensity_match == "affine":
                image = match_intensity(image, reference, region)
            images[(protocol, source, contrast)] = np.where(mask, image, np.float32(0))
    return images


def _slice_rows(keys: Mapping[str, Any], scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table row per scored slice: ``keys`` plus slice, ssim and hfen (from :func:`slice_metrics`)."""
    return [
        {**keys, "slice": int(z), "ssim": float(s), "hfen": float(h)}
        for z, s, h in zip(scores["slices"], scores["ssim_slices"], scores["hfen_slices"])
    ]


def synthesis_scores(
    images: Mapping[tuple[str, str, str], np.ndarray],
    acquired: Mapping[str, np.ndarray],
    mask: np.ndarray,
    slices: np.ndarray,
) -> list[dict[str, Any]]:
    """SSIM and HFEN of synthesised against acquired images, per axial slice (brain mask).

    Parameters
    ----------
    images : mapping of (protocol, source, contrast) to ndarray (X, Y, Z)
        From :func:`synthesized_images`.
    acquired : mapping of str to ndarray (X, Y, Z)
        The references, by contrast.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    slices : ndarray of int
        Axial slices.

    Returns
    -------
    list of dict
        Rows: protocol, source, contrast, slice, ssim, hfen.
    """
    return [
        row
        for (protocol, source, contrast), image in images.items()
        for row in _slice_rows({"protocol": protocol, "source": source, "contrast": contrast},
                               slice_metrics(image, acquired[contrast], mask, slices=slices))
    ]


def map_scores(
    maps: Mapping[tuple[str, str], np.ndarray], q_h: np.ndarray, mask: np.ndarray, slices: np.ndarray
) -> list[dict[str, Any]]:
    """SSIM and HFEN of every map set against Q_h, per map and axial slice (brain mask).

    Parameters
    ----------
    maps : mapping of (protocol, source) to ndarray (3, X, Y, Z)
        Map sets: PD (a.u.), T1 (ms), T2 (ms).
    q_h : ndarray, shape (3, X, Y, Z)
        Reference maps.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    slices : ndarray of int
        Axial slices.

    Returns
    -------
    list of dict
        Rows: protocol, source, map, slice, ssim, hfen.
    """
    return [
        row
        for (protocol, source), q in maps.items()
        for name, scores in map_metrics(q, q_h, mask, MAP_NAMES, slices=slices).items()
        for row in _slice_rows({"protocol": protocol, "source": source, "map": name}, scores)
    ]


def tissue_errors(
    maps: Mapping[tuple[str, str], np.ndarray], q_h: np.ndarray, labels: np.ndarray, slices: np.ndarray
) -> list[dict[str, Any]]:
    """Mean absolute percentage error 100·mean(|Q − Q_h|/Q_h) per map in pure WM and GM.

    Parameters
    ----------
    maps : mapping of (protocol, source) to ndarray (3, X, Y, Z)
        Map sets.
    q_h : ndarray, shape (3, X, Y, Z)
        Reference maps.
    labels : ndarray, shape (X, Y, Z)
        Tissue labels (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`).
    slices : ndarray of int
        Axial slices whose voxels are pooled.

    Returns
    -------
    list of dict
        Rows: protocol, source, tissue, map, mape (%), n_voxels.
    """
    rows = []
    for tissue, label in TISSUES.items():
        inside = np.zeros(labels.shape, dtype=bool)
        inside[..., slices] = labels[..., slices] == label
        if not inside.any():
            continue
        for (protocol, source), q in maps.items():
            for m, name in enumerate(MAP_NAMES):
                ref = q_h[m][inside].astype(np.float64)
                error = 100.0 * np.mean(np.abs(q[m][inside] - ref) / ref)
                rows.append({"protocol": protocol, "source": source, "tissue": tissue, "map": name,
                             "mape": float(error), "n_voxels": int(inside.sum())})
    return rows


def sulcal_flair_errors(
    images: Mapping[tuple[str, str, str], np.ndarray],
    sulci: np.ndarray,
    mask: np.ndarray,
    slices: np.ndarray,
) -> list[dict[str, Any]]:
    """Signed T2-FLAIR error in sulcal CSF: how much brighter than the truth the sulci come out.

    For every map set, the mean over the sulcal CSF voxels of the evaluated slices of the FLAIR
    synthesised from it minus the FLAIR synthesised from Q_h (both intensity-matched to the
    acquired FLAIR), in percent of the mean |FLAIR from Q_h| over the brain. Positive values
    are hyperintense sulci: CSF partial volumes that the inversion does not null.

    Parameters
    ----------
    images : mapping of (protocol, source, contrast) to ndarray (X, Y, Z)
        From :func:`synthesized_images`, including ``(REFERENCE, REFERENCE, "FLAIR")``.
    sulci : ndarray of bool, shape (X, Y, Z)
        Sulcal CSF (:func:`sulcal_csf`).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    slices : ndarray of int
        Evaluated axial slices.

    Returns
    -------
    list of dict
        Rows: protocol, source, error (%), n_voxels.
    """
    truth = images[(REFERENCE, REFERENCE, "FLAIR")]
    inside = np.zeros(mask.shape, dtype=bool)
    inside[..., slices] = sulci[..., slices]
    brain = np.zeros(mask.shape, dtype=bool)
    brain[..., slices] = mask[..., slices]
    if not inside.any():
        return []
    scale = float(np.abs(truth[brain]).mean())
    return [{"protocol": protocol, "source": source,
             "error": float(100.0 * (image[inside] - truth[inside]).mean() / scale),
             "n_voxels": int(inside.sum())}
            for (protocol, source, contrast), image in images.items()
            if contrast == "FLAIR" and protocol != REFERENCE]


def sulcal_csf(labels: np.ndarray, mask: np.ndarray, spacing_mm: float = 1.0) -> np.ndarray:
    """Sulcal CSF: voxels labelled CSF or CSF partial volume near the brain surface.

    Voxels whose label is CSF or CSF partial volume (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`) and whose
    in-plane distance to the outside of the brain mask is at most :data:`SULCAL_DEPTH_MM` (the
    ventricles lie deeper).

    Parameters
    ----------
    labels : ndarray, shape (X, Y) or (X, Y, Z)
        Tissue labels (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`).
    mask : ndarray of bool, same shape
        Brain mask.
    spacing_mm : float
        In-plane voxel size, mm.

    Returns
    -------
    ndarray of bool, same shape
    """
    labels = np.asarray(labels)
    stack = labels if labels.ndim == 3 else labels[..., None]
    brain = np.asarray(mask, dtype=bool).reshape(stack.shape)
    codes = [code for code, name in TISSUE_LABELS.items() if name in ("CSF", "CSF partial volume")]
    out = np.zeros(stack.shape, dtype=bool)
    for z in range(stack.shape[2]):
        depth = ndimage.distance_transform_edt(brain[..., z]) * spacing_mm
        out[..., z] = np.isin(stack[..., z], codes) & (depth <= SULCAL_DEPTH_MM)
    return out.reshape(labels.shape)


def zoom_window(labels: np.ndarray, mask: np.ndarray, size: int = ZOOM_SIZE) -> tuple[int, int, int]:
    """The size × size in-plane window holding the most sulcal CSF of a 2-D slice.

    Returns
    -------
    (x0, y0, size) : tuple of int
        First voxel indices (NIfTI order) and side of the window, inside the slice.
    """
    nx, ny = np.shape(labels)
    size = min(size, nx, ny)
    density = ndimage.uniform_filter(sulcal_csf(labels, mask).astype(np.float64), size, mode="constant")
    half = size // 2
    valid = density[half : nx - size + half + 1, half : ny - size + half + 1]
    x0, y0 = np.unravel_index(np.argmax(valid), valid.shape)
    return int(x0), int(y0), int(size)


# ----------------------------------------------------------------------------------------------
# The display slice of Fig. 4
# ----------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One axial slice of everything Fig. 4 shows.

    Attributes
    ----------
    subject : str
        Subject id (or the user's data name).
    slice : int
        Axial index in the subject's volume.
    mask : ndarray, shape (X, Y), bool
        Brain mask.
    maps : dict of (protocol, source) to ndarray (3, X, Y)
        Map sets (PD a.u., T1 ms, T2 ms), ``(REFERENCE, REFERENCE)`` for Q_h when known.
    acquired : dict of str to ndarray (X, Y)
        Acquired images by contrast.
    synthesized : dict of (protocol, source, contrast) to ndarray (X, Y)
        Synthesised (and intensity-matched) images.
    labels : ndarray, shape (X, Y), or None
        Tissue labels, when known.
    """

    subject: str
    slice: int
    mask: np.ndarray
    maps: dict[tuple[str, str], np.ndarray]
    acquired: dict[str, np.ndarray]
    synthesized: dict[tuple[str, str, str], np.ndarray]
    labels: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        """Write a compressed ``.npz`` atomically."""
        arrays: dict[str, np.ndarray] = {"mask": self.mask, "info": np.array([self.subject, str(self.slice)])}
        arrays |= {"maps|" + "|".join(k): v for k, v in self.maps.items()}
        arrays |= {"acquired|" + k: v for k, v in self.acquired.items()}
        arrays |= {"synthesized|" + "|".join(k): v for k, v in self.synthesized.items()}
        if self.labels is not None:
            arrays["labels"] = self.labels
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Example:
        """Read what :meth:`save` wrote."""
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        parts = {k: tuple(k.split("|")[1:]) for k in arrays if "|" in k}
        subject, index = (str(x) for x in arrays["info"])
        return cls(
            subject=subject,
            slice=int(index),
            mask=arrays["mask"].astype(bool),
            maps={parts[k]: v for k, v in arrays.items() if k.startswith("maps|")},
            acquired={parts[k][0]: v for k, v in arrays.items() if k.startswith("acquired|")},
            synthesized={parts[k]: v for k, v in arrays.items() if k.startswith("synthesized|")},
            labels=arrays.get("labels"),
        )


def _example(subject: str, z: int, mask: np.ndarray, maps: Mapping[tuple[str, str], np.ndarray],
             acquired: Mapping[str, np.ndarray], images: Mapping[tuple[str, str, str], np.ndarray],
             labels: np.ndarray | None) -> Example:
    """Slice ``z`` of a subject's volumes."""
    return Example(subject, int(z), mask[..., z], {k: v[..., z] for k, v in maps.items()},
                   {k: v[..., z] for k, v in acquired.items()},
                   {k: v[..., z] for k, v in images.items()},
                   None if labels is None else labels[..., z])


# ----------------------------------------------------------------------------------------------
# The simulated validation
# ----------------------------------------------------------------------------------------------


@dataclass
class CrossSequenceResults:
    """Everything :func:`run_cross_sequence` produces.

    Attributes
    ----------
    synthesis : pandas.DataFrame
        Per slice: subject, protocol, source, contrast, slice, ssim, hfen.
    maps : pandas.DataFrame
        Per slice: subject, protocol, source, map, slice, ssim, hfen (against Q_h).
    tissue : pandas.DataFrame
        Per subject: subject, protocol, source, tissue, map, mape (%), n_voxels.
    sulci : pandas.DataFrame
        Per subject: subject, protocol, source, error (%), n_voxels (:func:`sulcal_flair_errors`).
    example : Example
        The display slice of Fig. 4.
    info : dict
        Variant, subjects, slices, seconds, reuse and the settings (``run.json``).
    """

    synthesis: pd.DataFrame
    maps: pd.DataFrame
    tissue: pd.DataFrame
    sulci: pd.DataFrame
    example: Example
    info: dict[str, Any]


def selected_variant(out: str | Path, requested: str = "") -> tuple[str, str]:
    """The SWIG model to validate and why: requested, selected by notebook 03, or the paper's.

    Parameters
    ----------
    out : path
        ``<results_dir>/<profile>``.
    requested : str
        A variant name from the profile ("" = none).

    Returns
    -------
    (variant, reason) : tuple of str
    """
    if requested:
        return requested, "set in the profile (crosssequence.variant)"
    selection = Path(out) / SELECTION_FILE
    if selection.is_file():
        try:
            name = json.loads(selection.read_text()).get("selected")
        except (json.JSONDecodeError, AttributeError):
            name = None
        if name in VARIANTS:
            return name, f"selected by the ablation ranking ({selection})"
    return DEFAULT_VARIANT, f"the paper's selection (no valid model selection at {selection})"


def ensure_sr_model(profile: Mapping[str, Any], out: Path, variant: str, dataset: Any,
                    device: torch.device, progress: bool) -> Path:
    """The variant's selected checkpoint; trained first (``swig train``'s code) when missing."""
    path = checkpoint_paths(out, variant)[0]
    if not path.is_file():
        train_variant(profile, variant, out, device=device, dataset=dataset, progress=progress)
    return path


def _key(settings: CrossSequenceSettings, seed: int, data_settings: Mapping[str, Any], variant: str,
         sr_path: Path, recon_path: Path) -> dict[str, Any]:
    """What the results depend on (stored in ``run.json``, compared for reuse; not ``workers``)."""
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k != "workers"}
    return json.loads(json.dumps({
        "settings": values, "seed": int(seed), "data": dict(data_settings),
        "variant": variant, "sr_sha256": sha256(sr_path), "recon_sha256": sha256(recon_path),
        "package": package_fingerprint(),
    }))


def _output_paths(out: Path) -> dict[str, Path]:
    """Files written by :func:`run_cross_sequence`."""
    folder = out / "crosssequence"
    return {**{name: folder / f"{name}.csv" for name in (*TABLES, "table2")},
            "run": folder / "run.json", "example": out / "cache" / "crosssequence" / "example.npz"}


def _simulate_subject(dataset: Any, sid: str, index: int, settings: CrossSequenceSettings,
                      seed: int, sr_model: SwigResNet, recon_model: SwigResNet) -> dict[str, Any]:
    """Acquisitions, SR and scores of one test subject (``index`` in the test list).

    Returns the subject's volumes (mask, q_h, labels, acquired images, map sets, synthesised
    images), its evaluated ``slices`` and ``rows``: the rows of each of :data:`TABLES`.
    """
    acq = dataset.acquired(sid)
    mask = np.asarray(acq.mask, dtype=bool)
    q_h = np.asarray(dataset.reference(sid), dtype=np.float32)
    labels = dataset.labels(sid)
    slices = select_slices(mask, settings.min_brain_fraction, settings.slice_stride)
    acquired = acquire_images(q_h, mask, acq.affine, settings.images,
                              subject_seed(seed, IMAGE_STREAM, index))
    radial = simulate_protocols(*q_h[..., slices], mask[..., slices], ("Acq1", "Acq5"),
                                subject_seed(seed, TEST_STREAM, index), settings.acquisition)
    inputs = {}
    for protocol, maps in radial.items():
        inputs[protocol] = np.zeros_like(q_h)
        inputs[protocol][..., slices] = np.stack(maps)
    inputs[RECON_NAME] = predict_volume(recon_model, inputs["Acq5"], {}, mask,
                                        settings.batch_size, slices=slices)
    guides = {g: acquired[g] for g in sr_model.guides}
    maps: dict[tuple[str, str], np.ndarray] = {}
    for protocol in PROTOCOLS:
        maps[(protocol, "Q_l")] = inputs[protocol]
        maps[(protocol, "SR")] = predict_volume(sr_model, inputs[protocol], guides, mask,
                                                settings.batch_size, slices=slices)
    images = synthesized_images({**maps, (REFERENCE, REFERENCE): q_h}, acquired,
                                image_protocols(settings.images), mask, slices,
                                settings.intensity_match)
    spacing = float(np.linalg.norm(np.asarray(acq.affine)[:3, 0]))
    return {"mask": mask, "q_h": q_h, "labels": labels, "slices": slices, "acquired": acquired,
            "maps": maps, "images": images, "rows": {
                "synthesis": synthesis_scores(images, acquired, mask, slices),
                "maps": map_scores(maps, q_h, mask, slices),
                "tissue": tissue_errors(maps, q_h, labels, slices),
                "sulci": sulcal_flair_errors(images, sulcal_csf(labels, mask, spacing), mask, slices)}}


@lru_cache(maxsize=4)
def _cached_model(path: str, modified_ns: int, device: str) -> SwigResNet:
    """A checkpoint's model, loaded once per process (and again when the file changes)."""
    return load_model(path, device)


def _subject_task(dataset: Any, sid: str, index: int, settings: CrossSequenceSettings, seed: int,
                  model_paths: tuple[str, str], device: str
                  ) -> tuple[dict[str, list[dict[str, Any]]], Example | None]:
    """One test subject, in this or a worker process: the rows of :data:`TABLES` (with the subject
    id) and, for the first subject, the Fig. 4 example (its middle evaluated slice)."""
    with torch_threads(1):
        sr_model, recon_model = (_cached_model(p, Path(p).stat().st_mtime_ns, device)
                                 for p in model_paths)
        result = _simulate_subject(dataset, sid, index, settings, seed, sr_model, recon_model)
    rows = {name: [{"subject": sid, **row} for row in result["rows"][name]] for name in TABLES}
    if index != 0:
        return rows, None
    z = result["slices"][len(result["slices"]) // 2]
    maps = {**result["maps"], (REFERENCE, REFERENCE): result["q_h"]}
    return rows, _example(sid, z, result["mask"], maps, result["acquired"], result["images"],
                          result["labels"])


def run_cross_sequence(
    profile: Mapping[str, Any],
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    force: bool = False,
) -> CrossSequenceResults:
    """The simulated cross-sequence validation of the profile's test subjects (see module doc).

    Trains what is missing first: the SWIG model (only when its checkpoint is absent; the same
    code as ``swig train``) and the Acq5^R CNN (:func:`swig_lib.experiments.crossseq.reconcnn.train_recon_cnn`, cached
    in ``checkpoints/Acq5R.pt``). Results whose ``run.json`` matches the current inputs are read
    back instead of recomputed, unless ``force``.

    Parameters
    ----------
    profile : mapping
        A profile with ``data``, ``model``, ``train`` and ``crosssequence`` sections.
    data_dir, results_dir : path
        Data root and results root; outputs go to ``<results_dir>/<profile>/``.
    seed : int
        Seeds every simulated acquisition and the Acq5^R training.
    device : str or torch.device
        Where the networks run.
    progress : bool
        Progress bars.
    force : bool
        Recompute even if matching results exist.

    Returns
    -------
    CrossSequenceResults
    """
    start = time.perf_counter()
    settings = CrossSequenceSettings.from_profile(profile)
    device = torch.device(device)
    out = Path(results_dir) / str(profile["name"])
    dataset = load_dataset(dict(profile), root=data_dir, progress=progress)
    variant, reason = selected_variant(out, settings.variant)
    sr_path = ensure_sr_model(profile, out, variant, dataset, device, progress)
    recon_path = train_recon_cnn(dataset, out / "checkpoints" / f"{RECON_NAME}.pt", settings.recon,
                                 profile["model"], settings.acquisition, seed, device, progress)
    paths = _output_paths(out)
    key = _key(settings, seed, dataset.settings, variant, sr_path, recon_path)
    if not force and all(p.is_file() for p in paths.values()):
        info = json.loads(paths["run"].read_text())
        if info.get("key") == key:
            return CrossSequenceResults(**{name: pd.read_csv(paths[name]) for name in TABLES},
                                        example=Example.load(paths["example"]),
                                        info=info | {"reused": True})

    subjects = dataset.subject_ids("test")
    subjects = subjects[: settings.n_subjects] if settings.n_subjects else subjects
    if not subjects:
        raise ValueError(f"the dataset {dataset.folder} has no test subjects")
    n = len(subjects)
    arguments = ([dataset] * n, subjects, range(n), [settings] * n, [seed] * n,
                 [(str(sr_path), str(recon_path))] * n, [str(device)] * n)
    bar = {"total": n, "desc": "cross-sequence", "disable": not progress}
    if settings.workers > 1:  # spawn: a clean interpreter per worker (no forked torch threads)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(settings.workers, n), mp_context=context) as pool:
            outputs = list(tqdm(pool.map(_subject_task, *arguments), **bar))
    else:
        outputs = list(tqdm(map(_subject_task, *arguments), **bar))
    tables = {name: pd.DataFrame([row for rows, _ in outputs for row in rows[name]])
              for name in TABLES}
    example = outputs[0][1]
    info = {"key": key, "variant": variant, "variant_reason": reason,
            "sr_checkpoint": str(sr_path), "subjects": subjects,
            "n_slices": int(tables["synthesis"][["subject", "slice"]].drop_duplicates().shape[0]),
            "seconds": round(time.perf_counter() - start, 1), "reused": False}
    for name, frame in tables.items():
        write_csv(frame, paths[name])
    write_csv(table2(tables["synthesis"]), paths["table2"], index=True)
    example.save(paths["example"])
    atomic_write_bytes(paths["run"], (json.dumps(info, indent=1) + "\n").encode())
    return CrossSequenceResults(**tables, example=example, info=info)


# ----------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------


def table2(synthesis: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over slices of SSIM and HFEN per protocol, contrast and source (Table II).

    Parameters
    ----------
    synthesis : pandas.DataFrame
        Per-slice rows (:func:`synthesis_scores`, with or without a subject column).

    Returns
    -------
    pandas.DataFrame
        Indexed by (protocol, contrast, source) in table order; columns ``ssim_mean``,
        ``ssim_sd``, ``hfen_mean``, ``hfen_sd``, ``n`` (slices).
    """
    return mean_sd(synthesis, by=("protocol", "contrast", "source"))


def format_table2(summary: pd.DataFrame, contrasts: Sequence[str] = IMAGE_NAMES,
                  paper: bool = True, decimals: int = 2) -> pd.DataFrame:
    """Table II layout: "mean ± sd" per protocol and contrast; the paper's values beside ours.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`table2`; protocols in the order of :data:`PROTOCOLS`, other map-set names
        (users' data) after them, the Q_h floor left out.
    contrasts : sequence of str
        Rows to keep (e.g. ``("T1w", "T2w")`` in notebook 04, ``("FLAIR",)`` in 05).
    paper : bool
        Add the paper's columns (:func:`paper_table2`) for the protocols it has.
    decimals : int
        Decimals shown.

    Returns
    -------
    pandas.DataFrame
        Index (protocol, contrast); columns (who, metric, source) with who ``"ours"`` or
        ``"paper"``, metric ``"SSIM ↑"``/``"HFEN ↓"``, source ``"from Q_l"``/``"from Q̂_h"``.
    """
    def cell(mean: float, sd: float) -> str:
        return f"{mean:.{decimals}f} ± {sd:.{decimals}f}" if np.isfinite(sd) else f"{mean:.{decimals}f}"

    metric_names = {"ssim": "SSIM ↑", "hfen": "HFEN ↓"}
    source_names = {"Q_l": "from Q_l", "SR": "from Q̂_h"}
    order = [(who, metric, source) for who in ("ours", "paper") for metric in metric_names.values()
             for source in source_names.values()]
    reference = paper_table2().set_index(["protocol", "contrast", "source", "metric"])
    names = [p for p in dict.fromkeys(summary.index.get_level_values(0)) if p != REFERENCE]
    names.sort(key=lambda p: PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS))
    rows, index = [], []
    for protocol in names:
        for contrast in contrasts:
            row = {}
            for metric, metric_name in metric_names.items():
                for source, source_name in source_names.items():
                    if (protocol, contrast, source) in summary.index:
                        values = summary.loc[(protocol, contrast, source)]
                        row[("ours", metric_name, source_name)] = cell(
                            values[f"{metric}_mean"], values[f"{metric}_sd"])
                    if paper and (protocol, contrast, source, metric) in reference.index:
                        values = reference.loc[(protocol, contrast, source, metric)]
                        row[("paper", metric_name, source_name)] = cell(values["mean"], values["sd"])
            rows.append(row)
            index.append((protocol, contrast))
    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["protocol", "contrast"]))
    table = table[[c for c in order if c in table.columns]]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def map_summary(maps: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over slices of the map SSIM and HFEN per protocol, source and map."""
    return mean_sd(maps, by=("protocol", "source", "map"))


def tissue_summary(tissue: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over subjects of the percentage errors per protocol, source, tissue and map."""
    return mean_sd(tissue, by=("protocol", "source", "tissue", "map"), metrics=("mape",))


def acq1_versus_acq5(maps: pd.DataFrame, tissue: pd.DataFrame) -> pd.DataFrame:
    """Does SR of the 1-minute Acq1 reach the 5-minute Acq5? Every ground-truth metric side by side.

    Parameters
    ----------
    maps, tissue : pandas.DataFrame
        Per-slice map scores and per-subject tissue errors (:class:`CrossSequenceResults`).

    Returns
    -------
    pandas.DataFrame
        Index (metric, map, tissue) with metric ``ssim`` (↑), ``hfen`` (↓) or ``mape`` (↓, %),
        tissue ``"brain"`` for the map metrics; columns ``Acq1``, ``SR(Acq1)``, ``Acq5``,
        ``SR(Acq5)`` (means) and ``SR(Acq1) ≥ Acq5`` (True where SR of Acq1 is at least as good
        as Acq5).
    """
    columns = {"Acq1": ("Acq1", "Q_l"), "SR(Acq1)": ("Acq1", "SR"),
               "Acq5": ("Acq5", "Q_l"), "SR(Acq5)": ("Acq5", "SR")}
    m, t = map_summary(maps), tissue_summary(tissue)
    rows, index = [], []
    for metric in ("ssim", "hfen"):
        for name in MAP_NAMES:
            rows.append({c: m.loc[(p, s, name), f"{metric}_mean"] for c, (p, s) in columns.items()})
            index.append((metric, name, "brain"))
    for tissue_name in TISSUES:
        for name in MAP_NAMES:
            if ("Acq1", "Q_l", tissue_name, name) in t.index:
                rows.append({c: t.loc[(p, s, tissue_name, name), "mape_mean"]
                             for c, (p, s) in columns.items()})
                index.append(("mape", name, tissue_name))
    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["metric", "map", "tissue"]))
    higher = table.index.get_level_values("metric") == "ssim"
    table["SR(Acq1) ≥ Acq5"] = np.where(higher, table["SR(Acq1)"] >= table["Acq5"],
                                        table["SR(Acq1)"] <= table["Acq5"])
    return table


# ----------------------------------------------------------------------------------------------
# Users' own data
# ----------------------------------------------------------------------------------------------


@dataclass
class UserResults:
    """What :func:`evaluate_user_data` produces.

    Attributes
    ----------
    synthesis : pandas.DataFrame
        Per slice: protocol (the user's map-set name), source, contrast, slice, ssim, hfen.
    example : Example
        The middle evaluated slice.
    variant : str
        The model's file name.
    """

    synthesis: pd.DataFrame
    example: Example
    variant: str


def evaluate_user_data(
    model_path: PathLike,
    maps: Mapping[str, Mapping[str, PathLike]],
    t1w: PathLike | None = None,
    t2w: PathLike | None = None,
    flair: PathLike | None = None,
    mask: PathLike | None = None,
    flair_protocol: Mapping[str, float] | None = None,
    intensity_match: str = "affine",
    min_brain_fraction: float = 0.25,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> UserResults:
    """Table II for a user's own registered NIfTI data: SR, then synthesis vs acquired images.

    All files must lie on one voxel grid (register and resample them first); there is no Q_h, so
    only the synthesis-versus-acquired scores are computed. The T1w and T2w must have been
    acquired with the guide parameters the model was trained with
    (:data:`swig_lib.core.protocols.GUIDE_PROTOCOLS`).

    Parameters
    ----------
    model_path : path
        A SWIG checkpoint (``results/<profile>/checkpoints/<variant>.pt``).
    maps : mapping of str to mapping
        One or more map sets by name (e.g. ``{"fast": {"PD": ..., "T1": ..., "T2": ...}}``):
        NIfTI files of PD (a.u.), T1 (ms), T2 (ms), validated by :func:`swig_lib.core.io.load_qmri_maps`.
    t1w, t2w : path, optional
        Acquired T1w (IR-SPGR) and T2w (SE); those the model needs are required.
    flair : path, optional
        Acquired T2-FLAIR (never a guide); needs ``flair_protocol``.
    mask : path, optional
        Brain mask (default: where the first map set's PD, T1 and T2 are > 0).
    flair_protocol : mapping, optional
        The FLAIR's ``ti``, ``tr``, ``te`` in ms.
    intensity_match : {"affine", "none"}
        As :class:`CrossSequenceSettings`.
    min_brain_fraction : float
        Slices with less brain than this fraction of the largest are not scored.
    batch_size : int
        Slices per forward pass.
    device : str or torch.device
        Where the model runs.

    Returns
    -------
    UserResults

    Raises
    ------
    swig_lib.core.io.DataValidationError
        For invalid or misaligned files, a missing guide, or a FLAIR without its protocol.
    """
    if not maps:
        raise DataValidationError("no map set given; pass maps={'name': {'PD': ..., 'T1': ..., 'T2': ...}}")
    if flair is not None and flair_protocol is None:
        raise DataValidationError("a FLAIR needs its parameters: pass flair_protocol={'ti': ..., "
                                  "'tr': ..., 'te': ...} (ms)")
    model = load_model(model_path, device)
    loaded = {}
    for name, files in maps.items():
        missing = {"PD", "T1", "T2"} - set(files)
        if missing:
            raise DataValidationError(f"map set {name!r} lacks {sorted(missing)}")
        loaded[name] = load_qmri_maps(files["PD"], files["T1"], files["T2"], mask)
    first = next(iter(loaded.values()))
    for name, item in loaded.items():
        check_same_grid(f"map set {name!r}", item.mask.shape, item.affine, "the first map set",
                        first.mask.shape, first.affine)
    brain = first.mask
    given = {"T1w": t1w, "T2w": t2w}
    absent = [g for g in model.guides if given[g] is None]
    if absent:
        raise DataValidationError(f"the model {model_path} needs the guide(s) {absent}")
    acquired = load_guides(**{g.lower(): p for g, p in given.items() if p is not None},
                           reference_affine=first.affine, reference_shape=brain.shape)
    protocols: dict[str, WeightedProtocol] = dict(image_protocols())
    if flair is not None:
        data, affine = load_nifti(flair)
        data = _volume(data, f"FLAIR {flair}")
        check_same_grid(f"FLAIR {flair}", data.shape, affine, "the maps", brain.shape, first.affine)
        check_finite(f"FLAIR {flair}", data)
        acquired["FLAIR"] = data
        protocols["FLAIR"] = FlairProtocol(**{k: float(v) for k, v in flair_protocol.items()})
    slices = select_slices(brain, min_brain_fraction, 1)
    sets: dict[tuple[str, str], np.ndarray] = {}
    for name, item in loaded.items():
        sets[(name, "Q_l")] = np.where(brain, item.maps, np.float32(0))
        sets[(name, "SR")] = predict_volume(model, item.maps, {g: acquired[g] for g in model.guides},
                                            brain, batch_size, slices=slices)
    images = synthesized_images(sets, acquired, protocols, brain, slices, intensity_match)
    rows = synthesis_scores(images, acquired, brain, slices)
    example = _example("user", int(slices[len(slices) // 2]), brain, sets, acquired, images, None)
    return UserResults(pd.DataFrame(rows), example, Path(model_path).stem)
