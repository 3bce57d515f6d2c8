"""Scan-specific SR of a phantom plate: an INR of the maps fitted to this one slice with the SWIG loss.

A phantom is unlike a brain, so a network trained on the digital subjects does not apply; as in
the REFINE-MORE-like arm (:mod:`swig_lib.experiments.arms.scan_specific`) the maps of the one
slice are represented by a Fourier-feature MLP of the voxel coordinates, started at Q_l, and
fitted with Adam to eq. 12, L_total = L_l + α·L_h (:func:`phantom_loss`). What changes is the
forward model: the plates were scanned with an IR series and a multi-echo SE series, not the
paper's 12-contrast qMRI protocol, so

* **L_l** (eq. 9) compares the truncated acquired series C_l = Φ(C_h) with Φ applied to the
  series synthesised from the prediction through the series' own signal model, clipping
  included (:func:`swig_lib.experiments.phantom.plates.synthesise_series`), over the phantom mask
  dilated by a few voxels, in units of the images' noise variance σ²;
* **L_h** (eq. 11, affine-invariant form) is 1 − ρ² between the acquired guide and the guide
  synthesised from the prediction with the guide's own sequence model, read from its sidecar
  (:func:`swig_lib.experiments.phantom.plates.synthesise_guide`), over the phantom mask;
* **α** follows the α rule of training (:func:`swig_lib.experiments.training.loop.balanced_alpha`):
  α = L_l(Q_l)/L_h(Q_l), the two terms equal at the start.

The INR represents the maps where Q_l was fitted (the *support*; zero elsewhere). Voxels of the
phantom that the LR fit could not fit (on the T2 plate: fluid whose echoes are clipped but for the
last one or two) are modelled as stored at the clip value in every image, which is what their LR
samples show; the guide term skips them and voxels where the guide itself is clipped. Computes in
float32; deterministic on the CPU for a given seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch
from scipy import ndimage
from torch import Tensor, nn

from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.losses import LossTerms, correlation_ratio_loss
from swig_lib.core.models import MIN_SCALED_OUTPUT, SCALED_FLOOR, softplus_inverse
from swig_lib.core.relaxometry import CLIP_12BIT
from swig_lib.experiments.arms.scan_specific import FourierFeatureINR, INRSettings, fit_adam, voxel_coordinates
from swig_lib.experiments.phantom.plates import PlateData, synthesise_guide, synthesise_series


@dataclass(frozen=True)
class SeriesProblem:
    """What the SWIG loss of one plate compares (float32 tensors on one device).

    Attributes
    ----------
    data : PlateData
        The plate (its guide, guide protocol, mask and noise σ are used).
    c_l : Tensor
        (N, X, Y) truncated series Φ(C_h), a.u.
    times : Tensor
        (N,) TIs or TEs, ms.
    guide : Tensor
        (X, Y) acquired guide resampled to the grid, a.u.
    support : Tensor
        (X, Y) bool: the phantom voxels where Q_l was fitted; the maps live here.
    guide_mask : Tensor
        (X, Y) bool: the support without the voxels where the guide is clipped (L_h).
    region : Tensor
        (X, Y) bool: the phantom mask dilated by ``dc_dilation`` voxels (L_l).
    fixed : Tensor
        (X, Y): the clip value on the phantom voxels outside the support, else 0, a.u.
    phi : KSpaceTruncation
        Φ; its noise-free part is applied.
    """

    data: PlateData
    c_l: Tensor
    times: Tensor
    guide: Tensor
    support: Tensor
    guide_mask: Tensor
    region: Tensor
    fixed: Tensor
    phi: KSpaceTruncation

    @classmethod
    def build(cls, data: PlateData, c_l: Tensor, q_l: Tensor, phi: KSpaceTruncation, dc_dilation: int,
              device: torch.device | str = "cpu") -> SeriesProblem:
        """Assemble a plate's problem from its truncated series ``c_l`` (N, X, Y) and LR fit ``q_l``."""
        mask = data.mask
        support = mask & (q_l[data.plate.relaxation] > 0)
        region = ndimage.binary_dilation(mask.numpy(), iterations=dc_dilation) if dc_dilation else mask.numpy()
        return cls(
            data=data,
            c_l=c_l.to(device=device, dtype=torch.float32),
            times=torch.tensor(data.times, dtype=torch.float32, device=device),
            guide=data.guide.to(device=device, dtype=torch.float32),
            support=support.to(device),
            guide_mask=(support & ~data.guide_clipped).to(device),
            region=torch.from_numpy(region).to(device),
            fixed=(CLIP_12BIT * (mask & ~support)).to(device=device, dtype=torch.float32),
            phi=phi,
        )


