"""Supervised super-resolution, the upper bound: SWIG's ResNet and budget trained with HR labels.

The arm
-------
The same network as SWIG's selected model (:class:`swig_lib.core.models.SwigResNet` with Q_l and
both guides as inputs, the profile's ``[model]``), the same slices and windows
(:func:`swig_lib.experiments.training.windows.prepare_data`) and the same budget (the profile's
``train.epochs``, ``batch_size``, ``lr``, ``warmup_steps``, Adam with warm-up and cosine decay),
trained to the HR maps: the mean squared error to Q_h over brain voxels, each map divided by its
scale s (the training set's brain mean of Q_l), so that PD, T1 and T2 weigh alike. The epoch with
the lowest validation loss (on the validation subjects' Q_h) is kept. This is what SWIG's
self-supervision exists to avoid; the gap to it bounds what labels would add.

Needs: HR qMRI labels of the training and validation subjects, the subjects' guides, a training
set; no per-scan optimisation. Follows no related paper: the issue's baseline.

The training loop is :func:`swig_lib.experiments.training.loop.run_epoch`, reused through its
public interface: :class:`LabelledSlices` has the ``batch(index, device)`` it reads, and the loss
comes back as :class:`swig_lib.core.losses.LossTerms`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from swig_lib.core.losses import LossTerms
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.config import Profile
from swig_lib.experiments.training.loop import run_epoch
from swig_lib.experiments.training.variants import GUIDE_ORDER
from swig_lib.experiments.training.windows import SliceSet, TrainingData, select_slices, slices_first, window_indices


@dataclass
class LabelledSlices:
    """Prepared slices with their HR maps (same windows and order).

    Attributes
    ----------
    slices : SliceSet
        What a scanner gives (Q_l, guides, mask, region, C_l).
    q_h : Tensor
        (S, 3, h, w) HR maps Q_h: PD [a.u.], T1 [ms], T2 [ms].
    """

    slices: SliceSet
    q_h: Tensor

    def __post_init__(self) -> None:
        if self.q_h.shape != self.slices.q_l.shape:
            raise ValueError(f"labels {tuple(self.q_h.shape)} do not match the slices {tuple(self.slices.q_l.shape)}")

    def __len__(self) -> int:
        return len(self.slices)

    def batch(self, index: Tensor, device: torch.device) -> LabelledSlices:
        """Return the slices ``index`` with their labels, on ``device``."""
        return LabelledSlices(self.slices.batch(index, device), self.q_h.index_select(0, index).to(device))


def reference_slices(dataset: Any, profile: Profile, split: str, window: tuple[int, int]) -> Tensor:
    """Q_h of a split cropped and sliced exactly as :func:`prepare_data` crops and slices its data.

    Parameters
    ----------
    dataset
        Provides ``subject_ids``, ``acquired`` (for the masks) and ``reference`` (Q_h).
    profile : Profile
        Reads ``train.min_brain_fraction`` and ``train.slice_stride`` (the slice selection).
    split : str
        ``"train"`` or ``"val"``.
    window : (int, int)
        The in-plane window of the prepared slices (``data.train.q_l.shape[-2:]``).

    Returns
    -------
    Tensor
        (S, 3, h, w) float32 HR maps, slices in the order of the prepared :class:`SliceSet`.
    """
    cfg = profile.train
    parts = []
    for sid in dataset.subject_ids(split):
        mask = np.asarray(dataset.acquired(sid).mask, dtype=bool)
        rows, cols = window_indices(mask, window)
        chosen = select_slices(mask, cfg.min_brain_fraction, cfg.slice_stride)
        parts.append(slices_first(np.asarray(dataset.reference(sid), dtype=np.float32), rows, cols, chosen))
    return torch.cat(parts)


def labelled_data(
    dataset: Any, profile: Profile, data: TrainingData
) -> tuple[LabelledSlices, LabelledSlices]:
    """Training and validation slices of ``data`` with their HR maps from ``dataset``."""
    window = tuple(data.train.q_l.shape[-2:])
    return (
        LabelledSlices(data.train, reference_slices(dataset, profile, "train", window)),
        LabelledSlices(data.val, reference_slices(dataset, profile, "val", window)),
    )


def predict(model: SwigResNet, slices: SliceSet) -> Tensor:
    """Run ``model`` on prepared slices (its guides picked from :data:`GUIDE_ORDER`): (S, 3, h, w)."""
    guides = slices.guides[:, [GUIDE_ORDER.index(g) for g in model.guides]] if model.guides else None
    return model(slices.q_l if model.use_ql else None, guides, slices.mask)


def scaled_mse(q_hat: Tensor, q_h: Tensor, mask: Tensor, q_scale: Tensor) -> Tensor:
    """Mean over brain voxels and maps of ((Q̂ − Q_h)/s)², dimensionless.

    Parameters
    ----------
    q_hat, q_h : Tensor
        (B, 3, H, W) prediction and HR maps, PD [a.u.], T1 [ms], T2 [ms].
    mask : Tensor
        (B, H, W) brain mask.
    q_scale : Tensor
        (3,) scales s, the maps' units.
    """
    weight = mask.unsqueeze(1).to(q_hat.dtype)
    error = (q_hat - q_h) / q_scale.view(1, -1, 1, 1).to(q_hat.dtype)
    return (error.square() * weight).sum() / (weight.sum().clamp_min(1.0) * q_hat.shape[1])


LabelLoss = Callable[[Tensor, Tensor, Tensor, Tensor], LossTerms]


def mse_terms(q_hat: Tensor, q_h: Tensor, mask: Tensor, q_scale: Tensor) -> LossTerms:
    """:func:`scaled_mse` as :class:`LossTerms` (``data`` = ``total``, ``guide`` = 0)."""
    mse = scaled_mse(q_hat, q_h, mask, q_scale)
    return LossTerms(total=mse, data=mse, guide=mse.new_zeros(()))


def train_with_labels(
    model: SwigResNet,
    train: LabelledSlices,
    val: LabelledSlices,
    train_cfg: Mapping[str, Any],
    loss: LabelLoss = mse_terms,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[SwigResNet, list[dict[str, Any]]]:
    """Train ``model`` on labelled slices with SWIG's budget; keep the epoch of lowest validation loss.

    Parameters
    ----------
    model : SwigResNet
        The network (its inputs decide whether Q_l and which guides are used).
    train, val : LabelledSlices
        Training and validation slices with Q_h.
    train_cfg : mapping
        ``epochs``, ``batch_size``, ``lr``, ``warmup_steps`` (the profile's ``train`` section).
    loss : callable
        ``(q_hat, q_h, mask, q_scale) → LossTerms`` (default :func:`mse_terms`).
    seed : int
        Seeds the shuffling (the weights are seeded by whoever built ``model``).
    device : torch.device or str
        Where to train.
    progress : bool
        tqdm bars.

    Returns
    -------
    (SwigResNet, list of dict)
        The model with the weights of the selected epoch (eval mode) and one log row per epoch and
        split (``loss_total``, ``loss_lr`` = the first term, ``loss_guide`` = the second, ``time_s``).
    """
    device = torch.device(device)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg["lr"])
    shuffle = torch.Generator().manual_seed(int(seed))
    epochs, batch_size = int(train_cfg["epochs"]), int(train_cfg["batch_size"])
    steps_per_epoch = -(-len(train) // batch_size)

    def loss_fn(batch: LabelledSlices) -> LossTerms:
        return loss(predict(model, batch.slices), batch.q_h, batch.slices.mask, model.q_scale)

    log: list[dict[str, Any]] = []
    best_val, best_state = float("inf"), copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=shuffle)
        train_terms = run_epoch(
            model,
            train,
            order,
            batch_size,
            loss_fn,
            device,
            optimizer,
            "train",
            progress,
            lr=train_cfg["lr"],
            first_step=epoch * steps_per_epoch,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=train_cfg["warmup_steps"],
        )
        val_terms = run_epoch(model, val, torch.arange(len(val)), batch_size, loss_fn, device, None, "val", progress)
        for split, terms in (("train", train_terms), ("val", val_terms)):
            log.append({"epoch": epoch + 1, "split": split, **terms})
        if val_terms["loss_total"] < best_val:
            best_val, best_state = val_terms["loss_total"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), log


def supervised_model(q_scale: list[float], model_cfg: Mapping[str, Any]) -> SwigResNet:
    """SWIG's selected network (Q_l and both guides as inputs) with the profile's ``[model]`` settings."""
    return SwigResNet(GUIDE_ORDER, True, q_scale, **model_cfg)
