"""Self-supervised training of the SWIG models (paper Sec. III-B.3, Table I), with checkpoints.

No HR quantitative map is used here: the loss (eq. 12) needs only the acquired LR contrasts C_l,
the LR maps Q_l, the guides W and the brain mask, and the checkpoint kept as ``<variant>.pt`` is
the epoch with the lowest *validation self-supervised loss*. Q_h enters only
:mod:`swig_lib.experiments.evaluation`.

Slices and crops
----------------
The network runs on 2-D axial slices (last NIfTI axis) cropped to a fixed in-plane window around
the brain: the union bounding box of the training and validation brains, plus a margin equal to
the network's receptive radius, so that every brain voxel sees the same inputs as on the whole
slice and inference on a crop equals inference on the full slice. Φ is applied exactly on the
crop (:func:`swig_lib.core.losses.lowpass_matrix`). Windows wrap around the field of view like the
DFT does.

Outputs (``<out>`` defaults to ``results/<profile>``)
------------------------------------------------------
``checkpoints/<variant>.pt``
    the selected epoch (lowest validation L_total); what ``swig apply`` and ``swig evaluate`` use.
``checkpoints/<variant>.last.pt``
    the latest epoch, with optimiser and RNG states; ``--resume`` continues from it exactly.
``logs/<variant>.csv``
    one row per epoch and split: loss_lr (L_l), loss_guide (L_h), loss_total, alpha, time_s.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import pickle
import random
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from swig_lib import default_device
from swig_lib.cli import add_experiment_arguments, experiment_setup, parse_device
from swig_lib.core.io import atomic_path
from swig_lib.core.losses import LossTerms, lowpass_matrix, swig_loss
from swig_lib.core.models import SwigResNet, masked_channel_means, receptive_radius, zscore_guide

#: Guide channels of the prepared data, in this order; a variant picks a subset.
GUIDE_ORDER: tuple[str, ...] = ("T1w", "T2w")

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


@dataclass(frozen=True)
class Variant:
    """One model of the ablation (Table I), as configuration.

    Attributes
    ----------
    name : str
        ``M<guides><Q_l input><data consistency>``, e.g. ``"M12++"``.
    guides : tuple of str
        Guides used as input *and* in L_h (``"T1w"``, ``"T2w"``).
    use_ql : bool
        Q_l as network input (first "+").
    data_consistency : bool
        L_l in the loss (second "+").
    alpha : float or None
        Weight of L_h; None takes the profile's ``train.alpha``.
    """

    name: str
    guides: tuple[str, ...]
    use_ql: bool
    data_consistency: bool
    alpha: float | None = None

    def resolved_alpha(self, profile_alpha: float) -> float:
        """α actually used: the variant's own value, else the profile's."""
        return float(profile_alpha if self.alpha is None else self.alpha)


#: The five models of Table I and the α = 0 control the paper lacks.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("M12++", ("T1w", "T2w"), use_ql=True, data_consistency=True),
        Variant("M2++", ("T2w",), use_ql=True, data_consistency=True),
        Variant("M1++", ("T1w",), use_ql=True, data_consistency=True),
        Variant("M12-+", ("T1w", "T2w"), use_ql=False, data_consistency=True),
        Variant("M12--", ("T1w", "T2w"), use_ql=False, data_consistency=False),
        Variant("M12++a0", ("T1w", "T2w"), use_ql=True, data_consistency=True, alpha=0.0),
    )
}


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used (damaged, foreign, or from another configuration)."""


# ----------------------------------------------------------------------------------------------
# Pure helpers: windows, slices, masks
# ----------------------------------------------------------------------------------------------


