"""Sulcal CSF: where it is, the zoom window on it (Fig. 4c) and the T2-FLAIR error there.

The paper saw CSF partial volumes in narrow sulci escape the FLAIR's fluid suppression. Sulcal
CSF is taken from the tissue labels: CSF and CSF partial-volume voxels within
:data:`SULCAL_DEPTH_MM` of the brain surface (:func:`sulcal_csf`); :func:`zoom_window` finds the
window of a slice that holds the most of it, and :func:`sulcal_flair_errors` measures how much
brighter or darker than the truth the synthesised FLAIR is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from swig_lib.experiments.crossseq.settings import REFERENCE
from swig_lib.experiments.subjects.dataset import TISSUE_LABELS

#: Side of the square zoom window on sulcal CSF (voxels) and the depth (mm) that separates
#: sulcal CSF (near the brain surface) from the ventricles.
ZOOM_SIZE, SULCAL_DEPTH_MM = 40, 12.0


def sulcal_flair_errors(
    images: Mapping[tuple[str, str, str], np.ndarray],
    sulci: np.ndarray,
    mask: np.ndarray,
    slices: np.ndarray,
) -> list[dict[str, Any]]:
    """Signed T2-FLAIR error in sulcal CSF: how much brighter than the truth the sulci come out.

    For every map set, the mean over the sulcal CSF voxels of the evaluated slices of the FLAIR
    synthesised from it minus the FLAIR synthesised from Q_h (both intensity-matched to the
    acquired FLAIR), in percent of the mean ``|FLAIR from Q_h|`` over the brain. Positive values
    are hyperintense sulci: CSF partial volumes that the inversion does not null.

    Parameters
    ----------
    images : mapping of (protocol, source, contrast) to ndarray (X, Y, Z)
        From :func:`swig_lib.experiments.crossseq.scoring.synthesized_images`, including
        ``(REFERENCE, REFERENCE, "FLAIR")``.
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

    Voxels whose label is CSF or CSF partial volume
    (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`) and whose in-plane distance to
    the outside of the brain mask is at most :data:`SULCAL_DEPTH_MM` (the ventricles lie deeper).

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
    """Find the size × size in-plane window holding the most sulcal CSF of a 2-D slice.

    Parameters
    ----------
    labels : ndarray, shape (X, Y)
        Tissue labels (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`).
    mask : ndarray of bool, shape (X, Y)
        Brain mask.
    size : int
        Side of the window, voxels (at most the slice's smaller side).

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
