"""Inference: super-resolve whole volumes slice by slice, and the ``swig apply`` command.

``swig apply --model M.pt --pd PD.nii.gz --t1 T1.nii.gz --t2 T2.nii.gz --t1w T1w.nii.gz
--t2w T2w.nii.gz --mask MASK.nii.gz --out DIR`` validates the inputs (:mod:`swig_lib.core.io`),
runs the model and writes ``DIR/PDmap.nii.gz``, ``T1map.nii.gz``, ``T2map.nii.gz`` with the
input's affine.

A volume is processed as axial slices (last NIfTI axis) cropped to the brain's in-plane extent
plus the network's receptive radius, in batches; with that margin the result on every brain voxel
equals the result on the whole slice (see :mod:`swig_lib.experiments.training`). Slices without brain voxels
and every voxel outside the mask are 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm.auto import tqdm

from swig_lib.cli import parse_device
from swig_lib.core.io import (
    DataValidationError,
    load_guides,
    load_qmri_maps,
    save_nifti,
)
from swig_lib.core.models import MAP_NAMES, SwigResNet, zscore_guide
from swig_lib.experiments.training.checkpoints import (
    load_checkpoint,
    model_from_checkpoint,
)
from swig_lib.experiments.training.windows import brain_extent, window_indices


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SwigResNet:
    """Load a trained model (``checkpoints/<variant>.pt``) in eval mode.

    Raises
    ------
    FileNotFoundError, swig_lib.experiments.training.checkpoints.CheckpointError
        For a missing or unusable file (the message names it and the fix).
    """
    return model_from_checkpoint(load_checkpoint(path), device)


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
        Slices per forward pass.
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


#: File names written by ``swig apply`` (BIDS-like suffixes, as in the dataset).
OUTPUT_FILES: dict[str, str] = {"PD": "PDmap.nii.gz", "T1": "T1map.nii.gz", "T2": "T2map.nii.gz"}


def to_input_orientation(
    volume: np.ndarray, canonical_affine: np.ndarray, input_affine: np.ndarray
) -> np.ndarray:
    """Undo :func:`nibabel.as_closest_canonical`: reorder/flip axes of ``volume`` back to the input's."""
    transform = nib.orientations.ornt_transform(
        nib.io_orientation(canonical_affine), nib.io_orientation(input_affine)
    )
    return nib.orientations.apply_orientation(volume, transform)


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
) -> dict[str, Path]:
    """Super-resolve a user's NIfTI maps with a trained model; write PD/T1/T2 maps to ``out``.

    Inputs are validated by :func:`swig_lib.core.io.load_qmri_maps` and :func:`swig_lib.core.io.load_guides`
    (one voxel grid, finite, T1/T2 in ms, ...). The outputs have the input maps' affine, shape and
    orientation.

    Parameters
    ----------
    model_path : path
        A checkpoint from ``swig train`` (it records which guides the model needs).
    pd, t1, t2 : path
        LR maps: PD (a.u.), T1 and T2 (ms).
    out : path
        Output folder (created); files :data:`OUTPUT_FILES`.
    t1w, t2w : path, optional
        Guides; those the model needs are required.
    mask : path, optional
        Brain mask (default: where PD, T1 and T2 > 0).
    batch_size : int
        Slices per forward pass.
    device : str or torch.device
        Where the model runs.

    Returns
    -------
    dict of str to Path
        Written file per map.

    Raises
    ------
    swig_lib.core.io.DataValidationError
        For invalid inputs or a guide the model needs but was not given.
    """
    model = load_model(model_path, device)
    given = {"T1w": t1w, "T2w": t2w}
    missing = [g for g in model.guides if given[g] is None]
    if missing:
        flags = " ".join(f"--{g.lower()}" for g in missing)
        raise DataValidationError(
            f"model {model_path} was trained with guide(s) {model.guides}; pass {flags}"
        )
    maps = load_qmri_maps(pd, t1, t2, mask)
    guides = load_guides(
        **{g.lower(): given[g] for g in model.guides},
        reference_affine=maps.affine,
        reference_shape=maps.mask.shape,
    )
    pred = predict_volume(model, maps.maps, guides, maps.mask, batch_size, device=device)
    input_affine = nib.load(pd).affine
    written = {}
    for name, volume in zip(MAP_NAMES, pred, strict=True):
        written[name] = save_nifti(
            Path(out) / OUTPUT_FILES[name],
            to_input_orientation(volume, maps.affine, input_affine),
            input_affine,
        )
    return written


def run_apply(args: argparse.Namespace) -> int:
    """``swig apply``."""
    written = apply_files(
        args.model,
        args.pd,
        args.t1,
        args.t2,
        args.out,
        args.t1w,
        args.t2w,
        args.mask,
        args.batch_size,
        parse_device(args.device),
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``swig apply``."""
    parser = subparsers.add_parser(
        "apply", help="super-resolve your own PD/T1/T2 maps with a trained model"
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint, e.g. results/quick/checkpoints/M12++.pt"
    )
    parser.add_argument("--pd", required=True, help="LR PD map (NIfTI, a.u.)")
    parser.add_argument("--t1", required=True, help="LR T1 map (NIfTI, ms)")
    parser.add_argument("--t2", required=True, help="LR T2 map (NIfTI, ms)")
    parser.add_argument("--t1w", default=None, help="T1-weighted guide (IR-SPGR) on the maps' grid")
    parser.add_argument(
        "--t2w", default=None, help="T2-weighted guide (spin echo) on the maps' grid"
    )
    parser.add_argument("--mask", default=None, help="brain mask (default: PD, T1, T2 > 0)")
    parser.add_argument("--out", required=True, help="output folder for PDmap/T1map/T2map.nii.gz")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.set_defaults(func=run_apply)
