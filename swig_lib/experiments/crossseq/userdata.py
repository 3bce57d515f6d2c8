"""Cross-sequence evaluation of users' own registered NIfTI data (no Q_h): SR, then Table II.

:func:`evaluate_user_data` loads one or more map sets and the acquired T1w/T2w (and optionally a
T2-FLAIR), applies a SWIG checkpoint and scores the images synthesised from the input maps and
from the SR output against the acquired ones (:mod:`swig_lib.experiments.crossseq.scoring`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from swig_lib.core.io import (
    DataValidationError,
    PathLike,
    _volume,
    check_finite,
    check_same_grid,
    load_guides,
    load_nifti,
    load_qmri_maps,
)
from swig_lib.core.protocols import FlairProtocol
from swig_lib.experiments.crossseq.acquisition import WeightedProtocol, image_protocols
from swig_lib.experiments.crossseq.example import Example, example_slice
from swig_lib.experiments.crossseq.scoring import synthesis_scores, synthesized_images
from swig_lib.experiments.crossseq.tables import format_table2, table2
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.training.windows import select_slices


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
        As :class:`swig_lib.experiments.crossseq.settings.CrossSequenceSettings`.
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
    example = example_slice("user", int(slices[len(slices) // 2]), brain, sets, acquired, images, None)
    return UserResults(pd.DataFrame(rows), example, Path(model_path).stem)


def user_data_report(
    user_data: Mapping[str, object] | None,
    default_model: PathLike,
    contrasts: tuple[str, ...],
    intensity_match: str = "affine",
    device: str | torch.device = "cpu",
) -> tuple[pd.DataFrame, Example] | None:
    """The Table II analogue and the display slice for a chapter's ``user_data`` parameter.

    Parameters
    ----------
    user_data : mapping or None
        Keyword arguments of :func:`evaluate_user_data`, plus an optional ``"model"`` (a checkpoint
        path); None when the reader gave no data.
    default_model : path
        Checkpoint used when ``user_data`` names none (the chapter's SR model).
    contrasts : tuple of str
        Contrasts of the table.
    intensity_match : str
        As for :func:`evaluate_user_data`.
    device : str or torch.device
        Device of the network.

    Returns
    -------
    tuple of (pandas.DataFrame, Example) or None
        :func:`~swig_lib.experiments.crossseq.tables.format_table2` of the user's scores (without
        the paper's columns) and the display slice; None without user data.
    """
    if user_data is None:
        return None
    inputs = {key: value for key, value in user_data.items() if key != "model"}
    user = evaluate_user_data(user_data.get("model", default_model), **inputs,
                              intensity_match=intensity_match, device=device)
    return format_table2(table2(user.synthesis), contrasts, paper=False), user.example
