"""Tests of the degradation randomisation settings and operators (swig_lib.experiments.training.augment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.experiments.training.augment import (
    PSFS,
    ApodisedTruncation,
    DegradationSettings,
    EmbeddedWindow,
    draw_phi,
    sample_rng,
)


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_disabled_returns_the_profiles_phi_exactly() -> None:
    settings = DegradationSettings()
    assert settings.enabled is False  # default off: the paper's fixed degradation
    phi = KSpaceTruncation(0.5, 0.1)
    rng = sample_rng(2025, 3)
    state = rng.bit_generator.state
    drawn = draw_phi(settings, phi, rng)
    assert drawn is phi and rng.bit_generator.state == state  # nothing drawn
    assert torch.equal(drawn.on_window((40, 36), (30, 28)).rows, phi.on_window((40, 36), (30, 28)).rows)


def test_enabled_draws_lie_in_range_and_are_seeded() -> None:
    settings = DegradationSettings(enabled=True, keep_range=(0.3, 0.45), sigma_range=(0.02, 0.07))
    base = KSpaceTruncation(0.5, 0.1)
    draws = [draw_phi(settings, base, sample_rng(7, i)) for i in range(60)]
    assert all(0.3 <= d.keep <= 0.45 and 0.02 <= d.sigma <= 0.07 for d in draws)
    kinds = {("radial" if d.radial else "apodised") if isinstance(d, ApodisedTruncation) else "box" for d in draws}
    assert kinds == set(PSFS)
    assert all(d.taper == 1.0 for d in draws if isinstance(d, ApodisedTruncation))
    again = [draw_phi(settings, base, sample_rng(7, i)) for i in range(60)]
    assert again == draws  # the same (seed, index) gives the same Φ, in any order of the samples
    assert draw_phi(settings, base, sample_rng(7, 5)) == draws[5]
    assert draw_phi(settings, base, sample_rng(8, 0)) != draws[0]
    assert len({(d.keep, d.sigma) for d in draws}) == 60
    only_box = DegradationSettings(enabled=True, psfs=("box",))
    assert type(draw_phi(only_box, base, sample_rng(7, 0))) is KSpaceTruncation


def test_settings_are_checked_and_round_trip() -> None:
    settings = DegradationSettings(enabled=True, keep_range=(0.35, 0.5), psfs=("box", "radial"), taper=0.5)
    assert DegradationSettings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["keep_range"] == [0.35, 0.5]
    with pytest.raises(ValueError, match=r"keep_range must satisfy 0 < min <= max <= 1, got \[0.6, 0.4\]"):
        DegradationSettings(keep_range=(0.6, 0.4))
    with pytest.raises(ValueError, match="sigma_range must satisfy"):
        DegradationSettings(sigma_range=(-0.1, 0.1))
    with pytest.raises(ValueError, match=r"psfs must be a non-empty selection of \['box', 'apodised', 'radial'\]"):
        DegradationSettings(psfs=("gauss",))
    with pytest.raises(KeyError, match=r"unknown degradation setting\(s\) \['keeps'\]"):
        DegradationSettings.from_dict({"keeps": [0.4, 0.5]})


def test_apodised_without_taper_is_eq3() -> None:
    images = _images((2, 24, 20), 0)
    box, flat = KSpaceTruncation(0.5, 0.1), ApodisedTruncation(0.5, 0.1, taper=0.0)
    torch.testing.assert_close(flat.forward(images), box.forward(images), rtol=0, atol=1e-13)
    noisy_box = box(images, torch.Generator().manual_seed(3))
    noisy_flat = flat(images, torch.Generator().manual_seed(3))
    torch.testing.assert_close(noisy_flat, noisy_box, rtol=0, atol=1e-13)  # the same noise draws


def test_apodised_weights() -> None:
    phi = ApodisedTruncation(0.5, taper=1.0)
    weights = phi.weights((16, 16))
    assert weights[8, 8] == 1.0  # DC kept
    # Hann along an axis: w(f) = (1 + cos(π f / 4)) / 2 for |f| <= 4 (keep·N/2 = 4), 0 beyond.
    f = torch.arange(16, dtype=torch.float64) - 8
    expected = torch.where(f.abs() <= 4, 0.5 * (1 + torch.cos(torch.pi * f / 4.0)), torch.zeros_like(f))
    torch.testing.assert_close(weights[:, 8], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(weights, weights[:, 8:9] * weights[8:9, :], rtol=0, atol=1e-15)  # separable
    radial = ApodisedTruncation(0.5, taper=1.0, radial=True).weights((16, 16))
    assert radial[8, 8] == 1.0 and radial[8 + 2, 8 + 2] > 0 and radial[8 + 3, 8 + 3] == 0  # disc of radius 4
    torch.testing.assert_close(radial[10, 10], 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 8**0.5 / 4))).double())
    torch.testing.assert_close(radial[:, 8], expected, rtol=0, atol=1e-12)  # same profile on an axis


@pytest.mark.parametrize("radial", [False, True])
def test_operator_contract(radial: bool) -> None:
    phi = ApodisedTruncation(0.45, taper=0.6, radial=radial)
    x, z, y = (_images((3, 20, 18), s) for s in (1, 2, 3))
    torch.testing.assert_close(phi.forward(2.0 * x - 0.5 * z), 2.0 * phi.forward(x) - 0.5 * phi.forward(z))
    lhs, rhs = torch.sum(phi.forward(x) * y), torch.sum(x * phi.adjoint(y))
    assert abs(float(lhs - rhs)) <= 1e-12 * float(phi.forward(x).norm() * y.norm())
    # Window equivalence: zero outside a window (at a wrapped position) → the windowed Φ is exact.
    window = (12, 10)
    windowed = phi.on_window((20, 18), window, torch.float64)
    assert isinstance(windowed, EmbeddedWindow) == radial
    content = _images((2, *window), 4)
    rows, cols = (np.arange(15, 15 + window[0]) % 20), (np.arange(11, 11 + window[1]) % 18)
    full = torch.zeros(2, 20, 18, dtype=torch.float64)
    full[:, rows[:, None], cols[None, :]] = content
    expected = phi.forward(full)[:, rows[:, None], cols[None, :]]
    torch.testing.assert_close(windowed.forward(content), expected, rtol=0, atol=1e-12)
    w_lhs = torch.sum(windowed.forward(content) * x[:2, :12, :10])
    w_rhs = torch.sum(content * windowed.adjoint(x[:2, :12, :10]))
    assert abs(float(w_lhs - w_rhs)) <= 1e-12 * float(content.norm() * x.norm())


def test_noise_keeps_the_band_shape() -> None:
    phi = ApodisedTruncation(0.5, sigma=1.0, taper=1.0, radial=True)
    noise = phi(torch.zeros(4, 32, 32, dtype=torch.float64), torch.Generator().manual_seed(0))
    spectrum = torch.fft.fftshift(torch.fft.fft2(noise, norm="ortho"), dim=(-2, -1)).abs()
    outside = phi.weights((32, 32)) == 0
    assert float(spectrum[:, outside].max()) < 1e-12 and float(spectrum[:, ~outside].mean()) > 0.1
