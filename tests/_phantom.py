"""Small synthetic subjects for the method's tests: no dataset, no fitter, a few kB each.

A subject is a stack of axial slices (X, Y, Z) holding an elliptic "brain" (grey matter) with a
white-matter ellipse and a CSF ellipse inside whose centres and sizes vary per subject and slice.
Q_h holds the tissue values; the guides come from the signal equations; C_l = Φ(M(Q_h)) with noise;
Q_l = Φ(Q_h) (a stand-in for the fitted LR maps), clamped positive and masked.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from swig_lib.core.kspace import truncate_kspace
from swig_lib.core.physics import qmri_contrasts, weighted_image
from swig_lib.core.protocols import GUIDE_PROTOCOLS
from swig_lib.experiments.config import Profile, load_profile

#: PD [a.u.], T1 [ms], T2 [ms] of grey matter, white matter, CSF.
TISSUES = {"GM": (80.0, 1100.0, 95.0), "WM": (70.0, 650.0, 75.0), "CSF": (100.0, 4000.0, 1800.0)}
KEEP, SIGMA = 0.5, 0.1


def _ellipse(
    shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]
) -> np.ndarray:
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 <= 1.0


def make_subject(seed: int, shape: tuple[int, int, int] = (40, 36, 4)) -> SimpleNamespace:
    """One synthetic subject: ``acq`` fields plus ``q_h`` (3, X, Y, Z)."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    q_h = np.zeros((3, *shape), dtype=np.float64)
    mask = np.zeros(shape, dtype=bool)
    for z in range(nz):
        brain = _ellipse((nx, ny), (nx / 2, ny / 2), (nx * 0.36, ny * 0.38))
        wm = _ellipse(
            (nx, ny),
            (nx / 2 + rng.uniform(-3, 3), ny / 2 + rng.uniform(-3, 3)),
            (rng.uniform(5, 9), rng.uniform(4, 8)),
        )
        csf = _ellipse(
            (nx, ny),
            (nx / 2 + rng.uniform(-2, 2), ny / 2 + rng.uniform(-2, 2)),
            (rng.uniform(1.5, 3), rng.uniform(2, 4)),
        )
        for label, region in (("GM", brain), ("WM", brain & wm), ("CSF", brain & csf)):
            q_h[:, region, z] = np.array(TISSUES[label])[:, None]
        mask[:, :, z] = brain
    maps = torch.from_numpy(q_h)
    contrasts = qmri_contrasts(maps[0], maps[1], maps[2], dim=0).permute(
        0, 3, 1, 2
    )  # (12, Z, X, Y)
    gen = torch.Generator().manual_seed(seed)
    c_l = truncate_kspace(contrasts, KEEP, SIGMA, generator=gen).permute(0, 2, 3, 1).numpy()
    q_l = truncate_kspace(maps.permute(0, 3, 1, 2), KEEP).permute(0, 2, 3, 1).numpy()
    q_l = np.where(mask, np.clip(q_l, 1.0, None), 0.0)
    guides = {
        name: weighted_image(p, maps[0], maps[1], maps[2]).numpy().astype(np.float32)
        for name, p in GUIDE_PROTOCOLS.items()
    }
    return SimpleNamespace(
        q_l=q_l.astype(np.float32),
        q_h=q_h.astype(np.float32),
        guides=guides,
        mask=mask,
        affine=np.diag([1.0, 1.0, 2.0, 1.0]),
        lr_contrasts=lambda: c_l.astype(np.float32),
    )


class FakeDataset:
    """The part of :func:`swig_lib.experiments.subjects.dataset.load_dataset`'s interface that training uses."""

    def __init__(
        self,
        n_train: int = 2,
        n_val: int = 1,
        n_test: int = 1,
        shape: tuple[int, int, int] = (40, 36, 4),
    ) -> None:
        counts = {"train": n_train, "val": n_val, "test": n_test}
        self._ids = {}
        first = 0
        for split, n in counts.items():
            self._ids[split] = [f"sub-{i:02d}" for i in range(first, first + n)]
            first += n
        self._subjects = {
            sid: make_subject(i, shape) for i, sid in enumerate(sum(self._ids.values(), []))
        }
        self.settings = {"keep": KEEP, "sigma": SIGMA}

    def subject_ids(self, split: str) -> list[str]:
        return list(self._ids[split])

    def acquired(self, sid: str) -> SimpleNamespace:
        return self._subjects[sid]

    def reference(self, sid: str) -> np.ndarray:
        return self._subjects[sid].q_h


def tiny_profile(seed: int = 0, epochs: int = 1, variants: tuple[str, ...] = ("M12++",),
                 **sections: Any) -> Profile:
    """A profile for the phantom: width-4 network, one or two epochs, every slice.

    The smoke profile named ``"test"``, with its ``seed``, ``train``, ``model`` and ``eval``
    replaced; ``sections`` replace further top-level entries (e.g. ``crosssequence={...}``).
    """
    return Profile.from_dict(load_profile("smoke").to_dict() | {
        "name": "test",
        "seed": seed,
        "train": {
            "epochs": epochs,
            "batch_size": 2,
            "lr": 1e-3,
            "warmup_steps": 2,
            "alpha": 4000.0,
            "slice_stride": 1,
            "min_brain_fraction": 0.0,
            "dc_dilation": 2,
        },
        "model": {"width": 4, "n_blocks": 5, "first_kernel": 3, "last_kernel": 9},
        "eval": {"variants": list(variants), "interior_voxels": 2, "slice_stride": 1, "val_slice_stride": 1,
                 "min_brain_fraction": 0.0,
                 "batch_size": 2},
    } | sections)
