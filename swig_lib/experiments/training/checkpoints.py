"""Checkpoints, RNG state and epoch logs: what makes an interrupted training resume exactly.

A checkpoint is a :func:`torch.save` dictionary of plain data and tensors (read back with
``weights_only=True``, so loading never runs code) that records its format
(:data:`CHECKPOINT_FORMAT`), the model's constructor arguments (``model_spec``), its weights
(``model_state``) and their SHA-256 (``weights_sha256``, :func:`weights_checksum`), written by
:func:`save_checkpoint` and verified by :func:`load_checkpoint`: a damaged weight tensor is refused
instead of producing garbage. Checkpoints of the earlier format without the checksum are refused
too (retraining gives the same weights bit for bit, and none were released).

A checkpoint of :func:`~swig_lib.experiments.training.loop.train_variant` also records what the
model was trained on (``acquisition``, :class:`Acquisition`): Φ's ``keep`` and ``sigma``, the LR
qMRI protocol and the protocol of each guide, which ``swig apply`` checks the guides' sidecars
against. Checkpoints without that record were trained on the paper's protocols.
"""

from __future__ import annotations

import csv
import hashlib
import os
import pickle
import random
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swig_lib.core.io import MissingFileError, UserError, atomic_path
from swig_lib.core.models import SwigResNet
from swig_lib.core.protocols import QMRIProtocol
from swig_lib.core.sequences import PRESETS, GuideProtocol, ProtocolError

#: Version tag stored in every checkpoint (2: with ``weights_sha256``).
CHECKPOINT_FORMAT = "swig-checkpoint-2"
#: Earlier format tags, refused with a message saying to retrain.
OLD_CHECKPOINT_FORMATS: tuple[str, ...] = ("swig-checkpoint-1",)

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


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be used (damaged, foreign, or from another configuration)."""


@dataclass(frozen=True)
class Acquisition:
    """What a model was trained on: Φ (eq. 3), the LR qMRI protocol and the guides' protocols.

    Attributes
    ----------
    keep : float or None
        Fraction of each in-plane k-space axis that Φ keeps (None: not known).
    sigma : float or None
        Noise level σ of the LR contrasts, a.u. (None: not known).
    qmri_protocol : QMRIProtocol
        TR/TE of the LR contrasts, ms.
    guide_protocols : dict of str to GuideProtocol
        The protocol of each guide of the model, by name (times in ms, flip angles in degrees).
    degradation : dict or None
        With degradation randomisation, its settings
        (:meth:`swig_lib.experiments.training.augment.DegradationSettings.to_dict`: ranges of keep
        and σ, the point-spread functions, taper, splits): the training subjects had each their own
        Φ and ``keep``/``sigma`` are the profile's (the test subjects'). None: one Φ for all.
    """

    keep: float | None
    sigma: float | None
    qmri_protocol: QMRIProtocol
    guide_protocols: dict[str, GuideProtocol]
    degradation: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        """Plain data for a checkpoint (read back by :meth:`of_checkpoint`); ``degradation`` only when set."""
        record = {
            "keep": self.keep,
            "sigma": self.sigma,
            "qmri_protocol": {"tr": list(self.qmri_protocol.tr), "te": list(self.qmri_protocol.te)},
            "guide_protocols": {name: asdict(p) for name, p in self.guide_protocols.items()},
        }
        return record if self.degradation is None else {**record, "degradation": self.degradation}

    @classmethod
    def of_checkpoint(cls, payload: Mapping[str, Any], source: str | Path = "checkpoint") -> Acquisition:
        """Read the record of a checkpoint; without one, the paper's protocols for its guides.

        Parameters
        ----------
        payload : mapping
            A checkpoint (:func:`load_checkpoint`).
        source : str or Path
            The checkpoint's file, for messages.

        Raises
        ------
        CheckpointError
            When the record is malformed, or a guide of a checkpoint without a record is not one
            of the paper's.
        """
        guides = list(payload["model_spec"].get("guides", []))
        record = payload.get("acquisition")
        if record is None:
            unknown = [g for g in guides if g not in PRESETS]
            if unknown:
                raise CheckpointError(f"{source}: records no guide protocols and its guide(s) {unknown} are not "
                                      "the paper's; train the model again with this version (`swig train`)")
            data = payload.get("profile", {}).get("data") or {}
            return cls(data.get("keep"), data.get("sigma"), QMRIProtocol(), {g: PRESETS[g] for g in guides})
        try:
            protocols = {name: GuideProtocol(**fields) for name, fields in record["guide_protocols"].items()}
            qmri = QMRIProtocol(tuple(record["qmri_protocol"]["tr"]), tuple(record["qmri_protocol"]["te"]))
            acquisition = cls(record["keep"], record["sigma"], qmri, protocols, record.get("degradation"))
        except (KeyError, TypeError, ProtocolError) as err:
            raise CheckpointError(f"{source}: unusable acquisition record ({err}); the file was edited or "
                                  "written by other code; train the model again (`swig train --overwrite`)") from err
        if sorted(protocols) != sorted(guides):
            raise CheckpointError(f"{source}: records protocols of {sorted(protocols)} for a model with guides "
                                  f"{guides}; train the model again (`swig train --overwrite`)")
        return acquisition


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


def weights_checksum(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: each tensor's name, dtype, shape and bytes, in sorted name order.

    Reads the tensors only (a CPU copy of each); the model is not changed.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` with :func:`torch.save` atomically (:func:`swig_lib.core.io.atomic_path`).

    ``payload`` holds at least ``format``, ``model_spec`` and ``model_state``; the checksum of the
    weights (:func:`weights_checksum`) is added as ``weights_sha256``.
    """
    record = {**payload, "weights_sha256": weights_checksum(payload["model_state"])}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``; clear errors when it is unusable.

    Raises
    ------
    swig_lib.core.io.MissingFileError
        When ``path`` does not exist (a :class:`FileNotFoundError`).
    CheckpointError
        When the file is damaged (truncated, not a torch file, weights that do not match their
        checksum), holds more than plain data and tensors, is not a SWIG checkpoint, or was
        written in an earlier format; the message names the file and how to recover.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path}: no such file; check the path, or train the model "
                               "first (`swig train`)")
    fix = "Delete it and train again (`swig train --overwrite ...`), or restore the file from a copy"
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path}: holds Python objects other than plain data and tensors, refused "
            f"because loading them could run code. {fix}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: damaged or not a torch file ({reason}). {fix}") from err
    if isinstance(payload, dict) and payload.get("format") in OLD_CHECKPOINT_FORMATS:
        raise CheckpointError(
            f"checkpoint {path}: earlier format {payload['format']!r}, without a checksum of its "
            "weights; train it again with this version (`swig train --overwrite ...`)"
        )
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: not a SWIG checkpoint (expected format {CHECKPOINT_FORMAT!r}). {fix}"
        )
    missing = [key for key in ("model_spec", "model_state", "weights_sha256") if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path}: lacks {', '.join(missing)}. {fix}")
    if weights_checksum(payload["model_state"]) != payload["weights_sha256"]:
        raise CheckpointError(
            f"checkpoint {path}: damaged, its weights do not match their recorded checksum. {fix}"
        )
    return payload


