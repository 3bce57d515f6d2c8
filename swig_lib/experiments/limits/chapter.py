"""The limits chapter (notebook 09): lesions the training never saw, and guides that do not match the model.

:func:`run_limits` runs, on the first ``limits.n_subjects`` test subjects and on each on the
``limits.slices_per_subject`` stored slices with the most white matter:

1. **Lesions** (:mod:`.lesions`): a tumour and one MS-like lesion per radius, at seeded positions,
   acquired through the dataset's pipeline, in four cases (:data:`CASES`): no lesion; lesions in
   the maps and the guides; in the maps only (the guides of the lesion-free subject, as if
   acquired before the lesion appeared); in the guides only (the maps of the lesion-free subject).
   Per lesion part (an MS lesion; the tumour's core and oedema), map and method (:data:`METHODS`):
   the contrast to the surrounding tissue, the lesion's true contrast (in the lesioned Q_h) and
   the relative bias inside the part against the case's reference maps.
2. **Mismatched guides** (:mod:`.mismatch`): every kind of :data:`KINDS` at every size of the
   profile, and one guide missing (:data:`MISSING_WAYS`); SSIM and HFEN of every map against Q_h
   (:func:`swig_lib.core.metrics.map_metrics`), for every method next to Q_l.

   The methods (:data:`METHODS`): SWIG; the guided-filter arm (:mod:`swig_lib.experiments.arms.guided`,
   tuned on the validation subjects as in the comparison chapter); the supervised upper bound
   (:mod:`swig_lib.experiments.arms.supervised`: Q_l and both guides in, trained with HR labels) and the
   Q2MRI-like estimator (:mod:`swig_lib.experiments.arms.q2mri`: the guides alone in), both read from the
   checkpoints notebook 08 trains (:data:`ARM_CHECKPOINTS`). PnP and the scan-specific INR are left
   out: each slice is an optimisation of its own (seconds per slice in the comparison chapter's timing
   table, against hundredths for the networks), and this chapter runs every method once per lesion
   case, mismatch and missing guide of every subject.
3. **Summaries**: the curves of metric change against mismatch size (:func:`mismatch_curves`), the
   largest size that keeps ``limits.keep_gain`` of SR's gain over Q_l (:func:`guidance_table`),
   the lesion contrast kept, invented and biased (:func:`lesion_summary`), and the numbers the
   chapter's prose quotes (``glue``).

Written to ``<results_dir>/<profile>/limits/``: ``lesions.csv``, ``mismatch.csv``,
``missing.csv``, ``curves.csv``, ``guidance.csv``, ``lesion_summary.csv`` and ``run.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from swig_lib.core.io import MissingFileError, PathLike, atomic_write_bytes
from swig_lib.core.metrics import map_metrics
from swig_lib.core.models import MAP_NAMES, zscore_guide
from swig_lib.experiments.arms.guided import FilterParams, filter_maps, tune_filter
from swig_lib.experiments.evaluation.evaluate import write_csv
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.limits.lesions import (
    Lesion,
    acquire_lesioned,
    lesion_regions,
    place_lesions,
    relative_bias,
    relative_contrast,
)
from swig_lib.experiments.limits.mismatch import (
    PROTOCOL_PARAMETERS,
    FastSpinEcho,
    bias_field_guides,
    fse_guide,
    misregister,
    noisy_guides,
    protocol_guides,
    stand_in_guide,
)
from swig_lib.experiments.limits.settings import LimitsSettings
from swig_lib.experiments.results import Glue
from swig_lib.experiments.subjects.dataset import load_dataset
from swig_lib.experiments.training.checkpoints import checkpoint_paths
from swig_lib.experiments.training.variants import GUIDE_ORDER
from swig_lib.experiments.training.windows import select_slices
from swig_lib.provenance import package_fingerprint

#: The methods compared: the input, SWIG (the selected model) and the comparison arms that are cheap at inference.
METHODS: tuple[str, ...] = ("Q_l", "SWIG", "guided filter", "supervised", "Q2MRI-like")
#: The trained comparison arms: their checkpoint in ``<results_dir>/<profile>/checkpoints/`` (notebook 08 writes them).
ARM_CHECKPOINTS: dict[str, str] = {"supervised": "arm-supervised.pt", "Q2MRI-like": "arm-q2mri.pt"}
#: Lesion cases: where the lesions are (maps = Q_l and its reference, guides = the HR guides).
CASES: tuple[str, ...] = ("none", "both", "maps only", "guides only")
#: Kinds of guide mismatch and the label of their size axis.
KINDS: dict[str, str] = {
    "bias": "bias field strength (sd of log B)", "TI": "T1w inversion time error [%]",
    "flip": "T1w flip angle error [%]", "TE": "T2w echo time error [%]",
    "FSE": "T2w echo-train length (0: eq. 17)", "shift": "shift [mm]", "rotation": "rotation [°]",
    "noise": "noise [fraction of mean signal]",
}
#: One guide missing: each way of coping, the method with both guides it is compared with, its glue key.
MISSING_WAYS: dict[str, tuple[str, str]] = {
    "SWIG, stand-in guide from Q_l": ("SWIG", "standin"),
    "guided filter, remaining guide": ("guided filter", "gf"),
    "SWIG trained without it": ("SWIG", "single"),
    "supervised, stand-in guide from Q_l": ("supervised", "supervised"),
    "Q2MRI-like, stand-in guide from Q_l": ("Q2MRI-like", "q2mri"),
}
#: Random streams of a subject (``SeedSequence([limits.seed, stream, subject index])``).
LESION_STREAM, BIAS_STREAM, NOISE_STREAM = 0, 1, 2
#: The variant trained without a guide, by the guide it lacks (used when that guide is missing).
SINGLE_GUIDE: dict[str, str] = {"T1w": "M2++", "T2w": "M1++"}
#: Edge of the square crops around a lesion kept for the figures, voxels.
CROP = 48
#: A gain over Q_l counts for the guidance when it closes this fraction of Q_l's distance to a perfect score.
MIN_GAIN = 0.1
#: Metric columns and whether higher is better.
METRIC_SIGN: dict[str, float] = {"ssim": 1.0, "hfen": -1.0}

#: A method: (Q_l, guides, mask) on a sub-volume → (3, X, Y, n) maps.
Method = Callable[[np.ndarray, Mapping[str, np.ndarray], np.ndarray], np.ndarray]


@dataclass
class LimitsSubject:
    """One test subject on its chosen slices.

    Attributes
    ----------
    sid : str
        Subject id.
    index : int
        Position in the test split (selects its random streams).
    q_h_full, mask_full, labels_full : ndarray
        Q_h (3, X, Y, Z), brain mask and tissue labels (X, Y, Z) of the whole stored slab.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    noise_seed : int
        The k-space noise seed of its acquisition.
    slices : ndarray of int
        The chosen axial slices.
    q_h, q_l : ndarray, shape (3, X, Y, n)
        Q_h and Q_l on those slices.
    guides : dict of str to ndarray
        Guides (X, Y, n) on those slices.
    mask : ndarray, shape (X, Y, n)
        Brain mask on those slices.
    """

    sid: str
    index: int
    q_h_full: np.ndarray
    mask_full: np.ndarray
    labels_full: np.ndarray
    affine: np.ndarray
    noise_seed: int
    slices: np.ndarray
    q_h: np.ndarray
    q_l: np.ndarray
    guides: dict[str, np.ndarray]
    mask: np.ndarray


def white_matter_slices(labels: np.ndarray, mask: np.ndarray, min_fraction: float, count: int) -> np.ndarray:
    """The ``count`` slices with the most pure white matter among those with enough brain, in order.

    Parameters
    ----------
    labels : ndarray of uint8, shape (X, Y, Z)
        Tissue labels (white matter: 2).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    min_fraction : float
        Slices with less brain than this fraction of the largest are never chosen.
    count : int
        How many (0: every slice with enough brain).

    Returns
    -------
    ndarray of int
    """
    qualifying = select_slices(mask, min_fraction, 1)
    if count == 0 or count >= len(qualifying):
        return qualifying
    white = (labels[..., qualifying] == 2).sum(axis=(0, 1))
    return np.sort(qualifying[np.argsort(-white, kind="stable")[:count]])


def load_subject(dataset: Any, sid: str, index: int, count: int, min_fraction: float) -> LimitsSubject:
    """Read a test subject (Q_h and labels for the evaluation) and choose its slices."""
    acq = dataset.acquired(sid)
    mask = np.asarray(acq.mask, dtype=bool)
    labels = dataset.labels(sid)
    q_h = np.asarray(dataset.reference(sid), dtype=np.float32)
    slices = white_matter_slices(labels, mask, min_fraction, count)
    return LimitsSubject(sid, index, q_h, mask, labels, np.asarray(acq.affine), int(dataset.manifest["subjects"][sid]
                       ["noise_seed"]), slices, q_h[..., slices], np.asarray(acq.q_l)[..., slices],
                       {g: np.asarray(v)[..., slices] for g, v in acq.guides.items()}, mask[..., slices])


def _slices_first(q_l: np.ndarray, guides: Mapping[str, np.ndarray], mask: np.ndarray,
                  names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, 3, X, Y) maps, (n, G, X, Y) guides z-scored over the volume's brain and (n, X, Y) mask."""
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    guide = torch.stack([zscore_guide(torch.from_numpy(np.ascontiguousarray(guides[n], dtype=np.float32)), mask_t)
                         for n in names])
    maps = torch.from_numpy(np.ascontiguousarray(q_l, dtype=np.float32))
    return maps.permute(3, 0, 1, 2), guide.permute(3, 0, 1, 2), mask_t.permute(2, 0, 1)