def phantom_loss(q_hat: Tensor, problem: SeriesProblem, alpha: float) -> LossTerms:
    """Eq. 12 for one plate: L_l + α·L_h with the series' and the guide's own signal models.

    Parameters
    ----------
    q_hat : Tensor
        (n_maps, X, Y) predicted maps, a.u. and ms (zero outside the support).
    problem : SeriesProblem
    alpha : float
        Weight α of the guide term.

    Returns
    -------
    LossTerms
        ``data``: Σ_i mean over the region of (Φ(S_i(Q̂) + fixed) − C_l^i)², over σ²;
        ``guide``: 1 − ρ²(W, Ŵ) over the guide mask; ``total``: data + α·guide.
    """
    series = synthesise_series(problem.data.plate, q_hat, problem.times) + problem.fixed
    predicted = problem.phi.forward(series)
    weight = problem.region.to(predicted.dtype)
    mse = ((predicted - problem.c_l) ** 2 * weight).sum(dim=(1, 2)) / weight.sum().clamp_min(1.0)
    data = mse.sum() / problem.data.sigma**2
    synthetic = synthesise_guide(problem.data, q_hat)
    guide = correlation_ratio_loss(problem.guide[None], synthetic[None], problem.guide_mask[None]).mean()
    return LossTerms(total=data + alpha * guide, data=data, guide=guide)


def balanced_alpha(problem: SeriesProblem, q_l: Tensor) -> tuple[float, float, float]:
    """The α rule: α = L_l(Q_l)/L_h(Q_l) (the untrained INR returns Q_l); returns (α, L_l, L_h)."""
    with torch.no_grad():
        terms = phantom_loss(q_l.to(problem.c_l), problem, 0.0)
    l_data, l_guide = float(terms.data), float(terms.guide)
    if not l_guide > 0:
        raise ValueError("the guide term is 0 at Q_l: the guide adds nothing to balance")
    return l_data / l_guide, l_data, l_guide


@dataclass(frozen=True)
class SRFit:
    """Output of :func:`super_resolve`.

    Attributes
    ----------
    maps : Tensor
        (n_maps, X, Y) float32 SR maps on the CPU, a.u. and ms; zero outside the support.
    history : pandas.DataFrame
        Per Adam step (before it): ``step``, ``loss_lr`` (L_l), ``loss_guide`` (L_h),
        ``loss_total``.
    alpha : float
        α of the α rule.
    seconds : float
        Wall time of the fit, s.
    """

    maps: Tensor
    history: pd.DataFrame
    alpha: float
    seconds: float


def super_resolve(problem: SeriesProblem, q_l: Tensor, settings: INRSettings) -> SRFit:
    """Fit an INR of a plate's maps, started at Q_l, to the SWIG loss of the plate.

    The maps are Q̂ = s ⊙ softplus(softplus⁻¹(max(Q_l/s, ε)) + f(v) − f₀(v)) inside the mask (the
    output head of :func:`swig_lib.experiments.arms.scan_specific.fit_subject`), f the INR of the
    voxel coordinates v, f₀ its output at initialisation and s the means of Q_l over the support.

    Parameters
    ----------
    problem : SeriesProblem
    q_l : Tensor
        (n_maps, X, Y) LR maps (the fit of C_l), a.u. and ms.
    settings : INRSettings
        Encoding, network, steps, learning rate and seed (``start`` must be ``"ql"``).

    Returns
    -------
    SRFit
    """
    if settings.start != "ql":
        raise ValueError("the phantom SR starts at Q_l (start = 'ql')")
    alpha = balanced_alpha(problem, q_l)[0]
    device = problem.c_l.device
    n_maps, height, width = q_l.shape
    inside = torch.nonzero(problem.support.reshape(-1)).squeeze(1)
    q_in = q_l.to(device=device, dtype=torch.float32).reshape(n_maps, -1)[:, inside].T  # (n_vox, n_maps)
    scale = q_in.mean(dim=0)
    if not bool((scale > 0).all()):
        raise ValueError(f"the means of Q_l over the support must be positive; got {scale.tolist()}")
    base = softplus_inverse((q_in / scale).clamp_min(SCALED_FLOOR))
    torch.manual_seed(settings.seed)
    inr = FourierFeatureINR(n_maps, settings.n_frequencies, settings.sigma_freq, settings.width,
                            settings.depth).to(device)
    coords = voxel_coordinates((1, height, width)).to(device)[inside]
    with torch.no_grad():
        initial = inr(coords)

    def maps() -> Tensor:
        values = nn.functional.softplus(base + inr(coords) - initial).clamp_min(MIN_SCALED_OUTPUT) * scale
        out = values.new_zeros(n_maps, height * width)
        out[:, inside] = values.T
        return out.reshape(n_maps, height, width)

    rows: list[tuple[float, float]] = []

    def loss() -> Tensor:
        terms = phantom_loss(maps(), problem, alpha)
        rows.append((float(terms.data.detach()), float(terms.guide.detach())))
        return terms.total

    start = time.perf_counter()
    totals = fit_adam(list(inr.parameters()), loss, settings.steps, settings.lr)
    with torch.no_grad():
        fitted = maps().cpu()
    history = pd.DataFrame(rows, columns=["loss_lr", "loss_guide"]).assign(loss_total=totals)
    history.insert(0, "step", range(len(history)))
    return SRFit(maps=fitted, history=history, alpha=alpha, seconds=time.perf_counter() - start)
