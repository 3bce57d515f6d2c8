"""Acquired weighted images of the cross-sequence validation (paper Sec. III-A.2b), simulated.

In the paper the volunteer of the in-vivo validation also had clinical T1w (IR-SPGR) and T2w (SE)
scans with the parameters of the training guides, and a T2-FLAIR that is never used as a guide;
all were registered to the qMRI grid. Here the "acquired" images of a digital subject are
synthesised from its HR maps Q_h (:func:`acquire_images`)::

    image = B(x) · M(Q_h) + n,    n ~ N(0, σ²) i.i.d. inside the brain mask, zero outside,

* M: the guides' signal equations (eq. 15-17, signed, exactly as the training guides of
  :func:`swig_lib.experiments.subjects.dataset.synthesize_guides`) and, for T2-FLAIR, the
  magnitude of eq. 18 (a scanner's magnitude image) with an inversion time that nulls CSF
  (:meth:`ImageSettings.flair_protocol`);
* B = exp(b · g(x)): a smooth multiplicative receive-bias field (:func:`bias_field`), g a random
  quadratic polynomial of the world coordinates with unit standard deviation over the brain, so
  ``b`` is the standard deviation of log B (0.1: about ±10 %);
* σ = ``noise`` × the mean ``|M(Q_h)|`` over the brain (0.02: a signal-to-noise ratio of 50).

``noise = 0`` and ``bias = 0`` give M(Q_h) exactly. Each image draws its bias field and noise from
its own seeded stream (``SeedSequence([seed, i])``, i its index in :data:`IMAGE_NAMES`), so the
images are independent and the same seed gives the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from swig_lib.core import physics
from swig_lib.core.protocols import (
    GUIDE_PROTOCOLS,
    FlairProtocol,
    IRSPGRProtocol,
    SpinEchoProtocol,
)
from swig_lib.experiments.config import check_known_fields
from swig_lib.experiments.subjects.anatomy import TISSUE_VALUES

#: The acquired weighted images, in the order of their random streams.
IMAGE_NAMES: tuple[str, str, str] = ("T1w", "T2w", "FLAIR")

WeightedProtocol = IRSPGRProtocol | SpinEchoProtocol | FlairProtocol


@dataclass(frozen=True)
class ImageSettings:
    """Noise, bias field and T2-FLAIR parameters of the acquired weighted images.

    Attributes
    ----------
    noise : float
        Standard deviation of the Gaussian noise relative to the image's mean absolute signal
        over the brain (dimensionless, ≥ 0; 0 = noise-free).
    bias : float
        Standard deviation over the brain of the log of the receive-bias field (dimensionless,
        ≥ 0; 0 = no bias field).
    flair_tr, flair_te : float
        Repetition and echo time of the T2-FLAIR, ms (typical clinical values).
    flair_null_t1 : float
        T1 (ms) nulled by the inversion time (:func:`swig_lib.core.physics.null_inversion_time`);
        default the CSF T1 of the digital subjects (:data:`swig_lib.experiments.subjects.anatomy.TISSUE_VALUES`).
    """

    noise: float = 0.02
    bias: float = 0.1
    flair_tr: float = FlairProtocol.tr
    flair_te: float = FlairProtocol.te
    flair_null_t1: float = TISSUE_VALUES["CSF"].t1

    def __post_init__(self) -> None:
        if self.noise < 0 or self.bias < 0:
            raise ValueError(f"noise and bias must be >= 0, got {self.noise}, {self.bias}")

    @property
    def flair_protocol(self) -> FlairProtocol:
        """The T2-FLAIR protocol, TI = −T1_null·ln((1 + e^(−TR/T1_null))/2) (ms)."""
        ti = physics.null_inversion_time(self.flair_null_t1, self.flair_tr)
        return FlairProtocol(ti=ti, tr=self.flair_tr, te=self.flair_te)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImageSettings:
        """Read the settings from a mapping (a profile table); unknown keys raise KeyError."""
        check_known_fields(cls, values, "image")
        return cls(**{k: float(v) for k, v in values.items()})


def image_protocols(settings: ImageSettings = ImageSettings()) -> dict[str, WeightedProtocol]:
    """Protocol of each of :data:`IMAGE_NAMES`: the training guides' and the T2-FLAIR."""
    return {**GUIDE_PROTOCOLS, "FLAIR": settings.flair_protocol}


