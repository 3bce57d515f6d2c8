"""Scan-specific adaptation: fine-tune a trained model on the subject it processes, or train a fresh one.

The SWIG loss (eq. 12) needs no label, so the very subject a model is applied to can train it:
``swig apply --adapt N`` runs N Adam steps of the self-supervised loss on that subject's slices
before predicting, starting from the trained weights; ``--from-scratch N`` starts from a fresh
network of the same architecture instead (the subject alone is the training set). Everything else
comes from the checkpoint (:class:`Recipe`): the variant (guides, Q_l input, data consistency),
α, the learning rate, batch size and warm-up, Φ's ``keep`` and ``sigma`` and the LR qMRI protocol.
The guides are synthesised with the protocols they were acquired with (their sidecars', else the
model's). The data term uses the subject's LR contrasts when given, else the contrasts synthesised
from its maps, on the brain mask (:mod:`swig_lib.experiments.owndata.folder` says why).

The steps reuse the training loop (:func:`swig_lib.experiments.training.loop.run_epoch`, the
learning-rate schedule :func:`~swig_lib.experiments.training.loop.lr_factor` over the N steps with
a warm-up of min(``train.warmup_steps``, N/2) steps); the slices are every axial slice with brain
voxels, cropped as in training, drawn in seeded random order (whole passes, then the start of
another), so the result is deterministic for a seed on the CPU. The loss before and after, over
all slices with the network in evaluation mode, goes into ``swig_apply.json`` (``swig apply``
warns when it rose).

How many steps: on a smoke-profile test subject (4 slices of 170×206 voxels, the smoke M12++) the
loss over the subject fell from 5383 to 3740 after 50 steps and to 1831 after 200, but 10 steps
raised it (7812). A half, a third or a fifth of the learning rate did not make short runs safe
(of 2, 5, 10 and 20 steps, some still ended above the start): with batches of two slices the
first steps are noisy, and the batch-normalisation statistics move towards those of the subject.
Give 50 steps or more. A well-trained model may still not gain: the quick-profile M12++ started at
a loss of 250-320 on its first three test subjects (20 slices each), and 50 steps raised it on all
three (100 steps on one of them, too); chapters 04 and 08 report what adaptation gains against the
true maps.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from swig_lib.core.models import SwigResNet, masked_channel_means
from swig_lib.core.sequences import GuideProtocol
from swig_lib.experiments.training.checkpoints import Acquisition, CheckpointError, seed_everything
from swig_lib.experiments.training.loop import batch_loss, crop_phi, run_epoch
from swig_lib.experiments.training.variants import Variant
from swig_lib.experiments.training.windows import TrainingData, prepare_subject, select_slices, window_size

#: Architecture settings of ``[model]`` that a fresh network of :func:`adapt` takes from the checkpoint.
ARCHITECTURE = ("width", "n_blocks", "first_kernel", "last_kernel")


@dataclass(frozen=True)
class AdaptSettings:
    """What ``--adapt N`` / ``--from-scratch N`` asks for.

    Attributes
    ----------
    steps : int
        Adam steps on the subject, at least 1.
    from_scratch : bool
        Start from a fresh network (seeded) instead of the trained weights.
    seed : int
        Seeds the fresh network, the slice order and every RNG.
    lr_scale : float
        Peak learning rate of fine-tuning as a fraction of the training's (``from_scratch``
        always uses the training's). At the training's own rate Adam's first, sign-like steps
        throw a trained model off: on two quick digital test subjects, 50 steps at 1× *raised*
        the self-supervised loss and 50 steps at 0.1× lowered it.
    """

    steps: int
    from_scratch: bool = False
    seed: int = 0
    lr_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"adaptation needs at least one step; got {self.steps}")
        if not 0 < self.lr_scale <= 1:
            raise ValueError(f"lr_scale must lie in (0, 1]; got {self.lr_scale}")

    @property
    def mode(self) -> str:
        """``"from scratch"`` or ``"adapt"``."""
        return "from scratch" if self.from_scratch else "adapt"


@dataclass(frozen=True)
class Recipe:
    """How a checkpoint's model was trained: what adaptation reuses.

    Attributes
    ----------
    variant : Variant
        Guides, Q_l input, data consistency.
    alpha : float
        Weight of L_h.
    lr : float
        Peak learning rate.
    batch_size, warmup_steps, dc_dilation : int
        Slices per step, warm-up steps, dilation (voxels) of the data-consistency region.
    architecture : dict
        :data:`ARCHITECTURE` settings of the network.
    acquisition : Acquisition
        Φ's ``keep`` and ``sigma`` (both known), the LR qMRI protocol, the guides' protocols.
    """

    variant: Variant
    alpha: float
    lr: float
    batch_size: int
    warmup_steps: int
    dc_dilation: int
    architecture: dict[str, int]
    acquisition: Acquisition

    @classmethod
    def of_checkpoint(cls, payload: Mapping[str, Any], source: str = "checkpoint") -> Recipe:
        """Read the recipe of a checkpoint written by ``swig train``.

        Raises
        ------
        CheckpointError
            When the checkpoint records no variant or training settings (not from ``swig
            train``), or not Φ's ``keep`` and ``sigma``.
        """
        fix = "adapt only models from `swig train` (checkpoints/<variant>.pt)"
        try:
            variant = Variant(**{**payload["variant"], "guides": tuple(payload["variant"]["guides"])})
            train = payload["profile"]["train"]
            recipe = cls(variant, variant.resolved_alpha(train["alpha"]), float(train["lr"]),
                         int(train["batch_size"]), int(train["warmup_steps"]), int(train["dc_dilation"]),
                         {key: int(payload["model_spec"][key]) for key in ARCHITECTURE},
                         Acquisition.of_checkpoint(payload, source))
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{source}: records no training settings ({err}); {fix}") from err
        if recipe.acquisition.keep is None or recipe.acquisition.sigma is None:
            raise CheckpointError(f"{source}: records no k-space fraction and noise level of its data; {fix}")
        return recipe


def subject_data(acquired: Any, guide_protocols: Mapping[str, GuideProtocol], acquisition: Acquisition,
                 q_scale: list[float] | None, margin: int, dilation: int,
                 slices: np.ndarray | None = None) -> TrainingData:
    """One subject's slices as :class:`~swig_lib.experiments.training.windows.TrainingData` (train = val).

    Parameters
    ----------
    acquired
        ``q_l`` (3, X, Y, Z), ``guides`` by name, ``mask`` and ``lr_contrasts()``
        (:class:`swig_lib.experiments.subjects.dataset.Acquired`).
    guide_protocols : mapping of str to GuideProtocol
        The guides in the model's channel order, each with the protocol it was acquired with.
    acquisition : Acquisition
        Φ's ``keep`` and ``sigma`` and the LR qMRI protocol.
    q_scale : list of float, optional
        Map scales of the network; default the subject's brain means of Q_l (a fresh network's).
    margin : int
        The network's receptive radius (voxels around the brain in the crop).
    dilation : int
        Voxels by which the mask is dilated for the data term.
    slices : numpy.ndarray, optional
        The axial slices (indices) to adapt on; default every slice with brain voxels.
    """
    mask = np.asarray(acquired.mask, dtype=bool)
    chosen = select_slices(mask, 0.0, 1) if slices is None else np.asarray(slices)
    prepared = prepare_subject(acquired, window_size([mask], margin), chosen, dilation, tuple(guide_protocols))
    if q_scale is None:
        q_scale = masked_channel_means([torch.as_tensor(np.asarray(acquired.q_l))],
                                       [torch.from_numpy(mask)]).tolist()
    return TrainingData(prepared, prepared, q_scale, mask.shape[:2], float(acquisition.keep),
                        float(acquisition.sigma), dict(guide_protocols), acquisition.qmri_protocol)


@dataclass(frozen=True)
class Adaptation:
    """The adapted model and what :func:`adapt` did.

    Attributes
    ----------
    model : SwigResNet
        In evaluation mode.
    record : dict
        Plain data for ``swig_apply.json``: mode, steps, seed, the settings used and the mean
        loss terms over the subject's slices before and after (``loss_lr`` = L_l, ``loss_guide``
        = L_h, ``loss_total``).
    """

    model: SwigResNet
    record: dict[str, Any]


def adapt(model: SwigResNet, recipe: Recipe, data: TrainingData, settings: AdaptSettings,
          device: torch.device | str = "cpu", progress: bool = False) -> Adaptation:
    """Fine-tune ``model`` on one subject (or, ``settings.from_scratch``, train a fresh one of its kind).

    Parameters
    ----------
    model : SwigResNet
        The trained model (its weights are changed in place unless ``from_scratch``).
    recipe : Recipe
        The checkpoint's training settings.
    data : TrainingData
        The subject (:func:`subject_data`).
    settings : AdaptSettings
        Steps, mode and seed.
    device : torch.device or str
        Where the steps run.
    progress : bool
        Show a progress bar over the steps.
    """
    device = torch.device(device)
    seed_everything(settings.seed)
    if settings.from_scratch:
        model = SwigResNet(recipe.variant.guides, recipe.variant.use_ql, data.q_scale, **recipe.architecture)
    model = model.to(device)
    phi = crop_phi(data, device)

    def loss_fn(batch: Any) -> Any:
        return batch_loss(model, batch, recipe.variant, recipe.alpha, phi, data.sigma, data.guide_protocols,
                          data.qmri_protocol)

    def mean_terms() -> dict[str, float]:
        terms = run_epoch(model, data.train, torch.arange(len(data.train)), recipe.batch_size, loss_fn, device,
                          None, "loss", False)
        return {key: terms[key] for key in ("loss_lr", "loss_guide", "loss_total")}

    before = mean_terms()
    shuffle = torch.Generator().manual_seed(settings.seed)
    count = settings.steps * recipe.batch_size
    passes = -(-count // len(data.train))
    order = torch.cat([torch.randperm(len(data.train), generator=shuffle) for _ in range(passes)])[:count]
    warmup = min(recipe.warmup_steps, settings.steps // 2)
    lr = recipe.lr if settings.from_scratch else recipe.lr * settings.lr_scale
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    run_epoch(model, data.train, order, recipe.batch_size, loss_fn, device, optimizer, settings.mode, progress,
              lr=lr, total_steps=settings.steps, warmup_steps=warmup)
    model.eval()
    record = {
        "mode": settings.mode, "steps": settings.steps, "seed": settings.seed, "slices": len(data.train),
        "batch_size": recipe.batch_size, "lr": lr, "warmup_steps": warmup, "alpha": recipe.alpha,
        "keep": data.keep, "sigma": data.sigma,
        "qmri_protocol": {"tr": list(data.qmri_protocol.tr), "te": list(data.qmri_protocol.te)},
        "loss_before": before, "loss_after": mean_terms(),
    }
    return Adaptation(model.eval(), record)


def adapted_copy(model: SwigResNet, recipe: Recipe, acquired: Any, settings: AdaptSettings, dilation: int,
                 slices: np.ndarray | None = None, device: torch.device | str = "cpu") -> Adaptation:
    """:func:`adapt` a copy of ``model`` to one subject whose guides have the model's protocols.

    ``model`` itself is left as it is. The guides' protocols are the checkpoint's
    (``recipe.acquisition``), as for the digital subjects and the cross-sequence chapter's acquired
    images; the map scales are the model's (a fresh network's: the subject's, ``from_scratch``).

    Parameters
    ----------
    model : SwigResNet
        The trained model.
    recipe : Recipe
        Its checkpoint's training settings.
    acquired
        ``q_l``, ``guides``, ``mask`` and ``lr_contrasts()`` of the subject (:func:`subject_data`).
    settings : AdaptSettings
        Steps, mode and seed.
    dilation : int
        Voxels by which the mask is dilated for the data term (0 for contrasts synthesised from
        Q_l, which hold nothing outside the brain).
    slices : numpy.ndarray, optional
        The axial slices to adapt on; default every slice with brain voxels.
    device : torch.device or str
        Where the steps run.
    """
    guides = {name: recipe.acquisition.guide_protocols[name] for name in model.guides}
    data = subject_data(acquired, guides, recipe.acquisition, None if settings.from_scratch else model.spec["q_scale"],
                        model.receptive_radius, dilation, slices)
    return adapt(copy.deepcopy(model), recipe, data, settings, device)
