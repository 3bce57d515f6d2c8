"""Voxel-wise T1 and T2 fits of real relaxometry series: magnitude inversion recovery, multi-echo spin echo.

Both models are linear in their amplitudes and nonlinear in one relaxation time T, so the fit
projects the amplitudes out (variable projection, Golub & Pereyra, SIAM J. Numer. Anal. 10:413,
1973) and minimises the residual sum of squares over u = ln T, in every voxel at once (no Python
loop over voxels), in float64:

1. **Grid.** The projected residual is scored on a log-spaced grid of T spanning the bounds.
2. **Golden-section search** (Kiefer 1953) in the bracket of the two grid neighbours of the best
   grid point, on the directly computed residual, which, unlike the projected formula, does not
   cancel; it resolves T to about machine precision on noise-free data.

**Inversion recovery** (:func:`fit_inversion_recovery`): the 3-parameter magnitude model
``S(TI) = |a − b·e^(−TI/T1)|`` of Barral et al., Magn. Reson. Med. 64:1057 (2010), fitted with
their polarity restoration (RD-NLS-PR). It is exact for an inversion of any efficiency (b/a) and
for incomplete recovery at a fixed TR: with a readout that leaves M_z = 0, a = M0·(1 + e^(−(TR −
T_ro)/T1)) does not depend on TI (:func:`swig_lib.core.sequences.inversion_recovery`); the
2-parameter ``|a·(1 − 2e^(−TI/T1))|`` model assumes both perfect and would bias T1 when TR is not
≫ T1. The signed model ``a − b·e^(−TI/T1)`` is monotonic in TI, so over sorted TIs its sign is
negative up to the null and positive after: the magnitude fit is the best of the N + 1 signed
fits in which the first k samples (k = 0..N) are negated, each linear in (a, b).

**Multi-echo spin echo** (:func:`fit_multi_echo_t2`): the mono-exponential ``S(TE) = PD·e^(−TE/T2)``
with PD ≥ 0, samples at or above the scanner's clipping value (4095 for 12-bit DICOM) excluded
voxel by voxel: a clipped sample is a lower bound, not a measurement.

Units: amplitudes in those of the signal (a.u.), TI, TE, T1, T2 in ms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from swig_lib.core.fitter import check_times, log_bounds, safe_div

#: Default bounds of T1 for inversion recovery, ms: below the shortest phantom T1 (about 20 ms at
#: 3 T) and above that of water at body temperature (about 4.5 s).
IR_T1_BOUNDS_MS: tuple[float, float] = (5.0, 10000.0)
#: Default bounds of T2 for multi-echo spin echo, ms.
MESE_T2_BOUNDS_MS: tuple[float, float] = (1.0, 5000.0)
#: Largest value of a 12-bit magnitude image: samples at it are clipped.
CLIP_12BIT = 4095.0

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # 1/φ, the golden-section ratio


def _golden_section(objective: Callable[[Tensor], Tensor], lo: Tensor, hi: Tensor, iterations: int) -> Tensor:
    """Minimise ``objective`` (rows of u → rows of f) over ``[lo, hi]`` per row; returns u.

    Each iteration keeps the sub-bracket with the lower interior value and reuses the other
    interior point, so it costs one evaluation and shrinks the bracket by 1/φ ≈ 0.618.
    """
    c = hi - _INV_PHI * (hi - lo)
    d = lo + _INV_PHI * (hi - lo)
    fc, fd = objective(c), objective(d)
    for _ in range(iterations):
        left = fc <= fd  # the minimum lies in [lo, d]
        lo = torch.where(left, lo, c)
        hi = torch.where(left, d, hi)
        x = torch.where(left, hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo))
        fx = objective(x)
        c, d, fc, fd = (torch.where(left, x, d), torch.where(left, c, x),
                        torch.where(left, fx, fd), torch.where(left, fc, fx))
    return torch.where(fc <= fd, c, d)


def _bracket(grid: Tensor, best: Tensor) -> tuple[Tensor, Tensor]:
    """Return the grid neighbours of grid index ``best`` (clamped to the grid ends)."""
    last = grid.numel() - 1
    return grid[(best - 1).clamp(min=0)], grid[(best + 1).clamp(max=last)]


def _prepare(
    signal: Tensor, times: Sequence[float], name: str, mask: Tensor | None, min_samples: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate inputs; return (times as float64 (N,), signal as (N, n_vox), mask as (n_vox,))."""
    if not isinstance(signal, Tensor) or not signal.is_floating_point():
        kind = signal.dtype if isinstance(signal, Tensor) else type(signal).__name__
        raise TypeError(f"signal must be a real floating torch tensor; got {kind}")
    t = check_times(name, times)
    if t.numel() < min_samples:
        raise ValueError(f"{name} must hold at least {min_samples} times; got {t.numel()}")
    if signal.ndim < 1 or signal.shape[0] != t.numel():
        raise ValueError(f"signal must have len({name}) = {t.numel()} images along dim 0; got shape "
                         f"{tuple(signal.shape)}")
    spatial = signal.shape[1:]
    if mask is None:
        mask = torch.ones(spatial, dtype=torch.bool, device=signal.device)
    elif not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean torch tensor; got {getattr(mask, 'dtype', type(mask))}")
    elif mask.shape != spatial:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the shape of one image {tuple(spatial)}")
    return t.to(signal.device), signal.reshape(t.numel(), -1), mask.to(signal.device).reshape(-1)


