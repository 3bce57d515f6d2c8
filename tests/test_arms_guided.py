import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from swig_lib.core.kspace import truncate_kspace
from swig_lib.experiments.arms.guided import (
    FilterParams,
    filter_maps,
    grid_search,
    guided_filter,
    joint_bilateral_filter,
    map_score,
    tune_filter,
)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Explicit (2r+1)² window mean with reflecting borders."""
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="reflect"), k, stride=1)


def gaussian_mean(x: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """Explicit normalised Gaussian window mean with reflecting borders."""
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, -1, -1)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="reflect"), kernel, groups=x.shape[1])


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("level", [0.0, 1.0])
@pytest.mark.parametrize("radius", [1, 3])
def test_guided_filter_with_constant_guide_is_twice_the_box_mean(images, level, radius):
    # var(W) = cov(W, p) = 0: a = 0, b = box(p), and the output box(b) = box(box(p)).
    guide = torch.full((2, 1, 20, 24), level, dtype=torch.float64)
    out = guided_filter(images, guide, radius, eps=1e-2)
    expected = box_mean(box_mean(images, radius), radius)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-9)
    assert not torch.allclose(out, images, atol=1e-3)


def test_guided_filter_of_radius_zero_is_the_identity(images):
    guide = torch.randn(2, 2, 20, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(guided_filter(images, guide, 0, eps=0.5), images)


def test_guided_filter_with_the_input_as_guide_and_vanishing_eps_is_the_identity(images):
    one = images[:, :1]
    out = guided_filter(one, one, radius=2, eps=1e-12)
    torch.testing.assert_close(out, one, rtol=0, atol=1e-6)
    # a large ε smooths: the output moves towards the box mean
    assert (guided_filter(one, one, radius=2, eps=1e3) - one).abs().max() > 0.1


@pytest.mark.parametrize("radius,sigma", [(1, 0.7), (3, 1.5)])
def test_joint_bilateral_filter_with_constant_guide_is_a_gaussian_mean(images, radius, sigma):
    guide = torch.full((2, 1, 20, 24), 0.3, dtype=torch.float64)
    out = joint_bilateral_filter(images, guide, radius, sigma_color=0.1, sigma_space=sigma)
    torch.testing.assert_close(out, gaussian_mean(images, radius, sigma), rtol=0, atol=1e-9)


def two_regions(dtype=torch.float64):
    """A 20×24 slice: mask = all but a 4-voxel frame; left/right halves of different tissue."""
    mask = torch.zeros(2, 20, 24, dtype=torch.bool)
    mask[:, 4:-4, 4:-4] = True
    guide = torch.zeros(2, 1, 20, 24, dtype=dtype)
    guide[:, 0, 4:-4, 4:12] = -1.0
    guide[:, 0, 4:-4, 12:-4] = 1.0
    return mask, guide


@pytest.mark.parametrize("method", ["guided", "bilateral"])
def test_masked_filters_ignore_everything_outside_the_mask(images, method):
    mask, guide = two_regions()
    params = FilterParams(method, radius=2, eps=0.1, sigma_color=0.5, sigma_space=1.5)
    inside = images * mask[:, None]
    garbage = torch.where(mask[:, None], images, torch.tensor(1e6, dtype=images.dtype))
    out = filter_maps(inside, guide, mask, params)
    assert torch.equal(filter_maps(garbage, guide, mask, params), out)
    assert torch.equal(out[:, :, ~mask[0]], torch.zeros_like(out[:, :, ~mask[0]]))


@pytest.mark.parametrize("method", ["guided", "bilateral"])
def test_masked_filters_keep_a_constant_map_constant_up_to_the_brain_rim(method):
    mask, guide = two_regions()
    maps = torch.tensor([80.0, 900.0, 70.0], dtype=torch.float64).view(1, 3, 1, 1) * mask[:, None]
    out = filter_maps(maps, guide, mask, FilterParams(method, radius=3, eps=0.1))
    torch.testing.assert_close(out, maps, rtol=1e-9, atol=1e-9)


def test_edges_of_the_guide_are_kept_where_a_box_mean_blurs_them():
    mask, guide = two_regions()
    t1 = torch.where(guide > 0, 1500.0, 700.0).to(torch.float64) * mask[:, None]
    interior = torch.zeros_like(mask)
    interior[:, 8:-8, 8:-8] = True  # the mask eroded by 2r: windows of windows inside the brain
    for method, region in (("guided", interior), ("bilateral", mask)):
        out = filter_maps(t1, guide, mask, FilterParams(method, radius=2, eps=1e-4, sigma_color=0.1))
        assert (out - t1)[:, :, region[0]].abs().max() < 1e-2 * 1500, method
    blurred = box_mean(t1, 3) * mask[:, None]
    assert (blurred - t1)[:, :, mask[0]].abs().max() > 100


def test_filter_params_are_checked():
    with pytest.raises(ValueError, match="method must be 'guided' or 'bilateral'; got 'box'"):
        FilterParams("box", radius=1)
    with pytest.raises(ValueError, match="radius must be a non-negative number of voxels; got -1"):
        FilterParams("guided", radius=-1)
    with pytest.raises(ValueError, match="must be positive; got 0.0, 0.3, 1.0"):
        FilterParams("guided", radius=1, eps=0.0)


def test_shapes_are_checked(images):
    with pytest.raises(ValueError, match=r"mask \(2, 20, 20\) must be \(B, H, W\)"):
        guided_filter(images, images[:, :1], 1, 0.1, torch.ones(2, 20, 20, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not match images"):
        guided_filter(images, images[:1, :1], 1, 0.1)


def test_grid_search_finds_the_maximum_and_keeps_the_first_of_ties():
    result = grid_search(lambda p: -((p["x"] - 2) ** 2) - (p["y"] - 3) ** 2, {"x": [0, 1, 2, 3], "y": [1, 3, 5]})
    assert result.best == {"x": 2, "y": 3} and result.best_score == 0.0
    assert [p for p, _ in result.table][:4] == [{"x": 0, "y": 1}, {"x": 0, "y": 3}, {"x": 0, "y": 5}, {"x": 1, "y": 1}]
    assert len(result.table) == 12
    tie = grid_search(lambda p: -abs(p["x"]), {"x": [-1, 1, 2]})
    assert tie.best == {"x": -1}
    nan = grid_search(lambda p: math.nan if p["x"] == 0 else -p["x"], {"x": [0, 5, 4]})
    assert nan.best == {"x": 4}
    with pytest.raises(ValueError, match="at least one candidate value"):
        grid_search(lambda p: 0.0, {"x": []})
    with pytest.raises(ValueError, match="every score was NaN or -inf"):
        grid_search(lambda p: math.nan, {"x": [1]})


def toy_validation():
    """Piecewise-constant maps blurred by Φ (keep 0.5) with noise; the guide holds the sharp edges."""
    gen = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = ((yy - 15.5) ** 2 + (xx - 13.5) ** 2 < 8.0**2).to(torch.float64)
    mask = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 13.0**2).expand(2, 32, 32)
    tissue = torch.tensor([[70.0, 800.0, 80.0], [90.0, 1400.0, 110.0]], dtype=torch.float64)
    q_h = (tissue[0].view(3, 1, 1) * (1 - disc) + tissue[1].view(3, 1, 1) * disc) * mask[:, None]
    q_l = truncate_kspace(q_h, keep=0.5) * mask[:, None]
    q_l = q_l + 0.01 * q_l.abs().mean() * torch.randn(q_l.shape, generator=gen, dtype=torch.float64) * mask[:, None]
    guide = (disc - disc[mask[0]].mean()) / disc[mask[0]].std() * mask[:, None].to(torch.float64)
    return q_l, guide, mask, q_h


def test_tune_filter_picks_the_best_setting_per_map_and_beats_no_filtering():
    q_l, guide, mask, q_h = toy_validation()
    grid = {"radius": [0, 1, 2, 3], "eps": [1e-3, 1e-1, 10.0]}
    best = tune_filter(q_l, guide, mask, q_h, "guided", grid, metric="ssim")
    assert set(best) == {"PD", "T1", "T2"}
    outputs = {
        (r, e): filter_maps(q_l, guide, mask, FilterParams("guided", r, e))
        for r, e in itertools.product(grid["radius"], grid["eps"])
    }
    for c, name in enumerate(("PD", "T1", "T2")):
        scores = {key: map_score(out[:, c], q_h[:, c], mask, "ssim") for key, out in outputs.items()}
        top = max(scores.values())
        assert scores[(best[name].radius, best[name].eps)] == top
        assert best[name].radius > 0 and top > scores[(0, 1e-3)] + 0.01
    hfen_best = tune_filter(q_l, guide, mask, q_h, "bilateral", {"radius": [0, 2], "sigma_color": [0.1]}, "hfen")
    assert hfen_best["T1"].method == "bilateral" and hfen_best["T1"].radius == 2
