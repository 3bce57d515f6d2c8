"""Inference: super-resolve whole volumes slice by slice, and apply a model to a user's NIfTI files.

:func:`apply_files` (the ``swig apply`` command) validates the inputs (:mod:`swig_lib.core.io`),
runs the model, checks that its output is physically plausible and writes one *set* of files to
the output folder: ``PDmap.nii.gz``, ``T1map.nii.gz``, ``T2map.nii.gz`` (with the PD input's
affine, orientation and header codes) and the sidecar ``swig_apply.json`` (provenance: checksums of
the model and of every input, the settings, the versions, the outputs' checksums). The set is
written all or nothing: into hidden temporary files first, renamed into place only when all are
complete. An existing file is never replaced unless ``overwrite`` is given, and an output folder
that holds any of the inputs is refused.

A volume is processed as axial slices (last NIfTI axis) cropped to the brain's in-plane extent
plus the network's receptive radius, in batches; with that margin the result on every brain voxel
equals the result on the whole slice (see :mod:`swig_lib.experiments.training`). Slices without brain voxels
and every voxel outside the mask are 0.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from tqdm.auto import tqdm

from swig_lib import __version__
from swig_lib.core.io import (
    DataValidationError,
    OutputExistsError,
    UserError,
    atomic_paths,
    check_plausible,
    load_qmri_maps,
    new_folder,
    nifti_image,
    sha256,
    writable_folder_problem,
)
from swig_lib.core.models import MAP_NAMES, SwigResNet, zscore_guide
from swig_lib.experiments.owndata.adapt import AdaptSettings, Recipe, adapt, subject_data
from swig_lib.experiments.owndata.folder import load_contrasts, load_named_guides, synthesised_contrasts
from swig_lib.experiments.owndata.protocols import DEFAULT_TOLERANCE, ProtocolTolerance, check_guides
from swig_lib.experiments.subjects.dataset import Acquired
from swig_lib.experiments.training.checkpoints import (
    Acquisition,
    load_checkpoint,
    model_from_checkpoint,
)
from swig_lib.experiments.training.windows import brain_extent, window_indices


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SwigResNet:
    """Load a trained model (``checkpoints/<variant>.pt``) in eval mode.

    Raises
    ------
    swig_lib.core.io.MissingFileError, swig_lib.experiments.training.checkpoints.CheckpointError
        For a missing or unusable file (the message names it and the fix).
    """
    return model_from_checkpoint(load_checkpoint(path), device, source=path)


@torch.no_grad()
def predict_volume(
    model: SwigResNet,
    q_l: np.ndarray | None,
    guides: Mapping[str, np.ndarray],
    mask: np.ndarray,
    batch_size: int = 8,
    slices: np.ndarray | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Super-resolve one volume.

    Parameters
    ----------
    model : SwigResNet
        Trained model (its ``guides`` and ``use_ql`` say which inputs it reads).
    q_l : numpy.ndarray or None
        (3, X, Y, Z) LR maps: PD [a.u.], T1 [ms], T2 [ms]; may be None for a model without Q_l input.
    guides : mapping of str to numpy.ndarray
        (X, Y, Z) guides by name, any intensity scale (z-scored here over the brain mask);
        must contain every guide of ``model.guides``.
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    batch_size : int
        Slices per forward pass, at least 1.
    slices : numpy.ndarray, optional
        Axial slices to predict (default: every slice with brain voxels); the others are 0.
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    progress : bool
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        (3, X, Y, Z) float32 Q̂_h in physical units, 0 outside the mask.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    mask = np.ascontiguousarray(mask, dtype=bool)
    missing = [g for g in model.guides if g not in guides]
    if missing:
        raise ValueError(f"the model needs guide(s) {missing}; got {sorted(guides)}")
    if model.use_ql and q_l is None:
        raise ValueError("the model needs the LR maps Q_l")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    mask_t = torch.from_numpy(mask)
    guide_stack = (
        torch.stack(
            [
                zscore_guide(
                    torch.from_numpy(np.ascontiguousarray(guides[g], dtype=np.float32)), mask_t
                )
                for g in model.guides
            ]
        )
        if model.guides
        else None
    )
    ql_t = torch.from_numpy(np.ascontiguousarray(q_l, dtype=np.float32)) if model.use_ql else None

    (x0, x1), (y0, y1) = brain_extent(mask)
    margin = 2 * model.receptive_radius
    size = (min(x1 - x0 + margin, mask.shape[0]), min(y1 - y0 + margin, mask.shape[1]))
    rows_np, cols_np = window_indices(mask, size)
    rows, cols = torch.from_numpy(rows_np), torch.from_numpy(cols_np)

    def window(volume: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(..., X, Y, Z) → (B, ..., h, w) for the slices z."""
        cropped = volume.index_select(-3, rows).index_select(-2, cols).index_select(-1, z)
        return cropped.movedim(-1, 0).to(device)

    output = np.zeros((len(MAP_NAMES), *mask.shape), dtype=np.float32)
    with_brain = np.flatnonzero(mask.any(axis=(0, 1)))
    slices = torch.from_numpy(with_brain if slices is None else np.intersect1d(slices, with_brain))
    for first in tqdm(
        range(0, len(slices), batch_size), desc="slices", disable=not progress, leave=False
    ):
        z = slices[first : first + batch_size]
        pred = model(
            window(ql_t, z) if ql_t is not None else None,
            window(guide_stack, z) if guide_stack is not None else None,
            window(mask_t, z),
        )
        block = pred.movedim(0, -1).float().cpu().numpy()  # (3, h, w, b)
        output[:, rows_np[:, None], cols_np[None, :], z.numpy()[:, None, None]] = np.moveaxis(
            block, -1, 1
        )
    return output


