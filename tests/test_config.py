"""Tests of the experiment profiles (swig_lib.experiments.config, profiles.toml).

``tests/data/profiles_snapshot.json`` holds ``load_profile(p)`` of the three profiles as they were
when profiles.toml still repeated every setting per profile; a deliberate change of a setting
updates the snapshot in the same commit.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

from swig_lib.experiments.config import (
    PROFILES,
    SECTIONS,
    Profile,
    Table,
    load_profile,
    merge_tables,
)
from swig_lib.experiments.crossseq.reconcnn import ReconSettings, recon_key
from swig_lib.experiments.crossseq.sequence import AcquisitionSettings
from swig_lib.experiments.crossseq.settings import CrossSequenceSettings
from swig_lib.experiments.subjects.dataset import DataSettings
from swig_lib.experiments.training.checkpoints import comparable_settings

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SNAPSHOT: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "profiles_snapshot.json").read_text()
)


def _canonical(value: Any) -> str:
    """JSON with sorted keys: equal strings mean equal values and equal types (1 vs 1.0)."""
    return json.dumps(value, sort_keys=True)


def _leaves(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}`` of a nested table."""
    leaves: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            leaves |= _leaves(value, f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def _document() -> dict[str, Any]:
    with resources.files("swig_lib.experiments").joinpath("profiles.toml").open("rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize("name", PROFILES)
def test_merged_profiles_equal_the_snapshot(name: str) -> None:
    profile, expected = load_profile(name), SNAPSHOT[name]
    assert _canonical(profile.to_dict()) == _canonical(expected)
    assert _canonical(dict(profile)) == _canonical(expected)
    assert profile == expected and isinstance(profile, Profile)
    # The top level and the typed sections keep the order of the settings (a checkpoint pickles it).
    assert list(profile) == list(expected)
    for section in SECTIONS:
        assert list(profile[section]) == list(expected[section])


def test_base_holds_exactly_the_shared_settings() -> None:
    document = _document()
    base = _leaves({k: v for k, v in document.items() if k not in PROFILES})
    own = {name: _leaves(document[name]) for name in PROFILES}
    for name in PROFILES:
        assert not set(own[name]) & set(base), f"{name} repeats base settings"
    shared = [key for key in own["smoke"] if all(
        key in own[p] and _canonical(own[p][key]) == _canonical(own["smoke"][key]) for p in PROFILES)]
    assert shared == [], "settings equal in every profile belong to the base"


def test_typed_sections() -> None:
    paper = load_profile("paper")
    assert paper.train.lr == 1e-5 and type(paper.train.lr) is float  # the paper's learning rate
    assert type(paper.train.epochs) is int and paper.seed == 0 and paper.name == "paper"
    assert paper.eval.variants == ("M12++", "M2++", "M1++", "M12-+", "M12--", "M12++a0", "M12++dr")
    assert paper.bench.train_crop == (150, 180) and paper["bench"]["train_crop"] == [150, 180]
    assert isinstance(paper.data, Table) and paper.data["seed"] == 2025
    assert paper.crosssequence["recon"] == {"lr": 1e-3, "epochs": 100, "batch_size": 8, "warmup_steps": 100,
                                             "slice_stride": 1, "min_brain_fraction": 0.1}


def test_profile_is_frozen() -> None:
    profile = load_profile("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.train.epochs = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.seed = 1  # type: ignore[misc]
    train, data = profile["train"], profile["data"]
    train["epochs"] = 99
    data["split"].append(9)
    profile.data["slices"][0] = -1
    assert profile.train.epochs == 2 and profile["train"]["epochs"] == 2
    assert profile.data["split"] == [2, 1, 2] and profile.data["slices"] == [84, 100]


def test_overrides() -> None:
    profile = load_profile("smoke", {"train.epochs": 1, "seed": 7, "data.split": [1, 0, 1],
                                     "crosssequence.recon.epochs": 3, "train.alpha": 30000})
    assert profile.train.epochs == 1 and profile.seed == 7 and profile.data["split"] == [1, 0, 1]
    assert profile.crosssequence["recon"]["epochs"] == 3
    assert profile.train.alpha == 30000.0 and type(profile.train.alpha) is float
    with pytest.raises(KeyError, match=r"profile 'smoke' has no setting 'train\.epoch'"):
        load_profile("smoke", {"train.epoch": 1})
    with pytest.raises(KeyError, match=r"profile 'smoke' has no section 'trian' \(override 'trian\.epochs'\)"):
        load_profile("smoke", {"trian.epochs": 1})
    with pytest.raises(ValueError, match="unknown profile 'fast': choose one of smoke, quick, paper"):
        load_profile("fast")


def test_unknown_missing_and_mistyped_settings() -> None:
    values = load_profile("smoke").to_dict()
    known = sorted(f.name for f in dataclasses.fields(SECTIONS["train"]))
    with pytest.raises(KeyError) as err:
        Profile.from_dict(values | {"train": {**values["train"], "epoch": 3}})
    assert err.value.args[0] == f"unknown train setting(s) ['epoch']; known: {known}"
    with pytest.raises(KeyError, match=r"unknown profile setting\(s\) \['evaluation'\]"):
        Profile.from_dict(values | {"evaluation": {}})
    without = {k: v for k, v in values["model"].items() if k != "width"}
    with pytest.raises(KeyError, match=r"missing model setting\(s\) \['width'\]"):
        Profile.from_dict(values | {"model": without})
    with pytest.raises(KeyError, match=r"profile 'smoke' lacks \['bench'\]"):
        Profile.from_dict({k: v for k, v in values.items() if k != "bench"})
    with pytest.raises(TypeError, match=r"setting train\.epochs must be int, got 2\.5"):
        Profile.from_dict(values | {"train": {**values["train"], "epochs": 2.5}})
    with pytest.raises(TypeError, match=r"setting bench\.train_crop must have 2 values, got \[64\]"):
        Profile.from_dict(values | {"bench": {**values["bench"], "train_crop": [64]}})
    with pytest.raises(TypeError, match=r"setting eval\.variants\[1\] must be str, got 2"):
        Profile.from_dict(values | {"eval": {**values["eval"], "variants": ["M12++", 2]}})
    with pytest.raises(TypeError, match=r"setting model\.width must be int, got True"):
        Profile.from_dict(values | {"model": {**values["model"], "width": True}})


def test_merge_tables() -> None:
    base = {"a": 1, "t": {"x": 1, "y": [1]}, "u": {"z": 0}}
    merged = merge_tables(base, {"t": {"y": [2], "w": 3}, "b": 2})
    assert merged == {"a": 1, "t": {"x": 1, "y": [2], "w": 3}, "u": {"z": 0}, "b": 2}
    assert list(merged) == ["a", "t", "u", "b"] and list(merged["t"]) == ["x", "y", "w"]
    assert base == {"a": 1, "t": {"x": 1, "y": [1]}, "u": {"z": 0}}
    merged["u"]["z"] = 5
    assert base["u"]["z"] == 0
    with pytest.raises(TypeError, match=r"setting t\.x is a table on one side and a value on the other"):
        merge_tables(base, {"t": {"x": {"deep": 1}}})
    with pytest.raises(TypeError, match="setting u is a table"):
        merge_tables(base, {"u": 3})


@pytest.mark.parametrize("name", PROFILES)
def test_dict_forms_of_checkpoints_and_cache_keys_are_unchanged(name: str) -> None:
    profile, expected = load_profile(name), SNAPSHOT[name]
    # A checkpoint stores profile.to_dict() (= dict(profile)) and is read back with weights_only=True.
    assert profile.to_dict() == dict(profile)
    buffer = io.BytesIO()
    torch.save({"profile": profile.to_dict()}, buffer)
    buffer.seek(0)
    stored = torch.load(buffer, weights_only=True)["profile"]
    assert _canonical(stored) == _canonical(expected)
    # Resuming compares comparable_settings of the stored and the current profile.
    assert _canonical(comparable_settings(profile)) == _canonical(comparable_settings(expected))
    assert comparable_settings(profile) == comparable_settings(stored)
    # The readers of the owned sections and the Acq5^R cache key.
    assert CrossSequenceSettings.from_profile(profile) == CrossSequenceSettings.from_profile(
        Profile.from_dict(expected))
    data = DataSettings.from_profile(profile)
    assert data == DataSettings.from_profile(Profile.from_dict(expected))
    key = recon_key(ReconSettings(), profile.model, AcquisitionSettings(), profile.seed, data.to_dict(), [])
    assert key == recon_key(ReconSettings(), expected["model"], AcquisitionSettings(), expected["seed"],
                            data.to_dict(), [])
    # A profile updated like a dict (``profile | {...}``) is a plain dict.
    updated = profile | {"seed": 5}
    assert type(updated) is dict and updated["seed"] == 5 and _canonical(updated["train"]) == _canonical(
        expected["train"])


def _gradient_bytes() -> bytes:
    """The weight gradients of a small convolutional network on a fixed batch, as bytes."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 3, 3, padding=1))
    model(torch.randn(8, 4, 64, 64)).square().mean().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).numpy().tobytes()


def test_apply_threads_fixes_the_thread_count_that_the_gradients_depend_on() -> None:
    torch.set_num_threads(1)
    one = _gradient_bytes()
    torch.set_num_threads(2)
    two = _gradient_bytes()
    assert one != two  # the backward pass sums in another order: why the profile fixes the count
    quick = load_profile("quick")
    for machine in (1, 3):  # torch's default on a 1-core and on a 3-core machine
        torch.set_num_threads(machine)
        assert quick.apply_threads() == 2 and torch.get_num_threads() == 2
        assert _gradient_bytes() == two
    torch.set_num_threads(3)
    assert load_profile("paper").apply_threads() == 3  # 0 leaves torch's count
    with pytest.raises(ValueError, match=r"setting threads must be 0 \(torch's default\) or a positive count, got -1"):
        Profile.from_dict(quick | {"threads": -1})
    with pytest.raises(TypeError, match=r"setting threads must be int, got 1\.5"):
        Profile.from_dict(quick | {"threads": 1.5})


def test_notebook_header_and_cli_apply_the_profile_threads() -> None:
    import argparse

    from swig_lib.book.notebook import PageHeader
    from swig_lib.cli.common import experiment_folder

    torch.set_num_threads(3)
    header = PageHeader("quick", "cpu")
    assert torch.get_num_threads() == 2 and "2 threads" in header.markdown()
    torch.set_num_threads(3)
    profile, out = experiment_folder(argparse.Namespace(profile="quick", out=None))
    assert torch.get_num_threads() == 2 and profile.name == "quick" and out == Path("results") / "quick"
