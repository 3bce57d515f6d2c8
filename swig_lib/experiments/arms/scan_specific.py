"""REFINE-MORE-like scan-specific reconstruction: an implicit neural representation fitted to one subject.

The arm (after REFINE-MORE, Feng et al., MRM 2025: ``../shared/seeds/003_*``)
------------------------------------------------------------------------------
REFINE-MORE represents the multiparametric maps of *one* scan as a function of the voxel
coordinates (an implicit neural representation, INR) and fits it to that scan's own data through
the physics model, with no training set ("reference-free", zero-shot). Here:

* the INR is a Fourier-feature MLP (Tancik et al., NeurIPS 2020) instead of a hash encoding:
  ``γ(v) = [sin(2πBv), cos(2πBv)]`` with v the voxel coordinates (row, column, slice·spacing) in
  voxels and B ~ N(0, σ_f²) in cycles per voxel, followed by an MLP with ReLUs;
* its three outputs are a residual in the softplus domain of the scaled maps, exactly the output
  head of :class:`swig_lib.core.models.SwigResNet`: Q̂ = s ⊙ softplus(u₀ + r) ⊙ mask, with
  u₀ = softplus⁻¹(max(Q_l/s, ε)) (start at Q_l) or softplus⁻¹(1) (start at the mean maps s), so the
  maps are positive by construction. The residual is r = f(v) − f₀(v), with f₀ the output of the
  freshly initialised INR (a constant), so the fit starts exactly at Q_l (or s) while the network
  keeps its standard initialisation: zero-initialising the last layer instead slowed the fit
  of a 16×16 image, which stalled at an MSE of 1e-5 instead of reaching 1e-15;
* it is fitted with Adam to the SWIG loss (:func:`swig_lib.core.losses.swig_loss`, eq. 12: LR data
  consistency L_l plus α times the guide term L_h), or with α = 0, the data-consistency-only
  variant (the INR's spectral bias is then the only regulariser, as in REFINE-MORE's initial
  stage without its TV term).

Needs: per-scan optimisation (every subject is fitted from scratch); the subject's guides (none in
the data-consistency-only variant); no training set, no HR qMRI labels. Deterministic on the CPU
for a given seed (B, the weights and Adam depend only on it).

Cost: every step evaluates the INR at every voxel of the slices (full batch), so time and memory
grow with the number of voxels: about 0.2 s per step for one 170×201 smoke-profile slice window (64
frequencies, width 64, depth 2) on one loaded CPU thread; fit a few slices at a time.

Units: coordinates and 1/σ_f in voxels, PD in a.u., T1 and T2 in ms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from swig_lib.core.kspace import WindowedTruncation
from swig_lib.core.losses import swig_loss
from swig_lib.core.models import MAP_NAMES, MIN_SCALED_OUTPUT, SCALED_FLOOR, softplus_inverse
from swig_lib.experiments.training.variants import GUIDE_ORDER
from swig_lib.experiments.training.windows import SliceSet


def voxel_coordinates(shape: tuple[int, int, int], slice_spacing: float = 1.0) -> Tensor:
    """Coordinates of every voxel of a stack of slices, slice-major: (S·H·W, 3), voxels.

    Parameters
    ----------
    shape : (int, int, int)
        (S, H, W): slices, rows, columns.
    slice_spacing : float
        Distance between consecutive slices in units of the in-plane voxel size.

    Returns
    -------
    Tensor
        float32 columns (row, column, slice · ``slice_spacing``).
    """
    s, h, w = shape
    grid = torch.meshgrid(torch.arange(s), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack((grid[1], grid[2], grid[0] * slice_spacing), dim=-1).reshape(-1, 3).float()


class FourierFeatureINR(nn.Module):
    """Fourier-feature MLP f(v): voxel coordinates (N, 3) → (N, n_out).

    Parameters
    ----------
    n_out : int
        Output channels.
    n_frequencies : int
        Rows of B (the encoding has 2·n_frequencies channels).
    sigma_freq : float
        Standard deviation of the entries of B, cycles per voxel (0.5 is the Nyquist frequency).
    width, depth : int
        Hidden units per layer and number of hidden layers (≥ 1).
    """

    def __init__(
        self,
        n_out: int,
        n_frequencies: int = 128,
        sigma_freq: float = 0.1,
        width: int = 128,
        depth: int = 3,
    ) -> None:
        super().__init__()
        if depth < 1 or not sigma_freq > 0:
            raise ValueError(f"need depth >= 1 and sigma_freq > 0; got {depth}, {sigma_freq}")
        self.register_buffer("frequencies", torch.randn(3, n_frequencies) * sigma_freq)
        layers: list[nn.Module] = []
        n_in = 2 * n_frequencies
        for _ in range(depth):
            layers += [nn.Linear(n_in, width), nn.ReLU()]
            n_in = width
        layers.append(nn.Linear(n_in, n_out))
        self.mlp = nn.Sequential(*layers)

    def forward(self, coords: Tensor) -> Tensor:
        """Evaluate at (N, 3) coordinates (voxels); returns (N, n_out)."""
        phase = 2 * math.pi * coords @ self.frequencies
        return self.mlp(torch.cat((torch.sin(phase), torch.cos(phase)), dim=-1))


def fit_adam(
    parameters: Sequence[nn.Parameter], loss_fn: Callable[[], Tensor], steps: int, lr: float
) -> list[float]:
    """Minimise ``loss_fn()`` with Adam at a constant learning rate; return the loss of every step.

    Parameters
    ----------
    parameters : sequence of Parameter
        What is optimised.
    loss_fn : callable
        Returns a scalar tensor (recomputed every step).
    steps : int
        Number of Adam steps.
    lr : float
        Learning rate.

    Returns
    -------
    list of float
        Loss before each step.
    """
    optimizer = torch.optim.Adam(parameters, lr=lr)
    history = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history


@dataclass(frozen=True)
class INRSettings:
    """Encoding, network and optimisation of :func:`fit_subject`.

    Attributes
    ----------
    n_frequencies, sigma_freq, width, depth
        Of :class:`FourierFeatureINR` (σ_f in cycles per voxel).
    steps : int
        Adam steps (full batch: every voxel of the slices in every step).
    lr : float
        Adam learning rate (REFINE-MORE's 1e-3).
    start : {"ql", "mean"}
        The maps of the untrained INR: Q_l, or the scale s (the brain means) inside the brain.
    slice_spacing : float
        Slice distance in in-plane voxels.
    seed : int
        Seeds B and the weights.
    """

    n_frequencies: int = 128
    sigma_freq: float = 0.1
    width: int = 128
    depth: int = 3
    steps: int = 500
    lr: float = 1e-3
    start: str = "ql"
    slice_spacing: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.start not in ("ql", "mean"):
            raise ValueError(f"start must be 'ql' or 'mean'; got {self.start!r}")


@dataclass(frozen=True)
class SubjectFit:
    """Output of :func:`fit_subject`.

    Attributes
    ----------
    maps : Tensor
        (S, 3, H, W) fitted maps, PD [a.u.], T1 [ms], T2 [ms]; zero outside the mask.
    loss : list of float
        L_total before every step (eq. 12, or L_l alone for α = 0).
    time_s : float
        Wall time of the fit, s.
    """

    maps: Tensor
    loss: list[float]
    time_s: float


def fit_subject(
    slices: SliceSet,
    phi: WindowedTruncation,
    sigma: float,
    q_scale: Sequence[float],
    alpha: float,
    settings: INRSettings | None = None,
    guides: Sequence[str] = GUIDE_ORDER,
) -> SubjectFit:
    """Fit an INR of the maps to one subject's slices with the SWIG loss (α > 0) or L_l alone (α = 0).

    Parameters
    ----------
    slices : SliceSet
        The subject's prepared slices (windows of one subject; no Q_h): Q_l, z-scored guides,
        mask, data-consistency region, C_l. The INR is fitted on their device.
    phi : WindowedTruncation
        Noise-free Φ on the window (:meth:`swig_lib.core.kspace.KSpaceTruncation.on_window`), on
        the same device.
    sigma : float
        Noise level σ of the data, a.u. (scales L_l, eq. 9).
    q_scale : sequence of float
        Scales s of PD [a.u.], T1 [ms], T2 [ms] (e.g. the training set's brain means, or this
        subject's Q_l brain means when no training set is to be used).
    alpha : float
        Weight α of the guide term; 0 gives the data-consistency-only variant.
    settings : INRSettings, optional
        Default :class:`INRSettings`.
    guides : sequence of str
        Guides of L_h, names of :data:`GUIDE_ORDER`.

    Returns
    -------
    SubjectFit
    """
    settings = settings or INRSettings()
    n, _, h, w = slices.q_l.shape
    device = slices.q_l.device
    torch.manual_seed(settings.seed)
    inr = FourierFeatureINR(
        len(MAP_NAMES), settings.n_frequencies, settings.sigma_freq, settings.width, settings.depth
    ).to(device)
    coords = voxel_coordinates((n, h, w), settings.slice_spacing).to(device)
    scale = torch.tensor(q_scale, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    mask = slices.mask.unsqueeze(1).float()
    if settings.start == "ql":
        base = softplus_inverse((slices.q_l / scale).clamp_min(SCALED_FLOOR))
    else:
        base = softplus_inverse(torch.ones_like(scale)).expand(n, -1, h, w)
    channels = [GUIDE_ORDER.index(g) for g in guides]
    guide_maps = {g: slices.guides[:, c] for g, c in zip(guides, channels)}
    with torch.no_grad():
        initial = inr(coords)

    def maps() -> Tensor:
        residual = (inr(coords) - initial).view(n, h, w, -1).permute(0, 3, 1, 2)
        return nn.functional.softplus(base + residual).clamp_min(MIN_SCALED_OUTPUT) * scale * mask

    def loss() -> Tensor:
        return swig_loss(
            maps(), slices.c_l, guide_maps, slices.mask, slices.region, sigma, phi, alpha
        ).total

    start = time.perf_counter()
    history = fit_adam(list(inr.parameters()), loss, settings.steps, settings.lr)
    with torch.no_grad():
        fitted = maps()
    return SubjectFit(maps=fitted, loss=history, time_s=time.perf_counter() - start)