#: File names of the maps written by :func:`apply_files` (BIDS-like suffixes, as in the dataset).
OUTPUT_FILES: dict[str, str] = {"PD": "PDmap.nii.gz", "T1": "T1map.nii.gz", "T2": "T2map.nii.gz"}
#: File name of the provenance sidecar written with the maps.
SIDECAR_FILE = "swig_apply.json"


def to_input_orientation(
    volume: np.ndarray, canonical_affine: np.ndarray, input_affine: np.ndarray
) -> np.ndarray:
    """Undo :func:`nibabel.as_closest_canonical`: reorder/flip axes of ``volume`` back to the input's."""
    transform = nib.orientations.ornt_transform(
        nib.io_orientation(canonical_affine), nib.io_orientation(input_affine)
    )
    return nib.orientations.apply_orientation(volume, transform)


def output_paths(out: str | Path) -> list[Path]:
    """Return the files of one :func:`apply_files` set in ``out``: the three maps, then the sidecar."""
    return [Path(out) / name for name in (*OUTPUT_FILES.values(), SIDECAR_FILE)]


def check_output_folder(out: str | Path, inputs: Mapping[str, str | Path], overwrite: bool = False) -> None:
    """Refuse an output folder that would lose a user's file, before any work is done.

    Parameters
    ----------
    out : path
        The output folder (created later if missing).
    inputs : mapping of str to path
        Every input file by option name (e.g. ``{"--pd": "PD.nii.gz", "--model": ...}``).
    overwrite : bool
        Allow replacing the files of an earlier set (:func:`output_paths`).

    Raises
    ------
    swig_lib.core.io.UserError
        When the folder holds one of the inputs (compared after resolving links) or cannot be
        written; :class:`swig_lib.core.io.OutputExistsError` when a file of the set exists and
        ``overwrite`` is False.
    """
    folder = Path(out).resolve()
    outputs = {path.resolve() for path in output_paths(folder)}
    for option, path in inputs.items():
        given = Path(path)
        if given.resolve() in outputs or folder in {given.resolve().parent, given.absolute().parent.resolve()}:
            raise UserError(f"{out}: the output folder holds the input {option} {path}; choose another --out "
                            "so that no input can be replaced")
    problem = writable_folder_problem(folder)
    if problem:
        raise UserError(f"{out}: cannot write the outputs there ({problem}); choose another --out")
    existing = [path for path in output_paths(out) if path.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]}: exists (an earlier result?); pass --overwrite to replace "
                                f"the set {', '.join(p.name for p in output_paths(out))}, or choose another --out")


def guide_option(name: str) -> str:
    """The ``swig apply`` option that gives guide ``name``: ``--t1w``, ``--t2w`` or ``--guide NAME FILE``."""
    return f"--{name.lower()}" if name in ("T1w", "T2w") else f"--guide {name} FILE"


