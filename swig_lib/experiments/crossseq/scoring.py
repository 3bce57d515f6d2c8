"""Scores of the cross-sequence validation: synthesised images against acquired ones, maps against Q_h.

* :func:`synthesized_images`: T1w, T2w and T2-FLAIR synthesised from every map set with the
  acquisition-matched parameters (:func:`swig_lib.experiments.crossseq.acquisition.synthesize`),
  optionally matched to the acquired image by a least-squares affine map
  (:func:`match_intensity`);
* :func:`synthesis_scores`: SSIM and HFEN of those against the acquired images (Table II), per
  axial slice inside the brain mask (:func:`swig_lib.core.metrics.slice_metrics`);
* :func:`map_scores`: SSIM and HFEN of every map set against Q_h, per map and slice;
* :func:`tissue_errors`: the mean absolute percentage error of PD, T1 and T2 in pure white and
  grey matter.

Shared by the simulated validation (:mod:`swig_lib.experiments.crossseq.pipeline`) and users' own
data (:mod:`swig_lib.experiments.crossseq.userdata`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from swig_lib.core.metrics import map_metrics, slice_metrics
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.crossseq.acquisition import WeightedProtocol, synthesize
from swig_lib.experiments.subjects.dataset import TISSUE_LABELS

#: Tissues of the percentage errors that the Acq1-versus-Acq5 verdict counts, by name: their value
#: in :data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`.
TISSUES: dict[str, int] = {name: code for code, name in sorted(TISSUE_LABELS.items(), reverse=True)
                           if name in ("WM", "GM")}
#: Tissues of the percentage errors the chapter reports: :data:`TISSUES` and pure CSF, whose long
#: T1 and T2 the radial sequence encodes worst (see :mod:`swig_lib.experiments.crossseq.csf`).
REPORTED_TISSUES: dict[str, int] = {**TISSUES, "CSF": next(c for c, n in TISSUE_LABELS.items() if n == "CSF")}


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
        See :class:`swig_lib.experiments.crossseq.settings.CrossSequenceSettings`.

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
    """One table row per scored slice: ``keys`` plus slice, ssim and hfen.

    ``scores`` is the output of :func:`swig_lib.core.metrics.slice_metrics` for one image.
    """
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
    maps: Mapping[tuple[str, str], np.ndarray], q_h: np.ndarray, labels: np.ndarray, slices: np.ndarray,
    tissues: Mapping[str, int] = TISSUES,
) -> list[dict[str, Any]]:
    """Mean absolute percentage error ``100·mean(|Q − Q_h|/Q_h)`` per map in pure tissues (default WM and GM).

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
    tissues : mapping of str to int
        Tissue names and their label values (default :data:`TISSUES`).

    Returns
    -------
    list of dict
        Rows: protocol, source, tissue, map, mape (%), n_voxels.
    """
    rows = []
    for tissue, label in tissues.items():
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
