"""Cross-anatomy evaluation: models trained on one anatomy source, scored on the test subjects of another.

The digital subjects come from two anatomy sources (``anatomy_source``: deformations of the MNI152
average, or of five real brains' label maps, :mod:`swig_lib.experiments.subjects.synthsr`).
:func:`cross_anatomy` applies every given model (e.g. trained on MNI152-derived subjects, on
label-derived ones, and on a mix) to the test subjects of every given dataset and scores it, with
the baseline Q_l, by

* SSIM and HFEN per map (PD, T1, T2), in the brain and in the interior regions, exactly as
  ``swig evaluate`` (:func:`swig_lib.experiments.evaluation.evaluate.score_subject`);
* the edge overshoot at tissue/CSF boundaries (:func:`edge_overshoot`), where super-resolved maps
  of real anatomy show dark/bright bands beside the ventricles and sulci.

Edge overshoot
--------------
On each evaluated axial slice, with the dataset's tissue labels
(:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`), CSF is the brain voxels labelled CSF
or CSF partial volume (at least 10 % CSF) and tissue the other brain voxels (GM, WM, GM/WM partial
volume). The boundary band B is the tissue voxels within ``band`` voxels (in-plane Euclidean
distance) of a CSF voxel, the *tissue side* B_t, together with the CSF voxels within ``band``
voxels of a tissue voxel, the *CSF side* B_c. For a map P and its reference Q_h:

* ``edge_signed`` = Σ_B (P − Q_h) / Σ_B Q_h: the mean signed error in the band, relative to Q_h
  (dimensionless; ×100 for percent);
* ``edge_abs`` = ``Σ_B |P − Q_h| / Σ_B Q_h``: the same for the absolute error;
* ``edge_signed_tissue`` and ``edge_signed_csf``: ``edge_signed`` over B_t and over B_c alone.
  Ringing at a boundary moves the two sides in opposite directions, which the whole-band mean
  partly cancels; the sides show it.

A prediction equal to Q_h scores 0 on all four; a prediction P = Q_h·(1 + ε) on the band scores
``edge_signed`` = ``edge_abs`` = ε whatever happens outside the band. A band without voxels scores
NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from swig_lib.core.models import MAP_NAMES, SwigResNet
from swig_lib.experiments.config import EvalSettings
from swig_lib.experiments.evaluation.evaluate import score_subject
from swig_lib.experiments.evaluation.ranking import BASELINE
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.training.windows import select_slices

#: Tissue-label values (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`) counted as CSF
#: (pure CSF, CSF partial volume) and as tissue (GM, WM, GM/WM partial volume).
CSF_LABELS: tuple[int, ...] = (3, 4)
TISSUE_LABEL_VALUES: tuple[int, ...] = (1, 2, 5)
#: Columns of :attr:`CrossAnatomyResults.edges` holding the overshoot measures.
EDGE_COLUMNS: tuple[str, ...] = ("edge_signed", "edge_abs", "edge_signed_tissue", "edge_signed_csf")


def _distance_to(region: np.ndarray) -> np.ndarray:
    """In-plane Euclidean distance (voxels) of every pixel of a 2-D slice to ``region``; inf if empty."""
    if not region.any():
        return np.full(region.shape, np.inf)
    return ndimage.distance_transform_edt(~region)


def boundary_band(labels: np.ndarray, mask: np.ndarray, band: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Tissue and CSF sides of the band around the tissue/CSF boundary (module notes), slice by slice.

    Parameters
    ----------
    labels : ndarray, shape (X, Y, Z)
        Tissue labels (:data:`swig_lib.experiments.subjects.dataset.TISSUE_LABELS`).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    band : int
        Largest in-plane distance (voxels) to the other side.

    Returns
    -------
    tissue_side, csf_side : ndarray of bool, shape (X, Y, Z)
        B_t and B_c.
    """
    if band < 1:
        raise ValueError(f"band must be at least 1 voxel, got {band}")
    mask = np.asarray(mask, dtype=bool)
    csf = np.isin(labels, CSF_LABELS) & mask
    tissue = np.isin(labels, TISSUE_LABEL_VALUES) & mask
    tissue_side, csf_side = np.zeros_like(mask), np.zeros_like(mask)
    for z in range(mask.shape[2]):
        tissue_side[..., z] = tissue[..., z] & (_distance_to(csf[..., z]) <= band)
        csf_side[..., z] = csf[..., z] & (_distance_to(tissue[..., z]) <= band)
    return tissue_side, csf_side