def synthesize(protocol: WeightedProtocol, maps: np.ndarray) -> np.ndarray:
    """Noise-free weighted image of ``protocol`` from maps (eq. 15-17, or eq. 18 in magnitude).

    The guides (IR-SPGR, SE) are signed, as the training guides; the T2-FLAIR is the magnitude
    ``|eq. 18|`` × PD, as a scanner's magnitude image (tissue with T1 above the nulled one is bright).

    Parameters
    ----------
    protocol : IRSPGRProtocol, SpinEchoProtocol or FlairProtocol
        Sequence and parameters (ms, degrees).
    maps : ndarray, shape (3, ...)
        PD (a.u.), T1 (ms), T2 (ms).

    Returns
    -------
    ndarray, shape (...), float32
        Signal in PD units (computed in float64).
    """
    pd, t1, t2 = torch.from_numpy(np.asarray(maps, dtype=np.float64))
    if isinstance(protocol, FlairProtocol):
        image = physics.flair(pd, t1, t2, protocol.ti, protocol.tr, protocol.te, magnitude=True)
    else:
        image = physics.weighted_image(protocol, pd, t1, t2)
    return image.numpy().astype(np.float32)


def bias_field(
    mask: np.ndarray, affine: np.ndarray, amplitude: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth multiplicative receive-bias field B = exp(amplitude · g), g of unit std in the brain.

    g is a quadratic polynomial of the world coordinates (mm), each centred on the brain and
    divided by its half-extent, with standard-normal coefficients for the nine non-constant
    terms; it is then centred and scaled to mean 0 and standard deviation 1 over the brain.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    amplitude : float
        Standard deviation of log B over the brain (0 gives B = 1).
    rng : numpy.random.Generator
        Source of the coefficients (always drawn, so the noise stream that follows does not
        depend on ``amplitude``).

    Returns
    -------
    ndarray, shape (X, Y, Z), float64
        B > 0 (dimensionless).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the brain mask is empty")
    coefficients = rng.standard_normal(9)
    voxels = np.stack(np.meshgrid(*(np.arange(n) for n in mask.shape), indexing="ij"), axis=-1)
    world = voxels @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    inside = world[mask]
    centre = 0.5 * (inside.min(axis=0) + inside.max(axis=0))
    half = np.maximum(0.5 * (inside.max(axis=0) - inside.min(axis=0)), 1.0)
    u, v, w = np.moveaxis((world - centre) / half, -1, 0)
    terms = np.stack([u, v, w, u * u, v * v, w * w, u * v, u * w, v * w])
    g = np.tensordot(coefficients, terms, axes=1)
    g = (g - g[mask].mean()) / max(float(g[mask].std()), 1e-12)
    return np.exp(amplitude * g)


def acquire_image(
    protocol: WeightedProtocol,
    q_h: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    settings: ImageSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """One acquired weighted image: B · M(Q_h) + n inside the brain mask, 0 outside.

    Parameters
    ----------
    protocol : IRSPGRProtocol, SpinEchoProtocol or FlairProtocol
        The image's sequence (ms, degrees).
    q_h : ndarray, shape (3, X, Y, Z)
        HR maps: PD (a.u.), T1 (ms), T2 (ms).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm (for the bias field).
    settings : ImageSettings
        Noise and bias levels.
    rng : numpy.random.Generator
        Source of the bias field, then of the noise.

    Returns
    -------
    ndarray, shape (X, Y, Z), float32
        Signal in PD units.
    """
    mask = np.asarray(mask, dtype=bool)
    clean = synthesize(protocol, q_h).astype(np.float64)
    field = bias_field(mask, affine, settings.bias, rng)
    sigma = settings.noise * float(np.abs(clean[mask]).mean())
    noisy = field * clean + sigma * rng.standard_normal(mask.shape)
    return np.where(mask, noisy, 0.0).astype(np.float32)


def acquire_images(
    q_h: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    settings: ImageSettings = ImageSettings(),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Simulate the acquired T1w, T2w and T2-FLAIR of a subject (:data:`IMAGE_NAMES`), seeded.

    Parameters
    ----------
    q_h : ndarray, shape (3, X, Y, Z)
        HR maps: PD (a.u.), T1 (ms), T2 (ms).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine, mm.
    settings : ImageSettings
        Noise, bias and T2-FLAIR parameters.
    seed : int
        Image i uses ``numpy.random.default_rng(SeedSequence([seed, i]))``.

    Returns
    -------
    dict of str to ndarray
        ``{"T1w", "T2w", "FLAIR"}`` → (X, Y, Z) float32.
    """
    protocols = image_protocols(settings)
    return {
        name: acquire_image(
            protocols[name],
            q_h,
            mask,
            affine,
            settings,
            np.random.default_rng(np.random.SeedSequence([int(seed), index])),
        )
        for index, name in enumerate(IMAGE_NAMES)
    }
