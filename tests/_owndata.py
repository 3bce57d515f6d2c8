"""A tiny own-data folder in the layout of :mod:`swig_lib.experiments.owndata.folder`, written by tests.

Subjects are the phantoms of :mod:`_phantom` (24×24×4 voxels): LR maps Q_l (and, on request, the
4-D LR contrasts C_l), the guides synthesised from Q_h with the presets' protocols (the paper's
T1w and T2w, or FLAIR) with their BIDS sidecars (times in seconds), and a brain mask;
``swig_dataset.json`` declares Φ (keep 0.5, σ 0.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from _phantom import KEEP, SIGMA, make_subject

from swig_lib.core.io import save_nifti
from swig_lib.core.sequences import PRESETS, guide_signal, sidecar_fields

SHAPE = (24, 24, 4)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def guide_sidecar(name: str, **changes: object) -> dict:
    """The BIDS sidecar of the paper's guide ``name`` (seconds), with keys changed (None: removed)."""
    meta = sidecar_fields(PRESETS[name]) | changes
    return {key: value for key, value in meta.items() if value is not None}


def write_subject(folder: Path, index: int, maps: bool = True, contrasts: bool = False,
                  guides: tuple[str, ...] = ("T1w", "T2w")) -> dict[str, Path]:
    """Write subject ``sub-0<index+1>`` into ``folder``; return its files by kind (guides: presets' names)."""
    subject = make_subject(index, SHAPE)
    q_h = torch.from_numpy(subject.q_h)
    sid = f"sub-{index + 1:02d}"
    anat = folder / sid / "anat"
    files = {"mask": save_nifti(anat / f"{sid}_desc-brain_mask.nii.gz", subject.mask, AFFINE)}
    if maps:
        for i, label in enumerate(("PD", "T1", "T2")):
            files[label.lower()] = save_nifti(anat / f"{sid}_{label}map.nii.gz", subject.q_l[i], AFFINE)
    if contrasts:
        files["contrasts"] = save_nifti(anat / f"{sid}_contrasts.nii.gz",
                                        np.moveaxis(subject.lr_contrasts(), 0, -1), AFFINE)
    for name in guides:
        image = guide_signal(PRESETS[name], q_h[0], q_h[1], q_h[2]).numpy()
        files[name.lower()] = save_nifti(anat / f"{sid}_{name}.nii.gz", image, AFFINE)
        (anat / f"{sid}_{name}.json").write_text(json.dumps(guide_sidecar(name)))
    return files


def write_dataset(folder: Path, n_subjects: int = 3, maps: bool = True, contrasts: bool = False,
                  **description: object) -> dict[str, dict[str, Path]]:
    """Write an own-data folder of ``n_subjects`` subjects; ``description`` adds keys to the dataset file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "swig_dataset.json").write_text(json.dumps({"KSpaceFraction": KEEP, "NoiseLevel": SIGMA,
                                                          **description}))
    guides = tuple(description.get("Guides", ("T1w", "T2w")))
    return {f"sub-{i + 1:02d}": write_subject(folder, i, maps, contrasts, guides) for i in range(n_subjects)}
