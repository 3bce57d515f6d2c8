"""Tests of the digital lesions (swig_lib.experiments.limits.lesions) on a small phantom subject."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swig_lib.core import physics
from swig_lib.core.protocols import GUIDE_PROTOCOLS
from swig_lib.experiments.limits import lesions as L
from swig_lib.experiments.subjects.anatomy import TISSUE_VALUES, TISSUES, mix_tissues
from swig_lib.experiments.subjects.dataset import Subject, acquire, lr_contrasts, tissue_labels

KEEP, SIGMA, SEED = 0.5, 0.1, 7
SLICES = [0, 1, 2]


@pytest.fixture(scope="module")
def phantom() -> tuple[Subject, np.ndarray]:
    """A 72 x 72 x 3 disc brain, 1 mm voxels: WM core (radius 22), GM ring, CSF rim; and its labels."""
    x, y = np.meshgrid(np.arange(72) - 35.5, np.arange(72) - 35.5, indexing="ij")
    r = np.repeat(np.hypot(x, y)[..., None], 3, axis=2)
    wm = np.clip(22.5 - r, 0.0, 1.0)
    csf = np.clip(r - 29.5, 0.0, 1.0)
    mask = r < 33.0
    fractions = np.where(mask, np.stack([1.0 - wm - csf, wm, csf]), 0.0)
    values = [(TISSUE_VALUES[t].pd, TISSUE_VALUES[t].t1, TISSUE_VALUES[t].t2) for t in TISSUES]
    q_h = mix_tissues(fractions, values) * mask
    return acquire(q_h, mask, np.eye(4), KEEP, SIGMA, SEED), tissue_labels(fractions, mask)


def test_lesion_free_and_zero_size_lesions_reproduce_the_subject_exactly(phantom) -> None:
    subject, _ = phantom
    zero = [L.Lesion("ms", (30.0, 30.0, 1.0), 0.0), L.Lesion("tumour", (40.0, 40.0, 1.0), 0.0, 0.0)]
    for lesions, slices in (([], SLICES), (zero, SLICES), (zero, [1])):
        out = L.acquire_lesioned(subject.q_h, subject.mask, subject.affine, lesions, KEEP, SIGMA, SEED, slices)
        assert np.array_equal(out.q_h, subject.q_h[..., slices])
        assert np.array_equal(out.q_l, subject.q_l[..., slices])  # Φ, noise and fit as in the build
        assert all(np.array_equal(out.guides[g], subject.guides[g][..., slices]) for g in GUIDE_PROTOCOLS)
        assert np.array_equal(out.compartments, np.stack([np.ones((72, 72, len(slices))), *np.zeros((2, 72, 72,
                                                                                                       len(slices)))]))


def test_partial_volume() -> None:
    d = np.array([0.0, 1.4, 2.5, 3.0, 3.4, 3.5, 4.0])
    assert np.array_equal(L.partial_volume(d, 0.0), np.zeros(7))
    assert np.allclose(L.partial_volume(d, 3.0), [1.0, 1.0, 1.0, 0.5, 0.1, 0.0, 0.0])
    assert np.allclose(L.partial_volume(np.array([0.0, 0.2]), 0.3), [0.3, 0.3])  # at most its radius


def test_fractions_sum_to_one_and_follow_the_profiles(phantom) -> None:
    subject, _ = phantom
    lesions = [L.Lesion("tumour", (36.0, 36.0, 1.0), 12.0, 4.0), L.Lesion("ms", (20.0, 36.0, 1.0), 3.0)]
    fractions = L.compartments(lesions, subject.mask, subject.affine)
    assert np.allclose(fractions.sum(axis=0), 1.0) and fractions.min() >= 0 and fractions.max() <= 1
    healthy, ms, water = fractions[..., 1]
    assert water[36, 36] == L.CORE_WATER and ms[36, 36] == 0
    assert water[36, 36 + 8] == pytest.approx(L.OEDEMA_WATER * (12 - 8) / (12 - 4))  # linear fall in the oedema
    assert water[36, 36 + 12] == 0 and water[36, 36 + 20] == 0
    assert ms[20, 36] == 1 and ms[20, 36 + 4] == 0 and healthy[20, 36 + 3] == pytest.approx(0.5)
    assert not fractions[1:, ~subject.mask].any()  # nothing outside the brain
    assert fractions[2, 36, 36, 0] == pytest.approx(L.CORE_WATER)  # spheres: 1 mm away on the next slice
    with pytest.raises(ValueError, match="lesion kind"):
        L.Lesion("cyst", (0.0, 0.0, 0.0), 1.0)
    with pytest.raises(ValueError, match="core_mm <= radius_mm"):
        L.Lesion("tumour", (0.0, 0.0, 0.0), 2.0, 3.0)


def test_ms_lesion_raises_t1_t2_pd_by_the_published_changes(phantom) -> None:
    subject, _ = phantom
    lesion = L.Lesion("ms", (20.0, 36.0, 1.0), 4.0)
    out = L.acquire_lesioned(subject.q_h, subject.mask, subject.affine, [lesion], KEEP, SIGMA, SEED, SLICES)
    before, after = subject.q_h[:, 20, 36, 1], out.q_h[:, 20, 36, 1]
    factors = np.array([1 + L.MS_CHANGE["pd"], 1 / (1 + L.MS_CHANGE["r1"]), 1 / (1 + L.MS_CHANGE["r2"])])
    assert np.allclose(after / before, factors, rtol=1e-6) and (factors > 1).all()
    far = np.ones((72, 72), bool)
    far[10:31, 26:47] = False  # the lesion and its rim
    assert np.array_equal(out.q_h[:, far, 1], subject.q_h[:, far, 1])  # elsewhere untouched
    rim = out.q_h[:, 20, 36 + 4, 1]  # half lesion: fast exchange, between tissue and lesion
    assert (rim > before).all() and (rim < before * factors).all()
    assert out.q_l[1, 20, 36, 1] > 1.2 * subject.q_l[1, 20, 36, 1]  # the LR T1 shows it too


def test_tumour_is_two_compartments_and_its_reference_the_apparent_fit(phantom) -> None:
    subject, _ = phantom
    tumour = L.Lesion("tumour", (36.0, 36.0, 1.0), 12.0, 4.0)
    out = L.acquire_lesioned(subject.q_h, subject.mask, subject.affine, [tumour], KEEP, SIGMA, SEED, SLICES)
    pd, t1, t2 = (torch.tensor(float(v), dtype=torch.float64) for v in subject.q_h[:, 36, 36, 1])
    w = L.CORE_WATER
    fluid = [torch.tensor(v, dtype=torch.float64) for v in (L.FREE_WATER.pd, L.FREE_WATER.t1, L.FREE_WATER.t2)]
    for name, protocol in GUIDE_PROTOCOLS.items():  # the guides are the sum of the compartments' signals
        expected = (physics.weighted_image(protocol, pd * (1 - w), t1, t2)
                    + physics.weighted_image(protocol, fluid[0] * w, *fluid[1:]))
        assert out.guides[name][36, 36, 1] == pytest.approx(float(expected), rel=1e-5)
    apparent = out.q_h[:, 36, 36, 1]
    assert float(t2) < apparent[2] < L.FREE_WATER.t2 and float(t1) < apparent[1] < L.FREE_WATER.t1
    decay = (physics.qmri_contrasts(pd * (1 - w), t1, t2) + physics.qmri_contrasts(fluid[0] * w, *fluid[1:]))[6:]
    mono = physics.qmri_contrasts(*(torch.tensor(float(v), dtype=torch.float64) for v in apparent))[6:]
    assert float((decay - mono).abs().max()) > 0.5  # a bi-exponential decay no single exponential fits
    assert out.q_l[2, 36, 36, 1] > 3 * subject.q_l[2, 36, 36, 1]


def test_lr_contrasts_are_linear_in_pd_with_the_noise_drawn_once(phantom) -> None:
    """The compartment sum of acquire_lesioned: Φ(a) with noise + Φ(b) without = Φ(a + b) with noise."""
    subject, _ = phantom
    part = subject.q_h.copy()
    part[0] *= 0.3
    rest = subject.q_h.copy()
    rest[0] *= 0.7
    summed = lr_contrasts(part, KEEP, SIGMA, SEED) + lr_contrasts(rest, KEEP, 0.0, SEED)
    assert np.allclose(summed, lr_contrasts(subject.q_h, KEEP, SIGMA, SEED), atol=1e-3)


def test_placement_is_seeded_inside_white_matter_and_apart(phantom) -> None:
    subject, labels = phantom
    args = (labels, subject.mask, subject.affine, [1], (1.5, 3.0), (3.0, 8.0), 2.0)
    lesions = L.place_lesions(*args, np.random.default_rng(3))
    assert lesions == L.place_lesions(*args, np.random.default_rng(3))
    assert lesions != L.place_lesions(*args, np.random.default_rng(4))
    assert [(x.kind, x.radius_mm, x.core_mm) for x in lesions] == [("tumour", 8.0, 3.0), ("ms", 3.0, 0.0),
                                                                   ("ms", 1.5, 0.0)]
    for lesion in lesions:
        assert lesion.slice == 1
        d = L.distance_mm(labels.shape, subject.affine, lesion.centre)[..., 1]
        inner = lesion.radius_mm if lesion.kind == "ms" else lesion.core_mm
        assert (labels[..., 1][d < inner + 0.5] == L.WM_LABEL).all()
        assert subject.mask[..., 1][d < lesion.radius_mm + 0.5].all()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        gap = np.linalg.norm(np.subtract(lesions[a].centre, lesions[b].centre))
        assert gap >= lesions[a].radius_mm + lesions[b].radius_mm + 2.0 + L.GAP_MM
    with pytest.raises(ValueError, match=r"no room for a ms lesion of radius 30 mm on slices \[1\]"):
        L.place_lesions(labels, subject.mask, subject.affine, [1], (30.0,), (0.0, 0.0), 2.0, np.random.default_rng(0))


def test_regions_rings_and_measures(phantom) -> None:
    subject, labels = phantom
    tumour = L.Lesion("tumour", (36.0, 36.0, 1.0), 10.0, 4.0)
    ms = L.Lesion("ms", (36.0, 22.0, 1.0), 2.0)
    regions = L.lesion_regions(tumour, [tumour, ms], subject.mask, labels, subject.affine, 3.0)
    (core, ring), (oedema, ring2) = regions["core"], regions["oedema"]
    d = L.distance_mm(labels.shape, subject.affine, tumour.centre)[..., 1]
    assert np.array_equal(core, d <= 4) and np.array_equal(oedema, (d > 4) & (d <= 10)) and ring is ring2
    assert ring.any() and (d[ring] > 11).all() and (d[ring] <= 14).all()
    assert np.isin(labels[..., 1][ring], L.RING_LABELS).all()
    image = np.where(core, 3.0, 2.0)
    assert L.relative_contrast(image, core, ring) == pytest.approx(0.5)
    assert L.relative_bias(image, np.full_like(image, 2.5), core) == pytest.approx(0.2)
    ms_region, ms_ring = L.lesion_regions(ms, [tumour, ms], subject.mask, labels, subject.affine, 3.0)["lesion"]
    alone = L.lesion_regions(ms, [ms], subject.mask, labels, subject.affine, 3.0)["lesion"][1]
    assert ms_region.sum() == 13 and ms_ring.any()
    assert (alone & (d < 10)).any() and not (ms_ring & (d < 10)).any()  # the tumour stays out of the ring
    with pytest.raises(ValueError, match="no voxel"):
        L.relative_contrast(image, core, np.zeros_like(core))
