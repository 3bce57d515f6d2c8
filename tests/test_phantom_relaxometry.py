"""T1 from magnitude inversion recovery and T2 from clipped multi-echo spin echo (core.relaxometry)."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from swig_lib.core.relaxometry import CLIP_12BIT, fit_inversion_recovery, fit_multi_echo_t2

F64 = torch.float64
#: The phantom's inversion times (ms), given out of order to exercise the sorting.
TI = [1000.0, 35.0, 75.0, 100.0, 3000.0, 125.0, 150.0, 250.0, 1500.0, 2000.0]
TE = [10.0 * (i + 1) for i in range(32)]


def ir_voxels(n, seed, t1_range=(20.0, 3000.0)):
    g = torch.Generator().manual_seed(seed)
    lo, hi = (math.log(v) for v in t1_range)
    t1 = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64))
    a = 500 + 1000 * torch.rand(n, generator=g, dtype=F64)
    b = a * (1.6 + 0.45 * torch.rand(n, generator=g, dtype=F64))  # incomplete recovery, imperfect inversion
    return a, b, t1, g


def ir_signal(a, b, t1, ti=TI):
    ti = torch.tensor(ti, dtype=F64)[:, None]
    return (a[None] - b[None] * torch.exp(-ti / t1[None])).abs()


def test_inversion_recovery_noise_free_is_exact():
    a, b, t1, _ = ir_voxels(3000, seed=0)
    out = fit_inversion_recovery(ir_signal(a, b, t1), TI)
    assert out.shape == (3, 3000) and out.dtype == F64
    for got, true in zip(out, (a, b, t1)):
        torch.testing.assert_close(got, true, rtol=1e-9, atol=0)


def test_inversion_recovery_two_parameter_data_give_b_over_a_of_two():
    # Full recovery and perfect inversion: |a·(1 − 2e^(−TI/T1))|, a special case of the model.
    t1 = torch.tensor([80.0, 400.0, 1800.0], dtype=F64)
    a = torch.tensor([1000.0, 2000.0, 1500.0], dtype=F64)
    out = fit_inversion_recovery(ir_signal(a, 2 * a, t1), TI)
    torch.testing.assert_close(out[1] / out[0], torch.full((3,), 2.0, dtype=F64), rtol=1e-9, atol=0)
    torch.testing.assert_close(out[2], t1, rtol=1e-9, atol=0)


def scipy_ir(signal, start):
    """Reference least squares of |a − b·e^(−TI/T1)| over (a, b, ln T1) from ``start``; residual SS."""
    ti = np.array(TI)

    def residual(p):
        return np.abs(p[0] - p[1] * np.exp(-ti / np.exp(p[2]))) - signal

    sol = least_squares(residual, [start[0], start[1], math.log(start[2])], xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return float((sol.fun**2).sum())


def test_inversion_recovery_noisy_reaches_the_least_squares_minimum():
    a, b, t1, g = ir_voxels(400, seed=1, t1_range=(80.0, 2500.0))
    clean = ir_signal(a, b, t1)
    noisy = (clean + 10.0 * torch.randn(clean.shape, generator=g, dtype=F64)).abs()  # SNR ~ 100 at a
    out = fit_inversion_recovery(noisy, TI)
    rel = ((out[2] - t1) / t1).abs()
    assert float(rel.median()) < 0.02 and float(rel.max()) < 0.25
    ours = ((ir_signal(out[0], out[1], out[2]) - noisy) ** 2).sum(0)
    for v in range(0, 400, 40):  # never worse than a local solver started at the truth
        truth_start = scipy_ir(noisy[:, v].numpy(), (float(a[v]), float(b[v]), float(t1[v])))
        assert float(ours[v]) <= truth_start * (1 + 1e-9) + 1e-9


def test_inversion_recovery_mask_background_dtype_and_shape():
    a, b, t1, _ = ir_voxels(12, seed=2)
    signal = ir_signal(a, b, t1).reshape(len(TI), 3, 4).float()
    signal[:, 0, 0] = 0.0  # background: no signal
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2, 3] = False
    out = fit_inversion_recovery(signal, TI, mask)
    assert out.shape == (3, 3, 4) and out.dtype == torch.float32
    assert torch.equal(out[:, 0, 0], torch.zeros(3)) and torch.equal(out[:, 2, 3], torch.zeros(3))
    torch.testing.assert_close(out[2, 1, 1], t1.reshape(3, 4)[1, 1].float(), rtol=1e-5, atol=0)


def test_inversion_recovery_errors():
    signal = torch.ones(len(TI), 4, dtype=F64)
    with pytest.raises(TypeError, match="signal must be a real floating torch tensor; got torch.int64"):
        fit_inversion_recovery(torch.ones(len(TI), 4, dtype=torch.int64), TI)
    with pytest.raises(ValueError, match=r"signal must have len\(ti\) = 10 images along dim 0; got shape \(9, 4\)"):
        fit_inversion_recovery(signal[:9], TI)
    with pytest.raises(ValueError, match="ti must hold at least 3 times; got 2"):
        fit_inversion_recovery(signal[:2], TI[:2])
    with pytest.raises(ValueError, match="ti must hold positive, finite times in ms"):
        fit_inversion_recovery(signal, [0.0] + TI[1:])
    bad = signal.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^1 voxel\(s\) inside the mask have non-finite \(NaN or Inf\) samples$"):
        fit_inversion_recovery(bad, TI)
    mask = torch.ones(4, dtype=torch.bool)
    mask[1] = False
    assert torch.equal(fit_inversion_recovery(bad, TI, mask)[:, 1], torch.zeros(3, dtype=F64))
    with pytest.raises(TypeError, match="mask must be a boolean torch tensor"):
        fit_inversion_recovery(signal, TI, torch.ones(4))
    with pytest.raises(ValueError, match=r"mask shape \(5,\) differs from the shape of one image \(4,\)"):
        fit_inversion_recovery(signal, TI, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="need grid_size >= 3, iterations >= 0, chunk_size >= 1; got 2, 60"):
        fit_inversion_recovery(signal, TI, grid_size=2)


def t2_voxels(n, seed):
    g = torch.Generator().manual_seed(seed)
    t2 = torch.exp(math.log(5.0) + (math.log(2000.0) - math.log(5.0)) * torch.rand(n, generator=g, dtype=F64))
    pd = 500 + 3000 * torch.rand(n, generator=g, dtype=F64)
    return pd, t2, g


def t2_signal(pd, t2, te=TE):
    return pd[None] * torch.exp(-torch.tensor(te, dtype=F64)[:, None] / t2[None])


def test_multi_echo_noise_free_is_exact():
    pd, t2, _ = t2_voxels(3000, seed=3)
    out = fit_multi_echo_t2(t2_signal(pd, t2), TE, clip_value=None)
    assert out.shape == (2, 3000)
    torch.testing.assert_close(out[0], pd, rtol=1e-9, atol=0)
    torch.testing.assert_close(out[1], t2, rtol=1e-9, atol=0)


def test_multi_echo_excludes_clipped_samples_per_voxel():
    # Bright voxels saturate the 12-bit range in their first echoes, as in the phantom's T2 series.
    pd = torch.tensor([9000.0, 6000.0, 3000.0, 20000.0], dtype=F64)
    t2 = torch.tensor([400.0, 150.0, 60.0, 30.0], dtype=F64)
    clean = t2_signal(pd, t2)
    clipped = clean.clamp(max=CLIP_12BIT)
    n_clipped = (clean >= CLIP_12BIT).sum(0)
    assert n_clipped.tolist() == [31, 5, 0, 4]  # voxel 0 keeps a single sample: not fittable
    out = fit_multi_echo_t2(clipped, TE)
    usable = (clipped < CLIP_12BIT).sum(0) >= 2
    torch.testing.assert_close(out[1][usable], t2[usable], rtol=1e-9, atol=0)
    torch.testing.assert_close(out[0][usable], pd[usable], rtol=1e-9, atol=0)
    assert torch.equal(out[:, ~usable], torch.zeros(2, int((~usable).sum()), dtype=F64))
    # Keeping the clipped samples biases T2 upwards (the flattened start looks like slow decay).
    biased = fit_multi_echo_t2(clipped, TE, clip_value=None)
    assert bool((biased[1][usable & (n_clipped > 0)] > 1.05 * t2[usable & (n_clipped > 0)]).all())


def test_multi_echo_needs_two_unclipped_samples():
    signal = torch.full((len(TE), 2), CLIP_12BIT, dtype=F64)
    signal[-1, 1] = 100.0  # one usable sample: cannot fit
    signal[-2:, 0] = torch.tensor([200.0, 100.0], dtype=F64)  # two: T2 = 10/ln 2
    out = fit_multi_echo_t2(signal, TE)
    assert torch.equal(out[:, 1], torch.zeros(2, dtype=F64))
    assert out[1, 0].item() == pytest.approx(10.0 / math.log(2.0), rel=1e-10)
    assert out[0, 0].item() == pytest.approx(200.0 * 2 ** 31, rel=1e-9)


def test_multi_echo_noisy_reaches_the_least_squares_minimum():
    pd, t2, g = t2_voxels(400, seed=4)
    t2 = t2.clamp(min=20.0)
    clean = t2_signal(pd, t2)
    noisy = clean + 10.0 * torch.randn(clean.shape, generator=g, dtype=F64)
    out = fit_multi_echo_t2(noisy, TE, clip_value=None)
    rel = ((out[1] - t2) / t2).abs()
    assert float(rel.median()) < 0.02
    te = np.array(TE)
    for v in range(0, 400, 40):
        s = noisy[:, v].numpy()
        sol = least_squares(lambda p, s=s: p[0] * np.exp(-te / np.exp(p[1])) - s,
                            [float(pd[v]), math.log(float(t2[v]))], xtol=1e-15, ftol=1e-15, gtol=1e-15)
        ours = float(((out[0, v] * torch.exp(-torch.tensor(te) / out[1, v]) - noisy[:, v]) ** 2).sum())
        assert ours <= float((sol.fun**2).sum()) * (1 + 1e-9) + 1e-9


def test_multi_echo_errors():
    with pytest.raises(ValueError, match="te must hold at least 2 times; got 1"):
        fit_multi_echo_t2(torch.ones(1, 3), [10.0])
    with pytest.raises(ValueError, match=r"t2_bounds must satisfy 0 < lower < upper < inf \(ms\)"):
        fit_multi_echo_t2(torch.ones(2, 3), [10.0, 20.0], t2_bounds=(10.0, 1.0))
