"""The released model: ``swig release`` (slimmed checkpoint, manifest, card), ``swig apply`` without --model, help."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _phantom import FakeDataset, make_subject, tiny_profile

from swig_lib.cli import COMMANDS, main
from swig_lib.core.io import MissingFileError, read_csv, save_nifti, sha256
from swig_lib.experiments.evaluation.evaluate import evaluate
from swig_lib.experiments.evaluation.selection import write_selection
from swig_lib.experiments.release import (
    CARD_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    PACKAGED_RELEASE,
    RELEASE_ENV,
    RELEASED_KEYS,
    ReleaseError,
    held_out_metrics,
    release_model,
    verified_release,
)
from swig_lib.experiments.training.checkpoints import load_checkpoint, save_checkpoint
from swig_lib.experiments.training.loop import train_variant

ROOT = Path(__file__).resolve().parents[1]
PROFILE = tiny_profile(variants=("M12++",))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = (MODEL_FILE, MANIFEST_FILE, CARD_FILE)


def _results(folder, dataset):
    """A results folder as notebooks 01-03 leave it: checkpoint, summary.csv, selection, provenance."""
    train_variant(PROFILE, "M12++", folder, device="cpu", dataset=dataset, progress=False)
    evaluate(PROFILE, folder, dataset=dataset, progress=False)
    write_selection(folder, "M12++", region="brain", total_rank={"M12++": 6.0}, selected_interior="M12++",
                    profile="test")
    (folder / "provenance.json").write_text(json.dumps({
        "profile": "test", "git": {"commit": COMMIT, "dirty": False}, "device": "cpu (test)",
        "versions": {"torch": torch.__version__, "swig_lib": "0.1.0"}}))
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return _results(tmp_path_factory.mktemp("results") / "test", FakeDataset(1, 1, 1, (32, 30, 2)))


@pytest.fixture(scope="module")
def released(results, tmp_path_factory):
    return release_model(results, tmp_path_factory.mktemp("released"))


def _inputs(folder) -> dict:
    subject = make_subject(3, shape=(30, 28, 3))
    volumes = {"pd": subject.q_l[0], "t1": subject.q_l[1], "t2": subject.q_l[2], "t1w": subject.guides["T1w"],
               "t2w": subject.guides["T2w"], "mask": subject.mask}
    return {name: save_nifti(folder / f"{name}.nii.gz", volume, np.eye(4)) for name, volume in volumes.items()}


def _argv(files: dict, out) -> list[str]:
    return ["apply", "--out", str(out), "--device", "cpu", *[x for k, v in files.items() for x in (f"--{k}", str(v))]]


# ---- swig release -----------------------------------------------------------------------------


def test_two_releases_of_one_checkpoint_are_byte_identical(results, released, tmp_path) -> None:
    again = release_model(results, tmp_path / "again")
    for name in FILES:
        assert (again.folder / name).read_bytes() == (released.folder / name).read_bytes(), name
    # a training run that differs only in what is not released (optimiser state, log, timings) releases the same bytes
    other = tmp_path / "other"
    shutil.copytree(results, other)
    checkpoint = other / "checkpoints" / "M12++.pt"
    payload = load_checkpoint(checkpoint)
    payload["log"] = [{**row, "time_s": 99.0} for row in payload["log"]]
    payload["optimizer_state"] = {"state": {}, "param_groups": []}
    save_checkpoint(checkpoint, payload)
    assert sha256(checkpoint) != sha256(results / "checkpoints" / "M12++.pt")
    assert release_model(other, tmp_path / "third").model.read_bytes() == released.model.read_bytes()


def test_released_checkpoint_is_slim_and_loads(results, released) -> None:
    payload = load_checkpoint(released.model)
    source = load_checkpoint(results / "checkpoints" / "M12++.pt")
    assert set(payload) == {*RELEASED_KEYS, "release"} and payload["release"] == {"profile": "test"}
    assert "optimizer_state" in source and "log" in source  # what the release leaves out
    assert payload["weights_sha256"] == source["weights_sha256"] == released.manifest["weights_sha256"]
    for name, tensor in source["model_state"].items():
        assert torch.equal(payload["model_state"][name], tensor), name
    assert released.manifest["sha256"] == sha256(released.model)
    assert released.manifest["commit"] == COMMIT and released.manifest["variant"] == "M12++"


def test_card_is_generated_from_the_results(results, released) -> None:
    card = released.card.read_text(encoding="utf-8")
    assert card.startswith("# Model card: SWIG M12++, profile `test`\n")
    assert f"`{MODEL_FILE}` SHA-256: `{sha256(released.model)}`" in card
    assert f"commit `{COMMIT}`" in card and "**Not for diagnosis**" in card
    assert "| T1w | IR-SPGR: TR 6.6 ms, TE 2.6 ms, TI 450 ms, flip angle 12°, TD 0 ms |" in card
    assert "| T2w | SE-alpha: TR 5211 ms, TE 146 ms, flip angle 160° |" in card
    assert "keep = 0.5" in card and "σ = 0.1" in card and "**1.5 T**" in card
    summary = read_csv(results / "metrics" / "summary.csv")
    row = summary[(summary["model"] == "M12++") & (summary["map"] == "T2") & (summary["region"] == "brain")
                  & (summary["metric"] == "hfen")]
    base = summary[(summary["model"] == "Q_l") & (summary["map"] == "T2") & (summary["region"] == "brain")
                   & (summary["metric"] == "hfen")]
    hfen, hfen_ql = float(row["mean"].iloc[0]), float(base["mean"].iloc[0])
    line = next(text for text in card.splitlines() if text.startswith("| T2 |"))
    assert line.endswith(f"| {hfen_ql:.4f} | {hfen:.4f} | {100 * (hfen / hfen_ql - 1):+.1f} % |")
    metrics = held_out_metrics(summary, "M12++", "brain")
    assert list(metrics.index) == ["PD", "T1", "T2"] and (metrics[("n", "")] == 1).all()


def test_release_refuses_incomplete_results_and_writes_nothing(results, tmp_path, capsys) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(results, partial)
    (partial / "provenance.json").unlink()
    assert main(["release", "--results", str(partial), "--into", str(tmp_path / "rel")]) == 1
    assert capsys.readouterr().err == (
        f"swig release: error: {partial / 'provenance.json'}: no provenance record of `swig reproduce`; run "
        f"notebooks 01-03 of that profile (`swig reproduce --only 01 02 03`) with results in {partial}\n")
    assert not (tmp_path / "rel").exists()
    shutil.copytree(results / "metrics", partial / "metrics", dirs_exist_ok=True)
    (partial / "provenance.json").write_text("{}")
    summary = read_csv(partial / "metrics" / "summary.csv")
    summary[summary["model"] != "M12++"].to_csv(partial / "metrics" / "summary.csv", index=False)
    with pytest.raises(ReleaseError, match="no brain-mask rows of M12\\+\\+ ssim, M12\\+\\+ hfen"):
        release_model(partial, tmp_path / "rel")
    assert not (tmp_path / "rel").exists()


def test_swig_release_command(results, released, tmp_path, capsys) -> None:
    assert main(["release", "--results", str(results), "--into", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"released M12++ (profile test) into {tmp_path / 'cli'}:\n")
    assert f"{MODEL_FILE} SHA-256 {released.manifest['sha256']}\n" in out
    assert (tmp_path / "cli" / MODEL_FILE).read_bytes() == released.model.read_bytes()


# ---- swig apply with the released model -------------------------------------------------------


def test_apply_without_model_uses_the_released_one(results, released, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(RELEASE_ENV, str(released.folder))
    files = _inputs(tmp_path / "in")
    assert main(_argv(files, tmp_path / "sr")) == 0
    assert capsys.readouterr().out.startswith(f"model: the released M12++ (profile test), {released.model}\n")
    sidecar = json.loads((tmp_path / "sr" / "swig_apply.json").read_text())
    assert sidecar["model"]["path"] == str(released.model)
    assert sidecar["model"]["sha256"] == released.manifest["sha256"]
    assert sidecar["model"]["released"] == {"folder": str(released.folder), "profile": "test", "variant": "M12++",
                                            "commit": COMMIT}
    # the slimmed model predicts exactly what the training checkpoint predicts
    assert main([*_argv(files, tmp_path / "own"), "--model", str(results / "checkpoints" / "M12++.pt")]) == 0
    assert json.loads((tmp_path / "own" / "swig_apply.json").read_text())["model"]["released"] is None
    for name in ("PDmap.nii.gz", "T1map.nii.gz", "T2map.nii.gz"):
        np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "sr" / name).dataobj),
                                      np.asarray(nib.load(tmp_path / "own" / name).dataobj))


def test_tampered_release_is_refused_and_nothing_written(released, tmp_path, monkeypatch, capsys) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(released.folder, tampered)
    data = bytearray((tampered / MODEL_FILE).read_bytes())
    data[-300] ^= 1
    (tampered / MODEL_FILE).write_bytes(bytes(data))
    monkeypatch.setenv(RELEASE_ENV, str(tampered))
    files = _inputs(tmp_path / "in")
    assert main(_argv(files, tmp_path / "sr")) == 1
    assert capsys.readouterr().err == (
        f"swig apply: error: {tampered / MODEL_FILE}: modified or damaged, its SHA-256 differs from the one "
        f"recorded in {MANIFEST_FILE}; reinstall the package, or pass --model CHECKPOINT\n")
    assert not (tmp_path / "sr").exists()
    monkeypatch.setenv(RELEASE_ENV, str(tmp_path / "none"))
    assert main(_argv(files, tmp_path / "sr")) == 1
    assert capsys.readouterr().err.startswith(
        f"swig apply: error: {tmp_path / 'none' / MANIFEST_FILE}: no released model in this installation; pass --model")
    assert not (tmp_path / "sr").exists()


def test_committed_release_loads_and_matches_its_card() -> None:
    if not (PACKAGED_RELEASE / MANIFEST_FILE).is_file():
        pytest.skip(f"no released model committed in {PACKAGED_RELEASE} (run `make release`)")
    release = verified_release(PACKAGED_RELEASE)
    payload = load_checkpoint(release.model)  # weights_only=True, the weights' checksum verified
    card = release.card.read_text(encoding="utf-8")
    assert f"`{MODEL_FILE}` SHA-256: `{sha256(release.model)}`" in card
    assert f"`{payload['weights_sha256']}`" in card and payload["release"]["profile"] == release.manifest["profile"]


def test_verified_release_names_a_missing_model_file(released, tmp_path) -> None:
    folder = tmp_path / "nomodel"
    shutil.copytree(released.folder, folder)
    (folder / MODEL_FILE).unlink()
    with pytest.raises(MissingFileError, match="the released model file is missing"):
        verified_release(folder)
    (folder / MANIFEST_FILE).write_text("{}")
    with pytest.raises(ReleaseError, match=r"release.json: not a swig-release-1 manifest \(KeyError: 'guide_"):
        verified_release(folder)


# ---- help of every command --------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_an_example(command, capsys) -> None:
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Example" in text and "swig " + command in text.split("Example", 1)[1]
    assert len(text.split("\n\n")[1]) > 100  # the description, after the usage


def test_apply_help_names_the_released_models_protocols(released, monkeypatch, capsys) -> None:
    assert set(COMMANDS) == {"data", "train", "evaluate", "apply", "reproduce", "release"}
    monkeypatch.setenv(RELEASE_ENV, str(released.folder))
    assert main(["apply", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("the released model M12++ (profile test) expects the guides T1w IR-SPGR: TR 6.6 ms, TE 2.6 ms, "
            "TI 450 ms, flip angle 12°, TD 0 ms; T2w SE-alpha: TR 5211 ms, TE 146 ms, flip angle 160°") in text
    monkeypatch.setenv(RELEASE_ENV, "/nonexistent-release")
    assert main(["apply", "--help"]) == 0
    assert "this installation has no released model (pass --model)" in " ".join(capsys.readouterr().out.split())


# ---- the book page ----------------------------------------------------------------------------


def test_book_page_shows_the_released_card(released, tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "book" / "_ext"))
    import swig_card

    page = (ROOT / "book" / "model_card.md").read_text(encoding="utf-8")
    assert swig_card.PLACEHOLDER in page.splitlines()
    assert "      - file: book/model_card\n" in (ROOT / "_toc.yml").read_text(encoding="utf-8")
    monkeypatch.setenv(RELEASE_ENV, str(released.folder))
    text, path = swig_card.card_markdown()
    assert path == str(released.card) and text.startswith("## Model card: SWIG M12++, profile `test`\n")
    assert "\n### Training data\n" in text and text.count("\n## ") == 0
    source = [f"# The released model\n\n{swig_card.PLACEHOLDER}\n"]
    monkeypatch.setenv(RELEASE_ENV, str(tmp_path / "none"))
    swig_card.insert_card(None, "book/model_card", source)
    assert source == [f"# The released model\n\n{swig_card.NO_RELEASE}\n"]
