"""Training slices and windows: brain crops of a fixed size, slice selection, prepared slice sets.

The network runs on 2-D axial slices cropped to a window around the brain plus the network's
receptive radius, so inference on a crop equals inference on the full slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.models import masked_channel_means, zscore_guide
from swig_lib.core.protocols import QMRIProtocol
from swig_lib.core.sequences import PRESETS, GuideProtocol
from swig_lib.experiments.config import Profile
from swig_lib.experiments.training.augment import DegradationSettings
from swig_lib.experiments.training.variants import GUIDE_ORDER

# ----------------------------------------------------------------------------------------------
# Pure helpers: windows, slices, masks
# ----------------------------------------------------------------------------------------------


def brain_extent(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """In-plane bounding box of a (X, Y, Z) mask over all slices: ((x0, x1), (y0, y1)), end exclusive."""
    if not mask.any():
        raise ValueError("empty brain mask")
    xs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    return (int(xs[0]), int(xs[-1]) + 1), (int(ys[0]), int(ys[-1]) + 1)


def window_size(masks: Sequence[np.ndarray], margin: int) -> tuple[int, int]:
    """Common in-plane crop size: the largest brain extent of ``masks`` plus ``margin`` per side.

    Capped at the grid size. All masks must share the in-plane grid.
    """
    shapes = {m.shape[:2] for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"masks on different in-plane grids: {sorted(shapes)}")
    (grid,) = shapes
    sizes = [0, 0]
    for mask in masks:
        for axis, (lo, hi) in enumerate(brain_extent(mask)):
            sizes[axis] = max(sizes[axis], hi - lo + 2 * margin)
    return min(sizes[0], grid[0]), min(sizes[1], grid[1])


def window_indices(mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a ``size`` window centred on the brain, modulo the grid.

    Parameters
    ----------
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    size : (int, int)
        Window size, at most (X, Y).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Integer indices into X and Y (wrapping around the field of view, as the DFT of Φ does).
    """
    indices = []
    for (lo, hi), n, full in zip(brain_extent(mask), size, mask.shape[:2], strict=True):
        if not hi - lo <= n <= full:
            raise ValueError(
                f"window {n} cannot hold the brain extent {hi - lo} on a grid of {full}"
            )
        start = (lo + hi) // 2 - n // 2
        indices.append((start + np.arange(n)) % full)
    return indices[0], indices[1]


def select_slices(mask: np.ndarray, min_fraction: float, stride: int) -> np.ndarray:
    """Axial slices whose brain area is at least ``min_fraction`` of the largest, every ``stride``-th.

    Parameters
    ----------
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    min_fraction : float
        In [0, 1]; 0 keeps every slice with a brain voxel.
    stride : int
        Keep every ``stride``-th of the qualifying slices (1: all), starting with the middle one.
    """
    area = mask.sum(axis=(0, 1))
    qualifying = np.flatnonzero((area > 0) & (area >= min_fraction * area.max()))
    if stride < 1:
        raise ValueError(f"stride must be a positive integer; got {stride}")
    return qualifying[(len(qualifying) // 2) % stride :: stride]


def dilate(mask: Tensor, voxels: int) -> Tensor:
    """Square (Chebyshev) in-plane dilation of a (B, H, W) bool mask by ``voxels`` voxels."""
    if voxels <= 0:
        return mask
    pooled = torch.nn.functional.max_pool2d(
        mask[:, None].float(), kernel_size=2 * voxels + 1, stride=1, padding=voxels
    )
    return pooled[:, 0] > 0


# ----------------------------------------------------------------------------------------------
# Prepared slices
# ----------------------------------------------------------------------------------------------


@dataclass
class SliceSet:
    """Cropped axial slices of several subjects, ready for the network and the loss.

    Attributes
    ----------
    q_l : Tensor
        (S, 3, h, w) LR maps: PD [a.u.], T1 [ms], T2 [ms].
    guides : Tensor
        (S, G, h, w) guides (the paper's: G = 2, :data:`GUIDE_ORDER`), z-scored per volume, zero
        outside the brain.
    mask : Tensor
        (S, h, w) brain mask.
    region : Tensor
        (S, h, w) voxels of the data-consistency term (the dilated brain mask).
    c_l : Tensor
        (S, n_c, h, w) acquired LR contrasts, a.u. (n_c = 12 for the paper's protocol).
    phi : Tensor
        (S,) int64: the Φ that acquired each slice, an index into :attr:`TrainingData.sample_phis`
        (all 0 with one Φ).
    """

    q_l: Tensor
    guides: Tensor
    mask: Tensor
    region: Tensor
    c_l: Tensor
    phi: Tensor

    def __len__(self) -> int:
        return self.q_l.shape[0]

    def batch(self, index: Tensor, device: torch.device) -> SliceSet:
        """The slices ``index``, moved to ``device``."""
        return SliceSet(
            *(getattr(self, f).index_select(0, index).to(device) for f in self.__dataclass_fields__)
        )

    @staticmethod
    def concatenate(parts: Sequence[SliceSet]) -> SliceSet:
        """Stack the slices of several sets."""
        return SliceSet(
            *(torch.cat([getattr(p, f) for p in parts]) for f in SliceSet.__dataclass_fields__)
        )


def slices_first(
    volume: np.ndarray, rows: np.ndarray, cols: np.ndarray, slices: np.ndarray
) -> Tensor:
    """(..., X, Y, Z) → (Z', ..., h, w): the window and the chosen axial slices, slices first."""
    cropped = np.take(np.take(volume, rows, axis=-3), cols, axis=-2)[..., slices]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(cropped, -1, 0)))


