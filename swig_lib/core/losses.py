"""The self-supervised SWIG loss (eq. 8-12): LR data consistency plus the guide correlation ratio.

Shapes: maps ``q_hat`` are (B, 3, H, W) in the channel order PD [a.u.], T1 [ms], T2 [ms]; qMRI
contrasts are (B, n_c, H, W) (n_c = 12 for the paper's protocol) in the order of
:func:`swig_lib.core.physics.qmri_contrasts`; guides and masks are (B, H, W). Every function is
differentiable in ``q_hat`` and works in float32 or float64.

Φ on a crop
-----------
The data term takes Φ as one object, a :class:`swig_lib.core.kspace.WindowedTruncation`: the
noise-free Φ of eq. 3 (:class:`swig_lib.core.kspace.KSpaceTruncation`, the operator that made the
data) restricted to the training window, exact there because the prediction is zero outside the
brain (see "Φ on a window" in :mod:`swig_lib.core.kspace`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from swig_lib.core.kspace import WindowedTruncation
from swig_lib.core.physics import qmri_contrasts
from swig_lib.core.protocols import QMRIProtocol
from swig_lib.core.sequences import PRESETS, GuideProtocol, guide_signal

#: Added to Var(Ŵ) in the correlation ratio, a.u.² (Var(Ŵ) of a brain slice is ~10-1000 a.u.²).
CORRELATION_EPS = 1e-8


class LossTerms(NamedTuple):
    """The terms of eq. 12, each a scalar tensor.

    Attributes
    ----------
    total : Tensor
        ``L_l + α·L_h`` (only the terms switched on; see :func:`swig_loss`).
    data : Tensor
        L_l, eq. 9 (dimensionless: squared error in units of σ²).
    guide : Tensor
        L_h, eq. 11 in its affine-invariant form: Σ_j (1 − ρ_j²), in [0, n_guides].
    """

    total: Tensor
    data: Tensor
    guide: Tensor


def data_consistency_loss(
    q_hat: Tensor,
    c_l: Tensor,
    region: Tensor,
    sigma: float,
    phi: WindowedTruncation,
    protocol: QMRIProtocol = QMRIProtocol(),
) -> Tensor:
    """LR data consistency L_l, eq. 9: Σ_i MSE(C_l^i, Φ(M^i(Q̂_h))) / σ².

    Φ is noise-free (the noise is in the data, not in the model of its mean). The MSE of each
    contrast is the mean over the ``region`` voxels of the whole batch (every voxel weighs the
    same, as in a likelihood). The trainer passes the brain mask *dilated* by a few voxels
    (profile ``train.dc_dilation``): Φ spreads the signal of the brain edge over the main lobe of
    its point-spread function (≈ 1/keep voxels), so the LR data just outside the mask carry the
    information on the edge intensities; far outside, C_l is noise only and would merely add a
    constant that depends on the field of view.

    Parameters
    ----------
    q_hat : Tensor
        (B, 3, H, W) predicted HR maps: PD [a.u.], T1 [ms], T2 [ms]; zero outside the brain.
    c_l : Tensor
        (B, n_c, H, W) acquired LR contrasts (a.u.) on the same crop, n_c = ``protocol.n_contrasts``.
    region : Tensor
        (B, H, W) bool or {0, 1}: the voxels compared.
    sigma : float
        Noise level σ of eq. 3 (a.u.).
    phi : WindowedTruncation
        Noise-free Φ on the crop (:meth:`swig_lib.core.kspace.KSpaceTruncation.on_window`).
    protocol : QMRIProtocol
        TR/TE of the contrasts (ms).

    Returns
    -------
    Tensor
        Scalar L_l (dimensionless).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive; got {sigma}")
    predicted = phi.forward(qmri_contrasts(q_hat[:, 0], q_hat[:, 1], q_hat[:, 2], protocol, dim=1))
    weight = region.to(predicted.dtype).unsqueeze(1)
    count = weight.sum().clamp_min(1.0)
    mse_per_contrast = ((predicted - c_l) ** 2 * weight).sum(dim=(0, 2, 3)) / count
    return mse_per_contrast.sum() / sigma**2