def edge_overshoot(pred: np.ndarray, q_h: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                   slices: np.ndarray | None = None, band: int = 2) -> dict[str, float]:
    """Edge overshoot of one map at tissue/CSF boundaries (module notes, "Edge overshoot").

    Parameters
    ----------
    pred, q_h : ndarray, shape (X, Y, Z)
        Predicted and reference map (any one of PD a.u., T1 ms, T2 ms; the measures are relative).
    labels : ndarray, shape (X, Y, Z)
        Tissue labels of the reference.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    slices : ndarray of int, optional
        Axial slices to evaluate (default all).
    band : int
        Band half-width, voxels.

    Returns
    -------
    dict of str to float
        :data:`EDGE_COLUMNS`: ``edge_signed``, ``edge_abs``, ``edge_signed_tissue``,
        ``edge_signed_csf`` (dimensionless; NaN for an empty band).
    """
    pred, q_h = np.asarray(pred, dtype=np.float64), np.asarray(q_h, dtype=np.float64)
    if not pred.shape == q_h.shape == np.shape(labels) == np.shape(mask):
        raise ValueError(f"shape mismatch: pred {pred.shape}, q_h {q_h.shape}, labels {np.shape(labels)}, "
                         f"mask {np.shape(mask)}")
    chosen = np.arange(pred.shape[2]) if slices is None else np.asarray(slices, dtype=int)
    tissue_side, csf_side = boundary_band(np.asarray(labels)[..., chosen], np.asarray(mask)[..., chosen], band)
    error, reference = pred[..., chosen] - q_h[..., chosen], q_h[..., chosen]

    def ratio(numerator: np.ndarray, region: np.ndarray) -> float:
        total = reference[region].sum()
        return float(numerator[region].sum() / total) if region.any() and total > 0 else float("nan")

    whole = tissue_side | csf_side
    return {"edge_signed": ratio(error, whole), "edge_abs": ratio(np.abs(error), whole),
            "edge_signed_tissue": ratio(error, tissue_side), "edge_signed_csf": ratio(error, csf_side)}


@dataclass(frozen=True)
class CrossAnatomyResults:
    """What :func:`cross_anatomy` measured.

    Attributes
    ----------
    metrics : pandas.DataFrame
        One row per model, test dataset, subject, map and region: columns model, test, subject,
        map, region, ssim, hfen (the rows of ``swig evaluate``'s per-subject table, plus test).
    edges : pandas.DataFrame
        One row per model, test dataset, subject and map: columns model, test, subject, map and
        :data:`EDGE_COLUMNS`.
    """

    metrics: pd.DataFrame
    edges: pd.DataFrame

    def summary(self, region: str = "brain") -> pd.DataFrame:
        """Means over the test subjects per model, test dataset and map: SSIM, HFEN (``region``), edges."""
        keys = ["model", "test", "map"]
        scores = self.metrics[self.metrics["region"] == region].groupby(keys, sort=False)[["ssim", "hfen"]].mean()
        edges = self.edges.groupby(keys, sort=False)[list(EDGE_COLUMNS)].mean()
        return scores.join(edges).reset_index()


def cross_anatomy(
    datasets: Mapping[str, Any],
    models: Mapping[str, str | Path | SwigResNet],
    settings: EvalSettings,
    band: int = 2,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> CrossAnatomyResults:
    """Score every model and Q_l on the test subjects of every dataset.

    Parameters
    ----------
    datasets : mapping of str to Dataset
        Test datasets by name (e.g. ``{"mni152": ..., "synthsr": ...}``): objects with
        ``subject_ids``, ``acquired``, ``reference`` and ``labels`` as
        :class:`swig_lib.experiments.subjects.dataset.Dataset`.
    models : mapping of str to path or SwigResNet
        Trained models by name (e.g. ``{"trained on mni152": "results/.../M12++.pt", ...}``):
        checkpoint files (:func:`swig_lib.experiments.inference.load_model`) or loaded models.
        The name :data:`~swig_lib.experiments.evaluation.ranking.BASELINE` is reserved for Q_l.
    settings : EvalSettings
        ``slice_stride``, ``min_brain_fraction`` (test slices), ``interior_voxels``, ``batch_size``.
    band : int
        Half-width of the boundary band of :func:`edge_overshoot`, voxels.
    device : str or torch.device
        Where the models run.
    progress : bool
        Progress bar over the subjects.

    Returns
    -------
    CrossAnatomyResults
    """
    if BASELINE in models:
        raise ValueError(f"the model name {BASELINE!r} is reserved for the baseline")
    loaded = {name: m if isinstance(m, SwigResNet) else load_model(m, device) for name, m in models.items()}
    metrics, edges = [], []
    work = [(test, ds, sid) for test, ds in datasets.items() for sid in ds.subject_ids("test")]
    for test, ds, sid in tqdm(work, desc="cross-anatomy", disable=not progress):
        acq = ds.acquired(sid)
        mask = np.asarray(acq.mask, dtype=bool)
        slices = select_slices(mask, settings.min_brain_fraction, settings.slice_stride)
        predictions = {BASELINE: np.asarray(acq.q_l, dtype=np.float32)}
        for name, model in loaded.items():
            predictions[name] = predict_volume(model, acq.q_l, acq.guides, mask, settings.batch_size, slices=slices)
        q_h, labels = np.asarray(ds.reference(sid)), np.asarray(ds.labels(sid))
        metrics += [{"test": test, **row}
                    for row in score_subject(predictions, q_h, mask, sid, slices, settings.interior_voxels)]
        for model, pred in predictions.items():
            for i, name in enumerate(MAP_NAMES):
                edges.append({"model": model, "test": test, "subject": sid, "map": name,
                              **edge_overshoot(pred[i], q_h[i], labels, mask, slices, band)})
    columns = ["model", "test", "subject", "map", "region", "ssim", "hfen"]
    return CrossAnatomyResults(pd.DataFrame(metrics)[columns], pd.DataFrame(edges))
