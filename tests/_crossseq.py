"""Small phantoms and an untrained SWIG checkpoint for the cross-sequence tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swig_lib.core.models import SwigResNet
from swig_lib.experiments.training.checkpoints import CHECKPOINT_FORMAT, save_checkpoint

MODEL = {"width": 8, "n_blocks": 2, "first_kernel": 3, "last_kernel": 3}


def phantom(shape: tuple[int, int, int] = (40, 36, 4)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps (3, X, Y, Z) of a GM disc with a WM core and a CSF rim, the mask and the labels."""
    x, y = np.meshgrid(np.arange(shape[0]) - 20.0, np.arange(shape[1]) - 18.0, indexing="ij")
    r = np.broadcast_to(np.hypot(x, y + 0.3 * x)[..., None], shape)
    mask = r < 16
    labels = np.where(mask, 1, 0)
    labels[r < 9] = 2
    labels[(r >= 13.5) & mask] = 3
    values = {1: (82.0, 1100.0, 95.0), 2: (69.0, 700.0, 75.0), 3: (100.0, 3900.0, 1700.0)}
    maps = np.zeros((3, *shape), dtype=np.float32)
    for label, v in values.items():
        maps[:, labels == label] = np.array(v, dtype=np.float32)[:, None]
    return maps, mask, labels.astype(np.uint8)


def checkpoint(path: Path, guides: tuple[str, ...] = ("T1w", "T2w")) -> Path:
    """An untrained SWIG model (the identity on Q_l) in the checkpoint format."""
    model = SwigResNet(guides, True, [80.0, 1000.0, 150.0], **MODEL)
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": model.spec,
                           "model_state": model.state_dict()})
    return path
