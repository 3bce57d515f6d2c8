"""Q2MRI-like direct estimation: PD/T1/T2 from the HR weighted guides alone, supervised with HR labels.

The arm (after Q2MRI, Wu, Ma et al.: ``../shared/seeds/004_*``)
---------------------------------------------------------------
Q2MRI trains networks that map standard weighted images straight to quantitative maps, skipping
the qMRI acquisition; the SWIG paper argues against this paradigm. Here the network is SWIG's
ResNet without the Q_l input (:class:`swig_lib.core.models.SwigResNet` with ``use_ql=False``, the
network of the paper's M12−+), fed the two HR guides, and trained to Q_h with Q2MRI's loss

    loss = l₁ + λ·(1 − SSIM),    λ = 5 (Q2MRI's choice),

both terms over brain voxels on the maps divided by their scales s: l₁ the mean absolute
error, SSIM the mean of the SSIM map (Gaussian 11×11 window, σ = 1.5, as in Zhao et al., Q2MRI's
ref. [42]; :func:`kornia.metrics.ssim`) with the data range L of each map's reference over the
brain, as in the evaluation's :func:`swig_lib.core.metrics.ssim`. Training, budget and epoch
selection are those of the supervised upper bound
(:func:`swig_lib.experiments.arms.supervised.train_with_labels`), with SWIG's Adam settings rather
than Q2MRI's β₁ = β₂ = 0.89, so that only the inputs and the loss differ.

Needs: HR qMRI labels of the training and validation subjects, the subjects' guides, a training
set; no Q_l, no per-scan optimisation. It sits beside the paper's M12−+ (same network and inputs,
self-supervised there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kornia.metrics import ssim as ssim_map
from torch import Tensor

from swig_lib.core.losses import LossTerms
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.training.variants import GUIDE_ORDER

#: Weight λ of the SSIM term (Q2MRI).
SSIM_WEIGHT = 5.0

#: Side of the Gaussian SSIM window, voxels (σ = 1.5 voxels).
SSIM_WINDOW = 11


def masked_ssim(q_hat: Tensor, q_h: Tensor, mask: Tensor, q_scale: Tensor) -> Tensor:
    """Mean SSIM over brain voxels and maps of the scaled maps (differentiable), dimensionless.

    Parameters
    ----------
    q_hat, q_h : Tensor
        (B, 3, H, W) prediction and HR maps, PD [a.u.], T1 [ms], T2 [ms]; zero outside the brain.
    mask : Tensor
        (B, H, W) brain mask (at least one voxel).
    q_scale : Tensor
        (3,) scales s, the maps' units.

    Returns
    -------
    Tensor
        Scalar in [−1, 1]; 1 when ``q_hat`` equals ``q_h``.
    """
    weight = mask.unsqueeze(1).to(q_hat.dtype)
    scale = q_scale.view(1, -1, 1, 1).to(q_hat.dtype)
    pred, ref = q_hat / scale * weight, q_h / scale * weight
    inside = mask.unsqueeze(1).expand_as(ref)
    total = q_hat.new_zeros(())
    for c in range(ref.shape[1]):
        values = ref[:, c][inside[:, c]]
        data_range = float(values.max() - values.min()) or 1.0
        local = ssim_map(pred[:, c : c + 1], ref[:, c : c + 1], SSIM_WINDOW, max_val=data_range, eps=0.0)
        total = total + (local * weight).sum() / weight.sum()
    return total / ref.shape[1]


def q2mri_terms(q_hat: Tensor, q_h: Tensor, mask: Tensor, q_scale: Tensor, lam: float = SSIM_WEIGHT) -> LossTerms:
    """Q2MRI's loss l₁ + λ(1 − SSIM) on the scaled maps in the brain.

    Parameters
    ----------
    q_hat, q_h, mask, q_scale
        As for :func:`masked_ssim`.
    lam : float
        λ, dimensionless.

    Returns
    -------
    LossTerms
        ``total``, ``data`` = l₁ (mean absolute error in units of s) and ``guide`` = 1 − SSIM (the
        field names of :class:`LossTerms`, so that the training loop logs both terms).
    """
    weight = mask.unsqueeze(1).to(q_hat.dtype)
    scale = q_scale.view(1, -1, 1, 1).to(q_hat.dtype)
    l1 = ((q_hat - q_h).abs() / scale * weight).sum() / (weight.sum().clamp_min(1.0) * q_hat.shape[1])
    dissimilarity = 1.0 - masked_ssim(q_hat, q_h, mask, q_scale)
    return LossTerms(total=l1 + lam * dissimilarity, data=l1, guide=dissimilarity)


def q2mri_model(q_scale: list[float], model_cfg: Mapping[str, Any]) -> SwigResNet:
    """SWIG's ResNet fed the guides only (no Q_l), with the profile's ``[model]`` settings."""
    return SwigResNet(GUIDE_ORDER, False, q_scale, **model_cfg)