def brain_extent(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """In-plane bounding box of a (X, Y, Z) mask over all slices: ((x0, x1), (y0, y1)), end exclusive."""
    if not mask.any():
        raise ValueError("empty brain mask")
    xs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    return (int(xs[0]), int(xs[-1]) + 1), (int(ys[0]), int(ys[-1]) + 1)


def window_size(masks: Sequence[np.ndarray], margin: int) -> tuple[int, int]:
    """Common in-plane crop size: the largest brain extent of ``masks`` plus ``margin`` per side.

    Capped at the grid size. All masks must share the in-plane grid.
    """
    shapes = {m.shape[:2] for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"masks on different in-plane grids: {sorted(shapes)}")
    (grid,) = shapes
    sizes = [0, 0]
    for mask in masks:
        for axis, (lo, hi) in enumerate(brain_extent(mask)):
            sizes[axis] = max(sizes[axis], hi - lo + 2 * margin)
    return min(sizes[0], grid[0]), min(sizes[1], grid[1])


def window_indices(mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a ``size`` window centred on the brain, modulo the grid.

    Parameters
    ----------
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    size : (int, int)
        Window size, at most (X, Y).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Integer indices into X and Y (wrapping around the field of view, as the DFT of Φ does).
    """
    indices = []
    for (lo, hi), n, full in zip(brain_extent(mask), size, mask.shape[:2], strict=True):
        if not hi - lo <= n <= full:
            raise ValueError(
                f"window {n} cannot hold the brain extent {hi - lo} on a grid of {full}"
            )
        start = (lo + hi) // 2 - n // 2
        indices.append((start + np.arange(n)) % full)
    return indices[0], indices[1]


def select_slices(mask: np.ndarray, min_fraction: float, stride: int) -> np.ndarray:
    """Axial slices whose brain area is at least ``min_fraction`` of the largest, every ``stride``-th.

    Parameters
    ----------
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    min_fraction : float
        In [0, 1]; 0 keeps every slice with a brain voxel.
    stride : int
        Keep every ``stride``-th of the qualifying slices (1: all), starting with the middle one.
    """
    area = mask.sum(axis=(0, 1))
    qualifying = np.flatnonzero((area > 0) & (area >= min_fraction * area.max()))
    if stride < 1:
        raise ValueError(f"stride must be a positive integer; got {stride}")
    return qualifying[(len(qualifying) // 2) % stride :: stride]


def dilate(mask: Tensor, voxels: int) -> Tensor:
    """Square (Chebyshev) in-plane dilation of a (B, H, W) bool mask by ``voxels`` voxels."""
    if voxels <= 0:
        return mask
    pooled = torch.nn.functional.max_pool2d(
        mask[:, None].float(), kernel_size=2 * voxels + 1, stride=1, padding=voxels
    )
    return pooled[:, 0] > 0


# ----------------------------------------------------------------------------------------------
# Prepared slices
# ----------------------------------------------------------------------------------------------


@dataclass
class SliceSet:
    """Cropped axial slices of several subjects, ready for the network and the loss.

    Attributes
    ----------
    q_l : Tensor
        (S, 3, h, w) LR maps: PD [a.u.], T1 [ms], T2 [ms].
    guides : Tensor
        (S, 2, h, w) guides of :data:`GUIDE_ORDER`, z-scored per volume, zero outside the brain.
    mask : Tensor
        (S, h, w) brain mask.
    region : Tensor
        (S, h, w) voxels of the data-consistency term (the dilated brain mask).
    c_l : Tensor
        (S, 12, h, w) acquired LR contrasts, a.u.
    """

    q_l: Tensor
    guides: Tensor
    mask: Tensor
    region: Tensor
    c_l: Tensor

    def __len__(self) -> int:
        return self.q_l.shape[0]

    def batch(self, index: Tensor, device: torch.device) -> SliceSet:
        """The slices ``index``, moved to ``device``."""
        return SliceSet(
            *(getattr(self, f).index_select(0, index).to(device) for f in self.__dataclass_fields__)
        )

    @staticmethod
    def concatenate(parts: Sequence[SliceSet]) -> SliceSet:
        """Stack the slices of several sets."""
        return SliceSet(
            *(torch.cat([getattr(p, f) for p in parts]) for f in SliceSet.__dataclass_fields__)
        )


def slices_first(
    volume: np.ndarray, rows: np.ndarray, cols: np.ndarray, slices: np.ndarray
) -> Tensor:
    """(..., X, Y, Z) → (Z', ..., h, w): the window and the chosen axial slices, slices first."""
    cropped = np.take(np.take(volume, rows, axis=-3), cols, axis=-2)[..., slices]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(cropped, -1, 0)))


def prepare_subject(acq: Any, size: tuple[int, int], slices: np.ndarray, dilation: int) -> SliceSet:
    """Crop and slice one subject's acquired data (never its Q_h).

    Parameters
    ----------
    acq
        Acquired data with ``q_l`` (3, X, Y, Z), ``guides`` {"T1w", "T2w"} (X, Y, Z), ``mask``
        (X, Y, Z) bool and ``lr_contrasts()`` (12, X, Y, Z), as :mod:`swig_lib.experiments.subjects.dataset` provides.
    size : (int, int)
        In-plane window (:func:`window_size`).
    slices : numpy.ndarray
        Axial slice indices.
    dilation : int
        Voxels by which the brain mask is dilated for the data-consistency region.
    """
    mask_np = np.asarray(acq.mask, dtype=bool)
    rows, cols = window_indices(mask_np, size)
    mask_t = torch.from_numpy(mask_np)
    guides = np.stack(
        [zscore_guide(torch.as_tensor(acq.guides[g]).float(), mask_t).numpy() for g in GUIDE_ORDER]
    )
    mask = slices_first(mask_np, rows, cols, slices)
    return SliceSet(
        q_l=slices_first(np.asarray(acq.q_l, dtype=np.float32), rows, cols, slices),
        guides=slices_first(guides.astype(np.float32), rows, cols, slices),
        mask=mask,
        region=dilate(mask, dilation),
        c_l=slices_first(np.asarray(acq.lr_contrasts(), dtype=np.float32), rows, cols, slices),
    )


@dataclass
class TrainingData:
    """Everything training reads from a dataset: prepared slices, the map scales and Φ's settings."""

    train: SliceSet
    val: SliceSet
    q_scale: list[float]
    grid: tuple[int, int]
    keep: float
    sigma: float


def _setting(settings: Any, name: str) -> Any:
    """A dataset setting by name, from a mapping or an object with attributes."""
    return settings[name] if isinstance(settings, Mapping) else getattr(settings, name)


def prepare_data(
    dataset: Any, profile: Mapping[str, Any], margin: int, progress: bool = True
) -> TrainingData:
    """Load the training and validation subjects of ``dataset`` into :class:`SliceSet` s.

    Parameters
    ----------
    dataset
        Provides ``subject_ids(split)``, ``acquired(subject_id)`` and ``settings`` (``keep``,
        ``sigma``), as :func:`swig_lib.experiments.subjects.dataset.load_dataset` returns.
    profile : mapping
        The profile; reads ``train.min_brain_fraction``, ``train.slice_stride``,
        ``train.dc_dilation``.
    margin : int
        Voxels around the brain in the crop window (the model's receptive radius).
    progress : bool
        Show a progress bar.
    """
    cfg = profile["train"]
    acquired = {
        split: [
            dataset.acquired(sid)
            for sid in tqdm(dataset.subject_ids(split), desc=f"load {split}", disable=not progress)
        ]
        for split in ("train", "val")
    }
    masks = [np.asarray(a.mask, dtype=bool) for split in acquired.values() for a in split]
    size = window_size(masks, margin)
    if cfg["dc_dilation"] > margin:
        raise ValueError("train.dc_dilation must not exceed the crop margin (the receptive radius)")
    sets = {}
    for split, subjects in acquired.items():
        sets[split] = SliceSet.concatenate(
            [
                prepare_subject(
                    a,
                    size,
                    select_slices(
                        np.asarray(a.mask, bool), cfg["min_brain_fraction"], cfg["slice_stride"]
                    ),
                    cfg["dc_dilation"],
                )
                for a in subjects
            ]
        )
    q_scale = masked_channel_means(
        [torch.as_tensor(np.asarray(a.q_l)) for a in acquired["train"]],
        [torch.as_tensor(np.asarray(a.mask, bool)) for a in acquired["train"]],
    )
    return TrainingData(
        train=sets["train"],
        val=sets["val"],
        q_scale=q_scale.tolist(),
        grid=masks[0].shape[:2],
        keep=float(_setting(dataset.settings, "keep")),
        sigma=float(_setting(dataset.settings, "sigma")),
    )


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


def _comparable(profile: Mapping[str, Any]) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def crop_phi(data: TrainingData, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Row and column factors of noise-free Φ on the training window (:func:`lowpass_matrix`)."""
    h, w = data.train.q_l.shape[-2:]
    return (
        lowpass_matrix(data.grid[0], h, data.keep, device=device),
        lowpass_matrix(data.grid[1], w, data.keep, device=device),
    )


def balanced_alpha(data: TrainingData, batch_size: int = 8) -> tuple[float, float, float]:
    """The α rule: balance the two terms of eq. 12 at the start of training.

    The untrained model returns Q_l, so α = L_l(Q_l)/L_h(Q_l), both terms averaged over the
    training slices with all guides (as M12++ uses them), makes L_l and α·L_h start equal. Only
    acquired data enter (C_l, Q_l, guides, mask), and the rule adapts to the units, to σ (L_l ∝ 1/σ²)
    and to Φ, which fix the scale of L_l but not of L_h ∈ [0, n_guides].

    Why not the likelihood reading? Treating each guide as one more image with the contrasts'
    noise σ gives α = Var_brain(M_g(Q_l))/σ² ≈ 2800 on the quick data, the order of the paper's
    1000. But L_l starts three orders of magnitude above its noise floor (≈ 3000 vs 1.5, mostly at
    the brain rim where the LR fit is inconsistent with Φ), so with such α the guide term is
    negligible for most of a short training. In trials (width 16, 600 steps, held-out training
    subjects) the gains in SSIM/HFEN grew with α up to the balanced value (≈ 3e4) while L_l at the
    end did not change; at 1e5 L_l ended higher.

    Parameters
    ----------
    data : TrainingData
        Prepared slices (only ``data.train`` is used).
    batch_size : int
        Slices per evaluation (memory only).

    Returns
    -------
    (alpha, l_data, l_guide) : tuple of float
        α and the two terms at Q_l (slice-weighted means over the batches).
    """
    phi = crop_phi(data)
    sums = [0.0, 0.0]
    with torch.no_grad():
        for first in range(0, len(data.train), batch_size):
            batch = data.train.batch(
                torch.arange(first, min(first + batch_size, len(data.train))), torch.device("cpu")
            )
            guides = {g: batch.guides[:, i] for i, g in enumerate(GUIDE_ORDER)}
            terms = swig_loss(
                batch.q_l, batch.c_l, guides, batch.mask, batch.region, data.sigma, phi, 1.0
            )
            sums[0] += float(terms.data) * len(batch)
            sums[1] += float(terms.guide) * len(batch)
    l_data, l_guide = sums[0] / len(data.train), sums[1] / len(data.train)
    return l_data / l_guide, l_data, l_guide


def batch_loss(
    model: SwigResNet,
    batch: SliceSet,
    variant: Variant,
    alpha: float,
    phi: tuple[Tensor, Tensor],
    sigma: float,
) -> LossTerms:
    """Run the model on a batch and return the terms of eq. 12 for ``variant``."""
    channels = [GUIDE_ORDER.index(g) for g in variant.guides]
    guides = batch.guides[:, channels]
    q_hat = model(batch.q_l if variant.use_ql else None, guides, batch.mask)
    return swig_loss(
        q_hat,
        batch.c_l,
        {g: guides[:, i] for i, g in enumerate(variant.guides)},
        batch.mask,
        batch.region,
        sigma,
        phi,
        alpha,
        data_consistency=variant.data_consistency,
    )


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate schedule: linear warm-up over ``warmup_steps``, then cosine decay to 0.

    factor(t) = min(1, (t + 1)/warmup_steps) · (1 + cos(π·t/total_steps))/2. Adam's first updates
    are sign-like (every weight moves by the full learning rate); through the zero-initialised 9×9
    output layer they would add up to a large residual at once and throw the model far from its
    Q_l start, hence the ramp. The decay lets short runs settle instead of ending mid-oscillation
    (a constant 1e-3 diverged after ~400 steps in a trial). Stateless, so resuming needs no
    scheduler state.
    """
    warm = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def run_epoch(
    model: SwigResNet,
    data: SliceSet,
    order: Tensor,
    batch_size: int,
    loss_fn: Callable[[SliceSet], LossTerms],
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    desc: str,
    progress: bool,
    lr: float = 0.0,
    first_step: int = 0,
    total_steps: int = 1,
    warmup_steps: int = 0,
) -> dict[str, float]:
    """One pass over ``data`` in ``order``; trains when ``optimizer`` is given. Returns mean terms.

    Training steps are numbered from ``first_step``; step t uses the learning rate
    ``lr · lr_factor(t, total_steps, warmup_steps)``.
    """
    sums = {"loss_lr": 0.0, "loss_guide": 0.0, "loss_total": 0.0}
    model.train(optimizer is not None)
    start = time.perf_counter()
    with torch.set_grad_enabled(optimizer is not None):
        for step, first in enumerate(
            tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False),
            start=first_step,
        ):
            index = order[first : first + batch_size]
            terms = loss_fn(data.batch(index, device))
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr * lr_factor(step, total_steps, warmup_steps)
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
            for key, value in zip(sums, (terms.data, terms.guide, terms.total), strict=True):
                sums[key] += float(value.detach()) * len(index)
    elapsed = time.perf_counter() - start
    result = {key: value / len(order) for key, value in sums.items()}
    result.update(time_s=elapsed, slices_per_s=len(order) / elapsed)
    return result


def train_variant(
    profile: Mapping[str, Any],
    variant: str | Variant,
    out: str | Path,
    resume: bool = False,
    device: str | torch.device | None = None,
    dataset: Any = None,
    data: TrainingData | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> Path:
    """Train one variant with the self-supervised loss (eq. 12); return the selected checkpoint.

    Parameters
    ----------
    profile : mapping
        A profile (:func:`swig_lib.experiments.config.load_profile`): sections ``train``, ``model``, ``data``.
    variant : str or Variant
        A key of :data:`VARIANTS` or a :class:`Variant`.
    out : path
        Results folder (``results/<profile>``).
    resume : bool
        Continue from ``checkpoints/<variant>.last.pt`` (model, optimiser, RNG states, log) up to
        ``train.epochs``; the rest of the profile must match the checkpoint's.
    device : str or torch.device, optional
        Default: :func:`swig_lib.default_device`.
    dataset
        A loaded dataset (default: ``swig_lib.experiments.subjects.dataset.load_dataset(profile)``).
    data : TrainingData, optional
        Already prepared slices (saves reloading when training several variants).
    progress : bool
        tqdm progress bars.
    on_epoch_end : callable, optional
        Called with the number of completed epochs after each epoch's checkpoint is written.

    Returns
    -------
    Path
        ``checkpoints/<variant>.pt``.
    """
    variant = VARIANTS[variant] if isinstance(variant, str) else variant
    device = torch.device(device) if device is not None else default_device()
    cfg = profile["train"]
    out = Path(out)
    best_path, last_path = checkpoint_paths(out, variant.name)
    log_path = out / "logs" / f"{variant.name}.csv"
    alpha = variant.resolved_alpha(cfg["alpha"])

    if data is None:
        if dataset is None:
            from swig_lib.experiments.subjects.dataset import load_dataset

            dataset = load_dataset(profile, progress=progress)
        data = prepare_data(
            dataset, profile, receptive_radius(**profile["model"]), progress=progress
        )
    seed_everything(int(profile["seed"]))
    model = SwigResNet(variant.guides, variant.use_ql, data.q_scale, **profile["model"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    shuffle = torch.Generator().manual_seed(int(profile["seed"]))
    phi = crop_phi(data, device)

    log: list[dict[str, Any]] = []
    epoch, best_val, best_epoch = 0, float("inf"), 0
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        if _comparable(state["profile"]) != _comparable(profile) or state["variant"] != asdict(
            variant
        ):
            raise CheckpointError(
                f"{last_path} was written with other settings than the current profile/variant; "
                "train without --resume to start over, or restore the profile it was made with."
            )
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        shuffle.set_state(state["shuffle_state"])
        set_rng_state(state["rng"])
        epoch, best_val, best_epoch, log = (
            state["epoch"],
            state["best_val"],
            state["best_epoch"],
            list(state["log"]),
        )

    def loss_fn(batch: SliceSet) -> LossTerms:
        return batch_loss(model, batch, variant, alpha, phi, data.sigma)

    epochs = int(cfg["epochs"])
    bar = tqdm(
        range(epoch, epochs),
        desc=f"train {variant.name}",
        disable=not progress,
        initial=epoch,
        total=epochs,
    )
    for epoch in bar:
        order = torch.randperm(len(data.train), generator=shuffle)
        steps_per_epoch = -(-len(data.train) // cfg["batch_size"])
        train_terms = run_epoch(
            model,
            data.train,
            order,
            cfg["batch_size"],
            loss_fn,
            device,
            optimizer,
            "train",
            progress,
            lr=cfg["lr"],
            first_step=epoch * steps_per_epoch,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=cfg["warmup_steps"],
        )
        val_terms = run_epoch(
            model,
            data.val,
            torch.arange(len(data.val)),
            cfg["batch_size"],
            loss_fn,
            device,
            None,
            "val",
            progress,
        )
        for split, terms in (("train", train_terms), ("val", val_terms)):
            log.append({"epoch": epoch + 1, "split": split, "alpha": alpha, **terms})
        improved = val_terms["loss_total"] < best_val
        if improved:
            best_val, best_epoch = val_terms["loss_total"], epoch + 1
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model_spec": model.spec,
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "variant": asdict(variant),
            "profile": dict(profile),
            "epoch": epoch + 1,
            "device": str(device),
            "best_val": best_val,
            "best_epoch": best_epoch,
            "rng": rng_state(),
            "shuffle_state": shuffle.get_state(),
            "log": log,
        }
        if improved:
            save_checkpoint(best_path, payload)
        save_checkpoint(last_path, payload)
        write_log(log_path, log)
        bar.set_postfix(
            L_l=f"{val_terms['loss_lr']:.3g}", L_h=f"{val_terms['loss_guide']:.3g}", best=best_epoch
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return best_path


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    """``swig train``: train the requested variants one after the other."""
    profile, out, dataset = experiment_setup(args)
    names = list(VARIANTS) if args.variant == ["all"] else args.variant
    data = prepare_data(dataset, profile, receptive_radius(**profile["model"]))
    if args.suggest_alpha:
        alpha, l_data, l_guide = balanced_alpha(data)
        print(
            f"at Q_l on {len(data.train)} training slices: L_l = {l_data:.4g}, L_h = {l_guide:.4g}; "
            f"balanced alpha = L_l/L_h = {alpha:.4g} (profile {args.profile}: "
            f"train.alpha = {profile['train']['alpha']:g})"
        )
        return 0
    for name in names:
        path = train_variant(
            profile, name, out, resume=args.resume, device=parse_device(args.device), data=data
        )
        print(f"{name}: selected checkpoint {path}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``swig train``."""
    parser = subparsers.add_parser(
        "train", help="train SWIG models (Table I variants) self-supervised"
    )
    add_experiment_arguments(parser)
    parser.add_argument(
        "--variant",
        nargs="+",
        default=["M12++"],
        choices=[*VARIANTS, "all"],
        help="variant(s) of Table I, or 'all'",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from checkpoints/<variant>.last.pt"
    )
    parser.add_argument(
        "--suggest-alpha",
        action="store_true",
        help="print the α rule's value (L_l/L_h at Q_l on the training slices) and exit",
    )
    parser.set_defaults(func=run_train)
