"""The training chapter as one call (notebook 02): tables, statuses, summary.csv, glued numbers."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from _phantom import KEEP, FakeDataset, tiny_profile
from _prose import glued_names

from swig_lib.core.models import SwigResNet
from swig_lib.experiments.training.augment import randomised_profile
from swig_lib.experiments.training.checkpoints import checkpoint_paths, load_checkpoint
from swig_lib.experiments.training.loop import balanced_alpha, train_variant
from swig_lib.experiments.training.report import LOSS_DIRECTIONS, mean_terms, n_params, run_training_chapter
from swig_lib.experiments.training.windows import prepare_data

VARIANTS = ["M12++", "M12-+", "M12++a0"]
PROFILE = tiny_profile(seed=1, epochs=2, variants=tuple(VARIANTS))


@pytest.fixture(scope="module")
def dataset():
    return FakeDataset(2, 1, 0, (28, 26, 2))


@pytest.fixture(scope="module")
def chapter(tmp_path_factory, dataset):
    results_dir = tmp_path_factory.mktemp("results")
    first = run_training_chapter(PROFILE, results_dir=results_dir, device="cpu", device_label="test device",
                                 dataset=dataset)
    again = run_training_chapter(PROFILE, results_dir=results_dir, device="cpu", device_label="other device",
                                 dataset=dataset)
    return results_dir / "test", first, again


def test_summary_is_written_and_reused(chapter) -> None:
    out, first, again = chapter
    written = pd.read_csv(out / "training" / "summary.csv", index_col="variant")
    assert list(written.index) == VARIANTS
    assert list(written.columns) == [
        "epochs", "selected_epoch", "seconds", "alpha", "train_loss_lr", "train_loss_guide", "train_loss_total",
        "val_loss_lr", "val_loss_guide", "val_loss_total", "device", "status", "checkpoint_sha256"]
    pd.testing.assert_frame_equal(written, again.summary)
    assert (first.summary["status"] == "trained").all() and (again.summary["status"] == "reused").all()
    assert (first.summary["device"] == "test device").all()
    assert (again.summary["device"] == "cpu").all()  # a reused checkpoint reports the device it records
    same = [c for c in first.summary.columns if c not in ("status", "device")]
    pd.testing.assert_frame_equal(first.summary[same], again.summary[same])
    assert list(first.summary["alpha"]) == [4000.0, 4000.0, 0.0]
    assert (first.summary["epochs"] == 2).all()
    for name in VARIANTS:
        log = first.logs[name]
        last = log[(log["split"] == "val") & (log["epoch"] == 2)].iloc[0]
        assert first.summary.loc[name, "val_loss_total"] == last["loss_total"]
        assert first.summary.loc[name, "seconds"] == log["time_s"].sum()
        assert first.selected_epochs[name] == load_checkpoint(checkpoint_paths(out, name)[0])["epoch"]


def test_resumed_and_retrained_statuses(tmp_path, dataset) -> None:
    short = replace(PROFILE, train=replace(PROFILE.train, epochs=1))
    train_variant(short, "M12++", tmp_path / "test", device="cpu", dataset=dataset, progress=False)
    other = replace(PROFILE, train=replace(PROFILE.train, lr=2e-3))
    train_variant(other, "M12-+", tmp_path / "test", device="cpu", dataset=dataset, progress=False)
    results = run_training_chapter(PROFILE, results_dir=tmp_path, device="cpu", dataset=dataset)
    assert list(results.summary["status"]) == ["resumed at epoch 1", "retrained (settings changed)", "trained"]
    assert list(results.summary["device"]) == ["cpu"] * 3  # device_label defaults to str(device)


def test_network_and_inputs(chapter, dataset) -> None:
    _, results, _ = chapter
    data = prepare_data(dataset, PROFILE, 15, progress=False)
    full = SwigResNet(("T1w", "T2w"), True, data.q_scale, **PROFILE.model)
    assert results.network["parameters"].sum() == n_params(full) == results.glue["n_params_m12"][0]
    assert results.network.loc["first convolution + ReLU", "channels"] == "5 → 4"
    assert list(results.inputs["input channels"]) == [5, 2, 5]
    assert results.inputs.loc["M12-+", "inputs"] == "T1w + T2w"
    assert results.example["scaled"].shape == (3, 28, 26) and results.example["guides"].shape == (2, 28, 26)
    assert results.identity_error < 1e-5  # the untrained model returns Q_l


def test_alpha_and_start_losses(chapter, dataset) -> None:
    _, results, _ = chapter
    glue = {name: value for name, (value, _) in results.glue.items()}
    data = prepare_data(dataset, PROFILE, glue["receptive_radius"], progress=False)
    assert glue["alpha_rule"] == balanced_alpha(data)[0]
    assert glue["ll_floor"] == 12 * KEEP**2 / 2
    assert glue["alpha_profile"] == 4000.0
    start = results.start.loc[(slice(None), "val"), :]
    assert list(start.index.get_level_values("variant")) == VARIANTS
    # Without Q_l the untrained output is flat: each guide's 1 − ρ² is at its maximum, 1.
    assert start.loc[("M12-+", "val"), "loss_guide"] == pytest.approx(2.0, abs=1e-4)
    assert start.loc[("M12++a0", "val"), "loss_total"] == start.loc[("M12++a0", "val"), "loss_lr"]  # α = 0
    assert start.loc[("M12++", "val"), "loss_total"] == pytest.approx(
        start.loc[("M12++", "val"), "loss_lr"] + 4000.0 * start.loc[("M12++", "val"), "loss_guide"], rel=1e-6)


def test_balance_choice_and_minima(chapter) -> None:
    _, results, _ = chapter
    balance = results.balance
    assert (balance["α·L_h kept"] == balance["α"] * balance["L_h kept"]).all()
    assert balance.loc["M12++a0", "α·L_h start"] == 0.0
    for name in VARIANTS:
        log = results.logs[name]
        kept = log[(log["split"] == "val") & (log["epoch"] == results.selected_epochs[name])].iloc[0]
        assert results.choice.loc[name, "val L_total at the kept epoch"] == kept["loss_total"]
        assert balance.loc[name, "L_l kept"] == kept["loss_lr"]
    full = balance.loc["M12++"]
    directions = (bool(full["L_l kept"] < full["L_l start"]), bool(full["L_h kept"] < full["L_h start"]))
    assert results.glue["loss_directions"][0] == LOSS_DIRECTIONS[directions]
    assert (results.minima > 0).all().all() and results.glue["all_positive"][0] == "all positive"
    assert list(results.minima.columns) == ["min PD [a.u.]", "min T1 [ms]", "min T2 [ms]"]


def test_glue_covers_the_prose(chapter) -> None:
    _, results, _ = chapter
    used = glued_names("02_training.ipynb")
    assert {"steps", "alpha_rule", "loss_directions", "n_selected_last"} <= used
    assert used <= set(results.glue)
    assert results.glue["steps"] == (2 * 2, None)  # 2 epochs of 4 training slices in batches of 2
    assert results.glue["crop"] == ("28 × 26", None)


def test_the_transfer_model_trains_on_its_own_dataset(tmp_path, dataset) -> None:
    from test_transfer import RandomisedDataset

    profile = tiny_profile(seed=1, epochs=1, variants=("M12++", "M12++dr"))
    randomised = RandomisedDataset()
    results = run_training_chapter(profile, results_dir=tmp_path, device="cpu", dataset=dataset,
                                   randomised=randomised)
    assert list(results.inputs["training data"]) == [profile.data["dataset"], (
        f"{randomised_profile(profile).data['dataset']} (own Φ per train/val subject)")]
    own = prepare_data(randomised, randomised_profile(profile), results.glue["receptive_radius"][0], progress=False)
    assert own.sample_phis is not None and results.start.loc[("M12++dr", "val"), "loss_lr"] == pytest.approx(
        mean_terms(SwigResNet(("T1w", "T2w"), True, own.q_scale, **profile.model).eval(), own.val, "M12++dr",
                   profile.train.alpha, own, profile.eval.batch_size)["loss_lr"], rel=1e-6)
    kept = load_checkpoint(checkpoint_paths(tmp_path / "test", "M12++dr")[0])
    assert kept["profile"]["data"]["degradation"]["enabled"] and list(results.minima.index) == ["M12++", "M12++dr"]
