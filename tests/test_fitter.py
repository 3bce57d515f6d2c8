"""Tests of the maximum-likelihood qMRI fitter (eq. 1 with the signal models of eq. 13-14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from swig_lib.core import fitter
from swig_lib.core.fitter import T1_BOUNDS_MS, T2_BOUNDS_MS, fit_qmri
from swig_lib.core.physics import qmri_contrasts
from swig_lib.core.protocols import QMRIProtocol

PROTOCOL = QMRIProtocol()


def tissue(n: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """Random tissue-range maps: PD 40-120 a.u., T1 300-4500 ms, T2 30-2000 ms."""
    g = torch.Generator().manual_seed(seed)
    pd = 40.0 + 80.0 * torch.rand(n, generator=g, dtype=torch.float64)
    t1 = 300.0 + 4200.0 * torch.rand(n, generator=g, dtype=torch.float64)
    t2 = 30.0 + 1970.0 * torch.rand(n, generator=g, dtype=torch.float64)
    return pd.to(dtype), t1.to(dtype), t2.to(dtype)


def objective(signal: np.ndarray, pd: float, t1: float, t2: float) -> float:
    """Residual sum of squares of eq. 1 for one voxel, a.u.²."""
    model = np.concatenate(
        [pd * (1.0 - np.exp(-np.array(PROTOCOL.tr) / t1)), pd * np.exp(-np.array(PROTOCOL.te) / t2)]
    )
    return float(((signal - model) ** 2).sum())


def scipy_fit(signal: np.ndarray, start: tuple[float, float, float]) -> np.ndarray:
    """Reference bounded least-squares fit of (PD, ln T1, ln T2) from ``start``; returns PD, T1, T2."""
    tr, te = np.array(PROTOCOL.tr), np.array(PROTOCOL.te)

    def residual(p: np.ndarray) -> np.ndarray:
        t1, t2 = np.exp(p[1]), np.exp(p[2])
        return np.concatenate([p[0] * (1.0 - np.exp(-tr / t1)), p[0] * np.exp(-te / t2)]) - signal

    lower = [0.0, math.log(T1_BOUNDS_MS[0]), math.log(T2_BOUNDS_MS[0])]
    upper = [np.inf, math.log(T1_BOUNDS_MS[1]), math.log(T2_BOUNDS_MS[1])]
    x0 = [start[0], math.log(start[1]), math.log(start[2])]
    sol = least_squares(residual, x0, bounds=(lower, upper), xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return np.array([sol.x[0], math.exp(sol.x[1]), math.exp(sol.x[2])])


def test_noise_free_recovery_float64() -> None:
    pd, t1, t2 = tissue(10_000, seed=0)
    maps = fit_qmri(qmri_contrasts(pd, t1, t2), PROTOCOL.tr, PROTOCOL.te)
    for estimate, truth in zip(maps, (pd, t1, t2)):
        rel = ((estimate - truth) / truth).abs()
        assert rel.median() < 1e-9
        assert rel.max() < 1e-7


def test_noise_free_recovery_float32_returns_float32() -> None:
    pd, t1, t2 = tissue(5_000, seed=1, dtype=torch.float32)
    maps = fit_qmri(qmri_contrasts(pd, t1, t2), PROTOCOL.tr, PROTOCOL.te)
    assert maps.dtype == torch.float32
    for estimate, truth in zip(maps, (pd, t1, t2)):
        rel = ((estimate - truth) / truth).abs()
        assert rel.median() < 1e-6
        assert rel.max() < 1e-5


@pytest.mark.parametrize("sigma", [0.05, 0.5])
def test_noisy_fit_is_the_least_squares_minimum(sigma: float) -> None:
    pd, t1, t2 = tissue(12, seed=2)
    g = torch.Generator().manual_seed(3)
    signal = qmri_contrasts(pd, t1, t2, dim=1)
    signal = signal + sigma * torch.randn(signal.shape, generator=g, dtype=torch.float64)
    maps = fit_qmri(signal.T, PROTOCOL.tr, PROTOCOL.te)
    for k in range(signal.shape[0]):
        s = signal[k].numpy()
        ours = maps[:, k].numpy()
        ref = scipy_fit(s, (pd[k].item(), t1[k].item(), t2[k].item()))
        f_ours, f_ref = objective(s, *ours), objective(s, *ref)
        assert f_ours <= f_ref * (1.0 + 1e-9) + 1e-12
        np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_low_snr_fit_is_a_local_minimum() -> None:
    # PD 1-5 a.u. with sigma = 0.5: large residuals, flat valleys, minima on the bounds
    g = torch.Generator().manual_seed(14)
    n = 40
    pd = 1.0 + 4.0 * torch.rand(n, generator=g, dtype=torch.float64)
    _, t1, t2 = tissue(n, seed=15)
    signal = qmri_contrasts(pd, t1, t2, dim=1) + 0.5 * torch.randn(n, 12, generator=g, dtype=torch.float64)
    maps = fit_qmri(signal.T, PROTOCOL.tr, PROTOCOL.te)
    for k in range(n):
        s, ours = signal[k].numpy(), maps[:, k].numpy()
        f_ours = objective(s, *ours)
        assert f_ours <= objective(s, *scipy_fit(s, tuple(ours))) * (1.0 + 1e-9) + 1e-12


def test_gradient_and_hessian_match_finite_differences() -> None:
    g = torch.Generator().manual_seed(4)
    signal = qmri_contrasts(*tissue(4, seed=5), dim=1)
    signal = signal + 3.0 * torch.randn(4, 12, generator=g, dtype=torch.float64)
    problem = fitter._Problem.build(
        torch.tensor(PROTOCOL.tr, dtype=torch.float64),
        torch.tensor(PROTOCOL.te, dtype=torch.float64),
        (math.log(T1_BOUNDS_MS[0]), math.log(T1_BOUNDS_MS[1])),
        (math.log(T2_BOUNDS_MS[0]), math.log(T2_BOUNDS_MS[1])),
        torch.device("cpu"),
    )
    u = torch.log(torch.tensor([700.0, 1500.0, 2500.0, 900.0], dtype=torch.float64))
    v = torch.log(torch.tensor([60.0, 300.0, 1200.0, 90.0], dtype=torch.float64))

    def half_f(du: float, dv: float) -> torch.Tensor:
        return 0.5 * fitter._evaluate(problem, u + du, v + dv, signal).f

    h = 1e-4
    state = fitter._evaluate(problem, u, v, signal)
    grad_u = -(half_f(h, 0) - half_f(-h, 0)) / (2 * h)
    grad_v = -(half_f(0, h) - half_f(0, -h)) / (2 * h)
    torch.testing.assert_close(state.gu, grad_u, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(state.gv, grad_v, rtol=1e-6, atol=1e-6)
    huu = (half_f(h, 0) - 2 * half_f(0, 0) + half_f(-h, 0)) / h**2
    hvv = (half_f(0, h) - 2 * half_f(0, 0) + half_f(0, -h)) / h**2
    huv = (half_f(h, h) - half_f(h, -h) - half_f(-h, h) + half_f(-h, -h)) / (4 * h * h)
    for got, want in ((state.huu, huu), (state.hvv, hvv), (state.huv, huv)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # Gauss–Newton matrix: positive semi-definite, and the Hessian itself at a zero residual
    assert ((state.quu >= 0) & (state.quu * state.qvv >= state.quv**2)).all()
    pd = torch.full((4,), 70.0, dtype=torch.float64)
    clean = fitter._evaluate(problem, u, v, qmri_contrasts(pd, u.exp(), v.exp(), dim=1))
    for exact, gauss_newton in ((clean.huu, clean.quu), (clean.hvv, clean.qvv), (clean.huv, clean.quv)):
        torch.testing.assert_close(exact, gauss_newton, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape", [(6, 7), (3, 4, 5)])
def test_shapes_and_mask(shape: tuple[int, ...]) -> None:
    n = math.prod(shape)
    pd, t1, t2 = (p.reshape(shape) for p in tissue(n, seed=6))
    contrasts = qmri_contrasts(pd, t1, t2)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(7)) > 0.3
    contrasts[:, ~mask] = float("nan")  # ignored outside the mask
    maps = fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, mask)
    assert maps.shape == (3, *shape)
    assert torch.isfinite(maps).all()
    assert (maps[:, ~mask] == 0).all()
    torch.testing.assert_close(maps[:, mask], torch.stack((pd, t1, t2))[:, mask], rtol=1e-7, atol=0)


def test_zero_and_noise_background_inside_mask_is_finite() -> None:
    g = torch.Generator().manual_seed(8)
    contrasts = torch.zeros(12, 50, dtype=torch.float32)
    contrasts[:, 25:] = 0.1 * torch.randn(12, 25, generator=g)
    maps = fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, mask=torch.ones(50, dtype=torch.bool))
    assert torch.isfinite(maps).all()
    assert (maps[:, :25] == 0).all()  # all-zero voxels: the PD = T1 = T2 = 0 fallback
    noise = maps[:, 25:]
    assert (noise[0] >= 0).all()
    fitted = noise[0] > 0
    assert (noise[1:, ~fitted] == 0).all()
    for row, (lo, hi) in ((1, T1_BOUNDS_MS), (2, T2_BOUNDS_MS)):
        assert ((noise[row, fitted] >= lo * (1 - 1e-6)) & (noise[row, fitted] <= hi * (1 + 1e-6))).all()


def test_scale_invariance_and_no_positive_signal() -> None:
    pd, t1, t2 = tissue(200, seed=13)
    contrasts = qmri_contrasts(pd, t1, t2)
    tiny = fit_qmri(contrasts * 1e-30, PROTOCOL.tr, PROTOCOL.te)
    torch.testing.assert_close(tiny[0] * 1e30, pd, rtol=1e-7, atol=0)
    torch.testing.assert_close(tiny[1:], torch.stack((t1, t2)), rtol=1e-7, atol=0)
    single = fit_qmri(contrasts[:, 0], PROTOCOL.tr, PROTOCOL.te)
    assert single.shape == (3,)
    torch.testing.assert_close(single, torch.stack((pd[0], t1[0], t2[0])), rtol=1e-7, atol=0)
    assert (fit_qmri(-contrasts, PROTOCOL.tr, PROTOCOL.te) == 0).all()  # no positive PD explains it


def test_bounds_are_respected() -> None:
    pd = torch.tensor([80.0, 80.0], dtype=torch.float64)
    t1 = torch.tensor([9000.0, 1000.0], dtype=torch.float64)  # first beyond the default upper bound
    t2 = torch.tensor([100.0, 100.0], dtype=torch.float64)
    maps = fit_qmri(qmri_contrasts(pd, t1, t2), PROTOCOL.tr, PROTOCOL.te)
    assert maps[1, 0] == pytest.approx(T1_BOUNDS_MS[1], rel=1e-12)
    assert maps[1, 1] == pytest.approx(1000.0, rel=1e-9)
    narrow = fit_qmri(qmri_contrasts(pd, t1, t2), PROTOCOL.tr, PROTOCOL.te, t2_bounds=(5.0, 80.0))
    assert (narrow[2] == pytest.approx(80.0, rel=1e-12))


def test_other_protocol_lengths_and_protocol_keyword() -> None:
    tr, te = (400.0, 900.0, 2000.0, 3500.0), (15.0, 45.0, 120.0)
    protocol = QMRIProtocol(tr=tr, te=te)
    pd, t1, t2 = tissue(500, seed=9)
    contrasts = qmri_contrasts(pd, t1, t2, protocol)
    by_times = fit_qmri(contrasts, tr, te)
    by_protocol = fit_qmri(contrasts, protocol=protocol)
    torch.testing.assert_close(by_times, by_protocol, rtol=0, atol=0)
    torch.testing.assert_close(by_times, torch.stack((pd, t1, t2)), rtol=1e-7, atol=0)


def test_deterministic_and_independent_of_chunking() -> None:
    g = torch.Generator().manual_seed(10)
    contrasts = qmri_contrasts(*tissue(1_000, seed=11))
    contrasts = contrasts + 0.2 * torch.randn(12, 1_000, generator=g, dtype=torch.float64)
    first = fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te)
    torch.testing.assert_close(fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te), first, rtol=0, atol=0)
    chunked = fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, chunk_size=301)
    torch.testing.assert_close(chunked, first, rtol=1e-9, atol=0)


def test_bad_input_raises() -> None:
    contrasts = qmri_contrasts(*tissue(10, seed=12))
    with pytest.raises(ValueError, match="len\\(tr\\) \\+ len\\(te\\)"):
        fit_qmri(contrasts[:11], PROTOCOL.tr, PROTOCOL.te)
    with pytest.raises(ValueError, match="len\\(tr\\) \\+ len\\(te\\)"):
        fit_qmri(contrasts, PROTOCOL.tr[:5], PROTOCOL.te)
    bad = contrasts.clone()
    bad[0, 2] = float("nan")
    bad[5, 2] = float("inf")
    bad[11, 7] = -float("inf")
    with pytest.raises(ValueError, match="^2 voxel"):
        fit_qmri(bad, PROTOCOL.tr, PROTOCOL.te)
    with pytest.raises(ValueError, match="mask shape"):
        fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, mask=torch.ones(11, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, mask=torch.ones(10))
    with pytest.raises(TypeError, match="floating"):
        fit_qmri(contrasts.to(torch.int64), PROTOCOL.tr, PROTOCOL.te)
    with pytest.raises(ValueError, match="positive"):
        fit_qmri(contrasts, (0.0, *PROTOCOL.tr[1:]), PROTOCOL.te)
    with pytest.raises(ValueError, match="t1_bounds"):
        fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, t1_bounds=(6000.0, 50.0))
    with pytest.raises(ValueError, match="either protocol"):
        fit_qmri(contrasts, PROTOCOL.tr, PROTOCOL.te, protocol=PROTOCOL)
