"""Degradation randomisation (issue 11, item 3): each training sample with its own Φ. Off by default.

The paper degrades every subject with one Φ (eq. 3: the central ``keep`` = 0.5 of each k-space
axis, noise σ = 0.1, a box-shaped band). A model trained so learns that one point-spread function
and overshoots where real data differ (sharper anatomy, apodised or radial acquisitions). With
:class:`DegradationSettings` ``enabled``, each sample (a training subject) draws its own Φ:

* ``keep`` uniform in ``keep_range`` (fraction of each k-space axis kept);
* σ uniform in ``sigma_range`` (k-space noise, a.u.);
* a point-spread function uniform among ``psfs``: ``"box"`` (eq. 3,
  :class:`~swig_lib.core.kspace.KSpaceTruncation`), ``"apodised"`` (the same band with a separable
  Tukey window, :class:`ApodisedTruncation`) or ``"radial"`` (a disc of radius ``keep``·π with a
  Tukey window in ``|k|``, like the gridding filter of the cross-sequence radial sequence,
  :func:`swig_lib.core.radial.radial_window`; ``taper`` 1 = Hann there and here).

The draw of sample ``index`` depends only on ``(seed, index)`` (:func:`sample_rng`), not on the
order in which samples are visited, so a resumed run redraws the same Φ without saving any state.
Disabled, :func:`draw_phi` returns the profile's Φ itself. The data term must then use each
sample's own Φ: every Φ here is linear, self-adjoint and circulant (shift-invariant), so its
restriction to a training window (:meth:`ApodisedTruncation.on_window`) is exact as for eq. 3.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from swig_lib.core.kspace import KSpaceTruncation, WindowedTruncation, centre_mask, fft2c, ifft2c, truncate_kspace
from swig_lib.core.radial import radial_window
from swig_lib.experiments.config import Profile, check_known_fields

#: Point-spread functions that :func:`draw_phi` chooses from.
PSFS: tuple[str, ...] = ("box", "apodised", "radial")
#: Dataset splits (as :data:`swig_lib.experiments.subjects.dataset.SPLITS`).
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Entropy word that separates the degradation draws from a dataset's other seeded streams.
_STREAM = 0x5EED_DE6


@dataclass(frozen=True)
class DegradationSettings:
    """Degradation randomisation; the defaults leave every sample with the profile's Φ.

    Attributes
    ----------
    enabled : bool
        Draw a Φ per sample (False: the profile's ``keep`` and ``sigma``, box band).
    keep_range : tuple of float
        (min, max) of the kept fraction of each k-space axis, in (0, 1].
    sigma_range : tuple of float
        (min, max) of the k-space noise σ, a.u., ≥ 0.
    psfs : tuple of str
        Point-spread functions to choose from (:data:`PSFS`).
    taper : float
        Tapered fraction of the band of ``"apodised"`` and ``"radial"``, in [0, 1] (1: Hann).
    splits : tuple of str
        Dataset splits whose subjects draw their Φ (default train and val: the test subjects keep
        the profile's Φ, so the benchmark is unchanged).
    """

    enabled: bool = False
    keep_range: tuple[float, float] = (0.4, 0.6)
    sigma_range: tuple[float, float] = (0.05, 0.2)
    psfs: tuple[str, ...] = PSFS
    taper: float = 1.0
    splits: tuple[str, ...] = ("train", "val")

    def __post_init__(self) -> None:
        low, high = self.keep_range
        if not 0 < low <= high <= 1:
            raise ValueError(f"keep_range must satisfy 0 < min <= max <= 1, got {list(self.keep_range)}")
        low, high = self.sigma_range
        if not 0 <= low <= high:
            raise ValueError(f"sigma_range must satisfy 0 <= min <= max, got {list(self.sigma_range)}")
        if not self.psfs or set(self.psfs) - set(PSFS):
            raise ValueError(f"psfs must be a non-empty selection of {list(PSFS)}, got {list(self.psfs)}")
        if not 0 <= self.taper <= 1:
            raise ValueError(f"taper must lie in [0, 1], got {self.taper}")
        if set(self.splits) - set(SPLITS):
            raise ValueError(f"splits must be a selection of {list(SPLITS)}, got {list(self.splits)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DegradationSettings:
        """Build from a profile table; unknown keys raise, lists become tuples."""
        check_known_fields(cls, values, "degradation")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable; tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _frequencies(n: int, device: torch.device | str | None = None) -> Tensor:
    """Centred DFT frequencies of an axis of ``n`` samples, rad/voxel (DC at index n // 2), float64."""
    return 2 * math.pi * (torch.arange(n, dtype=torch.float64, device=device) - n // 2) / n


@dataclass(frozen=True)
class ApodisedTruncation(KSpaceTruncation):
    """Φ with an apodised band: Re F⁻¹((F(C) + ε) ∘ B ∘ W), on real images (..., rows, columns).

    Separable (``radial`` False): B is eq. 3's centred square band and W(k_x, k_y) = w(k_x)·w(k_y),
    w the Tukey window :func:`swig_lib.core.radial.radial_window` of extent ``keep``·π along one
    axis. Radial: B·W is that window of ``|k|`` on the disc ``|k| ≤ keep·π``. ``taper`` = 0 with
    ``radial`` False is eq. 3 exactly. The noise ε is drawn as by
    :func:`swig_lib.core.kspace.truncate_kspace`, so it takes the band's shape.

    Parameters
    ----------
    keep, sigma : float
        As :class:`~swig_lib.core.kspace.KSpaceTruncation`.
    taper : float
        Tapered fraction of the band, in [0, 1] (1: Hann).
    radial : bool
        Disc with a radial window instead of the separable square band.
    """

    taper: float = 1.0
    radial: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.taper <= 1:
            raise ValueError(f"taper must lie in [0, 1], got {self.taper}")

    def weights(self, shape: tuple[int, int], device: torch.device | str | None = None) -> Tensor:
        """B·W on the centred k-space grid of ``shape`` (rows, columns), float64."""
        kx, ky = _frequencies(shape[0], device)[:, None], _frequencies(shape[1], device)[None, :]
        band = centre_mask(shape, self.keep, device=device).to(torch.float64)
        if self.radial:
            k = torch.hypot(kx, ky)
            disc = (k <= self.keep * math.pi).to(torch.float64)
            return band * disc * torch.from_numpy(radial_window(k.cpu().numpy(), 0.0, self.keep, self.taper)).to(k)
        window = [torch.from_numpy(radial_window(f.cpu().numpy(), 0.0, self.keep, self.taper)).to(f) for f in (kx, ky)]
        return band * window[0] * window[1]

    def _weighted(self, images: Tensor) -> Tensor:
        """Re F⁻¹(F(images) ∘ B ∘ W), in the real dtype of ``images``."""
        kspace = fft2c(images if images.is_complex() else torch.complex(images, torch.zeros_like(images)))
        weights = self.weights(tuple(kspace.shape[-2:]), kspace.device).to(kspace.real.dtype)
        return ifft2c(kspace * weights).real

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Acquire: Re F⁻¹((F(C) + ε) ∘ B ∘ W), noise of level ``sigma`` (class notes)."""
        return self._weighted(truncate_kspace(images, self.keep, self.sigma, generator, part="complex"))

    def forward(self, images: Tensor) -> Tensor:
        """The noise-free linear part Re F⁻¹(F(C) ∘ B ∘ W) on the full grid (differentiable)."""
        return self._weighted(images)

    def on_window(
        self,
        grid: tuple[int, int],
        window: tuple[int, int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> WindowedTruncation | EmbeddedWindow:
        """Noise-free Φ on a ``window`` of ``grid``: separable factors, or the embedded full grid (radial).

        The radial band is not separable, so its window operator zero-pads the window to the grid,
        applies :meth:`forward` and crops (exact for images zero outside the window, as Φ is
        circulant).
        """
        if not self.radial:
            return super().on_window(grid, window, dtype, device)
        return EmbeddedWindow(self, (int(grid[0]), int(grid[1])), (int(window[0]), int(window[1])))


@dataclass(frozen=True, eq=False)
class EmbeddedWindow:
    """A circulant Φ on a window of the acquisition grid, through zero-padding to the full grid.

    Computed with real FFTs: Φ(C) = Re F⁻¹(F(C) ∘ B ∘ W) equals ``irfft2(rfft2(C) ∘ K)`` with K the
    uncentred half of B·W (B·W is real and even, so Φ maps real images to real images and a
    centred transform's shifts cancel around a circulant filter), about half the work of
    :meth:`ApodisedTruncation.forward`, to which it is equal up to rounding.

    Attributes
    ----------
    phi : ApodisedTruncation
        The full-grid operator.
    grid : (int, int)
        In-plane shape of the acquisition grid, voxels.
    window : (int, int)
        In-plane shape (n_x, n_y) of the window, n ≤ N per axis.
    """

    phi: ApodisedTruncation
    grid: tuple[int, int]
    window: tuple[int, int]

    def __post_init__(self) -> None:
        if not all(0 < n <= full for n, full in zip(self.window, self.grid)):
            raise ValueError(f"window {list(self.window)} must fit the grid {list(self.grid)}")
        half = torch.fft.ifftshift(self.phi.weights(self.grid))[:, : self.grid[1] // 2 + 1]
        object.__setattr__(self, "_half", half.contiguous())

    def forward(self, images: Tensor) -> Tensor:
        """Φ on windowed images (..., n_x, n_y), signal units; same shape out."""
        padded = F.pad(images, (0, self.grid[1] - self.window[1], 0, self.grid[0] - self.window[0]))
        kernel = self._half.to(device=images.device, dtype=images.dtype)
        full = torch.fft.irfft2(torch.fft.rfft2(padded) * kernel, s=self.grid)
        return full[..., : self.window[0], : self.window[1]]

    def adjoint(self, images: Tensor) -> Tensor:
        """Adjoint of :meth:`forward`: Φ is self-adjoint and cropping is the adjoint of zero-padding."""
        return self.forward(images)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of sample ``index``'s degradation: ``SeedSequence([seed, index, stream])``.

    Independent of a dataset's anatomy and noise streams (``SeedSequence([seed, index])``).
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), _STREAM]))


def draw_phi(settings: DegradationSettings, phi: KSpaceTruncation, rng: np.random.Generator) -> KSpaceTruncation:
    """The Φ of one sample: ``phi`` itself when disabled, else a random one (module notes).

    Parameters
    ----------
    settings : DegradationSettings
        Ranges and PSFs.
    phi : KSpaceTruncation
        The profile's Φ (its ``keep`` and ``sigma``).
    rng : numpy.random.Generator
        The sample's stream (:func:`sample_rng`); not used when disabled.

    Returns
    -------
    KSpaceTruncation
        ``phi`` (disabled); else :class:`~swig_lib.core.kspace.KSpaceTruncation` for ``"box"``
        or :class:`ApodisedTruncation` for ``"apodised"`` and ``"radial"``.
    """
    if not settings.enabled:
        return phi
    keep = float(rng.uniform(*settings.keep_range))
    sigma = float(rng.uniform(*settings.sigma_range))
    psf = settings.psfs[int(rng.integers(len(settings.psfs)))]
    if psf == "box":
        return KSpaceTruncation(keep, sigma)
    return ApodisedTruncation(keep, sigma, settings.taper, radial=psf == "radial")


def psf_name(phi: KSpaceTruncation) -> str:
    """The point-spread function of ``phi``: ``"box"``, ``"apodised"`` or ``"radial"`` (:data:`PSFS`)."""
    if isinstance(phi, ApodisedTruncation):
        return "radial" if phi.radial else "apodised"
    return "box"


def phi_record(phi: KSpaceTruncation) -> dict[str, Any]:
    """A subject's Φ as plain data (a dataset manifest): psf, keep, sigma (a.u.) and taper."""
    return {"psf": psf_name(phi), "keep": phi.keep, "sigma": phi.sigma,
            "taper": phi.taper if isinstance(phi, ApodisedTruncation) else 0.0}


def phi_from_record(record: dict[str, Any]) -> KSpaceTruncation:
    """Inverse of :func:`phi_record`."""
    if record["psf"] == "box":
        return KSpaceTruncation(float(record["keep"]), float(record["sigma"]))
    return ApodisedTruncation(float(record["keep"]), float(record["sigma"]), float(record["taper"]),
                              radial=record["psf"] == "radial")


def randomised_profile(profile: Profile) -> Profile:
    """``profile`` with degradation randomisation on, on its own dataset (the transfer model's data).

    The dataset is named ``<data.dataset>-dr-<digest>``, the digest the first 8 hex digits of the
    SHA-256 of the ``[data.degradation]`` settings, so that datasets with other ranges never share
    a folder (and the profile's own dataset is untouched).
    """
    data = profile.data.to_dict()
    settings = DegradationSettings.from_dict({**data.get("degradation", {}), "enabled": True})
    digest = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    data = {**data, "degradation": settings.to_dict(), "dataset": f"{data['dataset']}-dr-{digest}"}
    return Profile.from_dict(profile.to_dict() | {"data": data})


@dataclass(frozen=True, eq=False)
class SampleWindows:
    """Each sample's noise-free Φ on the training window, whitened by its σ: Φ_s(C)/σ_s.

    The data term of eq. 9 with a Φ per sample is Σ_s Σ_i ‖C_l,s^i − Φ_s(M^i(Q̂_s))‖²/σ_s² over the
    region voxels; it is :func:`swig_lib.core.losses.data_consistency_loss` with σ = 1 applied to
    the whitened operator (:meth:`forward`) and the whitened data (:meth:`whiten`), so every
    sample keeps its own likelihood weight 1/σ_s².

    Attributes
    ----------
    operators : tuple
        The distinct Φ on the window (:meth:`~swig_lib.core.kspace.KSpaceTruncation.on_window`:
        separable factors or the embedded full grid); a slice's ``phi`` indexes into them.
    sigmas : Tensor
        (n_phi,) σ of each Φ, a.u., > 0.
    index : Tensor or None
        (B,) the Φ of each sample of the bound batch (:meth:`bind`); None before.
    """

    operators: tuple[WindowedTruncation | EmbeddedWindow, ...]
    sigmas: Tensor
    index: Tensor | None = None

    @classmethod
    def build(cls, phis: Sequence[KSpaceTruncation], grid: tuple[int, int], window: tuple[int, int],
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> SampleWindows:
        """The window operators of ``phis`` on a ``window`` of the acquisition ``grid``."""
        if min(phi.sigma for phi in phis) <= 0:
            raise ValueError("every Φ of a per-sample data term needs noise sigma > 0 (it weighs by 1/σ²)")
        return cls(tuple(phi.on_window(grid, window, dtype, device) for phi in phis),
                   torch.tensor([phi.sigma for phi in phis], dtype=dtype, device=device))

    def bind(self, index: Tensor) -> SampleWindows:
        """The same operators for a batch whose sample b uses Φ number ``index[b]``."""
        return replace(self, index=index.to(self.sigmas.device))

    def whiten(self, images: Tensor) -> Tensor:
        """Images (B, ...) of the bound batch divided by their sample's σ."""
        return images / self.sigmas[self.index].view(-1, *([1] * (images.ndim - 1)))

    def forward(self, images: Tensor) -> Tensor:
        """Φ_s(images[s])/σ_s for every sample s of the bound batch (B, ..., n_x, n_y); same shape.

        The batch is grouped by Φ: one call of each distinct operator on its samples.
        """
        if self.index is None:
            raise ValueError("bind the batch's Φ indices first (SampleWindows.bind)")
        groups = torch.unique(self.index)
        order = torch.cat([torch.nonzero(self.index == g).flatten() for g in groups])
        parts = [self.operators[int(g)].forward(images[self.index == g]) for g in groups]
        return self.whiten(torch.cat(parts)[torch.argsort(order)])

    def adjoint(self, images: Tensor) -> Tensor:
        """Adjoint of :meth:`forward`: each Φ_s is self-adjoint and σ_s a scalar."""
        return self.forward(images)