def apply_files(
    model_path: str | Path,
    pd: str | Path,
    t1: str | Path,
    t2: str | Path,
    out: str | Path,
    t1w: str | Path | None = None,
    t2w: str | Path | None = None,
    mask: str | Path | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    *,
    guides: Mapping[str, str | Path] | None = None,
    contrasts: str | Path | None = None,
    tolerance: ProtocolTolerance = DEFAULT_TOLERANCE,
    accept_protocol_mismatch: bool = False,
    adaptation: AdaptSettings | None = None,
    progress: bool = False,
    released: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Super-resolve a user's NIfTI maps with a trained model; write PD/T1/T2 maps and a sidecar to ``out``.

    Inputs are validated by :func:`swig_lib.core.io.load_qmri_maps` and
    :func:`swig_lib.experiments.owndata.folder.load_named_guides` (one voxel grid, finite inside the mask,
    T1/T2 in ms, ...). A guide with a BIDS sidecar (``t1w.json`` next to ``t1w.nii.gz``) is checked
    against the protocol the model was trained with (:func:`swig_lib.experiments.owndata.protocols.check_guides`):
    beyond ``tolerance`` it is refused, unless ``accept_protocol_mismatch`` (then a warning).
    With ``adaptation``, the model is first fine-tuned on this subject, or a fresh one trained on
    it, with the self-supervised loss (:func:`swig_lib.experiments.owndata.adapt.adapt`). The outputs have
    the PD input's affine, shape, orientation, qform/sform codes and ``descrip``. Nothing is written
    unless every check passed and the outputs lie in :data:`swig_lib.core.io.MAP_RANGES`; then the
    set (:func:`output_paths`) is written all or nothing, its sidecar recording the guides'
    protocols and checks and the adaptation.

    Parameters
    ----------
    model_path : path
        A checkpoint from ``swig train`` (it records which guides the model needs, and their protocols).
    pd, t1, t2 : path
        LR maps: PD (a.u.), T1 and T2 (ms).
    out : path
        Output folder (created); files :data:`OUTPUT_FILES` and :data:`SIDECAR_FILE`.
    t1w, t2w : path, optional
        The guides named ``"T1w"`` and ``"T2w"``; those the model needs are required.
    mask : path, optional
        Brain mask (default: where PD, T1 and T2 are finite and > 0).
    batch_size : int
        Slices per forward pass, at least 1.
    device : str or torch.device
        Where the model runs.
    overwrite : bool
        Replace the files of an earlier set in ``out``.
    guides : mapping of str to path, optional
        Guides of other names (a model trained on own data with, e.g., a ``"FLAIR"`` guide).
    contrasts : path, optional
        4-D LR contrasts in the order of the model's LR qMRI protocol, for the data term of the
        adaptation (default: synthesised from the maps); only with ``adaptation``.
    tolerance : ProtocolTolerance
        How far a guide's sidecar protocol may lie from the model's.
    accept_protocol_mismatch : bool
        Use guides beyond the tolerance anyway.
    adaptation : AdaptSettings, optional
        Fine-tune (or train from scratch) on this subject before predicting.
    progress : bool
        Show a progress bar over the adaptation steps.
    released : mapping, optional
        When ``model_path`` is the released model, its record
        (:meth:`swig_lib.experiments.release.Release.record`), kept in the sidecar as
        ``model.released`` (else null).

    Returns
    -------
    dict of str to Path
        Written file per map.

    Raises
    ------
    swig_lib.core.io.UserError
        For an unusable output folder (:func:`check_output_folder`), model (missing, damaged, not
        a SWIG model, a guide it needs not given), input, guide protocol (mismatch, sidecar
        without a field its sequence needs), or implausible outputs; nothing is written then.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if contrasts is not None and adaptation is None:
        raise ValueError("contrasts are read only by an adaptation")
    device = torch.device(device)
    given = {"T1w": t1w, "T2w": t2w, **dict(guides or {})}
    option = {name: guide_option(name).removesuffix(" FILE") for name in given}
    files = {"--pd": pd, "--t1": t1, "--t2": t2, "--mask": mask, **{option[g]: p for g, p in given.items()},
             "--contrasts": contrasts, "--model": model_path}
    check_output_folder(out, {k: v for k, v in files.items() if v is not None}, overwrite)
    payload = load_checkpoint(model_path)
    model = model_from_checkpoint(payload, device, source=model_path)
    if not model.guides:
        raise DataValidationError(
            f"{model_path}: a model without guide inputs is not a SWIG model (e.g. the supervised "
            "Acq5^R reconstruction CNN, which corrects radial Acq5 maps only); pass a SWIG checkpoint "
            "from `swig train`, e.g. checkpoints/M12++.pt"
        )
    missing = [g for g in model.guides if given.get(g) is None]
    if missing:
        flags = " ".join(guide_option(g) for g in missing)
        raise DataValidationError(
            f"model {model_path}: trained with guide(s) {model.guides}; pass {flags}"
        )
    images = {g: given[g] for g in model.guides}
    acquisition = Acquisition.of_checkpoint(payload, model_path)
    checks = check_guides(images, acquisition.guide_protocols, model_path, tolerance, accept_protocol_mismatch)
    for name, check in checks.items():
        if check.status.startswith("mismatch"):
            warnings.warn(f"{check.sidecar}: {check.status}; the network sees a {name} contrast it was not "
                          "trained on", UserWarning, stacklevel=2)
    recipe = Recipe.of_checkpoint(payload, str(model_path)) if adaptation is not None else None
    maps = load_qmri_maps(pd, t1, t2, mask)
    guide_images = load_named_guides(images, maps)
    adapted = None
    if recipe is not None and adaptation is not None:
        protocol = recipe.acquisition.qmri_protocol
        q_l = maps.maps * maps.mask
        c_l = (synthesised_contrasts(q_l, protocol) if contrasts is None else
               load_contrasts(contrasts, (maps.mask.shape, maps.affine), protocol, maps.mask, f"PD map {pd}"))
        dilation = 0 if contrasts is None else recipe.dc_dilation
        data = subject_data(Acquired("subject", q_l, guide_images, maps.mask, maps.affine, lambda: c_l),
                            {g: checks[g].protocol for g in model.guides}, recipe.acquisition,
                            None if adaptation.from_scratch else model.spec["q_scale"], model.receptive_radius,
                            dilation)
        done = adapt(model, recipe, data, adaptation, device, progress)
        model = done.model
        before, after = (done.record[key]["loss_total"] for key in ("loss_before", "loss_after"))
        if after > before:
            warnings.warn(f"{adaptation.mode} ({adaptation.steps} steps) raised this subject's self-supervised loss "
                          f"from {before:.4g} to {after:.4g}; give more steps (50 or more)", UserWarning, stacklevel=2)
        adapted = {**done.record, "dc_dilation": dilation, "data_term": (
            "contrasts synthesised from the LR maps, on the brain mask" if contrasts is None
            else f"LR contrasts {contrasts}")}
    pred = predict_volume(model, maps.maps, guide_images, maps.mask, batch_size, device=device)
    check_plausible(pred, maps.mask, f"model {model_path}")
    source = nib.load(pd)
    images_out = [
        nifti_image(to_input_orientation(volume, maps.affine, source.affine), source.affine,
                    like=source.header)
        for volume in pred
    ]
    used = {"pd": pd, "t1": t1, "t2": t2, "mask": mask, **{g.lower(): given[g] for g in model.guides},
            "contrasts": contrasts}
    provenance: dict[str, Any] = {
        "swig_lib": __version__,
        "torch": torch.__version__,
        "model": {"path": str(model_path), "sha256": sha256(model_path),
                  "weights_sha256": payload["weights_sha256"], "guides": model.guides,
                  "use_ql": model.use_ql, "trained_degradation": acquisition.degradation,
                  "released": None if released is None else dict(released)},
        "inputs": {key: {"path": str(path), "sha256": sha256(path)} for key, path in used.items() if path is not None},
        "settings": {"batch_size": batch_size, "device": str(device),
                     "mask": "given" if mask is not None else "derived: PD, T1, T2 finite and > 0"},
        "guide_protocols": {
            name: {"protocol": asdict(check.protocol), "check": check.status,
                   "sidecar": None if check.sidecar is None else {"path": str(check.sidecar),
                                                                   "sha256": sha256(check.sidecar)}}
            for name, check in checks.items()},
        "protocol_tolerance": {"time_relative": tolerance.time, "flip_degrees": tolerance.flip},
        "adaptation": adapted,
    }
    paths = output_paths(out)
    with new_folder(out), atomic_paths(paths) as temporaries:
        for image, tmp in zip(images_out, temporaries):
            nib.save(image, tmp)
        provenance["outputs"] = {name: {"file": path.name, "sha256": sha256(tmp)}
                                 for name, path, tmp in zip(MAP_NAMES, paths, temporaries)}
        temporaries[-1].write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return dict(zip(MAP_NAMES, paths))
