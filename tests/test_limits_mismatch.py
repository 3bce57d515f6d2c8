"""Tests of the guide-mismatch generators (swig_lib.experiments.limits.mismatch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swig_lib.core import physics
from swig_lib.core.protocols import GUIDE_PROTOCOLS
from swig_lib.experiments.crossseq.acquisition import synthesize
from swig_lib.experiments.limits import mismatch as M
from swig_lib.experiments.subjects.dataset import synthesize_guides


@pytest.fixture(scope="module")
def maps() -> tuple[np.ndarray, np.ndarray]:
    """Smooth PD/T1/T2 maps (3, 48, 40, 3) in a disc brain with an off-centre bright blob, and the mask."""
    x, y = np.meshgrid(np.arange(48) - 23.5, np.arange(40) - 19.5, indexing="ij")
    r = np.hypot(x, y)
    mask = np.repeat((r < 17)[..., None], 3, axis=2)
    blob = np.exp(-((x - 5) ** 2 + (y + 3) ** 2) / 20.0)[..., None]
    q_h = np.stack([70 + 25 * blob, 700 + 2000 * blob, 75 + 600 * blob]) * mask
    return np.repeat(q_h, 1, axis=-1).astype(np.float32), mask


@pytest.fixture(scope="module")
def guides(maps) -> dict[str, np.ndarray]:
    return synthesize_guides(maps[0])


def test_zero_size_mismatches_return_the_guides_unchanged(maps, guides) -> None:
    q_h, mask = maps
    affine = np.eye(4)
    same = [M.bias_field_guides(guides, mask, affine, 0.0, np.random.default_rng(1)),
            M.misregister(guides, affine), M.misregister(guides, affine, (0.0, 0.0), 0.0),
            M.noisy_guides(guides, mask, 0.0, np.random.default_rng(2)),
            *(M.protocol_guides(q_h, parameter, 0.0) for parameter in M.PROTOCOL_PARAMETERS)]
    for perturbed in same:
        assert set(perturbed) == set(guides)
        assert all(np.array_equal(perturbed[g], guides[g]) for g in guides)


def test_bias_fields_have_mean_one_the_asked_strength_and_are_smooth(maps, guides) -> None:
    _, mask = maps
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    fields = M.bias_fields(mask, affine, 0.2, np.random.default_rng(5), ["T1w", "T2w"])
    again = M.bias_fields(mask, affine, 0.2, np.random.default_rng(5), ["T1w", "T2w"])
    coords = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in mask.shape), indexing="ij"), -1)
    u, v, w = np.moveaxis(coords * [1.0, 1.0, 4.0], -1, 0)
    design = np.stack([np.ones_like(u), u, v, w, u * u, v * v, w * w, u * v, u * w, v * w], -1).reshape(-1, 10)
    for name, field in fields.items():
        assert np.array_equal(field, again[name]) and field.min() > 0
        assert field[mask].mean() == pytest.approx(1.0, abs=1e-12)
        assert np.log(field[mask]).std() == pytest.approx(0.2, rel=1e-9)
        log = np.log(field).reshape(-1)  # smooth: log B is a quadratic polynomial of the coordinates
        residual = log - design @ np.linalg.lstsq(design, log, rcond=None)[0]
        assert np.abs(residual).max() < 1e-9
    assert not np.allclose(fields["T1w"], fields["T2w"])  # each guide its own field
    biased = M.bias_field_guides(guides, mask, affine, 0.2, np.random.default_rng(5))
    assert all(np.allclose(biased[g], guides[g] * fields[g], rtol=1e-6) for g in guides)


def test_protocol_mismatch_changes_one_parameter_of_one_guide(maps, guides) -> None:
    q_h, _ = maps
    longer_te = M.protocol_guides(q_h, "TE", 20.0)
    assert np.array_equal(longer_te["T1w"], guides["T1w"])
    pd, t1, t2 = torch.from_numpy(q_h.astype(np.float64))
    expected = physics.se_guide(pd, t1, t2, te=GUIDE_PROTOCOLS["T2w"].te * 1.2).numpy().astype(np.float32)
    assert np.array_equal(longer_te["T2w"], expected)
    shorter_ti = M.protocol_guides(q_h, "TI", -30.0)
    assert np.array_equal(shorter_ti["T2w"], guides["T2w"]) and not np.allclose(shorter_ti["T1w"], guides["T1w"])
    flip = M.protocol_guides(q_h, "flip", 10.0)
    assert np.array_equal(flip["T1w"], physics.ir_spgr(pd, t1, t2, flip=13.2).numpy().astype(np.float32))
    with pytest.raises(ValueError, match="unknown protocol parameter 'TR': choose one of TI, flip, TE"):
        M.protocol_guides(q_h, "TR", 10.0)


def test_misregistration(guides) -> None:
    rolled = M.misregister(guides, np.eye(4), (3.0, -2.0))
    assert all(np.array_equal(rolled[g], np.roll(guides[g], (3, -2), axis=(0, 1))) for g in guides)
    coarse = M.misregister(guides, np.diag([2.0, 2.0, 4.0, 1.0]), (4.0, 0.0))  # mm → voxels
    assert np.array_equal(coarse["T1w"], np.roll(guides["T1w"], 2, axis=0))
    half = M.misregister(guides, np.eye(4), (0.5, 0.0))["T2w"]  # linear interpolation
    assert np.allclose(half, (guides["T2w"] + np.roll(guides["T2w"], 1, axis=0)) / 2, atol=1e-5)
    square = {"T1w": guides["T1w"][4:44, :40]}  # 40 x 40: a quarter turn about the centre
    turned = M.misregister(square, np.eye(4), rotation_deg=90.0)["T1w"]
    assert np.allclose(turned, np.rot90(square["T1w"], 1), atol=1e-4)  # from the first axis to the second
    small = M.misregister(guides, np.eye(4), rotation_deg=2.0)["T1w"]
    assert 0 < np.abs(small - guides["T1w"]).max() and small.dtype == np.float32


def test_guide_noise(maps, guides) -> None:
    _, mask = maps
    noisy = M.noisy_guides(guides, mask, 0.05, np.random.default_rng(9))
    assert all(np.array_equal(noisy[g], M.noisy_guides(guides, mask, 0.05, np.random.default_rng(9))[g])
               for g in guides)
    for name, image in guides.items():
        assert np.array_equal(noisy[name][~mask], image[~mask])
        sd = (noisy[name] - image)[mask].std()
        assert sd == pytest.approx(0.05 * np.abs(image[mask]).mean(), rel=0.05)
    with pytest.raises(ValueError, match="noise level must be >= 0"):
        M.noisy_guides(guides, mask, -0.1, np.random.default_rng(0))


def test_fse_echoes_against_closed_forms() -> None:
    t1, t2 = np.array([600.0, 1100.0, 3000.0]), np.array([70.0, 95.0, 800.0])
    perfect = M.FastSpinEcho(6, refocusing=180.0)
    echoes = M.fse_echoes(t1, t2, perfect)
    n = np.arange(perfect.etl)
    assert np.allclose(echoes / echoes[:, :1], np.exp(-n * perfect.esp / t2[:, None]), atol=1e-12)
    single = M.FastSpinEcho(1, refocusing=180.0)  # 90 - 180: Mz = (1 - E)² at the echo, then recovery
    half = np.exp(-single.esp / 2 / t1)
    recovery = np.exp(-(single.tr - single.esp) / t1)
    steady = (1 - half) ** 2 * recovery + 1 - recovery
    assert np.allclose(M.fse_echoes(t1, t2, single)[:, 0], steady * np.exp(-single.esp / t2), atol=1e-12)
    train = M.FastSpinEcho(16)
    assert train.esp == pytest.approx(146.0 / 9) and train.centre_echo == 8
    stimulated = M.fse_echoes(t1, t2, train)  # 160°: stimulated echoes bend the decay
    ratio = stimulated[:, train.centre_echo] / stimulated[:, 0]
    mono = np.exp(-train.centre_echo * train.esp / t2)
    assert np.abs(ratio / mono - 1).max() > 0.01 and ratio[2] > mono[2]  # long T2: decays slower


def test_fse_interpolation_and_image() -> None:
    rng = np.random.default_rng(0)
    t1, t2 = np.exp(rng.uniform(np.log(300), np.log(4300), 400)), np.exp(rng.uniform(np.log(40), np.log(2000), 400))
    for etl in (1, 8):
        sequence = M.FastSpinEcho(etl)
        direct = M.fse_echoes(t1, t2, sequence)
        assert np.abs(M.interpolated_echoes(t1, t2, sequence) - direct).max() < 0.01 * direct[:, 0].min()
    lines = M.phase_encode_echoes(11, M.FastSpinEcho(4))
    assert lines.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3] and lines[11 // 2] == 2
    assert (M.phase_encode_echoes(8, M.FastSpinEcho(1)) == 0).all()
    q = np.zeros((3, 16, 12, 2), np.float32)
    q[:, 4:12, 3:9] = np.array([70.0, 800.0, 80.0])[:, None, None, None]
    one = M.FastSpinEcho(1)
    image = M.fse_guide(q, one)  # one echo fills all of k-space: PD times the echo, voxel by voxel
    expected = np.where(q[0] > 0, 70.0 * M.interpolated_echoes(np.array([800.0]), np.array([80.0]), one)[0, 0], 0)
    assert image.dtype == np.float32 and np.allclose(image, expected, atol=1e-4)
    with pytest.raises(ValueError, match="need etl >= 1"):
        M.FastSpinEcho(0)
    with pytest.raises(ValueError, match="longer than TR"):
        M.FastSpinEcho(64, tr=200.0)


def test_stand_in_guide_is_synthesised_from_the_lr_maps(maps) -> None:
    q_h, _ = maps
    for name, protocol in GUIDE_PROTOCOLS.items():
        assert np.array_equal(M.stand_in_guide(q_h, name), synthesize(protocol, q_h))
