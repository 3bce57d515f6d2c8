"""The SWIG loss (eq. 8-12): invariances, zeros, noise floor, gradients (Φ on a crop: test_operators)."""

from __future__ import annotations

import pytest
import torch

from swig_lib.core.kspace import KSpaceTruncation, centre_mask, truncate_kspace
from swig_lib.core.losses import (
    correlation_ratio_loss,
    data_consistency_loss,
    guide_loss,
    swig_loss,
)
from swig_lib.core.physics import qmri_contrasts, weighted_image
from swig_lib.core.protocols import GUIDE_PROTOCOLS


def _maps_batch(
    n: int = 2, shape=(24, 20), dtype=torch.float64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) positive maps with a (B, H, W) elliptic mask, zero outside."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    mask = ((x - shape[0] / 2) / (shape[0] * 0.3)) ** 2 + (
        (y - shape[1] / 2) / (shape[1] * 0.3)
    ) ** 2 <= 1
    mask = mask.expand(n, *shape)
    base = torch.tensor([80.0, 1000.0, 90.0], dtype=dtype).view(1, 3, 1, 1)
    maps = base * (1 + 0.3 * torch.rand((n, 3, *shape), generator=gen, dtype=dtype))
    return maps * mask[:, None], mask


@pytest.mark.parametrize("a, b", [(-2.5, 7.0), (0.01, -300.0), (40.0, 0.0), (-1.0, 0.0)])
def test_correlation_ratio_is_affine_invariant(a: float, b: float) -> None:
    gen = torch.Generator().manual_seed(1)
    w_hat = torch.randn(3, 16, 16, generator=gen, dtype=torch.float64)
    w = 0.6 * w_hat + torch.randn(3, 16, 16, generator=gen, dtype=torch.float64)
    mask = torch.rand(3, 16, 16, generator=gen) > 0.3
    reference = correlation_ratio_loss(w, w_hat, mask)
    assert torch.allclose(
        correlation_ratio_loss(a * w + b, w_hat, mask), reference, rtol=1e-10, atol=1e-12
    )
    # In the synthesis too, up to eps relative to Var(Ŵ).
    assert torch.allclose(correlation_ratio_loss(w, a * w_hat + b, mask), reference, rtol=1e-4)
    assert ((reference > 0) & (reference < 1)).all()


def test_correlation_ratio_zero_for_perfect_synthesis_and_ignores_outside_mask() -> None:
    gen = torch.Generator().manual_seed(2)
    w_hat = torch.randn(2, 12, 12, generator=gen, dtype=torch.float64)
    mask = torch.zeros(2, 12, 12, dtype=torch.bool)
    mask[:, 2:10, 3:11] = True
    w = torch.where(
        mask, -3.0 * w_hat + 11.0, torch.randn(2, 12, 12, generator=gen, dtype=torch.float64)
    )
    assert torch.allclose(
        correlation_ratio_loss(w, w_hat, mask, eps=0.0),
        torch.zeros(2, dtype=torch.float64),
        atol=1e-12,
    )
    assert (correlation_ratio_loss(w, w_hat, mask) < 1e-7).all()  # eps / Var(Ŵ)
    assert (correlation_ratio_loss(w, w_hat) > 0.01).all()  # without the mask the outside counts