def correlation_ratio_loss(
    w: Tensor, w_hat: Tensor, mask: Tensor | None = None, eps: float = CORRELATION_EPS
) -> Tensor:
    """The paper's guide term (eq. 10-11, its "correlation ratio") per image, as 1 − ρ²(W, Ŵ).

    ρ is the Pearson correlation: this is the linear special case of Roche's correlation ratio η²,
    the case the paper's affine model Ŵ ≈ a·W + b assumes; the name follows the paper.

    Read literally, eq. 11 (Var(W − Ŵ)/Var(W)) changes when W is rescaled. The paper's model is
    Ŵ ≈ a·W + b with unknown global a, b; minimising Var(Ŵ − (a·W + b))/Var(Ŵ) over a and b (least
    squares) gives 1 − ρ², with ρ the Pearson correlation over the brain voxels. This form is
    invariant to a·W + b for any a ≠ 0 (also negative) and b, and symmetric in W and Ŵ.

    Computed as 1 − Cov(W, Ŵ)²/(Var(W)·(Var(Ŵ) + eps)): exactly invariant in W (the acquired guide,
    arbitrary units), and ``eps`` (in units of Ŵ², i.e. a.u.², negligible against Var(Ŵ) of a brain
    slice) keeps the value in [0, 1] and the gradient finite when the synthesis is constant.

    Parameters
    ----------
    w : Tensor
        (B, ...) acquired guides (any units).
    w_hat : Tensor
        (B, ...) guides synthesised from the prediction, same shape (a.u.).
    mask : Tensor, optional
        (B, ...) bool or {0, 1}: voxels that enter the statistics (default: all).
    eps : float
        Added to Var(Ŵ), a.u.².

    Returns
    -------
    Tensor
        (B,) values in [0, 1]: 0 for a perfect synthesis up to a·W + b, 1 for no correlation or a
        constant W or Ŵ.
    """
    if w.shape != w_hat.shape:
        raise ValueError(f"shape mismatch: w {tuple(w.shape)} vs w_hat {tuple(w_hat.shape)}")
    w, w_hat = w.flatten(1).to(w_hat.dtype), w_hat.flatten(1)
    weight = torch.ones_like(w_hat) if mask is None else mask.flatten(1).to(w_hat.dtype)
    count = weight.sum(dim=1).clamp_min(1.0)

    def centred(x: Tensor) -> Tensor:
        return (x - (weight * x).sum(dim=1, keepdim=True) / count[:, None]) * weight

    dw, dw_hat = centred(w), centred(w_hat)
    covariance = (dw * dw_hat).sum(dim=1) / count
    var_w = ((dw**2).sum(dim=1) / count).clamp_min(torch.finfo(w_hat.dtype).tiny)
    var_w_hat = (dw_hat**2).sum(dim=1) / count
    return 1.0 - covariance**2 / (var_w * (var_w_hat + eps))


def guide_loss(
    q_hat: Tensor,
    guides: Mapping[str, Tensor],
    mask: Tensor,
    protocols: Mapping[str, GuideProtocol] = PRESETS,
) -> Tensor:
    """Guide term L_h, eq. 11 (affine-invariant form): Σ_j mean over the batch of 1 − ρ²(W^j, Ŵ^j).

    Each guide is synthesised from ``q_hat`` with its own protocol's signal model
    (:func:`swig_lib.core.sequences.guide_signal`): any sequence of the registry, timed as the guide
    was acquired. The default, the presets, gives the paper's guides (eq. 15-17) bit for bit.

    Parameters
    ----------
    q_hat : Tensor
        (B, 3, H, W) predicted maps: PD [a.u.], T1 [ms], T2 [ms].
    guides : mapping of str to Tensor
        Acquired guides W^j, (B, H, W) each, keyed by name (``"T1w"``, ``"T2w"``, ...).
    mask : Tensor
        (B, H, W) brain mask: the voxels of the correlation.
    protocols : mapping of str to GuideProtocol
        The protocol of every guide, by name (times in ms, flip angles in degrees); default
        :data:`swig_lib.core.sequences.PRESETS` (``"T1w"``, ``"T2w"``: the paper's).

    Returns
    -------
    Tensor
        Scalar in [0, len(guides)]; 0 (a zero tensor) when ``guides`` is empty.
    """
    total = q_hat.new_zeros(())
    for name, w in guides.items():
        w_hat = guide_signal(protocols[name], q_hat[:, 0], q_hat[:, 1], q_hat[:, 2])
        total = total + correlation_ratio_loss(w, w_hat, mask).mean()
    return total


def swig_loss(
    q_hat: Tensor,
    c_l: Tensor,
    guides: Mapping[str, Tensor],
    mask: Tensor,
    region: Tensor,
    sigma: float,
    phi: WindowedTruncation,
    alpha: float,
    data_consistency: bool = True,
    loss_guides: Sequence[str] | None = None,
    protocols: Mapping[str, GuideProtocol] = PRESETS,
    qmri_protocol: QMRIProtocol = QMRIProtocol(),
) -> LossTerms:
    """Total loss, eq. 12: L_total = L_l + α·L_h, with both terms for logging.

    Both terms are always computed (so every variant logs both); ``total`` contains L_l only when
    ``data_consistency`` is on and α·L_h only when α ≠ 0 and guides are used.

    Parameters
    ----------
    q_hat, c_l, mask, region, sigma, phi
        See :func:`data_consistency_loss` and :func:`guide_loss`.
    guides : mapping of str to Tensor
        Every available guide (B, H, W).
    alpha : float
        Weight α of the guide term (dimensionless).
    data_consistency : bool
        Whether L_l enters the total (the second "+" of Table I).
    loss_guides : sequence of str, optional
        Guides that enter L_h (default: all of ``guides``).
    protocols : mapping of str to GuideProtocol
        The guides' protocols (:func:`guide_loss`); default the paper's.
    qmri_protocol : QMRIProtocol
        TR/TE of the contrasts C_l (:func:`data_consistency_loss`); default the paper's.

    Returns
    -------
    LossTerms
    """
    names = list(guides) if loss_guides is None else list(loss_guides)
    l_data = data_consistency_loss(q_hat, c_l, region, sigma, phi, qmri_protocol)
    l_guide = guide_loss(q_hat, {name: guides[name] for name in names}, mask, protocols)
    total = q_hat.new_zeros(())
    if data_consistency:
        total = total + l_data
    if alpha != 0 and names:
        total = total + alpha * l_guide
    return LossTerms(total=total, data=l_data, guide=l_guide)
