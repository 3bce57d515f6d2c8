"""Acq5^R: a supervised CNN reconstruction of the simulated radial maps (paper Sec. III-A.2a).

In the paper, Acq5^R is the 5-minute MuPa-ZTE scan reconstructed by the vendor's deep-learning
reconstruction, a CNN trained with supervision on HR references. Our analogue is trained here:

* **Network**: :class:`swig_lib.core.models.SwigResNet` with Q_l as its only input (no guides), the
  architecture of the profile's ``[model]`` section; its zero-initialised last layer makes the
  untrained network the identity, so it learns a correction of the input maps.
* **Data**: the Acq5 maps (:func:`swig_lib.experiments.crossseq.sequence.simulate_protocols`) of the
  *training-split* subjects, simulated with the radial sequence, paired with their Q_h; never a
  validation or test subject.
* **Loss**: mean squared error of the maps in units of the input scales s (the brain means of the
  Acq5 training maps, the network's ``q_scale``), over the brain voxels::

      L = mean_{brain voxels, maps m} ((Q̂_m − Q_h,m) / s_m)²

Training reuses :mod:`swig_lib.experiments.training`: its epoch loop and learning-rate schedule
(:func:`~swig_lib.experiments.training.loop.run_epoch`,
:func:`~swig_lib.experiments.training.loop.lr_factor`), seeding, crop windows and checkpoint
format, so :func:`swig_lib.experiments.inference.load_model` and
:func:`~swig_lib.experiments.inference.predict_volume` read and apply the model like any SWIG model. The
checkpoint records what it was trained with (:func:`recon_key`) and :func:`train_recon_cnn` reuses
it only when that matches.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from swig_lib.core.losses import LossTerms
from swig_lib.core.models import SwigResNet, masked_channel_means, receptive_radius
from swig_lib.experiments.config import check_known_fields
from swig_lib.experiments.crossseq.sequence import (
    AcquisitionSettings,
    simulate_protocols,
)
from swig_lib.experiments.subjects.dataset import torch_threads
from swig_lib.experiments.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from swig_lib.experiments.training.loop import run_epoch
from swig_lib.experiments.training.windows import (
    select_slices,
    slices_first,
    window_indices,
    window_size,
)

#: Name of the checkpoint (``<out>/checkpoints/<RECON_NAME>.pt``) and of the protocol it makes.
RECON_NAME = "Acq5R"

#: Tag of the random streams of the training subjects' simulated acquisitions.
TRAIN_STREAM = 1


@dataclass(frozen=True)
class ReconSettings:
    """Training settings of the supervised reconstruction CNN (profile ``crosssequence.recon``).

    Attributes
    ----------
    epochs : int
        Passes over the training slices (the last epoch is kept: no validation split is used).
    batch_size : int
        Slices per step.
    lr : float
        Peak Adam learning rate (linear warm-up, cosine decay; :func:`swig_lib.experiments.training.loop.lr_factor`).
    warmup_steps : int
        Steps of the warm-up.
    slice_stride : int
        Every n-th of the qualifying stored slices of each training subject.
    min_brain_fraction : float
        Slices whose brain area is below this fraction of the largest are skipped.
    """

    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-3
    warmup_steps: int = 20
    slice_stride: int = 1
    min_brain_fraction: float = 0.25

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ReconSettings:
        """Settings from a mapping (a profile table); unknown keys raise KeyError."""
        check_known_fields(cls, values, "recon")
        return cls(**values)


@dataclass
class SupervisedSlices:
    """Cropped axial slices for supervised training (the interface of ``training.run_epoch``).

    Attributes
    ----------
    inputs : Tensor
        (S, 3, h, w) input maps (Acq5): PD [a.u.], T1 [ms], T2 [ms].
    target : Tensor
        (S, 3, h, w) reference maps Q_h, same units.
    mask : Tensor
        (S, h, w) brain mask.
    """

    inputs: Tensor
    target: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(self, index: Tensor, device: torch.device) -> SupervisedSlices:
        """The slices ``index``, moved to ``device``."""
        return SupervisedSlices(
            *(getattr(self, f).index_select(0, index).to(device) for f in self.__dataclass_fields__)
        )


def supervised_loss(model: SwigResNet, batch: SupervisedSlices) -> LossTerms:
    """MSE of the scaled maps over the brain voxels; returned as ``LossTerms(total, data, guide=0)``.

    Parameters
    ----------
    model : SwigResNet
        The reconstruction network (Q_l input only); its ``q_scale`` gives the units s.
    batch : SupervisedSlices
        Inputs, targets and masks.

    Returns
    -------
    LossTerms
        ``total`` = ``data`` = mean over brain voxels and maps of ((Q̂ − Q_h)/s)², ``guide`` = 0.
    """
    pred = model(batch.inputs, None, batch.mask)
    scale = model.q_scale.view(1, -1, 1, 1)
    weight = batch.mask.to(pred.dtype).unsqueeze(1)
    count = weight.sum().clamp_min(1.0) * pred.shape[1]
    mse = (((pred - batch.target) / scale) ** 2 * weight).sum() / count
    return LossTerms(total=mse, data=mse, guide=torch.zeros_like(mse))


def recon_key(
    settings: ReconSettings,
    model_cfg: Mapping[str, Any],
    acquisition: AcquisitionSettings,
    seed: int,
    data_settings: Mapping[str, Any],
    subjects: Sequence[str],
) -> str:
    """What a reconstruction checkpoint depends on, as canonical JSON (compared for reuse)."""
    return json.dumps(
        {
            "recon": dataclasses.asdict(settings),
            "model": dict(model_cfg),
            "acquisition": dataclasses.asdict(acquisition),
            "seed": int(seed),
            "data": dict(data_settings),
            "subjects": list(subjects),
        },
        sort_keys=True,
    )


def subject_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit integer seed for subject ``index`` of random stream ``stream`` of run ``seed``."""
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(1, np.uint64)
    return int(state[0] >> 1)


