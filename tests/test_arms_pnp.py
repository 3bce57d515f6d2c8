import pytest
import torch
from _phantom import KEEP, SIGMA, make_subject

from swig_lib.core.fitter import fit_qmri
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.physics import qmri_contrasts, saturation_recovery, spin_echo
from swig_lib.experiments.arms.pnp import (
    SE,
    SR,
    ContrastDenoiser,
    PnPSettings,
    WeightedPatches,
    data_consistency_step,
    identity_denoiser,
    image_noise_sigma,
    pnp_reconstruct,
    protocol_condition,
    synthesize_weighted,
    train_denoiser,
    training_slices,
)


def slices(seed: int = 0, n: int = 2):
    """Slices-first phantom: Q_h (n, 3, 40, 36), mask (n, 40, 36), C_l (n, 12, 40, 36), float64."""
    subject = make_subject(seed)
    q_h = torch.from_numpy(subject.q_h).double().permute(3, 0, 1, 2)[:n]
    mask = torch.from_numpy(subject.mask).permute(2, 0, 1)[:n]
    c_l = torch.from_numpy(subject.lr_contrasts()).double().permute(3, 0, 1, 2)[:n]
    return q_h, mask, c_l


def misfit_gradient(maps, c_l, mask, phi):
    """∂/∂q of ‖Φ(M(q)) − C_l‖² in the mask, (B, 3, H, W)."""
    q = maps.clone().requires_grad_(True)
    residual = phi.forward(qmri_contrasts(q[:, 0], q[:, 1], q[:, 2], dim=1)) - phi.forward(c_l)
    residual.square().sum().backward()
    return q.grad * mask[:, None]


def test_data_consistency_step_is_the_exact_minimiser():
    gen = torch.Generator().manual_seed(0)
    phi = KSpaceTruncation(0.5)
    z = torch.randn(3, 16, 20, generator=gen, dtype=torch.float64)
    y = phi.forward(torch.randn(3, 16, 20, generator=gen, dtype=torch.float64))
    for rho in (0.0, 0.3, 4.0):
        x = data_consistency_step(z, y, phi, rho)
        gradient = phi.forward(phi.forward(x) - y) + rho * (x - z)  # ½∇ of ‖Φx − y‖² + ρ‖x − z‖²
        torch.testing.assert_close(gradient, torch.zeros_like(gradient), rtol=0, atol=1e-12)
    x = data_consistency_step(z, y, phi, 0.0)  # hard data consistency: data in the band, z outside
    torch.testing.assert_close(phi.forward(x), y, rtol=0, atol=1e-12)
    torch.testing.assert_close(x - phi.forward(x), z - phi.forward(z), rtol=0, atol=1e-12)


def test_image_noise_sigma_is_the_std_of_the_data_noise():
    phi = KSpaceTruncation(0.5, sigma=2.0)
    noise = phi(torch.zeros(64, 48, 40, dtype=torch.float64), torch.Generator().manual_seed(0))
    assert noise.std().item() == pytest.approx(image_noise_sigma(phi, (48, 40)), rel=0.01)


def test_with_the_identity_denoiser_and_full_kspace_the_loop_returns_the_voxelwise_fit():
    q_h, mask, _ = slices()
    phi = KSpaceTruncation(1.0, SIGMA)
    c_l = phi(qmri_contrasts(q_h[:, 0], q_h[:, 1], q_h[:, 2], dim=1), torch.Generator().manual_seed(1))
    result = pnp_reconstruct(c_l, mask, phi, identity_denoiser, PnPSettings(iterations=3, lam=1e4))
    expected = fit_qmri(c_l.transpose(0, 1), mask=mask).transpose(0, 1)
    torch.testing.assert_close(result.maps, expected, rtol=1e-7, atol=1e-9)
    assert result.misfit[-1] == pytest.approx(result.misfit[0], rel=1e-7)


def test_with_the_identity_denoiser_the_loop_descends_to_the_data_consistent_fit():
    q_h, mask, c_l = slices()
    phi = KSpaceTruncation(KEEP, SIGMA)
    lam = 1.0 / image_noise_sigma(phi, (40, 36)) ** 2  # ρ = 1 in every iteration
    result = pnp_reconstruct(c_l, mask, phi, identity_denoiser, PnPSettings(12, 1.0, 1.0, lam))
    objective = torch.tensor(result.objective)
    assert (objective[1:] <= objective[:-1] * (1 + 1e-9)).all()  # alternating minimisation of F
    assert result.misfit[-1] < result.misfit[0] / 10
    q_l = fit_qmri(c_l.transpose(0, 1), mask=mask).transpose(0, 1)
    before, after = (misfit_gradient(q, c_l, mask, phi).abs().amax((0, 2, 3)) for q in (q_l, result.maps))
    assert (after < before / 5).all(), (before, after)  # towards J^T Φ(M(q) − y) = 0
    error = [((q - q_h).abs() * mask[:, None]).sum() for q in (q_l, result.maps)]
    assert error[1] < error[0]