def _check_finite(flat: Tensor, inside: Tensor) -> None:
    """Raise if voxels inside the mask hold NaN or Inf, saying how many."""
    n_bad = int((~torch.isfinite(flat).all(0) & inside).sum())
    if n_bad:
        raise ValueError(f"{n_bad} voxel(s) inside the mask have non-finite (NaN or Inf) samples")


def _check_options(grid_size: int, iterations: int, chunk_size: int) -> None:
    """Raise unless grid_size >= 3, iterations >= 0 and chunk_size >= 1."""
    if grid_size < 3 or iterations < 0 or chunk_size < 1:
        raise ValueError(f"need grid_size >= 3, iterations >= 0, chunk_size >= 1; got {grid_size}, {iterations}, "
                         f"{chunk_size}")


# ---------------------------------------------------------------------------------------------
# Inversion recovery
# ---------------------------------------------------------------------------------------------


def _ir_linear(s: Tensor, e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares ``s ≈ a − b·e`` per row: returns (a, b, residual sum of squares).

    With a constant ``e`` (T1 at a bound far from the data) the 2×2 system is singular and the fit
    falls back to the mean, b = 0.
    """
    n = s.shape[-1]
    se, ee, ss, e1 = (s * e).sum(-1), (e * e).sum(-1), s.sum(-1), e.sum(-1)
    det = n * ee - e1 * e1
    a = torch.where(det > 0, safe_div(ee * ss - e1 * se, det), ss / n)
    c = safe_div(n * se - e1 * ss, det)  # c = −b
    residual = s - a.unsqueeze(-1) - c.unsqueeze(-1) * e
    return a, -c, (residual * residual).sum(-1)


def _fit_ir_chunk(
    s: Tensor, ti: Tensor, u_grid: Tensor, iterations: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Fit |a − b·e^(−TI/T1)| to voxels ``s`` (n, N) over sorted ``ti``; returns a ≥ 0, b, ln T1."""
    n, n_ti = s.shape
    # splits[k, i] = −1 for the first k samples, +1 after: the sign of the signed curve.
    splits = 1.0 - 2.0 * (torch.arange(n_ti, device=s.device)[None, :]
                          < torch.arange(n_ti + 1, device=s.device)[:, None]).to(s.dtype)
    signed = splits[None, :, :] * s[:, None, :]  # (n, K, N)
    # Grid: projected residual ⟨s, s⟩ − pᵀG⁻¹p of the linear fit on the basis (1, e), e on the grid.
    e_grid = torch.exp(-ti[:, None] * torch.exp(-u_grid)[None, :])  # (N, G)
    sum_e, sum_ee = e_grid.sum(0), (e_grid * e_grid).sum(0)
    det = n_ti * sum_ee - sum_e * sum_e  # (G,)
    p1 = signed.sum(-1, keepdim=True)  # (n, K, 1)
    p2 = signed @ e_grid  # (n, K, G)
    quad = (n_ti * p2 - 2.0 * sum_e * p1).mul_(p2).add_(sum_ee * p1 * p1)  # pᵀ·adj(G)·p
    best = quad.mul_(safe_div(torch.ones_like(det), det)).argmax(-1)  # (n, K): the grid T1 of each split
    lo, hi = _bracket(u_grid, best)
    rows = signed.reshape(-1, n_ti)

    def objective(u: Tensor) -> Tensor:
        return _ir_linear(rows, torch.exp(-ti[None, :] * torch.exp(-u)[:, None]))[2]

    u = _golden_section(objective, lo.reshape(-1), hi.reshape(-1), iterations)
    a, b, f = _ir_linear(rows, torch.exp(-ti[None, :] * torch.exp(-u)[:, None]))
    k = f.reshape(n, n_ti + 1).argmin(-1, keepdim=True)  # the best polarity split per voxel
    a, b, u = (x.reshape(n, n_ti + 1).gather(1, k).squeeze(1) for x in (a, b, u))
    flip = a < 0  # (−a, −b) has the same magnitude: report a ≥ 0
    return torch.where(flip, -a, a), torch.where(flip, -b, b), u


def fit_inversion_recovery(
    signal: Tensor,
    ti: Sequence[float],
    mask: Tensor | None = None,
    *,
    t1_bounds: tuple[float, float] = IR_T1_BOUNDS_MS,
    grid_size: int = 128,
    iterations: int = 60,
    chunk_size: int = 2**11,
) -> Tensor:
    """Least-squares T1 from magnitude inversion-recovery images: ``|a − b·e^(−TI/T1)|``.

    Minimises ``Σ_i (S_i − |a − b·e^(−TI_i/T1)|)²`` in every voxel over a, b and
    ``T1 ∈ t1_bounds`` (Barral et al. 2010, RD-NLS-PR): for each of the N + 1 polarity
    restorations (the first k samples in TI order negated) a variable-projection fit on a
    log-spaced T1 grid, refined by golden-section search, then the restoration with the smallest
    residual. Exact for incomplete recovery at fixed TR and for imperfect inversion.

    Parameters
    ----------
    signal : Tensor
        Real floating tensor of shape ``(N, ...)``: the magnitude image at each inversion time,
        a.u. (any order; sorted internally).
    ti : sequence of float
        The N ≥ 3 inversion times, ms.
    mask : Tensor, optional
        Boolean tensor of shape ``signal.shape[1:]``; voxels outside it are returned as 0.
    t1_bounds : tuple of float
        ``(lower, upper)`` bounds of T1, ms; also the range of the grid.
    grid_size : int
        Points of the log-spaced T1 grid (≥ 3).
    iterations : int
        Golden-section iterations (each shrinks the bracket of two grid steps by 0.618).
    chunk_size : int
        Voxels fitted at once (about 50 kB of working memory each for 10 TIs and the default grid).

    Returns
    -------
    Tensor
        Shape ``(3, ...)``, dtype and device of ``signal``: a ≥ 0 (a.u.), b (a.u.; b/a is 1 plus
        the inversion efficiency for full recovery) and T1 (ms). Voxels outside the mask, and
        voxels whose samples are all 0, are 0.

    Raises
    ------
    TypeError
        If ``signal`` is not a real floating tensor or ``mask`` is not boolean.
    ValueError
        If the shapes disagree, fewer than 3 or non-positive TIs are given, samples inside the
        mask are NaN or Inf, or an option is out of range.
    """
    ti_t, flat, inside = _prepare(signal, ti, "ti", mask, min_samples=3)
    u_lo, u_hi = log_bounds("t1_bounds", t1_bounds)
    _check_options(grid_size, iterations, chunk_size)
    _check_finite(flat, inside)
    order = torch.argsort(ti_t)
    ti_t, flat = ti_t[order].to(torch.float64), flat[order.to(flat.device)]
    u_grid = torch.linspace(u_lo, u_hi, grid_size, dtype=torch.float64, device=flat.device)
    out = torch.zeros(3, flat.shape[1], dtype=signal.dtype, device=signal.device)
    voxels = torch.nonzero(inside & (flat != 0).any(0)).squeeze(1)
    with torch.no_grad():
        for start in range(0, voxels.numel(), chunk_size):
            idx = voxels[start : start + chunk_size]
            a, b, u = _fit_ir_chunk(flat[:, idx].T.to(torch.float64), ti_t, u_grid, iterations)
            out[:, idx] = torch.stack((a, b, torch.exp(u))).to(signal.dtype)
    return out.reshape(3, *signal.shape[1:])


# ---------------------------------------------------------------------------------------------
# Multi-echo spin echo
# ---------------------------------------------------------------------------------------------


def _mono_exp(s: Tensor, w: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares PD ≥ 0 of ``s ≈ PD·e`` over samples with weight ``w`` (0 or 1); (PD, residual)."""
    pd = safe_div((w * s * e).sum(-1).clamp(min=0.0), (w * e * e).sum(-1))
    residual = w * (s - pd.unsqueeze(-1) * e)
    return pd, (residual * residual).sum(-1)


def _fit_mese_chunk(s: Tensor, w: Tensor, te: Tensor, u_grid: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Fit PD·e^(−TE/T2) to voxels ``s`` (n, N) with sample weights ``w``; returns PD and ln T2."""
    e_grid = torch.exp(-te[:, None] * torch.exp(-u_grid)[None, :])  # (N, G)
    p = (w * s) @ e_grid
    q = w @ (e_grid * e_grid)
    best = safe_div(p.clamp(min=0.0).square(), q).argmax(-1)
    lo, hi = _bracket(u_grid, best)

    def objective(u: Tensor) -> Tensor:
        return _mono_exp(s, w, torch.exp(-te[None, :] * torch.exp(-u)[:, None]))[1]

    u = _golden_section(objective, lo, hi, iterations)
    return _mono_exp(s, w, torch.exp(-te[None, :] * torch.exp(-u)[:, None]))[0], u


def fit_multi_echo_t2(
    signal: Tensor,
    te: Sequence[float],
    mask: Tensor | None = None,
    *,
    clip_value: float | None = CLIP_12BIT,
    t2_bounds: tuple[float, float] = MESE_T2_BOUNDS_MS,
    grid_size: int = 256,
    iterations: int = 60,
    chunk_size: int = 2**13,
) -> Tensor:
    """Least-squares PD and T2 from multi-echo spin-echo images, clipped samples excluded.

    Minimises ``Σ_j w_j·(S_j − PD·e^(−TE_j/T2))²`` in every voxel over PD ≥ 0 and
    ``T2 ∈ t2_bounds``, with ``w_j = 0`` for samples at or above ``clip_value`` (a clipped sample
    only bounds the true value from below) and 1 otherwise: PD projected out, a log-spaced T2
    grid, then golden-section search.

    Parameters
    ----------
    signal : Tensor
        Real floating tensor of shape ``(N, ...)``: the magnitude image at each echo, a.u.
    te : sequence of float
        The N ≥ 2 echo times, ms.
    mask : Tensor, optional
        Boolean tensor of shape ``signal.shape[1:]``; voxels outside it are returned as 0.
    clip_value : float or None
        Samples ``>= clip_value`` are excluded (default 4095, the 12-bit maximum); ``None`` keeps
        every sample.
    t2_bounds : tuple of float
        ``(lower, upper)`` bounds of T2, ms; also the range of the grid.
    grid_size : int
        Points of the log-spaced T2 grid (≥ 3).
    iterations : int
        Golden-section iterations.
    chunk_size : int
        Voxels fitted at once.

    Returns
    -------
    Tensor
        Shape ``(2, ...)``, dtype and device of ``signal``: PD (a.u., the amplitude at TE = 0) and
        T2 (ms). Voxels outside the mask, with fewer than 2 unclipped samples, or whose fitted PD
        is 0 (no positive signal), are 0.

    Raises
    ------
    TypeError
        If ``signal`` is not a real floating tensor or ``mask`` is not boolean.
    ValueError
        If the shapes disagree, fewer than 2 or non-positive TEs are given, samples inside the
        mask are NaN or Inf, or an option is out of range.
    """
    te_t, flat, inside = _prepare(signal, te, "te", mask, min_samples=2)
    u_lo, u_hi = log_bounds("t2_bounds", t2_bounds)
    _check_options(grid_size, iterations, chunk_size)
    _check_finite(flat, inside)
    te_t = te_t.to(torch.float64)
    valid = torch.ones_like(flat, dtype=torch.bool) if clip_value is None else flat < clip_value
    u_grid = torch.linspace(u_lo, u_hi, grid_size, dtype=torch.float64, device=flat.device)
    out = torch.zeros(2, flat.shape[1], dtype=signal.dtype, device=signal.device)
    voxels = torch.nonzero(inside & (valid.sum(0) >= 2)).squeeze(1)
    with torch.no_grad():
        for start in range(0, voxels.numel(), chunk_size):
            idx = voxels[start : start + chunk_size]
            pd, u = _fit_mese_chunk(flat[:, idx].T.to(torch.float64), valid[:, idx].T.to(torch.float64), te_t,
                                    u_grid, iterations)
            fitted = pd > 0
            out[:, idx] = torch.stack((pd, torch.where(fitted, torch.exp(u), 0.0))).to(signal.dtype)
    return out.reshape(2, *signal.shape[1:])