def prepare_subject(acq: Any, size: tuple[int, int], slices: np.ndarray, dilation: int,
                    guides: Sequence[str] = GUIDE_ORDER, phi_index: int = 0, contrasts: bool = True) -> SliceSet:
    """Crop and slice one subject's acquired data (never its Q_h).

    Parameters
    ----------
    acq
        Acquired data with ``q_l`` (3, X, Y, Z), ``guides`` by name (X, Y, Z), ``mask``
        (X, Y, Z) bool and ``lr_contrasts()`` (n_c, X, Y, Z), as :mod:`swig_lib.experiments.subjects.dataset` provides.
    size : (int, int)
        In-plane window (:func:`window_size`).
    slices : numpy.ndarray
        Axial slice indices.
    dilation : int
        Voxels by which the brain mask is dilated for the data-consistency region.
    guides : sequence of str
        Guide names, in the channel order of the result (default :data:`GUIDE_ORDER`).
    phi_index : int
        The subject's Φ, an index into :attr:`TrainingData.sample_phis`.
    contrasts : bool
        Crop C_l too; without, ``c_l`` has no channels (for methods that read Q_l and the guides
        only, so that C_l, recomputed from the subject's noise seed in ~1 s, is not made for nothing).
    """
    mask_np = np.asarray(acq.mask, dtype=bool)
    rows, cols = window_indices(mask_np, size)
    mask_t = torch.from_numpy(mask_np)
    stacked = np.stack(
        [zscore_guide(torch.as_tensor(acq.guides[g]).float(), mask_t).numpy() for g in guides]
    )
    mask = slices_first(mask_np, rows, cols, slices)
    return SliceSet(
        q_l=slices_first(np.asarray(acq.q_l, dtype=np.float32), rows, cols, slices),
        guides=slices_first(stacked.astype(np.float32), rows, cols, slices),
        mask=mask,
        region=dilate(mask, dilation),
        c_l=(slices_first(np.asarray(acq.lr_contrasts(), dtype=np.float32), rows, cols, slices) if contrasts
             else torch.zeros((len(slices), 0, len(rows), len(cols)))),
        phi=torch.full((len(slices),), phi_index, dtype=torch.int64),
    )


def paper_guide_protocols() -> dict[str, GuideProtocol]:
    """The paper's guides in the channel order :data:`GUIDE_ORDER`: {"T1w": IR-SPGR, "T2w": SE-alpha}."""
    return {name: PRESETS[name] for name in GUIDE_ORDER}


@dataclass
class TrainingData:
    """Everything training reads from a dataset: prepared slices, the map scales and the acquisition.

    ``keep`` and ``sigma`` set Φ (eq. 3); ``guide_protocols`` names the guide channels of the
    slices, in order, with the protocol each guide is synthesised with in L_h (times in ms, flip
    angles in degrees); ``qmri_protocol`` gives the TR/TE of the contrasts ``c_l``. With
    degradation randomisation, ``sample_phis`` holds the distinct Φ of the subjects (a slice's
    ``phi`` indexes into it) and ``degradation`` the settings they were drawn with; None: every
    slice was acquired with :attr:`phi`.
    """

    train: SliceSet
    val: SliceSet
    q_scale: list[float]
    grid: tuple[int, int]
    keep: float
    sigma: float
    guide_protocols: dict[str, GuideProtocol] = field(default_factory=paper_guide_protocols)
    qmri_protocol: QMRIProtocol = QMRIProtocol()
    sample_phis: tuple[KSpaceTruncation, ...] | None = None
    degradation: DegradationSettings | None = None

    @property
    def phi(self) -> KSpaceTruncation:
        """Φ of eq. 3 that made the data (the dataset's ``keep`` and ``sigma``), on the full grid."""
        return KSpaceTruncation(self.keep, self.sigma)


