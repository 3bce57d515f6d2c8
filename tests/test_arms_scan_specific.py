from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _phantom import KEEP, SIGMA, make_subject

from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.losses import swig_loss
from swig_lib.experiments.arms.scan_specific import (
    FourierFeatureINR,
    INRSettings,
    fit_adam,
    fit_subject,
    voxel_coordinates,
)
from swig_lib.experiments.training.windows import prepare_subject


def test_voxel_coordinates_are_slice_major_in_voxels():
    coords = voxel_coordinates((2, 3, 4), slice_spacing=4.0)
    assert coords.shape == (24, 3)
    assert coords[0].tolist() == [0.0, 0.0, 0.0]
    assert coords[1].tolist() == [0.0, 1.0, 0.0]  # the column runs fastest
    assert coords[4].tolist() == [1.0, 0.0, 0.0]
    assert coords[12].tolist() == [0.0, 0.0, 4.0]


def fit_image(seed: int) -> tuple[FourierFeatureINR, list[float]]:
    torch.manual_seed(seed)
    image = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    coords = voxel_coordinates((1, 16, 16))
    inr = FourierFeatureINR(1, n_frequencies=128, sigma_freq=0.5, width=64, depth=2)
    history = fit_adam(list(inr.parameters()), lambda: (inr(coords)[:, 0] - image.flatten()).square().mean(), 200, 3e-3)
    return inr, history


def test_the_inr_fits_a_small_image_exactly_and_deterministically():
    inr, history = fit_image(seed=0)
    image = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        error = (inr(voxel_coordinates((1, 16, 16)))[:, 0] - image.flatten()).abs().max()
    assert error < 1e-3
    again, history_again = fit_image(seed=0)
    assert history_again == history
    assert all(torch.equal(a, b) for a, b in zip(inr.state_dict().values(), again.state_dict().values()))


def subject_slices():
    acq = make_subject(0)
    slices = prepare_subject(acq, (40, 36), np.array([1, 2]), dilation=2)
    phi = KSpaceTruncation(KEEP, SIGMA).on_window((40, 36), (40, 36))
    scale = [float(acq.q_l[c][acq.mask].mean()) for c in range(3)]
    return slices, phi, scale


def test_prepare_subject_without_contrasts_never_makes_them():
    acq = make_subject(0)
    full = prepare_subject(acq, (40, 36), np.array([1, 2]), dilation=2)
    calls = []
    no_contrasts = SimpleNamespace(**{**vars(acq), "lr_contrasts": lambda: calls.append(1)})
    lean = prepare_subject(no_contrasts, (40, 36), np.array([1, 2]), dilation=2, contrasts=False)
    assert calls == [] and lean.c_l.shape == (2, 0, 40, 36)
    for field in ("q_l", "guides", "mask", "region", "phi"):
        assert torch.equal(getattr(lean, field), getattr(full, field))


SMALL = INRSettings(n_frequencies=32, sigma_freq=0.1, width=32, depth=2, steps=0, lr=1e-2)


@pytest.mark.parametrize("start", ["ql", "mean"])
def test_the_untrained_inr_returns_its_start(start):
    slices, phi, scale = subject_slices()
    fit = fit_subject(slices, phi, SIGMA, scale, alpha=1e3, settings=INRSettings(**{**vars(SMALL), "start": start}))
    expected = slices.q_l if start == "ql" else torch.tensor(scale).view(1, 3, 1, 1) * slices.mask[:, None]
    inside = slices.mask[:, None].expand_as(expected) & (slices.q_l > 1e-3 * torch.tensor(scale).view(1, 3, 1, 1))
    torch.testing.assert_close(fit.maps[inside], expected[inside].float(), rtol=1e-5, atol=0)
    assert fit.maps[:, :, ~slices.mask[0]].eq(0).all() and fit.loss == []


def test_fits_lower_their_loss_and_the_guide_term_changes_the_result():
    slices, phi, scale = subject_slices()
    settings = INRSettings(**{**vars(SMALL), "steps": 25})
    dc_only = fit_subject(slices, phi, SIGMA, scale, alpha=0.0, settings=settings)
    guided = fit_subject(slices, phi, SIGMA, scale, alpha=1e4, settings=settings)
    for fit in (dc_only, guided):
        assert fit.loss[-1] < 0.9 * fit.loss[0]
        assert torch.isfinite(fit.maps).all() and (fit.maps[:, :, slices.mask[0]] > 0).all()
    guides = {"T1w": slices.guides[:, 0], "T2w": slices.guides[:, 1]}
    args = (slices.c_l, guides, slices.mask, slices.region, SIGMA, phi, 1.0)
    assert dc_only.loss[0] == pytest.approx(float(swig_loss(slices.q_l * slices.mask[:, None], *args).data), rel=1e-4)
    assert float(swig_loss(guided.maps, *args).guide) < float(swig_loss(dc_only.maps, *args).guide)
    again = fit_subject(slices, phi, SIGMA, scale, alpha=1e4, settings=settings)
    assert torch.equal(again.maps, guided.maps)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="start must be 'ql' or 'mean'; got 'zero'"):
        INRSettings(start="zero")
    with pytest.raises(ValueError, match="need depth >= 1 and sigma_freq > 0; got 0, 0.1"):
        FourierFeatureINR(3, depth=0)
