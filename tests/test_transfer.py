"""Degradation randomisation wired into the data build and the training loss (issue 11, item 3)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _phantom import FakeDataset, tiny_profile

from swig_lib.core.io import DataValidationError
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.losses import swig_loss
from swig_lib.core.models import SwigResNet
from swig_lib.core.physics import qmri_contrasts
from swig_lib.experiments.config import load_profile
from swig_lib.experiments.subjects import dataset as data
from swig_lib.experiments.subjects.dataset import SPLITS, Dataset, DataSettings, lr_contrasts
from swig_lib.experiments.training import augment
from swig_lib.experiments.training.augment import (
    ApodisedTruncation,
    DegradationSettings,
    SampleWindows,
    phi_from_record,
    phi_record,
    randomised_profile,
)
from swig_lib.experiments.training.checkpoints import (
    Acquisition,
    checkpoint_paths,
    comparable_settings,
    load_checkpoint,
    setting_differences,
)
from swig_lib.experiments.training.loop import batch_loss, crop_phi, train_variant
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import prepare_data

SMOKE = load_profile("smoke")
#: One Φ of each point-spread function (σ > 0, as the data term needs).
PHIS = (KSpaceTruncation(0.5, 0.1), ApodisedTruncation(0.42, 0.07, 0.8), ApodisedTruncation(0.55, 0.15, 1.0, True))


def test_splits_match_the_dataset() -> None:
    assert augment.SPLITS == SPLITS
    with pytest.raises(ValueError, match=r"splits must be a selection of \['train', 'val', 'test'\]"):
        DegradationSettings(splits=("training",))


def test_subject_phi_is_deterministic_and_order_free() -> None:
    settings = DataSettings.from_profile(randomised_profile(SMOKE))
    assert settings.dataset.startswith("mni152-smoke-dr-") and settings.degradation.enabled
    forward = [settings.subject_phi(i) for i in range(settings.n_subjects)]
    backward = [settings.subject_phi(i) for i in reversed(range(settings.n_subjects))][::-1]
    assert forward == backward  # depends on (seed, index) only: any build order or worker gives these
    base = KSpaceTruncation(settings.keep, settings.sigma)
    n_train, n_val, _ = settings.split
    assert all(phi != base for phi in forward[: n_train + n_val]) and forward[n_train + n_val:] == [base] * 2
    assert {type(phi) for phi in forward[:3]} == {KSpaceTruncation, ApodisedTruncation}
    (low, high), (sigma_low, sigma_high) = settings.degradation.keep_range, settings.degradation.sigma_range
    assert (low, high) == (0.4, 0.7)  # reaches the radial sequence's kmax_fraction 0.7
    for phi in forward[:3]:
        assert low <= phi.keep <= high and sigma_low <= phi.sigma <= sigma_high
        assert phi_from_record(phi_record(phi)) == phi
    other_seed = DataSettings.from_profile(randomised_profile(load_profile("smoke", {"data.seed": 7})))
    assert other_seed.subject_phi(0) != forward[0]
    # Off (the profiles' default): every subject keeps the profile's Φ and the settings record nothing new.
    plain = DataSettings.from_profile(SMOKE)
    assert [plain.subject_phi(i) for i in range(plain.n_subjects)] == [base] * plain.n_subjects
    assert "degradation" not in plain.to_dict() and "degradation" in settings.to_dict()
    # Another range gives another dataset name.
    wider = load_profile("smoke", {"data.degradation": {**SMOKE.data["degradation"], "keep_range": [0.3, 0.6]}})
    assert randomised_profile(wider).data["dataset"] != settings.dataset


def test_randomised_contrasts_follow_the_recorded_phi() -> None:
    rng = np.random.default_rng(0)
    q_h = np.stack([rng.uniform(50, 100, (24, 20, 2)), rng.uniform(500, 2000, (24, 20, 2)),
                    rng.uniform(40, 200, (24, 20, 2))]).astype(np.float32)
    clean = qmri_contrasts(*torch.from_numpy(q_h), dim=0).permute(0, 3, 1, 2)  # (12, Z, X, Y)
    for phi in PHIS:
        record = phi_record(phi)
        noise_free = lr_contrasts(q_h, 0.5, 0.1, seed=4, phi=phi_from_record({**record, "sigma": 0.0}))
        expected = phi.forward(clean).permute(0, 2, 3, 1).numpy()
        # σ = 0: Φ of the noise-free contrasts (eq. 3's box bit for bit; the windowed ones up to float32 rounding)
        if type(phi) is KSpaceTruncation:
            assert np.array_equal(noise_free, expected)
        np.testing.assert_allclose(noise_free, expected, rtol=0, atol=2e-5 * float(np.abs(expected).max()))
        noisy = lr_contrasts(q_h, 0.5, 0.1, seed=4, phi=phi_from_record(record))
        noise = phi(torch.zeros_like(clean), torch.Generator().manual_seed(4)).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(noisy - noise_free, noise, rtol=0, atol=2e-4)  # plus its own noise only
        assert float(np.std(noise)) > 0.1 * phi.sigma


def test_dataset_reads_each_subjects_phi(tmp_path) -> None:
    manifest = {"settings": {"keep": 0.5, "sigma": 0.1},
                "subjects": {"sub-01": {"phi": phi_record(PHIS[2])}, "sub-02": {}}}
    dataset = Dataset(tmp_path, manifest)
    assert dataset.phi("sub-01") == PHIS[2] and dataset.phi("sub-02") == KSpaceTruncation(0.5, 0.1)


def test_randomised_dataset_links_the_profile_datasets_test_subjects(tmp_path) -> None:
    profile = load_profile("smoke", {"data.n_subjects": 2, "data.split": [1, 0, 1], "data.slices": [88, 92],
                                     "data.slice_step": 2})
    chosen = randomised_profile(profile)
    settings = DataSettings.from_profile(chosen)
    assert settings.unrandomised() == replace(DataSettings.from_profile(profile), degradation=DegradationSettings())
    assert DataSettings.from_profile(profile).unrandomised() is None  # not randomised
    every_split = replace(settings, degradation=replace(settings.degradation, splits=SPLITS))
    assert every_split.unrandomised() is None  # nothing to share
    logged: list[str] = []
    folder, reused = data.build_dataset(chosen, tmp_path, progress=False, workers=1, log=logged.append)
    base = tmp_path / profile.data["dataset"]
    assert not reused and logged == [f"building {base}: no manifest.json in {base}",
                                     f"building {folder}: no manifest.json in {folder}"]  # the profile's first
    own, shared = (json.loads((f / data.MANIFEST).read_text()) for f in (folder, base))
    test, train = own["split"]["test"][0], own["split"]["train"][0]
    assert own["subjects"][test] == {**shared["subjects"][test], "phi": phi_record(KSpaceTruncation(0.5, 0.1))}
    for item in own["subjects"][test]["files"].values():  # the same files, linked, not rebuilt
        assert os.path.samefile(folder / item["path"], base / item["path"])
    assert own["subjects"][train]["files"]["T1map"] == shared["subjects"][train]["files"]["T1map"]  # Q_h
    assert own["subjects"][train]["files"]["acq-lowres_T1map"] != shared["subjects"][train]["files"]["acq-lowres_T1map"]
    assert own["shape"] == shared["shape"] and data.check_dataset(folder, settings) is None
    assert data.build_dataset(chosen, tmp_path, progress=False, log=logged.append) == (folder, True)
    record = shared["subjects"][test]
    damaged = {**record, "files": {key: {**item, "sha256": "0" * 64} for key, item in record["files"].items()}}
    with pytest.raises(DataValidationError, match=rf"{base}/{test}/anat/{test}_PDmap.nii.gz: checksum differs "
                                                  rf"from its manifest \(PDmap of {test}\); rebuild {base}"):
        data._link_subject(base, tmp_path / "copy", test, 1, settings, damaged)


def test_disabled_degradation_ranges_leave_checkpoints_valid() -> None:
    wider = load_profile("smoke", {"data.degradation.keep_range": [0.3, 0.6]})
    assert comparable_settings(wider) == comparable_settings(SMOKE)  # off: the ranges do not touch the data
    assert "degradation" not in comparable_settings(SMOKE)["data"]
    differences = setting_differences(comparable_settings(randomised_profile(SMOKE)),
                                      comparable_settings(randomised_profile(wider)))
    assert [name for name, _, _ in differences] == ["data.dataset", "data.degradation.keep_range"]


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_sample_windows_equal_the_full_grid_operators() -> None:
    grid, window = (30, 26), (18, 16)
    operators = SampleWindows.build(PHIS, grid, window, torch.float64)
    index = torch.tensor([2, 0, 1, 2, 0])
    content = _images((5, 3, *window), 1)
    bound = operators.bind(index)
    rows, cols = np.arange(20, 38) % grid[0], np.arange(17, 33) % grid[1]  # a wrapped window position
    full = torch.zeros(5, 3, *grid, dtype=torch.float64)
    full[..., rows[:, None], cols[None, :]] = content
    for s, i in enumerate(index.tolist()):
        expected = PHIS[i].forward(full[s])[..., rows[:, None], cols[None, :]] / PHIS[i].sigma
        torch.testing.assert_close(bound.forward(content)[s], expected, rtol=0, atol=1e-12)
    other = _images((5, 3, *window), 2)
    lhs, rhs = torch.sum(bound.forward(content) * other), torch.sum(content * bound.adjoint(other))
    assert abs(float(lhs - rhs)) <= 1e-12 * float(content.norm() * other.norm())
    with pytest.raises(ValueError, match="bind the batch's Φ indices first"):
        operators.forward(content)
    with pytest.raises(ValueError, match="needs noise sigma > 0"):
        SampleWindows.build([KSpaceTruncation(0.5, 0.0)], grid, window)


class RandomisedDataset(FakeDataset):
    """:class:`FakeDataset` whose train and val subjects were acquired each with its own Φ of :data:`PHIS`."""

    def __init__(self) -> None:
        super().__init__(2, 1, 0, (28, 26, 2))
        self.settings = {**self.settings, "degradation": DegradationSettings(enabled=True).to_dict()}
        self._phis = dict(zip(self.subject_ids("train") + self.subject_ids("val"), PHIS))

    def acquired(self, sid: str) -> SimpleNamespace:
        subject, phi = self._subjects[sid], self._phis[sid]
        c_l = lr_contrasts(subject.q_h, phi.keep, phi.sigma, seed=int(sid[-2:]), phi=phi)
        return SimpleNamespace(**{**vars(subject), "phi": phi, "lr_contrasts": lambda: c_l})


PROFILE = tiny_profile(seed=3, epochs=2)


def test_fixed_phi_keeps_todays_loss_and_per_sample_weighs_each_sigma() -> None:
    data = prepare_data(FakeDataset(2, 1, 0, (28, 26, 2)), PROFILE, margin=15, progress=False)
    assert data.sample_phis is None and data.degradation is None and set(data.train.phi.tolist()) == {0}
    variant = VARIANTS["M12++"]
    model = SwigResNet(variant.guides, variant.use_ql, data.q_scale, **PROFILE.model)
    batch = data.train.batch(torch.arange(3), torch.device("cpu"))
    window = data.phi.on_window(data.grid, tuple(data.train.q_l.shape[-2:]))
    terms = batch_loss(model, batch, variant, 4000.0, crop_phi(data), data.sigma)
    with torch.no_grad():
        q_hat = model(batch.q_l, batch.guides, batch.mask)
    today = swig_loss(q_hat, batch.c_l, {"T1w": batch.guides[:, 0], "T2w": batch.guides[:, 1]}, batch.mask,
                      batch.region, data.sigma, window, 4000.0)
    assert all(torch.equal(a, b) for a, b in zip(terms, today))  # the fixed-Φ path is today's, bit for bit
    # The same Φ given per sample (whitened) gives the same loss up to rounding.
    single = SampleWindows.build([data.phi], data.grid, tuple(data.train.q_l.shape[-2:]))
    per_sample = batch_loss(model, batch, variant, 4000.0, single, data.sigma)
    torch.testing.assert_close(per_sample.data, terms.data, rtol=1e-5, atol=0)

    randomised = prepare_data(RandomisedDataset(), PROFILE, margin=15, progress=False)
    assert randomised.sample_phis == PHIS and randomised.degradation == DegradationSettings(enabled=True)
    batch = randomised.train.batch(torch.arange(len(randomised.train)), torch.device("cpu"))
    operators = crop_phi(randomised)
    terms = batch_loss(model, batch, variant, 4000.0, operators, randomised.sigma)
    with torch.no_grad():
        q_hat = model(batch.q_l, batch.guides, batch.mask)
    predicted = qmri_contrasts(q_hat[:, 0], q_hat[:, 1], q_hat[:, 2], dim=1)
    residual = torch.zeros(())
    for s, i in enumerate(batch.phi.tolist()):  # Σ_s Σ_region (Φ_s M(Q̂_s) − C_l,s)² / σ_s², over the region voxels
        squared = (operators.operators[i].forward(predicted[s]) - batch.c_l[s]) ** 2 / PHIS[i].sigma ** 2
        residual = residual + (squared * batch.region[s]).sum()
    torch.testing.assert_close(terms.data, residual / batch.region.sum(), rtol=1e-5, atol=0)


def test_randomised_training_resumes_exactly_and_records_its_degradation(tmp_path) -> None:
    data = prepare_data(RandomisedDataset(), PROFILE, margin=15, progress=False)
    train_variant(PROFILE, "M12++dr", tmp_path / "straight", device="cpu", data=data, progress=False)

    class Interrupt(Exception):
        pass

    def stop(epoch: int) -> None:
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_variant(PROFILE, "M12++dr", tmp_path / "resumed", device="cpu", data=data, progress=False,
                      on_epoch_end=stop)
    train_variant(PROFILE, "M12++dr", tmp_path / "resumed", resume=True, device="cpu", data=data, progress=False)
    a, b = (load_checkpoint(checkpoint_paths(tmp_path / run, "M12++dr")[1]) for run in ("straight", "resumed"))
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    acquisition = Acquisition.of_checkpoint(a)
    assert acquisition.degradation == DegradationSettings(enabled=True).to_dict()
    assert a["profile"]["data"]["degradation"]["enabled"] and "-dr-" in a["profile"]["data"]["dataset"]
    fixed = prepare_data(FakeDataset(2, 1, 0, (28, 26, 2)), PROFILE, margin=15, progress=False)
    with pytest.raises(ValueError, match="M12\\+\\+dr trains with degradation randomisation"):
        train_variant(PROFILE, "M12++dr", tmp_path / "wrong", device="cpu", data=fixed, progress=False)
