"""Tests of the simulated acquired weighted images (swig_lib.experiments.crossseq.acquisition)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swig_lib.core import physics
from swig_lib.experiments.crossseq.acquisition import (
    IMAGE_NAMES,
    ImageSettings,
    acquire_images,
    bias_field,
    image_protocols,
    synthesize,
)
from swig_lib.experiments.subjects.anatomy import TISSUE_VALUES
from swig_lib.experiments.subjects.dataset import synthesize_guides


def head(shape: tuple[int, int, int] = (40, 44, 3)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps (3, X, Y, Z) of a WM disc in GM with a CSF core, the mask and a 2 mm-slice affine."""
    x, y = np.meshgrid(np.arange(shape[0]) - shape[0] / 2, np.arange(shape[1]) - shape[1] / 2,
                       indexing="ij")
    r = np.broadcast_to(np.hypot(x, y)[..., None], shape)
    mask = r < 18
    maps = np.zeros((3, *shape), dtype=np.float32)
    for tissue, inside in (("GM", mask), ("WM", r < 12), ("CSF", r < 5)):
        value = TISSUE_VALUES[tissue]
        maps[:, inside] = np.array([value.pd, value.t1, value.t2], dtype=np.float32)[:, None]
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    return maps, mask, affine


def test_without_bias_and_noise_the_images_are_the_signal_equations() -> None:
    maps, mask, affine = head()
    images = acquire_images(maps, mask, affine, ImageSettings(noise=0.0, bias=0.0), seed=3)
    assert list(images) == list(IMAGE_NAMES)
    guides = synthesize_guides(maps)  # the training guides: the same equations, bit for bit
    for name in ("T1w", "T2w"):
        np.testing.assert_array_equal(images[name], np.where(mask, guides[name], 0))
    flair = physics.flair(*torch.from_numpy(maps.astype(np.float64)), **vars(image_protocols()["FLAIR"]))
    np.testing.assert_allclose(images["FLAIR"], np.where(mask, np.abs(flair.numpy()), 0), rtol=1e-6)
    assert images["T1w"].dtype == np.float32 and np.all(images["T2w"][~mask] == 0)


def test_noise_is_seeded_independent_and_scaled() -> None:
    maps, mask, affine = head()
    settings = ImageSettings(noise=0.05, bias=0.0)
    first = acquire_images(maps, mask, affine, settings, seed=1)
    again = acquire_images(maps, mask, affine, settings, seed=1)
    other = acquire_images(maps, mask, affine, settings, seed=2)
    clean = acquire_images(maps, mask, affine, ImageSettings(noise=0.0, bias=0.0))
    for name in IMAGE_NAMES:
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])
        residual = (first[name] - clean[name])[mask]
        expected = 0.05 * np.abs(clean[name][mask]).mean()
        assert abs(residual.std() / expected - 1) < 0.1
    # Independent streams: the residuals of two images are uncorrelated.
    r1, r2 = ((first[n] - clean[n])[mask] for n in ("T1w", "T2w"))
    assert abs(np.corrcoef(r1, r2)[0, 1]) < 0.1


def test_bias_field_is_smooth_mild_and_seeded() -> None:
    _, mask, affine = head((48, 48, 6))
    field = bias_field(mask, affine, 0.1, np.random.default_rng(0))
    log = np.log(field[mask])
    assert abs(log.mean()) < 1e-9 and abs(log.std() - 0.1) < 1e-9
    assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.05  # smooth: < 5 % per voxel
    np.testing.assert_array_equal(field, bias_field(mask, affine, 0.1, np.random.default_rng(0)))
    np.testing.assert_array_equal(bias_field(mask, affine, 0.0, np.random.default_rng(0)), 1.0)


def test_flair_nulls_csf() -> None:
    settings = ImageSettings()
    protocol = settings.flair_protocol
    assert protocol.ti == pytest.approx(physics.null_inversion_time(TISSUE_VALUES["CSF"].t1, 9000.0))
    csf, wm = (TISSUE_VALUES[t] for t in ("CSF", "WM"))
    signal = synthesize(protocol, np.array([[csf.pd, wm.pd], [csf.t1, wm.t1], [csf.t2, wm.t2]]))
    assert signal[0] < 1e-4 * csf.pd and signal[1] > 0.1 * wm.pd
    # A CSF T1 off the nulled one gives a positive magnitude, not a negative signal.
    assert synthesize(protocol, np.array([[csf.pd], [csf.t1 * 1.3], [csf.t2]]))[0] > 0


def test_settings_validation() -> None:
    assert ImageSettings.from_dict({"noise": 0, "bias": 0.2}) == ImageSettings(noise=0.0, bias=0.2)
    with pytest.raises(KeyError, match="unknown image setting"):
        ImageSettings.from_dict({"snr": 30})
    with pytest.raises(ValueError, match=">= 0"):
        ImageSettings(noise=-1.0)