def test_correlation_ratio_equals_least_squares_residual() -> None:
    """1 − ρ² = min over a, b of Var(Ŵ − (a·W + b)) / Var(Ŵ): the affine reading of eq. 11."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(1, 200, generator=gen, dtype=torch.float64)
    w_hat = 2.0 * w + 0.7 * torch.randn(1, 200, generator=gen, dtype=torch.float64)
    design = torch.stack([w[0], torch.ones(200, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(design, w_hat[0, :, None]).solution
    residual = w_hat[0] - (design @ coef)[:, 0]
    expected = residual.var(unbiased=False) / w_hat.var(unbiased=False)
    assert torch.allclose(correlation_ratio_loss(w, w_hat, eps=0.0)[0], expected, rtol=1e-10)


def test_correlation_ratio_constant_prediction_is_finite() -> None:
    w = torch.randn(2, 8, 8, dtype=torch.float64)
    w_hat = torch.full((2, 8, 8), 5.0, dtype=torch.float64, requires_grad=True)
    loss = correlation_ratio_loss(w, w_hat).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(w_hat.grad).all()
    assert torch.allclose(loss, torch.tensor(2.0, dtype=torch.float64))


def test_data_consistency_zero_for_truth_and_noise_floor() -> None:
    maps, mask = _maps_batch()
    contrasts = qmri_contrasts(maps[:, 0], maps[:, 1], maps[:, 2], dim=1)
    phi = KSpaceTruncation(0.5).on_window((24, 20), (24, 20), torch.float64)
    region = torch.ones_like(mask)
    clean = truncate_kspace(contrasts, keep=0.5)
    assert data_consistency_loss(maps, clean, region, 0.1, phi) < 1e-20
    # With noise, L_l at the truth is the noise floor: 12 contrasts x (kept fraction f)/2.
    sigma = 0.1
    noisy = truncate_kspace(
        contrasts.repeat(20, 1, 1, 1), 0.5, sigma, generator=torch.Generator().manual_seed(5)
    )
    kept = float(centre_mask((24, 20), 0.5).double().mean())
    floor = data_consistency_loss(
        maps.repeat(20, 1, 1, 1), noisy, region.repeat(20, 1, 1), sigma, phi
    )
    assert float(floor) == pytest.approx(12 * kept / 2, rel=0.05)


def test_guide_loss_zero_for_truth_and_positive_otherwise() -> None:
    maps, mask = _maps_batch()
    guides = {
        n: 3.0 * weighted_image(p, maps[:, 0], maps[:, 1], maps[:, 2]) + 5.0
        for n, p in GUIDE_PROTOCOLS.items()
    }
    assert guide_loss(maps, guides, mask) < 1e-6  # 0 up to eps / Var(Ŵ)
    perturbed = maps * torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
    perturbed[:, 1] = perturbed[:, 1].flip(-1)
    assert guide_loss(perturbed, guides, mask) > 0.01
    assert guide_loss(maps, {}, mask) == 0


def test_swig_loss_combines_terms() -> None:
    maps, mask = _maps_batch()
    contrasts = truncate_kspace(qmri_contrasts(maps[:, 0], maps[:, 1], maps[:, 2], dim=1), keep=0.5)
    phi = KSpaceTruncation(0.5).on_window((24, 20), (24, 20), torch.float64)
    guides = {
        n: weighted_image(p, maps[:, 0], maps[:, 1], maps[:, 2]) for n, p in GUIDE_PROTOCOLS.items()
    }
    prediction = maps * 1.05
    terms = swig_loss(prediction, contrasts, guides, mask, mask, 0.1, phi, alpha=7.0)
    assert torch.allclose(terms.total, terms.data + 7.0 * terms.guide)
    only_guide = swig_loss(
        prediction, contrasts, guides, mask, mask, 0.1, phi, alpha=7.0, data_consistency=False
    )
    assert torch.allclose(only_guide.total, 7.0 * only_guide.guide) and torch.allclose(
        only_guide.data, terms.data
    )
    no_guide = swig_loss(prediction, contrasts, guides, mask, mask, 0.1, phi, alpha=0.0)
    assert torch.allclose(no_guide.total, terms.data)
    t1_only = swig_loss(
        prediction, contrasts, guides, mask, mask, 0.1, phi, alpha=1.0, loss_guides=["T1w"]
    )
    assert torch.allclose(t1_only.guide, guide_loss(prediction, {"T1w": guides["T1w"]}, mask))


def test_gradcheck_both_terms() -> None:
    maps, mask = _maps_batch(n=1, shape=(6, 5))
    maps = maps.clone().requires_grad_(True)
    target = truncate_kspace(
        qmri_contrasts(maps[:, 0] * 0.9, maps[:, 1], maps[:, 2] * 1.1, dim=1).detach(), keep=0.5
    )
    phi = KSpaceTruncation(0.5).on_window((6, 5), (6, 5), torch.float64)
    region = torch.ones_like(mask)
    guides = {
        n: weighted_image(p, *(maps[0].detach() * 1.02))[None] for n, p in GUIDE_PROTOCOLS.items()
    }
    full_mask = mask | True  # all voxels positive, so the guide term is smooth everywhere
    positive = (maps.detach() + 50.0).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q: data_consistency_loss(q, target, region, 0.1, phi), (maps,)
    )
    assert torch.autograd.gradcheck(lambda q: guide_loss(q, guides, full_mask), (positive,))
    w = torch.randn(2, 9, dtype=torch.float64)
    w_hat = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: correlation_ratio_loss(w, x, w > -0.5), (w_hat,))