def training_slices(
    dataset: Any,
    settings: ReconSettings,
    acquisition: AcquisitionSettings,
    margin: int,
    seed: int,
    progress: bool = True,
) -> SupervisedSlices:
    """Simulate Acq5 for the training subjects and crop (Acq5, Q_h, mask) slices for training.

    Parameters
    ----------
    dataset
        A loaded dataset (:func:`swig_lib.experiments.subjects.dataset.load_dataset`); reads ``subject_ids("train")``,
        ``acquired(sid).mask`` and ``reference(sid)``.
    settings : ReconSettings
        Slice selection.
    acquisition : AcquisitionSettings
        The radial acquisition (the protocol is set to Acq5 here).
    margin : int
        Voxels around the brain in the crop window (the network's receptive radius).
    seed : int
        Run seed; subject i simulates with :func:`subject_seed` (seed, :data:`TRAIN_STREAM`, i).
    progress : bool
        Progress bar.
    """
    pairs = []
    for index, sid in enumerate(
        tqdm(dataset.subject_ids("train"), desc="simulate Acq5 (training)", disable=not progress)
    ):
        mask = np.asarray(dataset.acquired(sid).mask, dtype=bool)
        q_h = np.asarray(dataset.reference(sid), dtype=np.float32)
        z = select_slices(mask, settings.min_brain_fraction, settings.slice_stride)
        acq5 = simulate_protocols(
            *q_h[..., z], mask[..., z], ("Acq5",), subject_seed(seed, TRAIN_STREAM, index),
            acquisition,
        )["Acq5"]
        pairs.append((np.stack(acq5), q_h[..., z], mask[..., z]))
    if not pairs:
        raise ValueError("the dataset has no training subjects to train the reconstruction CNN")
    size = window_size([m for *_, m in pairs], margin)
    parts = []
    for acq5, q_h, mask in pairs:
        rows, cols = window_indices(mask, size)
        every = np.arange(mask.shape[2])
        parts.append([slices_first(a, rows, cols, every) for a in (acq5, q_h, mask)])
    return SupervisedSlices(*(torch.cat(column) for column in zip(*parts)))


def train_recon_cnn(
    dataset: Any,
    path: str | Path,
    settings: ReconSettings,
    model_cfg: Mapping[str, Any],
    acquisition: AcquisitionSettings,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Path:
    """Train the reconstruction CNN on the training subjects, or reuse a matching checkpoint.

    The checkpoint at ``path`` is reused when its :func:`recon_key` equals the one of these
    arguments (and it loads); otherwise the model is trained (torch single-threaded, see
    :func:`swig_lib.experiments.subjects.dataset.torch_threads`) and written atomically, with its per-epoch log.

    Parameters
    ----------
    dataset
        A loaded dataset (:func:`swig_lib.experiments.subjects.dataset.load_dataset`).
    path : path
        Checkpoint file, e.g. ``results/<profile>/checkpoints/Acq5R.pt``.
    settings : ReconSettings
        Training settings.
    model_cfg : mapping
        ``SwigResNet`` architecture: width, n_blocks, first_kernel, last_kernel.
    acquisition : AcquisitionSettings
        The radial acquisition whose Acq5 maps the network learns to correct.
    seed : int
        Seeds the simulation, the initialisation and the shuffling.
    device : str or torch.device
        Where the model trains.
    progress : bool
        Progress bars.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    subjects = dataset.subject_ids("train")
    key = recon_key(settings, model_cfg, acquisition, seed, dataset.settings, subjects)
    if path.is_file():
        try:
            if load_checkpoint(path).get("recon_key") == key:
                return path
        except CheckpointError:
            pass  # damaged or foreign: train again and overwrite it
    device = torch.device(device)
    with torch_threads(1):
        data = training_slices(
            dataset, settings, acquisition, receptive_radius(**model_cfg), seed, progress
        )
        seed_everything(int(seed))
        scale = masked_channel_means([data.inputs.movedim(1, 0)], [data.mask])
        model = SwigResNet((), True, scale.tolist(), **model_cfg).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        shuffle = torch.Generator().manual_seed(int(seed))
        steps = -(-len(data) // settings.batch_size)
        log = []
        for epoch in tqdm(range(settings.epochs), desc="train Acq5^R CNN", disable=not progress):
            terms = run_epoch(
                model,
                data,  # type: ignore[arg-type]  # duck-typed: len() and batch(index, device)
                torch.randperm(len(data), generator=shuffle),
                settings.batch_size,
                lambda batch: supervised_loss(model, batch),
                device,
                optimizer,
                "epoch",
                False,
                lr=settings.lr,
                first_step=epoch * steps,
                total_steps=settings.epochs * steps,
                warmup_steps=settings.warmup_steps,
            )
            log.append({"epoch": epoch + 1, "loss_mse": terms["loss_total"], "time_s": terms["time_s"]})
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "model_spec": model.spec,
            "model_state": model.state_dict(),
            "recon_key": key,
            "log": log,
        },
    )
    return path
