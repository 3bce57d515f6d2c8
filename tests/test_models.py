"""The network (Fig. 1c): start at Q_l, valid outputs, scaling round trip, gradients, overfitting."""

from __future__ import annotations

import pytest
import torch
from _phantom import FakeDataset, tiny_profile

from swig_lib.core.models import (
    SCALED_FLOOR,
    SwigResNet,
    masked_channel_means,
    receptive_radius,
    zscore_guide,
)
from swig_lib.experiments.training.checkpoints import seed_everything
from swig_lib.experiments.training.loop import batch_loss, crop_phi
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import prepare_data

SCALE = [75.0, 1100.0, 130.0]


def _inputs(batch: int = 2, shape=(20, 18), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q_l = torch.tensor(SCALE).view(1, 3, 1, 1) * (
        0.2 + 2 * torch.rand((batch, 3, *shape), generator=gen)
    )
    guides = torch.randn((batch, 2, *shape), generator=gen)
    mask = torch.zeros((batch, *shape), dtype=torch.bool)
    mask[:, 3:-3, 4:-4] = True
    return q_l * mask[:, None], guides, mask


def test_untrained_model_returns_q_l_and_means_without_q_l() -> None:
    q_l, guides, mask = _inputs()
    model = SwigResNet(["T1w", "T2w"], True, SCALE, width=8).eval()
    assert torch.allclose(model(q_l, guides, mask), q_l, rtol=1e-5)
    blind = SwigResNet(["T1w", "T2w"], False, SCALE, width=8).eval()
    expected = torch.tensor(SCALE).view(1, 3, 1, 1) * mask[:, None]
    assert torch.allclose(blind(None, guides, mask), expected.expand(2, -1, -1, -1), rtol=1e-5)


def test_outputs_are_physically_valid_for_any_weights() -> None:
    q_l, guides, mask = _inputs()
    model = SwigResNet(["T2w"], True, SCALE, width=8)
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0.0, 3.0)  # wild weights: large positive and negative residuals
    out = model(q_l, guides[:, 1:], mask)
    assert torch.isfinite(out).all()
    assert (out[:, :, mask[0]] > 0).all()  # PD, T1, T2 > 0 inside the brain
    assert (out[:, :, ~mask[0]] == 0).all()  # background 0


def test_scaling_round_trip() -> None:
    model = SwigResNet(["T1w"], True, SCALE, width=4)
    q = torch.tensor(SCALE).view(1, 3, 1, 1) * torch.logspace(-2, 1.5, 30).view(1, 1, 5, 6)
    assert torch.allclose(model.unscale_maps(model.scale_maps(q)), q, rtol=1e-5)
    # Values below the floor ε·s come back as ε·s (positive).
    tiny = torch.zeros(1, 3, 1, 1)
    assert torch.allclose(
        model.unscale_maps(model.scale_maps(tiny)),
        SCALED_FLOOR * torch.tensor(SCALE).view(1, 3, 1, 1),
        rtol=1e-3,
    )


def test_spec_rebuilds_the_model() -> None:
    q_l, guides, mask = _inputs()
    model = SwigResNet(["T1w", "T2w"], True, SCALE, width=8, first_kernel=5)
    for p in model.tail.parameters():
        p.data.normal_(0.0, 0.01)
    model.eval()
    clone = SwigResNet(**model.spec)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    assert torch.equal(clone(q_l, guides, mask), model(q_l, guides, mask))
    assert clone.q_scale.tolist() == pytest.approx(SCALE)


def test_receptive_radius_and_crop_equivalence() -> None:
    """Inputs farther than the receptive radius do not change an output voxel (eval mode)."""
    model = SwigResNet(["T1w", "T2w"], True, SCALE, width=4, first_kernel=3)
    for p in model.tail.parameters():
        p.data.normal_(0.0, 0.05)
    model.eval()
    radius = receptive_radius(5, 3, 9)
    assert model.receptive_radius == radius == 15
    q_l, guides, mask = _inputs(batch=1, shape=(40, 40))
    mask[:] = True
    base = model(q_l, guides, mask)[0, :, 20, 20]
    far = guides.clone()
    far[:, :, : 20 - radius, :] = 9.0
    far[:, :, 20 + radius + 1 :, :] = -9.0
    assert torch.allclose(model(q_l, far, mask)[0, :, 20, 20], base)
    near = guides.clone()
    near[:, :, 20 - radius + 3, 18:23] += 50.0
    assert not torch.allclose(model(q_l, near, mask)[0, :, 20, 20], base)


def test_zscore_guide_and_channel_means() -> None:
    gen = torch.Generator().manual_seed(3)
    guide = torch.rand(6, 7, 3, generator=gen) * 40 + 10
    mask = torch.rand(6, 7, 3, generator=gen) > 0.4
    z = zscore_guide(guide, mask)
    assert z[mask].mean().abs() < 1e-5 and (z[mask].std() - 1).abs() < 1e-5
    assert (z[~mask] == 0).all()
    assert torch.allclose(zscore_guide(2.5 * guide - 7, mask), z, atol=1e-5)
    with pytest.raises(ValueError, match="constant"):
        zscore_guide(torch.ones(4, 4), torch.ones(4, 4, dtype=torch.bool))
    maps = torch.stack([guide, 2 * guide, 3 * guide])
    means = masked_channel_means([maps, maps], [mask, mask])
    assert torch.allclose(
        means, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * guide[mask].double().mean()
    )


@pytest.fixture(scope="module")
def one_slice():
    """One 32x32 phantom slice prepared for the loss, with Φ on its window."""
    data = prepare_data(
        FakeDataset(1, 1, 0, (32, 32, 1)),
        tiny_profile(),  # every slice, L_l on the brain dilated by 2 voxels
        margin=4,
        progress=False,
    )
    return data, crop_phi(data)


def test_gradients_reach_every_layer(one_slice) -> None:
    data, phi = one_slice
    seed_everything(0)
    model = SwigResNet(["T1w", "T2w"], True, data.q_scale, width=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = data.train.batch(torch.arange(1), torch.device("cpu"))
    for _ in range(2):  # the zero-initialised last layer passes gradients on after its first step
        optimizer.zero_grad()
        batch_loss(model, batch, VARIANTS["M12++"], 4000.0, phi, data.sigma).total.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_model_overfits_one_slice(one_slice) -> None:
    """The self-supervised loss falls by orders of magnitude on a single slice (speed: benchmarks/)."""
    data, phi = one_slice
    seed_everything(0)
    model = SwigResNet(["T1w", "T2w"], True, data.q_scale, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = data.train.batch(torch.arange(1), torch.device("cpu"))
    losses = []
    for _ in range(300):
        terms = batch_loss(model, batch, VARIANTS["M12++"], 4000.0, phi, data.sigma)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        losses.append(float(terms.total.detach()))
    assert min(losses[-10:]) < losses[0] / 100, (losses[0], losses[-10:])