def test_synthesised_weighted_images_follow_the_signal_equations():
    q_h, _, _ = slices()
    family = torch.tensor([SR, SE])
    time_ms = torch.tensor([700.0, 60.0])
    images = synthesize_weighted(q_h, family, time_ms)
    torch.testing.assert_close(images[0], saturation_recovery(q_h[0, 0], q_h[0, 1], 700.0))
    torch.testing.assert_close(images[1], spin_echo(q_h[1, 0], q_h[1, 2], 60.0))
    condition = protocol_condition()
    assert condition.shape == (12, 2)
    assert condition[:6, 0].eq(0).all() and condition[6:, 0].eq(1).all()
    assert condition[0, 1].item() == pytest.approx(torch.log10(torch.tensor(360.0)).item() / 4)


def test_training_slices_keep_slices_with_brain():
    volume = torch.rand(3, 8, 9, 5)
    mask = torch.zeros(8, 9, 5, dtype=torch.bool)
    mask[2:5, 3:6, [1, 3]] = True
    maps, brains = training_slices([volume], [mask])
    assert maps.shape == (2, 3, 8, 9) and brains.shape == (2, 8, 9)
    assert torch.equal(maps[1], volume[..., 3])


def patches(n: int, seed: int) -> WeightedPatches:
    maps, masks = training_slices(
        [torch.from_numpy(make_subject(s).q_h) for s in (0, 1)],
        [torch.from_numpy(make_subject(s).mask) for s in (0, 1)],
    )
    return WeightedPatches.draw(maps, masks, n=n, patch=16, seed=seed, sigma_range=(2.0, 8.0))


def test_weighted_patches_are_reproducible_and_carry_their_noise_level():
    first, again = patches(64, seed=3), patches(64, seed=3)
    index = torch.arange(64)
    a, b = first.batch(index, torch.device("cpu")), again.batch(index, torch.device("cpu"))
    assert torch.equal(a.noisy, b.noisy) and a.noisy.shape == (64, 16, 16)
    assert first.time_ms[first.family == SE].max() <= 500 and first.time_ms[first.family == SR].min() >= 200
    ratio = ((a.noisy - a.clean) / a.sigma.view(-1, 1, 1)).std().item()
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_untrained_denoiser_is_the_identity_and_training_makes_it_denoise():
    untrained = ContrastDenoiser(scale=100.0, width=8, depth=3)
    contrasts = torch.rand(2, 12, 16, 16)
    assert torch.equal(untrained.prior()(contrasts, 3.0), contrasts)

    samples = patches(256, seed=0)
    model, log = train_denoiser(samples, 100.0, epochs=8, batch_size=16, lr=3e-3, warmup_steps=16, width=16, depth=4)
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    held_out = patches(64, seed=1).batch(torch.arange(64), torch.device("cpu"))
    with torch.no_grad():
        denoised = model(held_out.noisy, held_out.sigma, held_out.condition)
    noisy_error = (held_out.noisy - held_out.clean).square().mean()
    assert (denoised - held_out.clean).square().mean() < 0.6 * noisy_error

    _, mask, c_l = slices(n=1)
    phi = KSpaceTruncation(KEEP, SIGMA)
    result = pnp_reconstruct(c_l, mask, phi, model.prior(), PnPSettings(2, 4.0, 1.0, 1.0))
    assert result.maps.shape == (1, 3, 40, 36) and result.maps.dtype == torch.float64
    assert torch.isfinite(result.maps).all() and result.maps[:, :, ~mask[0]].eq(0).all()
    assert len(result.objective) == 2 and len(result.misfit) == 3


def test_settings_and_shapes_are_checked():
    assert PnPSettings(3, 4.0, 1.0).sigmas() == pytest.approx([4.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="need iterations >= 1, 0 < sigma_min <= sigma_max and lam >= 0"):
        PnPSettings(2, 1.0, 2.0)
    with pytest.raises(ValueError, match=r"need c_l \(B, 12, H, W\) and mask \(B, H, W\)"):
        pnp_reconstruct(
            torch.zeros(1, 11, 8, 8), torch.ones(1, 8, 8, dtype=torch.bool), KSpaceTruncation(), identity_denoiser
        )