def model_from_checkpoint(
    payload: Mapping[str, Any], device: str | torch.device = "cpu", source: str | Path = "checkpoint"
) -> SwigResNet:
    """Rebuild the model of a checkpoint (spec, weights, scaling buffers) in eval mode.

    Parameters
    ----------
    payload : mapping
        A checkpoint (:func:`load_checkpoint`).
    device : str or torch.device
        Where the model goes.
    source : str or Path
        The checkpoint's file, for messages.

    Raises
    ------
    CheckpointError
        When the recorded ``model_spec`` is unusable or does not fit the weights (e.g. another
        width or other guides than the tensors have).
    """
    spec = payload["model_spec"]
    fix = "the file was edited or written by other code; train the model again (`swig train --overwrite`)"
    try:
        model = SwigResNet(**spec)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: unusable model_spec {spec!r} ({err}); {fix}") from err
    expected, state = model.state_dict(), payload["model_state"]
    names = sorted(set(expected) ^ set(state))
    wrong = [name for name in expected if name in state and expected[name].shape != state[name].shape]
    if names or wrong:
        detail = (
            f"weights {', '.join(names[:3])} missing or unexpected" if names else
            f"weights {wrong[0]} have shape {tuple(state[wrong[0]].shape)}, the spec needs "
            f"{tuple(expected[wrong[0]].shape)}"
        )
        summary = {key: spec.get(key) for key in ("guides", "use_ql", "width", "n_blocks")}
        raise CheckpointError(f"{source}: its recorded model spec {summary} does not fit its weights "
                              f"({detail}); {fix}")
    model.load_state_dict(state)
    return model.to(device).eval()


def checkpoint_paths(out: Path, variant: str) -> tuple[Path, Path]:
    """Return the (selected, last) checkpoint paths of ``variant`` under ``out``."""
    folder = out / "checkpoints"
    return folder / f"{variant}.pt", folder / f"{variant}.last.pt"


def comparable_settings(profile: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a resumed run must share with the checkpoint.

    That is the seed, data, model, and training settings except ``train.epochs`` (a run may be
    extended; the cosine schedule then stretches) and, when the degradation randomisation is off,
    its ranges (``data.degradation``: they do not touch the data then, so a model trained on the
    paper's Φ stays valid when only the transfer model's ranges change).

    Parameters
    ----------
    profile : mapping
        The plain dict of a profile as a checkpoint stores it (``checkpoint["profile"]``, written
        from :meth:`swig_lib.experiments.config.Profile.to_dict`); a ``Profile`` reads the same.
    """
    train = {k: v for k, v in profile["train"].items() if k != "epochs"}
    data = profile.get("data")
    if isinstance(data, Mapping) and not dict(data.get("degradation") or {}).get("enabled", False):
        data = {k: v for k, v in data.items() if k != "degradation"}
    return {
        "seed": profile["seed"],
        "data": data,
        "model": profile["model"],
        "train": train,
    }


def setting_differences(recorded: Mapping[str, Any], current: Mapping[str, Any],
                        prefix: str = "") -> list[tuple[str, Any, Any]]:
    """List the settings that differ between two nested mappings: (dotted name, recorded, current).

    A setting present on one side only has the value ``"<absent>"`` on the other.
    """
    differences = []
    for key in sorted(set(recorded) | set(current), key=str):
        name = f"{prefix}{key}"
        old, new = recorded.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            differences += setting_differences(old, new, f"{name}.")
        elif old != new:
            differences.append((name, old, new))
    return differences


def write_log(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the CSV log atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
