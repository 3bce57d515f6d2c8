"""The ventricle budget of the FLAIR chapter: known answers on a synthetic slice."""

import numpy as np
import pytest

from swig_lib.core import physics
from swig_lib.core.protocols import FlairProtocol
from swig_lib.experiments.crossseq.csf import ventricle_budget, ventricle_core
from swig_lib.experiments.crossseq.example import Example

PROTOCOL = FlairProtocol(ti=physics.null_inversion_time(4000.0, 9000.0), tr=9000.0, te=120.0)


def _example(csf_t1: np.ndarray | float) -> Example:
    labels = np.full((24, 24), 2, dtype=np.uint8)  # white matter
    labels[6:18, 6:18] = 3  # a ventricle
    mask = np.ones_like(labels, dtype=bool)
    truth = np.stack([np.where(labels == 3, 100.0, 70.0), np.where(labels == 3, 4000.0, 600.0),
                      np.where(labels == 3, 2000.0, 80.0)])
    maps = truth.copy()
    maps[1][labels == 3] = np.broadcast_to(csf_t1, (12, 12)).ravel() if np.ndim(csf_t1) else csf_t1
    return Example("sub-x", 0, mask, {("Q_h", "Q_h"): truth, ("Acq1", "Q_l"): maps}, {}, {}, labels)


def test_core_is_the_eroded_csf():
    example = _example(4000.0)
    assert ventricle_core(example.labels, example.mask, 2).sum() == 8 * 8
    assert ventricle_core(example.labels, example.mask, 0).sum() == 12 * 12


def test_true_maps_null_the_ventricles_and_biased_maps_do_not():
    table = ventricle_budget(_example(3600.0), PROTOCOL, [("Acq1", "Q_l")])
    truth, biased = table.loc[("Q_h", "Q_h")], table.loc[("Acq1", "Q_l")]
    assert truth.flair_voxelwise == pytest.approx(0.0, abs=1e-9)  # CSF at the nulled T1
    assert biased.t1_bias == pytest.approx(-10.0)
    assert biased.t1_spread == pytest.approx(0.0, abs=1e-12)
    # no spread: voxel by voxel and from the median agree, and the CSF is bright
    assert biased.flair_voxelwise == pytest.approx(biased.flair_median)
    assert biased.flair_voxelwise > 1.0


def test_spread_alone_brightens_the_ventricles():
    t1 = np.where(np.arange(144).reshape(12, 12) % 2 == 0, 3600.0, 4400.0)  # median 4000 ms
    row = ventricle_budget(_example(t1), PROTOCOL, [("Acq1", "Q_l")]).loc[("Acq1", "Q_l")]
    assert row.t1_bias == pytest.approx(0.0)
    assert row.flair_median == pytest.approx(0.0, abs=1e-9)  # the median is nulled ...
    assert row.flair_voxelwise > 1.0  # ... the magnitude of the spread is not


def test_needs_labels_and_truth():
    example = _example(4000.0)
    example.labels = None
    with pytest.raises(ValueError, match="needs the tissue labels and the true maps"):
        ventricle_budget(example, PROTOCOL, [])


def test_noise_free_maps_keep_the_example_layout():
    from swig_lib.experiments.crossseq.csf import NOISE_FREE, noise_free_maps
    from swig_lib.experiments.crossseq.sequence import AcquisitionSettings

    example = _example(4000.0)
    example.maps[("Q_h", "Q_h")] = example.maps[("Q_h", "Q_h")][:, :16, :16]
    example.mask, example.labels = example.mask[:16, :16], example.labels[:16, :16]
    settings = AcquisitionSettings(n_t1=12, n_t2=12, n_repetitions=1, dcf_iterations=2)
    maps = noise_free_maps(example, settings, ("Acq5",))
    assert list(maps) == [("Acq5", NOISE_FREE)]
    assert maps[("Acq5", NOISE_FREE)].shape == (3, 16, 16)
    again = noise_free_maps(example, settings, ("Acq5",))
    assert np.array_equal(maps[("Acq5", NOISE_FREE)], again[("Acq5", NOISE_FREE)])  # no noise, no seed


def test_ventricle_glue_names_every_row_and_column():
    from swig_lib.experiments.crossseq.csf import NOISE_FREE, ventricle_glue

    example = _example(3600.0)
    example.maps[("Acq5", NOISE_FREE)] = example.maps[("Acq1", "Q_l")]
    table = ventricle_budget(example, PROTOCOL, [("Acq1", "Q_l"), ("Acq5", NOISE_FREE)])
    glue = ventricle_glue(table)
    assert len(glue) == 3 * 5
    assert glue["flair_csf_Acq1_Q_l_t1_bias"] == (pytest.approx(-10.0), ".0f")
    assert glue["flair_csf_Acq5_Q_l_nn_t1_bias"] == glue["flair_csf_Acq1_Q_l_t1_bias"]
    assert glue["flair_csf_Q_h_Q_h_flair_voxelwise"][0] == pytest.approx(0.0, abs=1e-9)
