"""k-space degradation Φ (eq. 3): centred k-space truncation with complex Gaussian noise.

All operators act on the last two axes (the in-plane axes of 2-D axial slices) with the centred,
orthonormal discrete Fourier transform, so Parseval holds and noise keeps its variance across
domains.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Part = Literal["real", "magnitude", "complex"]


def fft2c(images: Tensor) -> Tensor:
    """Centred orthonormal 2-D DFT over the last two axes (DC at index N//2)."""
    shifted = torch.fft.ifftshift(images, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(shifted, norm="ortho"), dim=(-2, -1))


def ifft2c(kspace: Tensor) -> Tensor:
    """Inverse of :func:`fft2c`."""
    shifted = torch.fft.ifftshift(kspace, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(shifted, norm="ortho"), dim=(-2, -1))


def centre_mask(shape: tuple[int, int], keep: float, device: torch.device | str | None = None) -> Tensor:
    """Binary mask B of eq. 3: a centred square keeping the fraction ``keep`` of each axis.

    Along an axis of N samples the kept integer frequencies are |f| ≤ ⌊keep·N/2⌋, a band symmetric
    about DC, so truncating a real image gives a real image. ``keep = 1`` keeps everything;
    ``keep = 0.5`` keeps about half of each axis, one quarter of k-space (the paper's "one quarter
    of central k-space").

    Parameters
    ----------
    shape : tuple of int
        The in-plane shape (rows, columns).
    keep : float
        Fraction of each axis kept, in (0, 1].
    device : torch.device or str, optional
        Where to build the mask.

    Returns
    -------
    Tensor
        Boolean mask of ``shape``, True where k-space is kept.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], the fraction of each k-space axis kept; got {keep}")
    bands = []
    for n in shape:
        freq = torch.arange(n, device=device) - n // 2
        bands.append(freq.abs() <= int(keep * n / 2))
    return bands[0][:, None] & bands[1][None, :]


def truncate_kspace(
    images: Tensor,
    keep: float = 0.5,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
    part: Part = "real",
) -> Tensor:
    """Degrade images to low resolution, eq. 3: C_l = F⁻¹((F(C_h) + ε) ∘ B).

    ε is zero-mean circular complex Gaussian noise with E|ε|² = σ² per k-space sample (real and
    imaginary parts each of standard deviation σ/√2), drawn independently for every sample and
    every image in the batch. After masking only the kept fraction of it remains; in the image
    domain the real part carries noise of variance σ²·f/2, with f the kept fraction of samples.

    Parameters
    ----------
    images : Tensor
        Real or complex images, shape (..., rows, columns), in signal units.
    keep : float
        Fraction of each in-plane k-space axis kept (see :func:`centre_mask`).
    sigma : float
        Noise level σ in signal units; 0 gives the deterministic, differentiable operator.
    generator : torch.Generator, optional
        Seeds the noise (on the device of ``images``).
    part : {"real", "magnitude", "complex"}
        What to return. The default, the real part, keeps the noise Gaussian and zero-mean, so
        the least-squares fit of eq. 1 is the maximum-likelihood fit; the symmetric band makes the
        imaginary part pure noise.

    Returns
    -------
    Tensor
        Degraded images of the input's shape: real (float) for ``"real"`` and ``"magnitude"``,
        complex for ``"complex"``.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative; got {sigma}")
    kspace = fft2c(images if images.is_complex() else images.to(_complex_dtype(images.dtype)))
    if sigma > 0:
        real_dtype = kspace.real.dtype
        noise = torch.randn(
            (2, *kspace.shape), generator=generator, dtype=real_dtype, device=kspace.device
        )
        kspace = kspace + (sigma / 2**0.5) * torch.complex(noise[0], noise[1])
    kspace = kspace * centre_mask(tuple(kspace.shape[-2:]), keep, device=kspace.device)
    result = ifft2c(kspace)
    if part == "real":
        return result.real
    if part == "magnitude":
        return result.abs()
    if part == "complex":
        return result
    raise ValueError(f"part must be 'real', 'magnitude' or 'complex'; got {part!r}")


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """Complex dtype matching a real floating dtype."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64
