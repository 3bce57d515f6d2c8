"""Tests of the generalisation chapter (swig_lib.experiments.evaluation.generalisation) on a tiny smoke profile."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from swig_lib.experiments.config import load_profile
from swig_lib.experiments.evaluation import generalisation as gen
from swig_lib.experiments.evaluation.ranking import BASELINE
from swig_lib.experiments.subjects.dataset import load_dataset
from swig_lib.experiments.training.loop import train_variant
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import prepare_data

#: Smoke profile cut to 3 + 3 subjects (1 train, 1 val, 1 test per source) of 2 slices.
TINY = {"data.n_subjects": 3, "data.split": [1, 1, 1], "data.slices": [88, 92], "data.slice_step": 2,
        "generalisation.n_subjects": 3, "generalisation.split": [1, 1, 1]}


def test_settings_defaults_and_unknown_key() -> None:
    settings = gen.GeneralisationSettings.from_profile(load_profile("smoke"))
    assert settings.dataset == "synthsr-heldout-smoke" and settings.split == (2, 1, 2)
    assert settings.brains == ((1, 2, 3), (4, 5), (4, 5)) and settings.band == 2
    assert gen.GeneralisationSettings.from_profile(load_profile("quick")).n_subjects == 15
    table = load_profile("smoke").generalisation.to_dict()
    with pytest.raises(KeyError, match=r"unknown generalisation setting\(s\) \['extra'\]"):
        gen.GeneralisationSettings.from_table(table | {"extra": 1}, "generalisation")
    with pytest.raises(ValueError, match=r"generalisation.split \[2, 1, 1\] must sum to n_subjects = 5"):
        gen.GeneralisationSettings.from_table(table | {"split": [2, 1, 1]}, "generalisation")
    with pytest.raises(ValueError, match="three non-empty lists of brains"):
        gen.GeneralisationSettings.from_table(table | {"brains": [[1], [6], [4]]}, "generalisation")


def test_label_profile_keeps_the_rest_of_data() -> None:
    profile = load_profile("smoke")
    labels = gen.label_profile(profile)
    data, own = profile.data.to_dict(), labels.data.to_dict()
    assert own["dataset"] == "synthsr-heldout-smoke" and own["anatomy_source"] == "synthsr"
    assert own["n_subjects"] == 5 and own["split"] == [2, 1, 2]
    assert own["synthsr"]["brains"] == [[1, 2, 3], [4, 5], [4, 5]]
    changed = {"dataset", "anatomy_source", "n_subjects", "split", "synthsr"}
    assert {k: v for k, v in own.items() if k not in changed} == {k: v for k, v in data.items() if k not in changed}
    assert labels.train == profile.train and labels.seed == profile.seed
    mix = gen.mix_profile(profile).data.to_dict()
    assert mix["dataset"] == "mni152-smoke+synthsr-heldout-smoke" and mix["sources"] == {"mni152": data,
                                                                                      "synthsr": own}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The tiny profile, its two datasets, and the chapter run twice (the second reuses the checkpoints)."""
    profile = load_profile("smoke", TINY)
    root = tmp_path_factory.mktemp("generalisation")
    first = gen.run_generalisation(profile, root / "data", root / "results")
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "results" / "smoke" / "checkpoints").glob("*.pt")}
    second = gen.run_generalisation(profile, root / "data", root / "results")
    datasets = {"mni152": load_dataset(profile, root / "data", build=False),
                "synthsr": load_dataset(gen.label_profile(profile), root / "data", build=False)}
    return profile, root, datasets, first, second, stamps


