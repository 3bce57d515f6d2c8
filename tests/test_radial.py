"""Tests of golden-angle radial sampling, the FINUFFT operators and gridding (swig_lib.core.radial)."""

from __future__ import annotations

import numpy as np
import pytest

from swig_lib.core.radial import (
    GOLDEN_ANGLE,
    calibrate_dcf,
    forward_frames,
    golden_angles,
    grid_subspace,
    nufft_adjoint,
    nufft_forward,
    pipe_menon_dcf,
    radial_trajectory,
    radial_window,
    ramp_dcf,
    readout_length,
)

SHAPE = (23, 30)  # one odd axis: the voxel-position convention holds for both parities


def _positions(shape):
    return [np.arange(n) - n // 2 for n in shape]


def _direct_dft_matrix(kx, ky, shape):
    """E[j, i0, i1] = exp(-i (kx_j n0 + ky_j n1)), the documented forward convention."""
    n0, n1 = _positions(shape)
    return np.exp(-1j * (kx.ravel()[:, None, None] * n0[None, :, None]
                         + ky.ravel()[:, None, None] * n1[None, None, :]))


def _band_limited(image, kmax_fraction, pad=512):
    """Reference: image with its spectrum zeroed outside |k| <= kmax (fine zero-padded FFT)."""
    big = np.zeros((pad, pad))
    big[: image.shape[0], : image.shape[1]] = image
    spectrum = np.fft.fft2(big)
    k = 2 * np.pi * np.fft.fftfreq(pad)
    spectrum[np.hypot(k[:, None], k[None, :]) > kmax_fraction * np.pi] = 0
    return np.fft.ifft2(spectrum)[: image.shape[0], : image.shape[1]].real


def _blob(shape, sigma):
    n0, n1 = _positions(shape)
    return np.exp(-(n0[:, None] ** 2 + n1[None, :] ** 2) / (2 * sigma**2))


def test_golden_angles_rotate_by_the_golden_angle():
    angles = golden_angles(50, start=7)
    assert np.isclose(np.rad2deg(GOLDEN_ANGLE), 111.2461, atol=1e-4)
    assert np.all((angles >= 0) & (angles < np.pi))
    steps = np.mod(np.diff(angles), np.pi)
    np.testing.assert_allclose(steps, GOLDEN_ANGLE % np.pi, atol=1e-12)
    np.testing.assert_allclose(angles[0], np.mod(7 * GOLDEN_ANGLE, np.pi))


def test_trajectory_is_symmetric_samples_dc_and_stops_at_kmax():
    kx, ky = radial_trajectory(golden_angles(5), (64, 80), kmax_fraction=0.5, oversampling=2)
    n = readout_length((64, 80), 0.5, 2)
    assert kx.shape == (5, n) and n % 2 == 1
    np.testing.assert_allclose(kx[:, n // 2], 0.0)
    np.testing.assert_allclose(kx, -kx[:, ::-1], atol=1e-12)
    radius = np.hypot(kx, ky)
    assert abs(radius.max() - 0.5 * np.pi) <= np.pi / 80  # within half a sample spacing
    np.testing.assert_allclose(np.diff(radius[0, n // 2 :]), 2 * np.pi / (2 * 80))
    with pytest.raises(ValueError):
        readout_length((64, 80), 1.5)


def test_forward_and_adjoint_follow_the_documented_convention():
    rng = np.random.default_rng(0)
    kx, ky = radial_trajectory(golden_angles(7), SHAPE, 0.9)
    x = rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)
    y = rng.standard_normal(kx.size) + 1j * rng.standard_normal(kx.size)
    e = _direct_dft_matrix(kx, ky, SHAPE)
    direct_forward = np.einsum("jab,ab->j", e, x)
    direct_adjoint = np.einsum("jab,j->ab", e.conj(), y)
    forward = nufft_forward(x, kx, ky)
    adjoint = nufft_adjoint(y, kx, ky, SHAPE)
    assert np.linalg.norm(forward - direct_forward) < 1e-5 * np.linalg.norm(direct_forward)
    assert np.linalg.norm(adjoint - direct_adjoint) < 1e-5 * np.linalg.norm(direct_adjoint)


def test_adjoint_identity():
    rng = np.random.default_rng(1)
    shape = (40, 52)
    kx, ky = radial_trajectory(golden_angles(33), shape, 0.8)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    y = rng.standard_normal(kx.size) + 1j * rng.standard_normal(kx.size)
    lhs = np.vdot(y, nufft_forward(x, kx, ky))  # <A x, y>
    rhs = np.vdot(nufft_adjoint(y, kx, ky, shape), x)  # <x, A^H y>
    assert abs(lhs - rhs) < 1e-6 * abs(lhs)


def test_batched_transforms_equal_single_ones():
    rng = np.random.default_rng(2)
    kx, ky = radial_trajectory(golden_angles(4), SHAPE, 0.7)
    x = rng.standard_normal((3, *SHAPE)) + 0j
    batch = nufft_forward(x, kx, ky)
    np.testing.assert_allclose(batch[1], nufft_forward(x[1], kx, ky), rtol=1e-12)
    back = nufft_adjoint(batch, kx, ky, SHAPE)
    np.testing.assert_allclose(back[2], nufft_adjoint(batch[2], kx, ky, SHAPE), rtol=1e-12)
    with pytest.raises(ValueError):
        nufft_adjoint(batch[:, :-1], kx, ky, SHAPE)


def test_forward_frames_samples_each_frame_on_its_own_spokes():
    rng = np.random.default_rng(3)
    support = np.zeros(SHAPE, dtype=bool)
    support[5:20, 8:25] = True
    n_frames = 6
    signals = rng.standard_normal((support.sum(), n_frames)) + 1j
    angles = golden_angles(2 * n_frames).reshape(n_frames, 2)
    kx, ky = radial_trajectory(angles, SHAPE, 0.6)
    kx, ky = kx.reshape(n_frames, -1), ky.reshape(n_frames, -1)
    out = forward_frames(signals, support, kx, ky)
    for t in range(n_frames):
        frame = np.zeros(SHAPE, dtype=complex)
        frame[support] = signals[:, t]
        np.testing.assert_allclose(out[t], nufft_forward(frame, kx[t], ky[t]), rtol=1e-10)
    with pytest.raises(ValueError):
        forward_frames(signals[1:], support, kx, ky)


def test_pipe_menon_gridding_reconstructs_a_smooth_blob():
    shape, kmax = (64, 64), 1.0
    kx, ky = radial_trajectory(golden_angles(200), shape, kmax)
    dcf = pipe_menon_dcf(kx, ky, shape, ramp_dcf(kx, ky, shape))
    blob = _blob(shape, 3.0)
    recon = nufft_adjoint(dcf.ravel() * nufft_forward(blob, kx, ky), kx, ky, shape)
    assert np.linalg.norm(recon - blob) < 0.01 * np.linalg.norm(blob)
    assert np.abs(recon.imag).max() < 1e-6


def test_pipe_menon_fixes_the_scale_of_objects_filling_the_field_of_view():
    # The analytic ramp is a poor quadrature near k = 0; the iterated weights reproduce the
    # band-limited image of a large disc, interior level included.
    shape, kmax = (64, 64), 0.5
    n0, n1 = _positions(shape)
    disc = (np.hypot(n0[:, None] / 0.9, n1[None, :]) < 29).astype(float)
    reference = _band_limited(disc, kmax)
    kx, ky = radial_trajectory(golden_angles(400), shape, kmax)
    dcf = calibrate_dcf(pipe_menon_dcf(kx, ky, shape, ramp_dcf(kx, ky, shape)), kx, ky, kmax)
    recon = nufft_adjoint(dcf.ravel() * nufft_forward(disc, kx, ky), kx, ky, shape).real
    assert np.linalg.norm(recon - reference) < 0.03 * np.linalg.norm(reference)
    interior = np.hypot(n0[:, None], n1[None, :]) < 15
    assert abs(recon[interior].mean() / reference[interior].mean() - 1) < 0.01


def test_calibration_makes_the_blob_centre_exact():
    shape, kmax, width = (48, 48), 0.5, 4.0
    kx, ky = radial_trajectory(golden_angles(300), shape, kmax)
    dcf = calibrate_dcf(2.5 * ramp_dcf(kx, ky, shape), kx, ky, kmax, width)
    recon = nufft_adjoint(dcf.ravel() * nufft_forward(_blob(shape, width), kx, ky), kx, ky, shape)
    expected = 1 - np.exp(-0.5 * (width * kmax * np.pi) ** 2)
    assert abs(recon[24, 24].real - expected) < 1e-3
    with pytest.raises(ValueError):
        calibrate_dcf(dcf, kx, ky, kmax, width=1.0)


def test_subspace_gridding_equals_the_frame_by_frame_definition():
    rng = np.random.default_rng(4)
    n_frames, n_spokes, k = 5, 3, 2
    angles = golden_angles(n_frames * n_spokes).reshape(n_frames, n_spokes)
    kx, ky = radial_trajectory(angles, SHAPE, 0.8)
    samples = rng.standard_normal(kx.shape) + 1j * rng.standard_normal(kx.shape)
    dcf = rng.uniform(0.5, 1.0, kx.shape)
    basis, _ = np.linalg.qr(
        rng.standard_normal((n_frames, k)) + 1j * rng.standard_normal((n_frames, k))
    )
    coefficients = grid_subspace(samples, kx, ky, dcf, basis, SHAPE)
    expected = sum(
        np.conj(basis[t])[:, None, None]
        * nufft_adjoint((dcf[t] * samples[t]).ravel(), kx[t], ky[t], SHAPE)[None]
        for t in range(n_frames)
    )
    np.testing.assert_allclose(coefficients, expected, rtol=0, atol=1e-8 * np.abs(expected).max())
    with pytest.raises(ValueError):
        grid_subspace(samples, kx, ky, dcf, basis[:-1], SHAPE)


def test_radial_window():
    kx = np.linspace(0, 0.5 * np.pi, 11)
    ky = np.zeros_like(kx)
    np.testing.assert_allclose(radial_window(kx, ky, 0.5, 0.0), 1.0)
    hann = 0.5 * (1 + np.cos(np.pi * np.linspace(0, 1, 11)))
    np.testing.assert_allclose(radial_window(kx, ky, 0.5, 1.0), hann, atol=1e-12)
    tukey = radial_window(kx, ky, 0.5, 0.4)
    np.testing.assert_allclose(tukey[:7], 1.0)
    assert tukey[-1] < 1e-12 and np.all(np.diff(tukey) <= 1e-12)
    with pytest.raises(ValueError):
        radial_window(kx, ky, 0.5, 1.5)
