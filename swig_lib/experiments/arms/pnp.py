"""MRI2Qmap-like plug-and-play reconstruction of PD/T1/T2 from the LR contrasts with a weighted-image prior.

The arm (after MRI2Qmap, ``../shared/seeds/002_*``)
---------------------------------------------------
MRI2Qmap reconstructs quantitative maps by ADMM over three blocks: k-space-consistent images, maps
consistent with the images through the signal model (dictionary matching), and *weighted MR
images synthesised from the maps*, restored by a contrast-conditional denoiser trained on routine
weighted scans, never on quantitative maps. Here the 12 qMRI contrasts (eq. 13-14) are themselves
weighted images (saturation recovery at TR_i, spin echo at TE_i), so the prior acts on them:

* **denoiser** :class:`ContrastDenoiser`: a small residual CNN conditioned on the contrast (family
  SR/SE and log-time) and on the noise level (FFDNet-style noise map), trained by
  :func:`train_denoiser` to remove Gaussian noise from weighted images synthesised with
  *randomised* protocols (TR, TE drawn log-uniformly) from the training subjects' HR maps. The maps
  only make weighted images (a stand-in for a library of routine weighted scans); no map is a
  target, the loss is on the images.
* **reconstruction** :func:`pnp_reconstruct`: half-quadratic splitting of

      min_{x, q}  ‖Φ(x) − C_l‖² + ρ‖x − M(q)‖² + R(x)

  with the prior step replaced by the denoiser, in MRI2Qmap's order. From q⁰ = fit(C_l) (the
  voxel-wise fit of the zero-filled data, i.e. Q_l up to the dataset's clipping), iterate

      z  = D(M(qᵏ); σ_k)                     synthesis and restoration (prior)
      xᵏ⁺¹ = z + Φ(C_l − z)/(1 + ρ_k)         data consistency, exact (Φ an orthogonal projection)
      qᵏ⁺¹ = fit(xᵏ⁺¹)                        voxel-wise fit in the role of dictionary matching

  with σ_k annealed log-uniformly from ``sigma_max`` to ``sigma_min`` and ρ_k = λ·σ_n²/σ_k²
  (Zhang et al., DPIR, paper ref. [37] of MRI2Qmap), σ_n the image-domain noise of C_l.

The x-step is exact: Φ (noise-free) is an orthogonal projection of real images onto the
band-limited ones (:class:`swig_lib.core.kspace.KSpaceTruncation`), so
argmin_x ‖Φx − y‖² + ρ‖x − z‖² = (I − Φ)z + Φ(y + ρz)/(1 + ρ) = z + Φ(y − z)/(1 + ρ).
The q-step is :func:`swig_lib.core.fitter.fit_qmri`, the global least-squares fit of eq. 1 per voxel.

Known answer: the identity denoiser
-----------------------------------
With D = identity the iteration is alternating minimisation of F(x, q) = ‖Φx − y‖² + ρ‖x − M(q)‖²
(exact in x, voxel-wise exact in q), so F never increases for a fixed ρ. At a fixed point q*,
``fit`` makes J(q*)ᵀ(x* − M(q*)) = 0 voxel-wise, and x* − M(q*) = Φ(y − M(q*))/(1 + ρ), hence

    J(q*)ᵀ Φ(M(q*) − y) = 0,

the stationarity condition of the *data-consistent fit* min_q ‖Φ(M(q)) − C_l‖² (the data term
L_l of eq. 9) whatever ρ > 0 is. With Φ = identity (``keep = 1``) the zero-filled fit q⁰ is
already that fixed point: the loop returns fit_qmri(C_l). ``tests/test_arms_pnp.py`` checks
both.

Needs: a training set (weighted images synthesised from the training subjects' HR maps, for the
denoiser only), per-scan optimisation (the iterations, each a voxel-wise fit of every slice); no
subject guides, no qMRI labels as targets. Units: PD and all signals in a.u., times in ms,
noise levels σ in a.u.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from swig_lib.core.fitter import fit_qmri
from swig_lib.core.kspace import KSpaceTruncation, centre_mask
from swig_lib.core.losses import LossTerms
from swig_lib.core.physics import qmri_contrasts, saturation_recovery, spin_echo
from swig_lib.core.protocols import QMRIProtocol
from swig_lib.experiments.training.loop import run_epoch

#: Contrast families of the denoiser's condition: saturation recovery (eq. 13) and spin echo (eq. 14).
SR, SE = 0, 1

#: log10 of the sequence time (ms) is divided by this in the condition (1 ms..10 s → 0..1).
LOG_TIME_SPAN = 4.0

#: The qMRI protocol of the paper (TR and TE, ms), the default of every function here.
PROTOCOL = QMRIProtocol()

#: A denoiser as the prior: (contrasts (B, n_c, H, W) in a.u., noise level σ in a.u.) → same shape.
Denoiser = Callable[[Tensor, float], Tensor]


def contrast_condition(family: Tensor, time_ms: Tensor) -> Tensor:
    """Build the denoiser's condition of each image: (is spin echo, log10(time/ms)/:data:`LOG_TIME_SPAN`).

    Parameters
    ----------
    family : Tensor
        (N,) :data:`SR` or :data:`SE`.
    time_ms : Tensor
        (N,) TR (SR) or TE (SE), ms.

    Returns
    -------
    Tensor
        (N, 2) float, dimensionless.
    """
    return torch.stack((family.to(time_ms.dtype), torch.log10(time_ms) / LOG_TIME_SPAN), dim=1)


def protocol_condition(protocol: QMRIProtocol = PROTOCOL) -> Tensor:
    """Return :func:`contrast_condition` of the qMRI contrasts, in the order of :func:`qmri_contrasts`: (n_c, 2)."""
    family = torch.tensor([SR] * len(protocol.tr) + [SE] * len(protocol.te))
    return contrast_condition(family, torch.tensor(protocol.tr + protocol.te, dtype=torch.float64)).float()


def synthesize_weighted(maps: Tensor, family: Tensor, time_ms: Tensor) -> Tensor:
    """Weighted images of randomised protocols from maps: SR at TR (eq. 13) or SE at TE (eq. 14).

    Parameters
    ----------
    maps : Tensor
        (N, 3, H, W) PD [a.u.], T1 [ms], T2 [ms].
    family : Tensor
        (N,) :data:`SR` or :data:`SE` per image.
    time_ms : Tensor
        (N,) TR or TE, ms.

    Returns
    -------
    Tensor
        (N, H, W) signal, a.u.
    """
    t = time_ms.to(maps.dtype).view(-1, 1, 1)
    sr = saturation_recovery(maps[:, 0], maps[:, 1], t)
    se = spin_echo(maps[:, 0], maps[:, 2], t)
    return torch.where(family.view(-1, 1, 1) == SE, se, sr)


class ContrastDenoiser(nn.Module):
    """Residual CNN denoiser of weighted images, conditioned on contrast and noise level.

    Input channels: the image divided by ``scale``, a constant map σ/scale (FFDNet's noise-level
    map) and the two condition maps of :func:`contrast_condition`; a plain stack of 3×3
    convolutions and ReLUs (DnCNN without batch normalisation, so evaluation equals training
    mode) predicts the noise, which is subtracted.

    Parameters
    ----------
    scale : float
        Intensity scale, a.u. (e.g. the 99th percentile of PD in the training brains).
    width : int
        Feature channels.
    depth : int
        Convolution layers (≥ 2).
    """

    def __init__(self, scale: float, width: int = 32, depth: int = 6) -> None:
        super().__init__()
        if not scale > 0 or depth < 2:
            raise ValueError(f"need scale > 0 and depth >= 2; got {scale}, {depth}")
        self.spec: dict[str, Any] = {"scale": float(scale), "width": int(width), "depth": int(depth)}
        layers: list[nn.Module] = [nn.Conv2d(4, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)  # starts as the identity: the untrained prior changes nothing
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor, sigma: Tensor, condition: Tensor) -> Tensor:
        """Denoise.

        Parameters
        ----------
        images : Tensor
            (N, H, W) noisy weighted images, a.u.
        sigma : Tensor
            (N,) noise level of each image, a.u.
        condition : Tensor
            (N, 2) :func:`contrast_condition`.

        Returns
        -------
        Tensor
            (N, H, W) denoised images, a.u.
        """
        scale = self.spec["scale"]
        n, h, w = images.shape
        maps = torch.cat((sigma.view(n, 1) / scale, condition.to(images.dtype)), dim=1)
        inputs = torch.cat((images.unsqueeze(1) / scale, maps.view(n, 3, 1, 1).expand(n, 3, h, w)), dim=1)
        return images - scale * self.net(inputs)[:, 0]

    def prior(self, protocol: QMRIProtocol = PROTOCOL) -> Denoiser:
        """Wrap the denoiser as the prior of :func:`pnp_reconstruct` for the contrasts of ``protocol``."""
        condition = protocol_condition(protocol)

        def denoise(contrasts: Tensor, sigma: float) -> Tensor:
            b, n_c, h, w = contrasts.shape
            if n_c != condition.shape[0]:
                raise ValueError(f"the protocol has {condition.shape[0]} contrasts; got {n_c}")
            flat = contrasts.reshape(b * n_c, h, w).float()
            with torch.no_grad():
                out = self(flat, flat.new_full((b * n_c,), sigma), condition.repeat(b, 1).to(flat.device))
            return out.reshape(b, n_c, h, w).to(contrasts.dtype)

        return denoise


def identity_denoiser(contrasts: Tensor, sigma: float) -> Tensor:
    """Return the contrasts unchanged: with this prior the loop reduces to the data-consistent fit (module notes)."""
    return contrasts


# ----------------------------------------------------------------------------------------------
# Denoiser training data and training
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiserBatch:
    """Clean and noisy weighted patches with their noise levels and conditions."""

    clean: Tensor  # (N, p, p), a.u.
    noisy: Tensor  # (N, p, p), a.u.
    sigma: Tensor  # (N,), a.u.
    condition: Tensor  # (N, 2)

    def __len__(self) -> int:
        return self.clean.shape[0]


@dataclass
class WeightedPatches:
    """Training samples of the denoiser: patch positions, randomised protocols, noise levels, seeds.

    Each sample is a ``patch`` × ``patch`` crop of one HR slice's maps turned into a weighted image by its own
    protocol (:func:`synthesize_weighted`) with Gaussian noise of its own level and seed, so a
    sample is the same whenever it is drawn. :meth:`batch` has the interface that
    :func:`swig_lib.experiments.training.loop.run_epoch` reads.

    Attributes
    ----------
    maps : Tensor
        (S, 3, H, W) HR maps of the training slices, PD [a.u.], T1 [ms], T2 [ms]: used only to
        synthesise weighted images.
    origins : Tensor
        (N, 3) int64: slice, first row, first column of each patch.
    family, time_ms, sigma : Tensor
        (N,) contrast family, TR/TE (ms) and noise level (a.u.) of each sample.
    seeds : Tensor
        (N,) int64 noise seeds.
    patch : int
        Patch side, voxels.
    """

    maps: Tensor
    origins: Tensor
    family: Tensor
    time_ms: Tensor
    sigma: Tensor
    seeds: Tensor
    patch: int

    def __len__(self) -> int:
        return self.origins.shape[0]

    @classmethod
    def draw(
        cls,
        maps: Tensor,
        masks: Tensor,
        n: int,
        patch: int,
        seed: int,
        sigma_range: tuple[float, float],
        tr_range: tuple[float, float] = (200.0, 5000.0),
        te_range: tuple[float, float] = (5.0, 500.0),
    ) -> WeightedPatches:
        """Draw ``n`` samples: patch centres uniformly over brain voxels, SR or SE with equal odds.

        Parameters
        ----------
        maps : Tensor
            (S, 3, H, W) HR maps of training slices (training subjects only), H, W ≥ ``patch``.
        masks : Tensor
            (S, H, W) brain masks.
        n : int
            Number of samples.
        patch : int
            Patch side, voxels.
        seed : int
            Seeds the draw.
        sigma_range : (float, float)
            Noise levels, a.u., drawn log-uniformly.
        tr_range, te_range : (float, float)
            TR and TE ranges, ms, drawn log-uniformly (around the protocol's 360-2733 ms and 10-320 ms).

        Returns
        -------
        WeightedPatches
        """
        _, _, h, w = maps.shape
        if not patch <= min(h, w):
            raise ValueError(f"patch {patch} exceeds the slice size {(h, w)}")
        gen = torch.Generator().manual_seed(int(seed))
        brain = torch.nonzero(masks)
        if brain.shape[0] == 0:
            raise ValueError("no brain voxel to centre patches on")
        centre = brain[torch.randint(brain.shape[0], (n,), generator=gen)]
        rows = (centre[:, 1] - patch // 2).clamp(0, h - patch)
        cols = (centre[:, 2] - patch // 2).clamp(0, w - patch)
        family = torch.randint(2, (n,), generator=gen)

        def log_uniform(lo: float, hi: float) -> Tensor:
            u = torch.rand(n, generator=gen, dtype=torch.float64)
            return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)

        times = torch.where(family == SE, log_uniform(*te_range), log_uniform(*tr_range))
        return cls(
            maps=maps,
            origins=torch.stack((centre[:, 0], rows, cols), dim=1),
            family=family,
            time_ms=times,
            sigma=log_uniform(*sigma_range),
            seeds=torch.randint(2**62, (n,), generator=gen),
            patch=int(patch),
        )

    def batch(self, index: Tensor, device: torch.device) -> DenoiserBatch:
        """Return the samples ``index`` as a :class:`DenoiserBatch` on ``device`` (float32)."""
        p = self.patch
        crops = torch.stack(
            [self.maps[s, :, r : r + p, c : c + p] for s, r, c in self.origins[index].tolist()]
        ).float()
        clean = synthesize_weighted(crops, self.family[index], self.time_ms[index])
        sigma = self.sigma[index].float()
        noise = torch.stack(
            [torch.randn(p, p, generator=torch.Generator().manual_seed(int(s))) for s in self.seeds[index]]
        )
        condition = contrast_condition(self.family[index], self.time_ms[index]).float()
        return DenoiserBatch(
            *(t.to(device) for t in (clean, clean + sigma.view(-1, 1, 1) * noise, sigma, condition))
        )


def denoiser_loss(model: ContrastDenoiser, batch: DenoiserBatch) -> LossTerms:
    """Mean squared error of the denoised patches in units of the model's scale (dimensionless).

    Returned as :class:`swig_lib.core.losses.LossTerms` (``data`` = ``total``, ``guide`` = 0) so
    that :func:`swig_lib.experiments.training.loop.run_epoch` can run the training.
    """
    error = (model(batch.noisy, batch.sigma, batch.condition) - batch.clean) / model.spec["scale"]
    mse = error.square().mean()
    return LossTerms(total=mse, data=mse, guide=mse.new_zeros(()))


def train_denoiser(
    samples: WeightedPatches,
    scale: float,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    warmup_steps: int = 0,
    seed: int = 0,
    width: int = 32,
    depth: int = 6,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[ContrastDenoiser, list[dict[str, float]]]:
    """Train a :class:`ContrastDenoiser` on weighted patches with Adam (through ``run_epoch``).

    Parameters
    ----------
    samples : WeightedPatches
        Training samples (:meth:`WeightedPatches.draw`).
    scale : float
        Intensity scale of the model, a.u.
    epochs, batch_size : int
        Passes over ``samples`` (reshuffled each epoch) and samples per step.
    lr : float
        Peak learning rate, reached after a linear warm-up, then cosine decay
        (:func:`swig_lib.experiments.training.loop.lr_factor`).
    warmup_steps : int
        Steps of the warm-up. The last layer starts at zero (the identity), and Adam's first
        sign-like steps at full rate can switch every ReLU off for good (seen at lr 3e-3 without
        warm-up on the test phantom), hence the ramp.
    seed : int
        Seeds the weights and the shuffling.
    width, depth : int
        Of the model.
    device : torch.device or str
        Where to train.
    progress : bool
        tqdm bars.

    Returns
    -------
    (ContrastDenoiser, list of dict)
        The trained model (in eval mode, on ``device``) and one log row per epoch (``loss``: mean
        training MSE in units of ``scale``², ``time_s``).
    """
    device = torch.device(device)
    torch.manual_seed(int(seed))
    model = ContrastDenoiser(scale, width, depth).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(int(seed))
    steps_per_epoch = -(-len(samples) // batch_size)
    log = []
    for epoch in range(epochs):
        terms = run_epoch(
            model,
            samples,
            torch.randperm(len(samples), generator=shuffle),
            batch_size,
            lambda batch: denoiser_loss(model, batch),
            device,
            optimizer,
            "denoiser",
            progress,
            lr=lr,
            first_step=epoch * steps_per_epoch,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=warmup_steps,
        )
        log.append({"epoch": epoch + 1, "loss": terms["loss_total"], "time_s": terms["time_s"]})
    return model.eval(), log


# ----------------------------------------------------------------------------------------------
# The reconstruction
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PnPSettings:
    """Iterations and annealing of :func:`pnp_reconstruct`.

    Attributes
    ----------
    iterations : int
        Number of HQS iterations K.
    sigma_max, sigma_min : float
        Denoiser levels of the first and last iteration, a.u. (log-spaced in between).
    lam : float
        λ of ρ_k = λ·σ_n²/σ_k² (dimensionless); larger trusts the prior more.
    """

    iterations: int = 8
    sigma_max: float = 2.0
    sigma_min: float = 0.2
    lam: float = 1.0

    def __post_init__(self) -> None:
        if self.iterations < 1 or not 0 < self.sigma_min <= self.sigma_max or self.lam < 0:
            raise ValueError(
                "need iterations >= 1, 0 < sigma_min <= sigma_max and lam >= 0; got "
                f"{self.iterations}, {self.sigma_min}, {self.sigma_max}, {self.lam}"
            )

    def sigmas(self) -> list[float]:
        """σ_k of each iteration, a.u., log-spaced from ``sigma_max`` to ``sigma_min``."""
        k = self.iterations
        ratio = self.sigma_min / self.sigma_max
        return [self.sigma_max * ratio ** (i / max(k - 1, 1)) for i in range(k)]


def image_noise_sigma(phi: KSpaceTruncation, shape: tuple[int, int]) -> float:
    """Return the standard deviation of the real-part image noise of Φ's data, σ·√(f/2), a.u.

    Parameters
    ----------
    phi : KSpaceTruncation
        Φ with its k-space noise σ.
    shape : (int, int)
        In-plane grid; f is the fraction of its k-space samples that Φ keeps.
    """
    kept = float(centre_mask(shape, phi.keep).double().mean())
    return phi.sigma * math.sqrt(kept / 2.0)


@dataclass(frozen=True)
class PnPResult:
    """Output of :func:`pnp_reconstruct`.

    Attributes
    ----------
    maps : Tensor
        (B, 3, H, W) PD [a.u.], T1 [ms], T2 [ms]; zero outside the mask.
    objective : list of float
        F(xᵏ, qᵏ) = ‖Φxᵏ − y‖² + ρ_k‖xᵏ − M(qᵏ)‖² after each iteration, a.u.² (sums over all
        voxels and contrasts).
    misfit : list of float
        The data-consistent fit's objective ‖Φ(M(qᵏ)) − y‖², a.u.², at q⁰ and after each iteration.
    """

    maps: Tensor
    objective: list[float]
    misfit: list[float]


def _fit(contrasts: Tensor, mask: Tensor, protocol: QMRIProtocol) -> Tensor:
    """fit_qmri on (B, n_c, H, W) contrasts in the mask → (B, 3, H, W)."""
    return fit_qmri(contrasts.transpose(0, 1), mask=mask, protocol=protocol).transpose(0, 1)


def _synthesize(maps: Tensor, protocol: QMRIProtocol) -> Tensor:
    """M(q): (B, 3, H, W) → (B, n_c, H, W)."""
    return qmri_contrasts(maps[:, 0], maps[:, 1], maps[:, 2], protocol, dim=1)


def data_consistency_step(z: Tensor, data: Tensor, phi: KSpaceTruncation, rho: float) -> Tensor:
    """Solve the x-step exactly: argmin_x ‖Φx − y‖² + ρ‖x − z‖² = z + Φ(y − z)/(1 + ρ).

    Exact because noise-free Φ is an orthogonal projection (module notes): in the band the result
    is the mean (y + ρz)/(1 + ρ), outside it z.

    Parameters
    ----------
    z : Tensor
        (..., H, W) prior images (the restored synthesis), a.u.
    data : Tensor
        (..., H, W) data y (band-limited), a.u.
    phi : KSpaceTruncation
        Φ (its noise-free part is used).
    rho : float
        ρ ≥ 0, dimensionless.

    Returns
    -------
    Tensor
        x, same shape, a.u.
    """
    return z + phi.forward(data - z) / (1.0 + rho)


def pnp_reconstruct(
    c_l: Tensor,
    mask: Tensor,
    phi: KSpaceTruncation,
    denoiser: Denoiser,
    settings: PnPSettings | None = None,
    protocol: QMRIProtocol = PROTOCOL,
    progress: bool = False,
) -> PnPResult:
    """Plug-and-play HQS reconstruction of the maps from the LR contrasts (module notes).

    Parameters
    ----------
    c_l : Tensor
        (B, n_c, H, W) acquired LR contrasts C_l on the *full* acquisition grid (Φ acts on whole
        slices), a.u.
    mask : Tensor
        (B, H, W) brain mask: voxels that are fitted.
    phi : KSpaceTruncation
        Φ that made the data (its ``keep``, and its ``sigma`` for σ_n).
    denoiser : callable
        The prior (:meth:`ContrastDenoiser.prior`, or :func:`identity_denoiser`).
    settings : PnPSettings, optional
        Iterations, σ schedule and λ (default :class:`PnPSettings`).
    protocol : QMRIProtocol
        TR/TE of the contrasts, ms.
    progress : bool
        tqdm bar over iterations.

    Returns
    -------
    PnPResult
    """
    if c_l.ndim != 4 or c_l.shape[1] != protocol.n_contrasts or mask.shape != (c_l.shape[0], *c_l.shape[-2:]):
        raise ValueError(
            f"need c_l (B, {protocol.n_contrasts}, H, W) and mask (B, H, W); got "
            f"{tuple(c_l.shape)} and {tuple(mask.shape)}"
        )
    settings = settings or PnPSettings()
    sigma_n = image_noise_sigma(phi, tuple(c_l.shape[-2:]))
    data = phi.forward(c_l)  # y is band-limited up to rounding; Φy enters the x-step

    def misfit(maps: Tensor) -> float:
        return float((phi.forward(_synthesize(maps, protocol)) - data).square().sum())

    maps = _fit(c_l, mask, protocol)
    objective, misfits = [], [misfit(maps)]
    for sigma_k in tqdm(settings.sigmas(), desc="pnp", disable=not progress):
        rho = settings.lam * sigma_n**2 / sigma_k**2
        z = denoiser(_synthesize(maps, protocol), sigma_k)
        x = data_consistency_step(z, data, phi, rho)
        maps = _fit(x, mask, protocol)
        objective.append(
            float((phi.forward(x) - data).square().sum() + rho * (x - _synthesize(maps, protocol)).square().sum())
        )
        misfits.append(misfit(maps))
    return PnPResult(maps=maps, objective=objective, misfit=misfits)


def training_slices(volumes: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Axial slices with brain of HR map volumes, slices first, for :meth:`WeightedPatches.draw`.

    Parameters
    ----------
    volumes : sequence of Tensor
        (3, X, Y, Z) HR maps of the training subjects, PD [a.u.], T1 [ms], T2 [ms].
    masks : sequence of Tensor
        (X, Y, Z) brain masks.

    Returns
    -------
    (Tensor, Tensor)
        (S, 3, X, Y) maps and (S, X, Y) masks of every slice with at least one brain voxel.
    """
    maps, brains = [], []
    for volume, mask in zip(volumes, masks, strict=True):
        keep = mask.flatten(0, 1).any(0)
        maps.append(volume.permute(3, 0, 1, 2)[keep])
        brains.append(mask.permute(2, 0, 1)[keep])
    return torch.cat(maps), torch.cat(brains)
