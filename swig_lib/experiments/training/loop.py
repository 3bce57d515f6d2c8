"""The training loop: α rule, batch loss (eq. 12), learning-rate schedule, epochs, variant training."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from swig_lib import default_device
from swig_lib.core.kspace import WindowedTruncation
from swig_lib.core.losses import LossTerms, swig_loss
from swig_lib.core.models import SwigResNet, receptive_radius
from swig_lib.core.protocols import QMRIProtocol
from swig_lib.core.sequences import GuideProtocol
from swig_lib.experiments.config import Profile
from swig_lib.experiments.training.augment import SampleWindows, randomised_profile
from swig_lib.experiments.training.checkpoints import (
    CHECKPOINT_FORMAT,
    Acquisition,
    CheckpointError,
    checkpoint_paths,
    comparable_settings,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    setting_differences,
    write_log,
)
from swig_lib.experiments.training.variants import VARIANTS, Variant
from swig_lib.experiments.training.windows import SliceSet, TrainingData, paper_guide_protocols, prepare_data

# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def crop_phi(data: TrainingData, device: torch.device | str = "cpu") -> WindowedTruncation | SampleWindows:
    """Noise-free Φ of the data on the training window, float32.

    :attr:`TrainingData.phi` when every slice shares it; with degradation randomisation each
    sample's own Φ, whitened by its σ (:class:`~swig_lib.experiments.training.augment.SampleWindows`).
    """
    window = tuple(data.train.q_l.shape[-2:])
    if data.sample_phis is None:
        return data.phi.on_window(data.grid, window, device=device)
    return SampleWindows.build(data.sample_phis, data.grid, window, device=device)


def data_term(phi: WindowedTruncation | SampleWindows, batch: SliceSet,
              sigma: float) -> tuple[WindowedTruncation | SampleWindows, Tensor, float]:
    """Φ, C_l and σ of a batch's data term (eq. 9): as given with one Φ, else per sample and whitened.

    With :class:`~swig_lib.experiments.training.augment.SampleWindows` the operator is bound to
    the batch's Φ indices, C_l is divided by each sample's σ and the loss's σ is 1, so that every
    sample's squared residual weighs 1/σ_s² (its likelihood).
    """
    if isinstance(phi, SampleWindows):
        bound = phi.bind(batch.phi)
        return bound, bound.whiten(batch.c_l), 1.0
    return phi, batch.c_l, sigma


def balanced_alpha(data: TrainingData, batch_size: int = 8) -> tuple[float, float, float]:
    """Return α by the α rule, which balances the two terms of eq. 12 at the start of training.

    The untrained model returns Q_l, so α = L_l(Q_l)/L_h(Q_l), both terms averaged over the
    training slices with all guides (as M12++ uses them), makes L_l and α·L_h start equal. Only
    acquired data enter (C_l, Q_l, guides, mask), and the rule adapts to the units, to σ (L_l ∝ 1/σ²)
    and to Φ, which fix the scale of L_l but not of L_h ∈ [0, n_guides].

    Why not the likelihood reading? Treating each guide as one more image with the contrasts'
    noise σ gives α = Var_brain(M_g(Q_l))/σ² ≈ 2800 on the quick data, the order of the paper's
    1000. But L_l starts three orders of magnitude above its noise floor (≈ 3000 vs 1.5, mostly at
    the brain rim where the LR fit is inconsistent with Φ), so with such α the guide term is
    negligible for most of a short training (see the book's reproducibility notes).

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
            guides = {g: batch.guides[:, i] for i, g in enumerate(data.guide_protocols)}
            batch_phi, c_l, sigma = data_term(phi, batch, data.sigma)
            terms = swig_loss(
                batch.q_l, c_l, guides, batch.mask, batch.region, sigma, batch_phi, 1.0,
                protocols=data.guide_protocols, qmri_protocol=data.qmri_protocol,
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
    phi: WindowedTruncation | SampleWindows,
    sigma: float,
    guide_protocols: Mapping[str, GuideProtocol] | None = None,
    qmri_protocol: QMRIProtocol = QMRIProtocol(),
) -> LossTerms:
    """Run the model on a batch and return the terms of eq. 12 for ``variant``.

    ``phi`` is :func:`crop_phi`'s: one Φ for every slice, or each slice's own (:func:`data_term`).
    ``guide_protocols`` names the guide channels of ``batch`` in order, with each guide's
    protocol (default :func:`~swig_lib.experiments.training.windows.paper_guide_protocols`, as
    :attr:`TrainingData.guide_protocols`); ``qmri_protocol`` is that of ``batch.c_l``.
    """
    guide_protocols = paper_guide_protocols() if guide_protocols is None else guide_protocols
    channels = [list(guide_protocols).index(g) for g in variant.guides]
    guides = batch.guides[:, channels]
    q_hat = model(batch.q_l if variant.use_ql else None, guides, batch.mask)
    phi, c_l, sigma = data_term(phi, batch, sigma)
    return swig_loss(
        q_hat,
        c_l,
        {g: guides[:, i] for i, g in enumerate(variant.guides)},
        batch.mask,
        batch.region,
        sigma,
        phi,
        alpha,
        data_consistency=variant.data_consistency,
        protocols=guide_protocols,
        qmri_protocol=qmri_protocol,
    )


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate schedule: linear warm-up over ``warmup_steps``, then cosine decay to 0.

    factor(t) = min(1, (t + 1)/warmup_steps) · (1 + cos(π·t/total_steps))/2. Adam's first updates
    are sign-like (every weight moves by the full learning rate); through the zero-initialised 9×9
    output layer they would add up to a large residual at once and throw the model far from its
    Q_l start, hence the ramp. The decay lets short runs settle instead of ending mid-oscillation.
    Stateless, so resuming needs no scheduler state.
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
    profile: Profile,
    variant: str | Variant,
    out: str | Path,
    resume: bool = False,
    device: str | torch.device | None = None,
    dataset: Any = None,
    data: TrainingData | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    steps: int | None = None,
) -> Path:
    """Train one variant with the self-supervised loss (eq. 12); return the selected checkpoint.

    Parameters
    ----------
    profile : Profile
        A profile (:func:`swig_lib.experiments.config.load_profile`): reads ``seed``, ``train``,
        ``model`` and (to load the dataset) ``data``; the checkpoints store its plain dict.
    variant : str or Variant
        A key of :data:`VARIANTS` or a :class:`Variant`.
    out : path
        Results folder (``results/<profile>``).
    resume : bool
        Continue from ``checkpoints/<variant>.last.pt`` (model, optimiser, RNG states, log) up to
        ``train.epochs``, or start from scratch when there is none; the rest of the profile must
        match the checkpoint's. Without it, existing checkpoints and log are replaced.
    device : str or torch.device, optional
        Default: :func:`swig_lib.default_device`.
    dataset
        A loaded dataset (default: ``swig_lib.experiments.subjects.dataset.load_dataset(profile)``;
        for a ``randomised`` variant, that of
        :func:`~swig_lib.experiments.training.augment.randomised_profile`, built on first use).
    data : TrainingData, optional
        Already prepared slices (saves reloading when training several variants).
    progress : bool
        tqdm progress bars.
    on_epoch_end : callable, optional
        Called with the number of completed epochs after each epoch's checkpoint is written.
    steps : int, optional
        Optimisation steps in all (default ``train.epochs`` passes over the training slices):
        the learning-rate schedule spans them, and the epochs are as many passes as they take,
        the last one cut short. So that a model trained on another number of slices gets the
        same budget as the profile's (e.g. the cross-anatomy models, which match M12++'s steps).

    Returns
    -------
    Path
        ``checkpoints/<variant>.pt``.

    Raises
    ------
    CheckpointError
        With ``resume``, when the checkpoint is unusable or was written with other settings (the
        message names each differing setting with both values).
    """
    variant = VARIANTS[variant] if isinstance(variant, str) else variant
    if variant.randomised:
        profile = randomised_profile(profile)
    device = torch.device(device) if device is not None else default_device()
    cfg = profile.train
    out = Path(out)
    best_path, last_path = checkpoint_paths(out, variant.name)
    log_path = out / "logs" / f"{variant.name}.csv"
    alpha = variant.resolved_alpha(cfg.alpha)

    if data is None:
        if dataset is None:
            from swig_lib.experiments.subjects.dataset import load_dataset

            dataset = load_dataset(profile, progress=progress)
        data = prepare_data(
            dataset, profile, receptive_radius(**profile.model), progress=progress
        )
    if variant.randomised and data.degradation is None:
        raise ValueError(f"{variant.name} trains with degradation randomisation: pass the dataset of "
                         "randomised_profile(profile), or none")
    seed_everything(profile.seed)
    model = SwigResNet(variant.guides, variant.use_ql, data.q_scale, **profile.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    shuffle = torch.Generator().manual_seed(profile.seed)
    phi = crop_phi(data, device)

    log: list[dict[str, Any]] = []
    epoch, best_val, best_epoch = 0, float("inf"), 0
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        differences = setting_differences(
            {**comparable_settings(state["profile"]), "variant": state["variant"]},
            {**comparable_settings(profile.to_dict()), "variant": asdict(variant)},
        )
        if differences:
            listed = "; ".join(f"{name} = {old!r} there, {new!r} now" for name, old, new in differences)
            raise CheckpointError(
                f"{last_path} was written with other settings than the current profile/variant "
                f"({listed}); start over without resuming (`swig train --overwrite`), or restore "
                "the settings it was made with"
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
        return batch_loss(model, batch, variant, alpha, phi, data.sigma, data.guide_protocols, data.qmri_protocol)

    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    epochs = cfg.epochs if steps is None else -(-steps // steps_per_epoch)
    total_steps = epochs * steps_per_epoch if steps is None else steps
    bar = tqdm(
        range(epoch, epochs),
        desc=f"train {variant.name}",
        disable=not progress,
        initial=epoch,
        total=epochs,
    )
    for epoch in bar:
        order = torch.randperm(len(data.train), generator=shuffle)
        if steps is not None:  # the last epoch stops at the step budget
            order = order[: (total_steps - epoch * steps_per_epoch) * cfg.batch_size]
        train_terms = run_epoch(
            model,
            data.train,
            order,
            cfg.batch_size,
            loss_fn,
            device,
            optimizer,
            "train",
            progress,
            lr=cfg.lr,
            first_step=epoch * steps_per_epoch,
            total_steps=total_steps,
            warmup_steps=cfg.warmup_steps,
        )
        val_terms = run_epoch(
            model,
            data.val,
            torch.arange(len(data.val)),
            cfg.batch_size,
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
            "profile": profile.to_dict(),
            "acquisition": Acquisition(
                data.keep, data.sigma, data.qmri_protocol, {g: data.guide_protocols[g] for g in variant.guides},
                None if data.degradation is None else data.degradation.to_dict(),
            ).to_record(),
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
