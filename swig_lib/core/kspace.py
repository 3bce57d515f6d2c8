"""k-space degradation Φ (eq. 3): centred k-space truncation with complex Gaussian noise.

All operators act on the last two axes (the in-plane axes of 2-D axial slices) with the centred,
orthonormal discrete Fourier transform, so Parseval holds and noise keeps its variance across
domains.

Φ is one operator, :class:`KSpaceTruncation`, and everything that applies it takes that object:
the data build (its noisy data model, :meth:`KSpaceTruncation.__call__`), the data-consistency
loss and training (its noise-free linear part restricted to the training window,
:meth:`KSpaceTruncation.on_window`, a :class:`WindowedTruncation`). Both compute through
:func:`truncate_kspace`, the one implementation of eq. 3. ``tests/test_operators.py`` checks the
linear-operator contract (linearity, adjointness, window equivalence) of every operator here and of
:class:`swig_lib.core.radial.NUFFT`.

Φ on a window
-------------
Noise-free, Φ acts on whole slices of the acquisition grid (N_x, N_y) as a centred square k-space
band, i.e. a separable *circular* convolution ``Φ(C) = A_x · C · A_yᵀ`` with the real, symmetric,
circulant band-pass matrices ``A_x`` (N_x × N_x) and ``A_y``. If ``C`` is zero outside a window of
n ≤ N consecutive voxels per axis (indices taken modulo N), ``Φ(C)`` restricted to the window
equals ``A_x[w, w] · C[w] · A_y[w, w]ᵀ`` exactly, on every voxel of the window; because ``A`` is
circulant, ``A[w, w]`` is the same n × n matrix for every window position. The training
prediction is zero outside the brain (the model multiplies it by the brain mask) and the training
window contains the brain, so the loss on brain-cropped slices uses *exactly* the operator that
made the data, at the cost of two small matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def _check_keep(keep: float) -> None:
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], the fraction of each k-space axis kept; got {keep}")


def _check_sigma(sigma: float) -> None:
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative; got {sigma}")


def centre_mask(shape: tuple[int, int], keep: float, device: torch.device | str | None = None) -> Tensor:
    """Binary mask B of eq. 3: a centred square keeping the fraction ``keep`` of each axis.

    Along an axis of N samples the kept integer frequencies are ``|f| ≤ ⌊keep·N/2⌋``, a band symmetric
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
    _check_keep(keep)
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
    _check_sigma(sigma)
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