def test_mix_training_data_and_steps(tiny: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    profile, _, datasets, *_ = tiny
    radius = 4
    single = {name: prepare_data(ds, profile, radius, progress=False) for name, ds in datasets.items()}
    mixed = prepare_data(gen.CombinedDataset(datasets), profile, radius, progress=False)
    n = {name: gen.training_slices(ds, profile) for name, ds in datasets.items()}
    assert len(mixed.train) == n["mni152"] + n["synthsr"] == len(single["mni152"].train) + len(single["synthsr"].train)
    # both sources' slices, in order (Q_l is 0 outside the brain, so crops of other sizes sum alike)
    sums = mixed.train.q_l.sum(dim=(2, 3))
    torch.testing.assert_close(sums[: n["mni152"]], single["mni152"].train.q_l.sum(dim=(2, 3)))
    torch.testing.assert_close(sums[n["mni152"]:], single["synthsr"].train.q_l.sum(dim=(2, 3)))
    assert gen.CombinedDataset(datasets).subject_ids("train") == ["mni152/sub-01", "synthsr/sub-01"]

    counted = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (counted.append(1), step(self, *a, **k))[1])
    variant = VARIANTS["M12++"]
    train_variant(profile, variant, tmp_path, device="cpu", data=single["mni152"], progress=False)
    steps_single = len(counted)
    assert steps_single == gen.model_steps(profile, n["mni152"]) == profile.train.epochs * -(-n["mni152"] // 2)
    counted.clear()
    train_variant(profile, variant, tmp_path, device="cpu", data=mixed, progress=False, steps=steps_single)
    assert len(counted) == steps_single


def test_run_generalisation_tables_and_caching(tiny: tuple) -> None:
    _, root, _, first, second, stamps = tiny
    assert list(first.runs.index) == list(gen.MODELS)
    assert list(first.runs["status"]) == ["trained"] * 3 and list(second.runs["status"]) == ["reused"] * 3
    assert set(first.runs["steps"]) == {int(first.runs.loc["trained on MNI152", "steps"])}
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (root / "results" / "smoke" / "checkpoints").glob("*.pt")}
    assert {"M12++.pt", "M12++@synthsr.pt", "M12++@mix.pt"} <= set(stamps)
    change = first.change
    assert change.shape == (3, 2 * 2 * 3) and list(change.index) == list(gen.MODELS)
    assert change.columns.names == ["test", "metric", "map"]
    assert list(change.columns.get_level_values("test").unique()) == ["tested on MNI152", "tested on label maps"]
    summary = first.scores.summary().set_index(["model", "test", "map"])
    q_l, model = (summary.loc[(m, "synthsr", "T2"), "hfen"] for m in (BASELINE, "trained on mix"))
    expected = 100 * (model - q_l) / q_l
    assert change.loc["trained on mix", ("tested on label maps", "HFEN", "T2")] == pytest.approx(expected)
    overshoot = first.overshoot
    assert overshoot.shape == (2 * 3, 4 * 2) and overshoot.columns.names == ["model", "side"]
    assert list(overshoot.columns.get_level_values("model").unique()) == [BASELINE, *gen.MODELS]
    assert overshoot.loc[("tested on MNI152", "PD"), (BASELINE, "CSF side")] == pytest.approx(
        100 * summary.loc[(BASELINE, "mni152", "PD"), "edge_signed_csf"])
    pd.testing.assert_frame_equal(second.change, first.change)
    for name in ("metrics", "edges", "summary", "change", "overshoot", "runs"):
        assert (first.out_dir / f"{name}.csv").is_file()
    assert set(first.scores.metrics["test"]) == {"mni152", "synthsr"}
    assert first.scores.metrics.groupby("test")["subject"].nunique().to_dict() == {"mni152": 1, "synthsr": 1}
    example = first.example
    assert set(example.maps) == {"Q_h", BASELINE, *gen.MODELS} and example.band.shape == (48, 48)
    assert all(m.shape == (3, 48, 48) for m in example.maps.values())
    maps, errors = gen.overshoot_maps(example), gen.overshoot_errors(example)
    assert sum(1 for ax in maps.axes if ax.images) == 3 * 5 and sum(1 for ax in errors.axes if ax.images) == 3 * 4
    assert first.glue["gen_verdict"][0].startswith("On the label-derived test subjects")