def guided_maps(q_l: np.ndarray, guides: Mapping[str, np.ndarray], mask: np.ndarray,
                params: Mapping[str, FilterParams]) -> np.ndarray:
    """The guided-filter arm on a volume: Q_l filtered with the guides present (of :data:`GUIDE_ORDER`).

    Parameters
    ----------
    q_l : ndarray, shape (3, X, Y, n)
        LR maps.
    guides : mapping of str to ndarray
        (X, Y, n) guides, any scale (z-scored over the brain here, as the network's inputs).
    mask : ndarray of bool, shape (X, Y, n)
        Brain mask.
    params : mapping of str to FilterParams
        The filter of each map (``"PD"``, ``"T1"``, ``"T2"``).

    Returns
    -------
    ndarray, shape (3, X, Y, n), float32
    """
    maps, guide, mask_t = _slices_first(q_l, guides, mask, [g for g in GUIDE_ORDER if g in guides])
    with torch.no_grad():
        filtered = {p: filter_maps(maps, guide, mask_t, p) for p in set(params.values())}
    out = torch.stack([filtered[params[name]][:, c] for c, name in enumerate(MAP_NAMES)], dim=1)
    return out.permute(1, 2, 3, 0).numpy().astype(np.float32)


def tune_guided(profile: Mapping[str, Any], dataset: Any) -> dict[str, FilterParams]:
    """Tune the guided filter per map on the validation subjects, with the comparison chapter's settings.

    The grid (``arms.guided_radius``, ``arms.guided_eps``), metric (``arms.tune_metric``) and
    stride (every ``arms.tune_stride``-th of the pooled validation slices with at least
    ``eval.min_brain_fraction`` of the largest brain area) are those of the profile's ``[arms]``.
    """
    arms, min_fraction = profile["arms"], float(profile["eval"]["min_brain_fraction"])
    parts: list[list[torch.Tensor]] = [[], [], [], []]
    for sid in dataset.subject_ids("val"):
        acq = dataset.acquired(sid)
        mask = np.asarray(acq.mask, dtype=bool)
        slices = select_slices(mask, min_fraction, 1)
        maps, guide, mask_t = _slices_first(np.asarray(acq.q_l), acq.guides, mask, GUIDE_ORDER)
        reference = torch.from_numpy(np.asarray(dataset.reference(sid), dtype=np.float32)).permute(3, 0, 1, 2)
        for part, tensor in zip(parts, (maps, guide, mask_t, reference)):
            part.append(tensor[torch.from_numpy(slices)])
    q_l, guide, mask_t, q_h = (torch.cat(p)[:: int(arms["tune_stride"])] for p in parts)
    grid = {"radius": arms["guided_radius"], "eps": arms["guided_eps"]}
    return tune_filter(q_l, guide, mask_t, q_h, "guided", grid, arms["tune_metric"])


