"""Tests of the supervised Acq5^R reconstruction CNN (swig_lib.experiments.crossseq.reconcnn) on tiny phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _phantom import FakeDataset

from swig_lib.core.models import SwigResNet
from swig_lib.experiments.crossseq.reconcnn import (
    ReconSettings,
    SupervisedSlices,
    supervised_loss,
    train_recon_cnn,
    training_slices,
)
from swig_lib.experiments.crossseq.sequence import AcquisitionSettings
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.training.checkpoints import load_checkpoint

MODEL = {"width": 8, "n_blocks": 2, "first_kernel": 3, "last_kernel": 3}
ACQUISITION = AcquisitionSettings(n_t1=40, n_t2=40)


@pytest.fixture(scope="module")
def dataset() -> FakeDataset:
    return FakeDataset(n_train=2, n_val=0, n_test=1)


def test_loss_is_the_scaled_mse_and_the_untrained_model_is_the_identity() -> None:
    torch.manual_seed(0)
    mask = torch.zeros(2, 12, 12, dtype=torch.bool)
    mask[:, 2:10, 3:9] = True
    target = torch.tensor([70.0, 800.0, 80.0]).view(1, 3, 1, 1) * mask[:, None]
    inputs = target * (1 + 0.1 * torch.randn(2, 3, 12, 12)) * mask[:, None]
    model = SwigResNet((), True, [70.0, 800.0, 80.0], **MODEL)
    terms = supervised_loss(model, SupervisedSlices(inputs, target, mask))
    scale = model.q_scale.view(1, 3, 1, 1)
    expected = (((inputs - target) / scale) ** 2)[mask[:, None].expand_as(inputs)].mean()
    torch.testing.assert_close(terms.total, expected)
    assert terms.data is terms.total and terms.guide == 0


def test_training_lowers_the_loss_and_the_checkpoint_is_reused(dataset: FakeDataset, tmp_path: Path) -> None:
    settings = ReconSettings(epochs=6, batch_size=2, lr=3e-3, warmup_steps=2, min_brain_fraction=0.0)
    path = train_recon_cnn(dataset, tmp_path / "Acq5R.pt", settings, MODEL, ACQUISITION, seed=1,
                           progress=False)
    log = load_checkpoint(path)["log"]
    assert len(log) == 6 and log[-1]["loss_mse"] < 0.7 * log[0]["loss_mse"]

    # The trained network beats its untrained start (the identity) on the training slices.
    data = training_slices(dataset, settings, ACQUISITION, margin=3, seed=1, progress=False)
    model = load_model(path)
    identity = SwigResNet((), True, model.spec["q_scale"], **MODEL).eval()
    with torch.no_grad():
        before = supervised_loss(identity, data).total
        after = supervised_loss(model, data).total
    assert after < before

    mtime = path.stat().st_mtime_ns
    assert train_recon_cnn(dataset, path, settings, MODEL, ACQUISITION, seed=1, progress=False) == path
    assert path.stat().st_mtime_ns == mtime  # same settings: reused, not retrained
    train_recon_cnn(dataset, path, ReconSettings(epochs=1, batch_size=2, min_brain_fraction=0.0),
                    MODEL, ACQUISITION, seed=1, progress=False)
    assert path.stat().st_mtime_ns != mtime and len(load_checkpoint(path)["log"]) == 1

    # Applied like any SWIG model: no guides, 0 outside the mask.
    acq = dataset.acquired(dataset.subject_ids("test")[0])
    out = predict_volume(load_model(path), acq.q_l, {}, acq.mask)
    assert out.shape == acq.q_l.shape and np.all(out[:, ~acq.mask] == 0) and np.all(out[:, acq.mask] > 0)