@dataclass(frozen=True)
class KSpaceTruncation:
    """Φ of eq. 3 as an operator on real images (..., rows, columns): the one Φ of the package.

    Parameters
    ----------
    keep : float
        Fraction of each in-plane k-space axis kept, in (0, 1] (see :func:`centre_mask`).
    sigma : float
        Noise level σ of the data model, signal units (a.u.), ≥ 0.

    Notes
    -----
    The noise-free part (:meth:`forward`) is linear and self-adjoint: an orthogonal projection of
    real images onto the band-limited ones (``F`` unitary, ``B`` a real symmetric band), so
    :meth:`adjoint` is :meth:`forward`.
    """

    keep: float = 0.5
    sigma: float = 0.0

    def __post_init__(self) -> None:
        _check_keep(self.keep)
        _check_sigma(self.sigma)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Acquire: the data model C_l = Re F⁻¹((F(C_h) + ε) ∘ B) of eq. 3, noise of level ``sigma``.

        Parameters
        ----------
        images : Tensor
            Real images (..., rows, columns), signal units.
        generator : torch.Generator, optional
            Seeds the noise (on the device of ``images``); the draws are those of
            :func:`truncate_kspace`.

        Returns
        -------
        Tensor
            Noisy LR images of the input's shape and real dtype.
        """
        return truncate_kspace(images, self.keep, self.sigma, generator)

    def forward(self, images: Tensor) -> Tensor:
        """Apply the noise-free linear part Re F⁻¹(F(C) ∘ B) on the full grid (differentiable).

        Parameters
        ----------
        images : Tensor
            Real images (..., rows, columns), signal units.

        Returns
        -------
        Tensor
            Band-limited images of the input's shape and dtype.
        """
        return truncate_kspace(images, self.keep)

    def adjoint(self, images: Tensor) -> Tensor:
        """Adjoint of :meth:`forward`; Φ is self-adjoint, so the same band-limiting."""
        return self.forward(images)

    def window_matrix(
        self,
        n_full: int,
        n_window: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Build the 1-D factor of noise-free Φ restricted to a window of ``n_window`` voxels.

        Built by applying :meth:`forward` to unit impulses in float64, so it is the operator that
        made the data (see the module notes, "Φ on a window").

        Parameters
        ----------
        n_full : int
            Length N of the acquisition grid along this axis, voxels.
        n_window : int
            Length n ≤ N of the window (any position, indices modulo N), voxels.
        dtype : torch.dtype
            Of the returned matrix.
        device : torch.device or str, optional
            Of the returned matrix.

        Returns
        -------
        Tensor
            ``A[w, w]`` of shape (n_window, n_window), dimensionless; column j is the response to
            an impulse at voxel j of the window.
        """
        if not 0 < n_window <= n_full:
            raise ValueError(f"window length must lie in [1, {n_full}]; got {n_window}")
        # Unit impulses as rows of (N, N, 1) images: the length-1 second axis keeps only its DC, so
        # Φ reduces to the 1-D band along the first image axis.
        impulses = torch.eye(n_full, dtype=torch.float64)[:, :, None]
        full = self.forward(impulses)[:, :, 0].T  # column j: response to δ_j
        return full[:n_window, :n_window].to(dtype=dtype, device=device).contiguous()

    def on_window(
        self,
        grid: tuple[int, int],
        window: tuple[int, int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> WindowedTruncation:
        """Noise-free Φ restricted to a ``window`` of the acquisition ``grid`` (separable form).

        Parameters
        ----------
        grid : (int, int)
            In-plane shape (N_x, N_y) of the acquisition grid, voxels.
        window : (int, int)
            In-plane shape (n_x, n_y) of the window, n ≤ N per axis (any position, modulo N).
        dtype : torch.dtype
            Of the two factors (the loss computes in this dtype).
        device : torch.device or str, optional
            Of the two factors.

        Returns
        -------
        WindowedTruncation
        """
        return WindowedTruncation(
            phi=self,
            grid=(int(grid[0]), int(grid[1])),
            rows=self.window_matrix(grid[0], window[0], dtype, device),
            cols=self.window_matrix(grid[1], window[1], dtype, device),
        )


@dataclass(frozen=True, eq=False)
class WindowedTruncation:
    """Noise-free Φ on a window of the acquisition grid: ``rows · C · colsᵀ`` over the last two axes.

    Exactly the full-grid :meth:`KSpaceTruncation.forward` on the window when the image is zero
    outside it (module notes, "Φ on a window"). Build it with :meth:`KSpaceTruncation.on_window`.

    Attributes
    ----------
    phi : KSpaceTruncation
        The full-grid operator it restricts (its ``keep``; its ``sigma`` is the data's noise).
    grid : (int, int)
        In-plane shape of the acquisition grid, voxels.
    rows, cols : Tensor
        :meth:`KSpaceTruncation.window_matrix` of the two in-plane axes, (n_x, n_x) and (n_y, n_y).
    """

    phi: KSpaceTruncation
    grid: tuple[int, int]
    rows: Tensor
    cols: Tensor

    @property
    def window(self) -> tuple[int, int]:
        """In-plane shape (n_x, n_y) of the window, voxels."""
        return self.rows.shape[0], self.cols.shape[0]

    def forward(self, images: Tensor) -> Tensor:
        """Φ on windowed images (..., n_x, n_y), signal units; same shape out."""
        return self.rows @ images @ self.cols.transpose(-1, -2)

    def adjoint(self, images: Tensor) -> Tensor:
        """Adjoint of :meth:`forward`: ``rowsᵀ · C · cols``."""
        return self.rows.transpose(-1, -2) @ images @ self.cols