def swig_method(model: torch.nn.Module, batch_size: int) -> Method:
    """A trained SWIG model as a method (:func:`swig_lib.experiments.inference.predict_volume`)."""
    def predict(q_l: np.ndarray, guides: Mapping[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        return predict_volume(model, q_l, guides, mask, batch_size)

    return predict


def arm_methods(checkpoints: Path, profile_name: str, device: str | torch.device, batch_size: int) -> dict[str, Method]:
    """The trained comparison arms of :data:`ARM_CHECKPOINTS` as methods, from their checkpoints.

    Parameters
    ----------
    checkpoints : Path
        ``<results_dir>/<profile>/checkpoints``.
    profile_name : str
        The profile (for the message).
    device : str or torch.device
        Where the networks run.
    batch_size : int
        Slices per forward pass.

    Returns
    -------
    dict of str to Method

    Raises
    ------
    swig_lib.core.io.MissingFileError
        When a checkpoint is missing; the message names the file and the chapter that writes it.
    """
    arms = {}
    for name, file in ARM_CHECKPOINTS.items():
        path = checkpoints / file
        if not path.is_file():
            raise MissingFileError(f"{path}: no checkpoint of the {name} arm; it is trained by the comparison "
                                   f"chapter: run notebook 08_comparison first (`swig reproduce --profile "
                                   f"{profile_name} --only 08`)")
        arms[name] = swig_method(load_model(path, device), batch_size)
    return arms


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The random stream ``stream`` of subject ``index``."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def _crop(image: np.ndarray, centre: Sequence[float]) -> np.ndarray:
    """A :data:`CROP` × :data:`CROP` window of an (X, Y) slice around ``centre`` (wrapping at the edges)."""
    rows = (int(round(centre[0])) - CROP // 2 + np.arange(CROP)) % image.shape[0]
    cols = (int(round(centre[1])) - CROP // 2 + np.arange(CROP)) % image.shape[1]
    return image[np.ix_(rows, cols)]


@dataclass
class LesionCrops:
    """Crops around one lesion on its centre slice, for the figures.

    Attributes
    ----------
    subject : str
        Subject id.
    lesion : Lesion
        The lesion.
    maps : dict of str to ndarray
        (3, CROP, CROP) maps by source: ``"Q_h"`` (lesioned reference), ``"Q_l"`` (lesioned),
        and ``"<method>, <case>"`` for every method and case.
    guides : dict of str to ndarray
        (CROP, CROP) guides of the lesioned subject.
    regions : dict of str to ndarray
        (CROP, CROP) masks of the lesion's parts.
    """

    subject: str
    lesion: Lesion
    maps: dict[str, np.ndarray]
    guides: dict[str, np.ndarray]
    regions: dict[str, np.ndarray]


def lesion_rows(subject: LimitsSubject, settings: LimitsSettings, keep: float, sigma: float,
                methods: Mapping[str, Method]) -> tuple[list[dict[str, Any]], list[LesionCrops]]:
    """Lesions in one subject: the four cases, every method, every lesion part and map.

    Returns
    -------
    rows : list of dict
        subject, lesion, kind, radius_mm, part, case, method, map, contrast (%), true_contrast
        (%), bias (%).
    crops : list of LesionCrops
        One per lesion.
    """
    lesions = place_lesions(subject.labels_full, subject.mask_full, subject.affine, subject.slices,
                            settings.ms_radii_mm, settings.tumour_mm, settings.ring_mm,
                            _rng(settings.seed, LESION_STREAM, subject.index))
    lesioned = acquire_lesioned(subject.q_h_full, subject.mask_full, subject.affine, lesions, keep, sigma,
                                subject.noise_seed, subject.slices)
    inputs = {"none": (subject.q_l, subject.guides), "both": (lesioned.q_l, lesioned.guides),
              "maps only": (lesioned.q_l, subject.guides), "guides only": (subject.q_l, lesioned.guides)}
    references = {"none": subject.q_h, "both": lesioned.q_h, "maps only": lesioned.q_h, "guides only": subject.q_h}
    outputs = {(case, "Q_l"): q_l for case, (q_l, _) in inputs.items()}
    for name, method in methods.items():
        for case, (q_l, guides) in inputs.items():
            outputs[(case, name)] = method(q_l, guides, subject.mask)
    rows, crops = [], []
    for lesion in lesions:
        z = int(np.flatnonzero(subject.slices == lesion.slice)[0])
        label = f"{'tumour' if lesion.kind == 'tumour' else 'MS'} {lesion.radius_mm:g} mm"
        regions = lesion_regions(lesion, lesions, subject.mask_full, subject.labels_full, subject.affine,
                                 settings.ring_mm)
        for part, (region, ring) in regions.items():
            truth = [relative_contrast(lesioned.q_h[c][..., z], region, ring) for c in range(len(MAP_NAMES))]
            for (case, method), maps in outputs.items():
                for c, name in enumerate(MAP_NAMES):
                    rows.append({
                        "subject": subject.sid, "lesion": label, "kind": lesion.kind, "radius_mm": lesion.radius_mm,
                        "part": part, "case": case, "method": method, "map": name,
                        "contrast": 100 * relative_contrast(maps[c][..., z], region, ring),
                        "true_contrast": 100 * truth[c],
                        "bias": 100 * relative_bias(maps[c][..., z], references[case][c][..., z], region),
                    })
        crop_maps = {"Q_h": lesioned.q_h[..., z], "Q_l": lesioned.q_l[..., z]} | {
            f"{method}, {case}": maps[..., z] for (case, method), maps in outputs.items() if method != "Q_l"}
        crops.append(LesionCrops(
            subject.sid, lesion,
            {key: np.stack([_crop(m, lesion.centre) for m in value]) for key, value in crop_maps.items()},
            {g: _crop(v[..., z], lesion.centre) for g, v in lesioned.guides.items()},
            {part: _crop(region, lesion.centre) for part, (region, _) in regions.items()}))
    return rows, crops


#: A mismatch of a sweep: its kind, its size and the perturbed guides.
Mismatch = tuple[str, float, dict[str, np.ndarray]]


def mismatched_guides(subject: LimitsSubject, settings: LimitsSettings) -> list[Mismatch]:
    """Every (kind, size, guides) of the sweeps for one subject, on its slices; size 0 is left out.

    Sizes are those of the profile: bias strengths, protocol errors (%), echo-train lengths,
    shifts along the first in-plane axis (mm), rotations (degrees) and noise levels.
    """
    affine, mask, guides, q_h = subject.affine, subject.mask, subject.guides, subject.q_h
    cases: list[Mismatch] = []
    for strength in settings.bias:
        rng = _rng(settings.seed, BIAS_STREAM, subject.index)
        cases.append(("bias", strength, bias_field_guides(guides, mask, affine, strength, rng)))
    for parameter in PROTOCOL_PARAMETERS:
        cases += [(parameter, pct, protocol_guides(q_h, parameter, pct)) for pct in settings.protocol_pct]
    cases += [("FSE", float(etl), guides | {"T2w": fse_guide(q_h, FastSpinEcho(etl))}) for etl in settings.fse_etl]
    cases += [("shift", mm, misregister(guides, affine, (mm, 0.0))) for mm in settings.shift_mm]
    cases += [("rotation", deg, misregister(guides, affine, rotation_deg=deg)) for deg in settings.rotation_deg]
    for level in settings.noise:
        rng = _rng(settings.seed, NOISE_STREAM, subject.index)
        cases.append(("noise", level, noisy_guides(guides, mask, level, rng)))
    return cases


def _metric_rows(maps: np.ndarray, subject: LimitsSubject, **keys: Any) -> list[dict[str, Any]]:
    """SSIM and HFEN of every map against Q_h on the subject's slices (means over slices)."""
    scores = map_metrics(maps, subject.q_h, subject.mask)
    return [keys | {"subject": subject.sid, "map": name, "ssim": s["ssim"], "hfen": s["hfen"]}
            for name, s in scores.items()]


@dataclass
class MismatchExample:
    """One slice of the first subject with SWIG's output for the largest size of every kind.

    Attributes
    ----------
    subject : str
        Subject id.
    slice : int
        Index of the slice in the stored slab.
    q_h, q_l, sr : ndarray, shape (3, X, Y)
        Reference, input and SWIG's output with the unperturbed guides.
    mask : ndarray, shape (X, Y)
        Brain mask.
    guides : dict of str to ndarray
        Unperturbed guides (X, Y).
    perturbed : dict of str to (float, dict, ndarray)
        Per kind: its largest size, the perturbed guides (X, Y) and SWIG's output (3, X, Y).
    """

    subject: str
    slice: int
    q_h: np.ndarray
    q_l: np.ndarray
    sr: np.ndarray
    mask: np.ndarray
    guides: dict[str, np.ndarray]
    perturbed: dict[str, tuple[float, dict[str, np.ndarray], np.ndarray]]


def mismatch_rows(subject: LimitsSubject, settings: LimitsSettings, methods: Mapping[str, Method],
                  singles: Mapping[str, Method]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], MismatchExample]:
    """The sweeps on one subject: metrics of Q_l, and of every method for every mismatch.

    Parameters
    ----------
    subject : LimitsSubject
        The subject.
    settings : LimitsSettings
        The sweeps.
    methods : mapping of str to Method
        SWIG, the guided filter and any of the trained arms (:data:`ARM_CHECKPOINTS`).
    singles : mapping of str to Method
        A SWIG variant trained with one guide only, keyed by the guide it does *not* need.

    Returns
    -------
    mismatch : list of dict
        kind, size, method, subject, map, ssim, hfen; the unperturbed guides are size 0 of every
        kind, Q_l is kind ``"none"``.
    missing : list of dict
        missing (the guide), method, subject, map, ssim, hfen.
    example : MismatchExample
        The middle slice of the subject.
    """
    z = len(subject.slices) // 2
    rows = _metric_rows(subject.q_l, subject, kind="none", size=0.0, method="Q_l")
    baseline = {name: method(subject.q_l, subject.guides, subject.mask) for name, method in methods.items()}
    for name, maps in baseline.items():
        rows += [row for kind in KINDS for row in _metric_rows(maps, subject, kind=kind, size=0.0, method=name)]
    largest: dict[str, tuple[float, dict[str, np.ndarray], np.ndarray]] = {}
    for kind, size, guides in mismatched_guides(subject, settings):
        for name, method in methods.items():
            maps = method(subject.q_l, guides, subject.mask)
            rows += _metric_rows(maps, subject, kind=kind, size=size, method=name)
            if name == "SWIG" and abs(size) >= abs(largest.get(kind, (0.0,))[0]):
                largest[kind] = (size, {g: v[..., z] for g, v in guides.items()}, maps[..., z])
    missing = []
    for gone in GUIDE_ORDER:
        kept = {g: v for g, v in subject.guides.items() if g != gone}
        stand_in = kept | {gone: stand_in_guide(subject.q_l, gone)}
        ways = {"SWIG, stand-in guide from Q_l": (methods["SWIG"], stand_in),
                "guided filter, remaining guide": (methods["guided filter"], kept)}
        if gone in singles:
            ways["SWIG trained without it"] = (singles[gone], kept)
        ways |= {f"{arm}, stand-in guide from Q_l": (methods[arm], stand_in) for arm in ARM_CHECKPOINTS
                 if arm in methods}
        for way, (method, inputs) in ways.items():
            missing += _metric_rows(method(subject.q_l, inputs, subject.mask), subject, missing=gone, method=way)
    example = MismatchExample(subject.sid, int(subject.slices[z]), subject.q_h[..., z], subject.q_l[..., z],
                              baseline["SWIG"][..., z], subject.mask[..., z],
                              {g: v[..., z] for g, v in subject.guides.items()}, largest)
    return rows, missing, example


# ----------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------


def mismatch_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over subjects of SSIM and HFEN per kind, size, method and map, and their change from size 0.

    Returns
    -------
    pandas.DataFrame
        Columns kind, size, method, map, ssim, hfen, d_ssim, d_hfen (Q_l rows: kind ``"none"``).
    """
    means = table.groupby(["kind", "size", "method", "map"], sort=False)[["ssim", "hfen"]].mean().reset_index()
    zero = means[means["size"] == 0.0].set_index(["kind", "method", "map"])
    for metric in METRIC_SIGN:
        means[f"d_{metric}"] = means[metric].to_numpy() - zero[metric].reindex(
            pd.MultiIndex.from_frame(means[["kind", "method", "map"]])).to_numpy()
    return means.sort_values(["kind", "method", "map", "size"], kind="stable").reset_index(drop=True)


def retained_gain(curves: pd.DataFrame, kind: str, method: str) -> pd.Series:
    """Fraction of the method's gain over Q_l that each size of ``kind`` keeps, worst over maps and metrics.

    The gain of a map and metric is the method's mean minus Q_l's (HFEN: Q_l's minus the
    method's); cells where, without mismatch, the method does not close at least
    :data:`MIN_GAIN` of Q_l's distance to a perfect score (SSIM 1, HFEN 0) are left out: the
    ratio to a negligible gain says nothing (any change flips its sign).

    Returns
    -------
    pandas.Series
        Indexed by size (size 0 → 1.0); NaN when the method has no such gain anywhere.
    """
    ql = curves[curves["kind"] == "none"].set_index("map")
    rows = curves[(curves["kind"] == kind) & (curves["method"] == method)]
    ratios = []
    for metric, sign in METRIC_SIGN.items():
        gain = sign * (rows.pivot(index="size", columns="map", values=metric) - ql[metric])
        perfect = 1.0 if sign > 0 else 0.0
        useful = gain.loc[0.0] >= MIN_GAIN * sign * (perfect - ql[metric]).reindex(gain.columns)
        ratios.append(gain.loc[:, useful] / gain.loc[0.0, useful])
    both = pd.concat(ratios, axis=1)
    return both.min(axis=1) if both.shape[1] else pd.Series(np.nan, index=both.index)


def tolerable_size(retained: pd.Series, keep: float) -> float:
    """The largest ``|size|`` up to which every tested size keeps at least ``keep`` of the gain (0: none)."""
    tolerable = 0.0
    for magnitude in sorted(set(np.abs(retained.index)) - {0.0}):
        if (retained[np.isclose(np.abs(retained.index), magnitude)] >= keep).all():
            tolerable = magnitude
        else:
            break
    return tolerable


def guidance_table(curves: pd.DataFrame, keep: float, kinds: Sequence[str] = tuple(KINDS)) -> pd.DataFrame:
    """Per kind and method: the tolerable size, the smallest and largest tested size and the gain kept there.

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`mismatch_curves`.
    keep : float
        Fraction of the gain to keep (:func:`tolerable_size`).
    kinds : sequence of str
        Kinds of mismatch, in table order (default :data:`KINDS`).

    Returns
    -------
    pandas.DataFrame
        Indexed by (kind, method): ``tolerable`` (0 when even the smallest size loses more than
        ``1 − keep`` of the gain), ``smallest``, ``largest`` (``|size|``) and ``retained_at_largest``
        (worst over the signs of a protocol error).
    """
    records = []
    present = set(curves["method"])
    for kind in kinds:
        for method in (m for m in METHODS[1:] if m in present):
            retained = retained_gain(curves, kind, method)
            magnitudes = np.abs(retained.index.to_numpy())
            top = magnitudes.max()
            records.append({"kind": kind, "method": method, "tolerable": tolerable_size(retained, keep),
                            "smallest": magnitudes[magnitudes > 0].min(), "largest": top,
                            "retained_at_largest": float(retained[np.isclose(magnitudes, top)].min())})
    return pd.DataFrame(records).set_index(["kind", "method"])


def lesion_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per lesion (over subjects), part, method and map: contrast kept, contrast invented, bias.

    Returns
    -------
    pandas.DataFrame
        Indexed by (lesion, part, method, map), columns: ``true`` (the lesion's contrast in Q_h, %),
        ``kept_both`` and ``kept_maps_only`` (the contrast shown as a fraction of the true one, %),
        ``invented`` (guides only: the contrast minus that without lesions, as a fraction of the
        true one, %), ``bias_both`` and ``bias_maps_only`` (%).
    """
    keys = ["lesion", "part", "method", "map"]
    means = table.groupby([*keys, "case"], sort=False)[["contrast", "true_contrast", "bias"]].mean()
    wide = means.unstack("case")
    true = wide[("true_contrast", "both")]
    summary = pd.DataFrame({
        "true": true,
        "kept_both": 100 * wide[("contrast", "both")] / true,
        "kept_maps_only": 100 * wide[("contrast", "maps only")] / true,
        "invented": 100 * (wide[("contrast", "guides only")] - wide[("contrast", "none")]) / true,
        "bias_both": wide[("bias", "both")],
        "bias_maps_only": wide[("bias", "maps only")],
    })
    return summary.reindex(table[keys].drop_duplicates().itertuples(index=False, name=None))


# ----------------------------------------------------------------------------------------------
# The chapter
# ----------------------------------------------------------------------------------------------


@dataclass
class LimitsResults:
    """Everything :func:`run_limits` produces.

    Attributes
    ----------
    lesions : pandas.DataFrame
        Per subject, lesion part, case, method and map (:func:`lesion_rows`).
    lesion_summary : pandas.DataFrame
        :func:`lesion_summary`.
    mismatch : pandas.DataFrame
        Per subject, kind, size, method and map: SSIM and HFEN (:func:`mismatch_rows`).
    curves : pandas.DataFrame
        :func:`mismatch_curves`.
    guidance : pandas.DataFrame
        :func:`guidance_table`.
    missing : pandas.DataFrame
        One guide missing (:func:`missing_summary`).
    crops : list of LesionCrops
        Every lesion of every subject.
    example : MismatchExample
        A slice with SWIG's output at the largest size of every kind.
    info : dict
        Variant, subjects, slices, filter parameters, settings, seconds (``run.json``).
    glue : dict of str to (value, format)
        The numbers the chapter's prose quotes.
    """

    lesions: pd.DataFrame
    lesion_summary: pd.DataFrame
    mismatch: pd.DataFrame
    curves: pd.DataFrame
    guidance: pd.DataFrame
    missing: pd.DataFrame
    crops: list[LesionCrops]
    example: MismatchExample
    info: dict[str, Any]
    glue: Glue


def missing_summary(missing: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Mean over subjects per missing guide, way of coping and map, and the change from both guides.

    Parameters
    ----------
    missing : pandas.DataFrame
        The ``missing`` rows of :func:`mismatch_rows` (missing, method, subject, map, ssim, hfen).
    curves : pandas.DataFrame
        :func:`mismatch_curves`: its size-0 rows are each method with both guides.

    Returns
    -------
    pandas.DataFrame
        Indexed by (missing, method, map): ssim, hfen and their change ``d_ssim``, ``d_hfen`` from
        the method of :data:`MISSING_WAYS` with both guides.
    """
    means = missing.groupby(["missing", "method", "map"], sort=False)[["ssim", "hfen"]].mean()
    both = curves[(curves["size"] == 0.0) & (curves["kind"] != "none")].groupby(["method", "map"])[
        ["ssim", "hfen"]].first()
    reference = [(MISSING_WAYS[way][0], name) for way, name in zip(means.index.get_level_values("method"),
                                                                     means.index.get_level_values("map"))]
    for metric in METRIC_SIGN:
        means[f"d_{metric}"] = means[metric].to_numpy() - both[metric].reindex(reference).to_numpy()
    return means


def format_size(kind: str, size: float) -> str:
    """A mismatch size as the guidance prints it (bias and noise in percent, protocol errors as ±%)."""
    if kind in ("bias", "noise"):
        return f"{100 * size:g} %"
    if kind in PROTOCOL_PARAMETERS:
        return f"±{size:g} %"
    if kind == "FSE":
        return f"{size:g} echoes"
    return f"{size:g} mm" if kind == "shift" else f"{size:g}°"


#: How the prose names each method.
PROSE_NAMES: dict[str, str] = {"Q_l": "Q_l", "SWIG": "SWIG", "guided filter": "the guided filter",
                               "supervised": "the supervised upper bound", "Q2MRI-like": "the Q2MRI-like estimator"}

#: What each kind of mismatch of a given ``{size}`` is, and what a user does about it (:func:`advice`).
ADVICE: dict[str, tuple[str, str]] = {
    "bias": ("a receive bias field varying the guides' intensity by about ±{size}",
             "correct the guides' bias field (e.g. with N4) to within ±{size}"),
    "TI": ("a T1w inversion time off by {size}", "match the T1w's TI to the training protocol within {size}"),
    "flip": ("a T1w flip angle off by {size}", "match the T1w's flip angle to the training protocol within {size}"),
    "TE": ("a T2w echo time off by {size}", "match the T2w's TE to the training protocol within {size}"),
    "FSE": ("a fast-spin-echo T2w with {size} per train", "keep the T2w's echo train at {size} or fewer"),
    "shift": ("guides shifted by {size}", "register the guides to the maps within {size}"),
    "rotation": ("guides rotated by {size}", "register the guides to the maps within {size}"),
    "noise": ("guide noise of {size} of the mean signal", "keep the guides' noise below {size} of their mean signal"),
}


def percent_kept(fraction: float) -> str:
    """A fraction of the gain kept, in percent; below −100 % (a loss of more than twice the gain) as "< −100 %"."""
    return "< −100 %" if fraction < -1 else f"{100 * fraction:.0f} %".replace("-", "−")


def _kept(method: str, fraction: float) -> str:
    """How much of its gain over Q_l a method keeps, in words."""
    if np.isnan(fraction):
        return f"{method} has no clear gain over Q_l to keep"
    if fraction < 0:
        return f"{method} falls below Q_l ({percent_kept(fraction)} of its gain)"
    return f"{method} keeps {percent_kept(fraction)} of its gain over Q_l"


def advice(guidance: pd.DataFrame, kind: str, keep: float) -> str:
    """One sentence of guidance for a kind of mismatch, from :func:`guidance_table`.

    Parameters
    ----------
    guidance : pandas.DataFrame
        :func:`guidance_table`.
    kind : str
        A key of :data:`KINDS`.
    keep : float
        The fraction of the gain the advice asks to keep (``limits.keep_gain``).

    Returns
    -------
    str
        What the largest tested size costs SWIG and every other method of the table, and the
        largest size that keeps ``keep`` of SWIG's gain (or that none of the tested sizes does).
    """
    what, action = ADVICE[kind]
    rows = guidance.xs(kind, level="kind")
    swig = rows.loc["SWIG"]
    text = (f"With {what.format(size=format_size(kind, swig['largest']))}, "
            + "; ".join(_kept(PROSE_NAMES[method], row["retained_at_largest"]) for method, row in rows.iterrows())
            + ". ")
    if np.isnan(swig["retained_at_largest"]):
        return text + "There is nothing to protect here."
    if swig["tolerable"] == 0:
        return text + (f"Even the smallest tested size, {format_size(kind, swig['smallest'])}, costs SWIG more than "
                       f"{100 * (1 - keep):.0f} % of its gain: stay well below it.")
    if swig["tolerable"] >= swig["largest"]:
        return text + f"Every tested size keeps at least {100 * keep:.0f} % of SWIG's gain."
    return text + (f"To keep at least {100 * keep:.0f} % of SWIG's gain, "
                   f"{action.format(size=format_size(kind, swig['tolerable']))}.")


def guidance_text(guidance: pd.DataFrame) -> pd.DataFrame:
    """The guidance table for display: per kind, the tolerable and largest size and the gain kept, per method."""
    cells = {}
    for (kind, method), row in guidance.iterrows():
        tolerable = (format_size(kind, row["tolerable"]) if row["tolerable"] > 0
                     else f"< {format_size(kind, row['smallest'])}")
        no_gain = np.isnan(row["retained_at_largest"])
        cells[(kind, method)] = {"tolerable": "no gain" if no_gain else tolerable,
                                 "largest tested": format_size(kind, row["largest"]),
                                 "gain kept there": "no gain" if no_gain else percent_kept(row["retained_at_largest"])}
    table = pd.DataFrame.from_dict(cells, orient="index")
    table.index.names = ["mismatch", "method"]
    methods = guidance.index.get_level_values("method").unique()
    return table.unstack("method").reindex(guidance.index.get_level_values("kind").unique()).reindex(
        columns=pd.MultiIndex.from_product([table.columns, methods]))


def lesion_advice(summary: pd.DataFrame) -> dict[str, str]:
    """Sentences on the lesions, for every method of ``summary``: contrast kept, erased, invented; tumour bias.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`lesion_summary`.

    Returns
    -------
    dict of str to str
        ``"both"`` (contrast kept with the lesions in maps and guides), ``"maps_only"`` (kept with
        guides that predate them), ``"guides_only"`` (invented where the maps have none),
        ``"tumour"`` (T2 bias in the core and the oedema) and the two actions these numbers call
        for: ``"act_session"`` and ``"act_invented"``.
    """
    ms = summary[summary.index.get_level_values("lesion").str.startswith("MS")]
    ms = ms[ms.index.get_level_values("map").isin(["T1", "T2"])]
    methods = [m for m in METHODS if m in set(ms.index.get_level_values("method"))]
    others = [m for m in methods if m not in ("Q_l", "SWIG")]

    def span(method: str, column: str) -> str:
        values = ms.xs(method, level="method")[column]
        return f"{round(values.min())} to {round(values.max())} %"

    def spans(column: str, names: list[str]) -> str:
        return ", ".join(f"{PROSE_NAMES[m]} {span(m, column)}" for m in names)

    def extreme(method: str, column: str, largest: bool) -> tuple[float, str, float]:
        """The extreme value of ``column`` for ``method``, where (lesion, map) and Q_l's value there."""
        values = ms.xs(method, level="method")[column]
        lesion, _, name = values.idxmax() if largest else values.idxmin()
        return (float(values.max() if largest else values.min()), f"the {lesion} lesion's {name}",
                float(ms.loc[(lesion, "lesion", "Q_l", name), column]))

    sizes = sorted({float(lesion.split()[1]) for lesion in ms.index.get_level_values("lesion")})
    radii = f"radius {sizes[0]:g} to {sizes[-1]:g} mm"
    tumour = summary[summary.index.get_level_values("lesion").str.startswith("tumour")]
    t2 = tumour.xs("T2", level="map")["bias_both"].droplevel("lesion")

    def biases(part: str) -> str:
        return ", ".join(f"{PROSE_NAMES[m]} {round(t2.loc[(part, m)].mean()):+d} %" for m in methods)

    erased, where, ql_erased = extreme("SWIG", "kept_maps_only", largest=False)
    invented, where_inv, _ = extreme("SWIG", "invented", largest=True)
    worst_other = max(others, key=lambda m: ms.xs(m, level="method")["invented"].max(), default=None)
    session = (f"with guides that predate a lesion, SWIG keeps as little as {round(erased)} % of its contrast "
               f"({where}; Q_l keeps {round(ql_erased)} % there)")
    session += (", so it erases more than its input does" if erased < ql_erased else
                ", no less than its input, Q_l, keeps")
    return {
        "both": (f"With the lesions in maps and guides, SWIG keeps {span('SWIG', 'kept_both')} of the MS lesions' "
                 f"T1 and T2 contrast ({radii}; Q_h: 100 % by definition), Q_l {span('Q_l', 'kept_both')}"
                 + (f"; {spans('kept_both', others)}" if others else "") + "."),
        "maps_only": (f"With guides that predate the lesions, SWIG keeps {span('SWIG', 'kept_maps_only')} of it "
                      f"(least: {where}), Q_l {span('Q_l', 'kept_maps_only')}"
                      + (f"; {spans('kept_maps_only', others)}" if others else "")
                      + ("; the Q2MRI-like estimator reads the guides alone, so it shows a lesion only when the "
                         "guides do" if "Q2MRI-like" in methods else "") + "."),
        "guides_only": (f"With the lesions in the guides only, where the true maps (Q_h and Q_l) show none of them, "
                        f"SWIG writes {span('SWIG', 'invented')} of the lesions' contrast into its maps (most: "
                        f"{where_inv})" + (f"; {spans('invented', others)}" if others else "") + "."),
        "tumour": (f"In the tumour's necrotic core, the T2 against the apparent (mono-exponential) T2 of a perfect "
                   f"HR scan: {biases('core')}; in the oedema: {biases('oedema')}."),
        "act_session": f"Acquire the guides in the same session as the maps: {session}.",
        "act_invented": (f"Check every lesion that SR shows against Q_l before quoting its values: SWIG writes up to "
                         f"{round(invented)} % of a lesion's contrast that only the guides show ({where_inv})"
                         + (f", {PROSE_NAMES[worst_other]} up to "
                            f"{round(ms.xs(worst_other, level='method')['invented'].max())} %" if worst_other else "")
                         + "."),
    }


def missing_advice(missing: pd.DataFrame, curves: pd.DataFrame) -> dict[str, str]:
    """Per missing guide: the ways of coping with the best SSIM and HFEN (means over the maps), against Q_l and SWIG.

    Parameters
    ----------
    missing : pandas.DataFrame
        :func:`missing_summary`.
    curves : pandas.DataFrame
        :func:`mismatch_curves` (Q_l and SWIG with both guides).

    Returns
    -------
    dict of str to str
        One sentence per missing guide (keys: the guide's name).
    """
    means = missing[list(METRIC_SIGN)].groupby(level=["missing", "method"], sort=False).mean()
    both = curves[curves["size"] == 0.0].groupby(["kind", "method"])[list(METRIC_SIGN)].mean()
    ql, swig = both.loc[("none", "Q_l")], both.xs("SWIG", level="method").iloc[0]
    sentences = {}
    for gone in means.index.get_level_values("missing").unique():
        ways = means.xs(gone, level="missing")
        best = {metric: (ways[metric] * sign).idxmax() for metric, sign in METRIC_SIGN.items()}
        parts = [f"the {'highest' if sign > 0 else 'lowest'} {metric.upper()} comes from {best[metric]} "
                 f"({ways.loc[best[metric], metric]:.3f}; Q_l {ql[metric]:.3f}, SWIG with both guides "
                 f"{swig[metric]:.3f})" for metric, sign in METRIC_SIGN.items()]
        verdict = ("use it" if best["ssim"] == best["hfen"] else
                   "the two differ, so choose by what the maps are read for: SSIM weighs contrast and structure, "
                   "HFEN fine edges")
        sentences[gone] = f"Without the {gone}, {parts[0]}, {parts[1]} (means over the maps): {verdict}."
    return sentences


def _glue(results: LimitsResults, settings: LimitsSettings) -> Glue:
    """The chapter's quoted values: the run, the advice per kind of mismatch and on lesions, missing guides."""
    glue: Glue = {"lim_variant": (results.info["variant"], None),
                  "lim_subjects": (len(results.info["subjects"]), "d"),
                  "lim_slices": (results.info["slices_per_subject"], "d"),
                  "lim_keep": (100 * settings.keep_gain, ".0f"),
                  "lim_ms_radii": (", ".join(f"{r:g}" for r in settings.ms_radii_mm) + " mm", None),
                  "lim_tumour": (f"a {settings.tumour_mm[0]:g} mm core and oedema out to {settings.tumour_mm[1]:g} mm",
                                 None)}
    for kind in KINDS:
        glue[f"lim_advice_{kind.lower()}"] = (advice(results.guidance, kind, settings.keep_gain), None)
    for key, sentence in lesion_advice(results.lesion_summary).items():
        glue[f"lim_lesions_{key}"] = (sentence, None)
    glue["lim_min_gain"] = (100 * MIN_GAIN, ".0f")
    for gone, sentence in missing_advice(results.missing, results.curves).items():
        glue[f"lim_missing_choice_{gone.lower()}"] = (sentence, None)
    for (gone, way, name), row in results.missing.iterrows():
        glue[f"lim_missing_{gone.lower()}_{MISSING_WAYS[way][1]}_{name.lower()}_dssim"] = (row["d_ssim"], "+.3f")
    return glue


def run_limits(profile: Mapping[str, Any], variant: str, data_dir: PathLike = "data",
               results_dir: PathLike = "results", device: str | torch.device = "cpu", *,
               dataset: Any = None, progress: bool = False) -> LimitsResults:
    """Lesions and mismatched guides on the test subjects, for SWIG and the comparison arms of :data:`METHODS`.

    Parameters
    ----------
    profile : mapping
        A loaded profile: reads ``limits``, ``arms`` (the guided filter's tuning), ``eval``
        (``min_brain_fraction``, ``batch_size``) and ``name``.
    variant : str
        The SWIG model (notebook 09: the ablation's selection,
        :func:`swig_lib.experiments.evaluation.selection.read_selection`); its checkpoint is
        ``<results_dir>/<profile>/checkpoints/<variant>.pt``.
    data_dir : str or PathLike
        Root of the datasets.
    results_dir : str or PathLike
        Results root; outputs go to ``<results_dir>/<profile>/limits/``.
    device : str or torch.device
        Where the networks run.
    dataset
        A loaded dataset (default: loaded from ``data_dir``).
    progress : bool
        Progress bars while loading the dataset.

    Returns
    -------
    LimitsResults

    Raises
    ------
    FileNotFoundError
        When the checkpoint of ``variant`` is missing (train it first: notebook 02 or ``swig train``),
        or that of a comparison arm (:func:`arm_methods`: notebook 08 trains them).
    """
    start = time.perf_counter()
    settings = LimitsSettings.from_profile(profile)
    out = Path(results_dir) / profile["name"]
    path = checkpoint_paths(out, variant)[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint of {variant}; train it first (notebook 02, or "
                                f"`swig train --profile {profile['name']} --variant {variant}`)")
    batch = int(profile["eval"]["batch_size"])
    arms = arm_methods(out / "checkpoints", profile["name"], device, batch)
    if dataset is None:
        dataset = load_dataset(profile, root=data_dir, progress=progress)
    params = tune_guided(profile, dataset)
    methods: dict[str, Method] = {
        "SWIG": swig_method(load_model(path, device), batch),
        "guided filter": lambda q_l, guides, mask: guided_maps(q_l, guides, mask, params),
    } | arms
    singles = {gone: swig_method(load_model(checkpoint_paths(out, single)[0], device), batch)
               for gone, single in SINGLE_GUIDE.items() if checkpoint_paths(out, single)[0].is_file()}
    test_ids = dataset.subject_ids("test")
    subjects = test_ids[: settings.n_subjects or None]
    keep, sigma = float(dataset.settings["keep"]), float(dataset.settings["sigma"])
    lesion_records, mismatch_records, missing_records, crops = [], [], [], []
    example = None
    for index, sid in enumerate(subjects):
        subject = load_subject(dataset, sid, index, settings.slices_per_subject,
                               float(profile["eval"]["min_brain_fraction"]))
        rows, subject_crops = lesion_rows(subject, settings, keep, sigma, methods)
        lesion_records += rows
        crops += subject_crops
        rows, missing, shown = mismatch_rows(subject, settings, methods, singles)
        mismatch_records += rows
        missing_records += missing
        example = shown if example is None else example
    lesions, mismatch = pd.DataFrame(lesion_records), pd.DataFrame(mismatch_records)
    curves = mismatch_curves(mismatch)
    info = {"variant": variant, "subjects": list(subjects), "slices_per_subject": settings.slices_per_subject,
            "single_guide_models": sorted(singles), "filter": {m: vars(p) for m, p in params.items()},
            "settings": settings.to_dict(), "package": package_fingerprint()}
    results = LimitsResults(
        lesions=lesions, lesion_summary=lesion_summary(lesions), mismatch=mismatch, curves=curves,
        guidance=guidance_table(curves, settings.keep_gain),
        missing=missing_summary(pd.DataFrame(missing_records), curves), crops=crops,
        example=example, info=info, glue={},  # type: ignore[arg-type]
    )
    results.glue.update(_glue(results, settings))
    info["seconds"] = round(time.perf_counter() - start, 1)
    folder = out / "limits"
    for name, frame, index in (("lesions", lesions, False), ("lesion_summary", results.lesion_summary, True),
                               ("mismatch", mismatch, False), ("missing", pd.DataFrame(missing_records), False),
                               ("curves", curves, False), ("guidance", results.guidance, True)):
        write_csv(frame, folder / f"{name}.csv", index=index)
    atomic_write_bytes(folder / "run.json", (json.dumps(info, indent=1) + "\n").encode())
    return results