def _setting(settings: Any, name: str) -> Any:
    """A dataset setting by name, from a mapping or an object with attributes."""
    return settings[name] if isinstance(settings, Mapping) else getattr(settings, name)


def prepare_data(
    dataset: Any, profile: Profile, margin: int, progress: bool = True
) -> TrainingData:
    """Load the training and validation subjects of ``dataset`` into :class:`SliceSet` s.

    Parameters
    ----------
    dataset
        Provides ``subject_ids(split)``, ``acquired(subject_id)`` (with the subject's own ``phi``
        where it has one) and ``settings`` (``keep``, ``sigma``, optionally ``degradation``), as
        :func:`swig_lib.experiments.subjects.dataset.load_dataset` returns; and
        optionally ``guide_protocols`` (guide name → :class:`~swig_lib.core.sequences.GuideProtocol`,
        in channel order; default :func:`paper_guide_protocols`) and ``qmri_protocol`` (default
        the paper's), as :class:`swig_lib.experiments.owndata.folder.OwnDataset` does.
    profile : Profile
        The profile; reads ``train.min_brain_fraction``, ``train.slice_stride``,
        ``train.dc_dilation``.
    margin : int
        Voxels around the brain in the crop window (the model's receptive radius).
    progress : bool
        Show a progress bar.
    """
    cfg = profile.train
    guide_protocols = dict(getattr(dataset, "guide_protocols", None) or paper_guide_protocols())
    acquired = {
        split: [
            dataset.acquired(sid)
            for sid in tqdm(dataset.subject_ids(split), desc=f"load {split}", disable=not progress)
        ]
        for split in ("train", "val")
    }
    masks = [np.asarray(a.mask, dtype=bool) for split in acquired.values() for a in split]
    size = window_size(masks, margin)
    if cfg.dc_dilation > margin:
        raise ValueError("train.dc_dilation must not exceed the crop margin (the receptive radius)")
    phi = KSpaceTruncation(float(_setting(dataset.settings, "keep")), float(_setting(dataset.settings, "sigma")))
    own = [getattr(a, "phi", None) or phi for split in acquired.values() for a in split]
    sample_phis = tuple(dict.fromkeys(own))  # distinct, in subject order
    sets = {}
    for split, subjects in acquired.items():
        sets[split] = SliceSet.concatenate(
            [
                prepare_subject(
                    a,
                    size,
                    select_slices(
                        np.asarray(a.mask, bool), cfg.min_brain_fraction, cfg.slice_stride
                    ),
                    cfg.dc_dilation,
                    tuple(guide_protocols),
                    sample_phis.index(getattr(a, "phi", None) or phi),
                )
                for a in subjects
            ]
        )
    q_scale = masked_channel_means(
        [torch.as_tensor(np.asarray(a.q_l)) for a in acquired["train"]],
        [torch.as_tensor(np.asarray(a.mask, bool)) for a in acquired["train"]],
    )
    return TrainingData(
        train=sets["train"],
        val=sets["val"],
        q_scale=q_scale.tolist(),
        grid=masks[0].shape[:2],
        keep=phi.keep,
        sigma=phi.sigma,
        guide_protocols=guide_protocols,
        qmri_protocol=getattr(dataset, "qmri_protocol", QMRIProtocol()),
        sample_phis=None if sample_phis == (phi,) else sample_phis,
        degradation=_degradation(dataset.settings),
    )


def _degradation(settings: Any) -> DegradationSettings | None:
    """The degradation randomisation a dataset was built with (its ``degradation`` setting), or None."""
    record = settings.get("degradation") if isinstance(settings, Mapping) else getattr(settings, "degradation", None)
    if record is None:
        return None
    found = record if isinstance(record, DegradationSettings) else DegradationSettings.from_dict(record)
    return found if found.enabled else None
