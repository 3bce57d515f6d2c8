"""Checkpoints, RNG state and epoch logs: what makes an interrupted training resume exactly.
"""

from __future__ import annotations

import csv
import os
import pickle
import random
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swig_lib.core.io import atomic_path
from swig_lib.core.models import SwigResNet

#: Version tag stored in every checkpoint.
CHECKPOINT_FORMAT = "swig-checkpoint-1"

#: Columns of the per-epoch CSV log (loss columns named as :mod:`swig_lib.experiments.plotting` expects).
LOG_COLUMNS: tuple[str, ...] = (
    "epoch",
    "split",
    "loss_lr",
    "loss_guide",
    "loss_total",
    "alpha",
    "time_s",
    "slices_per_s",
)




class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used (damaged, foreign, or from another configuration)."""



# ----------------------------------------------------------------------------------------------
# Checkpoints and reproducibility
# ----------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every global RNG state (torch CPU and CUDA, NumPy, Python) as tensors and plain lists."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python and ask for deterministic algorithms (warn where CUDA has none)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` with :func:`torch.save` atomically (:func:`swig_lib.core.io.atomic_path`)."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``; clear errors when it is unusable.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        When the file is damaged (truncated, not a torch file) or not a SWIG checkpoint; the message
        names the file and how to recover.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    fix = (
        f"Delete {path} and train again (`swig train ...` without --resume), or restore the file "
        "from a copy."
    )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as err:
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a torch file ({err}). {fix}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a SWIG checkpoint (expected format {CHECKPOINT_FORMAT!r}). {fix}"
        )
    return payload


def model_from_checkpoint(
    payload: Mapping[str, Any], device: str | torch.device = "cpu"
) -> SwigResNet:
    """Rebuild the model of a checkpoint (spec, weights, scaling buffers) in eval mode."""
    model = SwigResNet(**payload["model_spec"])
    model.load_state_dict(payload["model_state"])
    return model.to(device).eval()


def checkpoint_paths(out: Path, variant: str) -> tuple[Path, Path]:
    """(selected, last) checkpoint paths of ``variant`` under ``out``."""
    folder = out / "checkpoints"
    return folder / f"{variant}.pt", folder / f"{variant}.last.pt"


def comparable_settings(profile: Mapping[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint: seed, data, model, and training settings
    except ``train.epochs`` (a run may be extended; the cosine schedule then stretches)."""
    train = {k: v for k, v in profile["train"].items() if k != "epochs"}
    return {
        "seed": profile["seed"],
        "data": profile.get("data"),
        "model": profile["model"],
        "train": train,
    }


def write_log(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the CSV log atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
