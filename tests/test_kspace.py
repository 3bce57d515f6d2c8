"""Properties of the k-space degradation Φ (eq. 3)."""

import math

import pytest
import torch

from swig_lib.core.kspace import KSpaceTruncation, centre_mask, fft2c, ifft2c, truncate_kspace


def image(shape=(2, 3, 32, 40), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype) * 100


def test_fft_roundtrip_and_parseval():
    x = image()
    k = fft2c(x)
    torch.testing.assert_close(ifft2c(k).real, x)
    assert (k.abs() ** 2).sum().item() == pytest.approx((x**2).sum().item(), rel=1e-12)


def test_dc_is_at_the_centre():
    x = torch.ones(1, 16, 20, dtype=torch.float64)
    k = fft2c(x)
    assert k[0, 8, 10].abs().item() == pytest.approx(math.sqrt(16 * 20))
    assert k.abs().sum().item() == pytest.approx(math.sqrt(16 * 20))


def test_identity_at_full_keep_without_noise():
    x = image()
    torch.testing.assert_close(truncate_kspace(x, keep=1.0, sigma=0.0), x)


@pytest.mark.parametrize("n, keep, lines", [(32, 0.5, 17), (40, 0.5, 21), (33, 0.5, 17), (64, 0.25, 17)])
def test_centre_mask_is_a_symmetric_band(n, keep, lines):
    band = centre_mask((n, n), keep)[:, n // 2]
    assert band.sum().item() == lines
    idx = torch.nonzero(band).flatten() - n // 2
    assert idx.min().item() == -idx.max().item()


def test_centre_mask_rejects_bad_fraction():
    for keep in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="keep"):
            centre_mask((8, 8), keep)


def test_removes_everything_outside_the_band():
    x = image()
    out = truncate_kspace(x, keep=0.5, sigma=0.3, generator=torch.Generator().manual_seed(1), part="complex")
    k = fft2c(out)
    outside = ~centre_mask((32, 40), 0.5)
    assert k[..., outside].abs().max().item() < 1e-10
    assert k[..., ~outside].abs().min().item() > 0


def test_noise_free_truncation_of_real_image_is_real_and_idempotent():
    x = image()
    out = truncate_kspace(x, keep=0.5, part="complex")
    assert out.imag.abs().max().item() < 1e-10
    torch.testing.assert_close(truncate_kspace(out.real, keep=0.5), out.real)


def test_noise_has_the_stated_variance():
    sigma, keep, shape = 0.7, 0.5, (64, 128, 128)
    zeros = torch.zeros(shape, dtype=torch.float64)
    out = truncate_kspace(zeros, keep, sigma, generator=torch.Generator().manual_seed(0), part="complex")
    mask = centre_mask(shape[-2:], keep)
    k = fft2c(out)[..., mask]
    assert (k.abs() ** 2).mean().item() == pytest.approx(sigma**2, rel=0.01)
    assert k.real.var().item() == pytest.approx(sigma**2 / 2, rel=0.01)
    fraction = mask.sum().item() / mask.numel()
    real = truncate_kspace(zeros, keep, sigma, generator=torch.Generator().manual_seed(0))
    assert real.var().item() == pytest.approx(sigma**2 * fraction / 2, rel=0.01)


def test_noise_is_seeded():
    x = image()
    a = truncate_kspace(x, 0.5, 0.1, generator=torch.Generator().manual_seed(3))
    b = truncate_kspace(x, 0.5, 0.1, generator=torch.Generator().manual_seed(3))
    c = truncate_kspace(x, 0.5, 0.1, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_magnitude_and_dtype():
    x = image(dtype=torch.float32)
    out = truncate_kspace(x, 0.5)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(truncate_kspace(x, 0.5, part="magnitude"), out.abs(), atol=1e-3, rtol=1e-5)
    with pytest.raises(ValueError, match="part"):
        truncate_kspace(x, 0.5, part="imag")
    with pytest.raises(ValueError, match="sigma"):
        truncate_kspace(x, 0.5, sigma=-1.0)


def test_gradcheck_noise_free():
    x = image((1, 6, 8)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: truncate_kspace(t, keep=0.5), (x,))


# --- Φ as one operator: the object computes exactly what truncate_kspace computes -----------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_operator_data_model_is_truncate_kspace_with_the_same_draws(dtype):
    x = image(dtype=dtype)
    phi = KSpaceTruncation(keep=0.5, sigma=0.1)
    noisy = phi(x, torch.Generator().manual_seed(7))
    assert torch.equal(noisy, truncate_kspace(x, 0.5, 0.1, torch.Generator().manual_seed(7)))
    assert noisy.dtype == dtype
    assert torch.equal(phi.forward(x), truncate_kspace(x, 0.5))
    assert torch.equal(phi.adjoint(x), phi.forward(x))
    assert not torch.equal(noisy, phi.forward(x))
    assert torch.equal(KSpaceTruncation(0.5)(x), phi.forward(x))  # sigma = 0: no noise, no draw


def test_operator_rejects_bad_settings_when_built():
    with pytest.raises(ValueError, match="keep"):
        KSpaceTruncation(keep=0.0)
    with pytest.raises(ValueError, match="keep"):
        KSpaceTruncation(keep=1.5)
    with pytest.raises(ValueError, match="sigma"):
        KSpaceTruncation(keep=0.5, sigma=-0.1)


def test_window_matrix_is_the_band_limiting_of_impulses():
    """Column j of the 1-D factor is Φ of a unit impulse at j; the window takes its leading block."""
    phi = KSpaceTruncation(0.5)
    full = phi.window_matrix(12, 12, torch.float64)
    impulse = torch.zeros(12, 1, dtype=torch.float64)
    impulse[3] = 1.0
    torch.testing.assert_close(full[:, 3], phi.forward(impulse)[:, 0], rtol=0, atol=1e-15)
    torch.testing.assert_close(full, full.T, rtol=0, atol=1e-15)  # circulant, real, symmetric
    assert torch.equal(phi.window_matrix(12, 7, torch.float64), full[:7, :7])
    assert phi.window_matrix(12, 7).dtype == torch.float32
    windowed = phi.on_window((12, 10), (7, 6))
    assert torch.equal(windowed.rows, phi.window_matrix(12, 7))
    assert torch.equal(windowed.cols, phi.window_matrix(10, 6))
    with pytest.raises(ValueError, match="window"):
        phi.window_matrix(10, 11)
    with pytest.raises(ValueError, match="window"):
        phi.window_matrix(10, 0)
