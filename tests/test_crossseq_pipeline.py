"""Tests of the simulated cross-sequence validation (crossseq.pipeline, crossseq.settings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from _crossseq import MODEL, checkpoint, phantom
from _phantom import FakeDataset, tiny_profile

from swig_lib.experiments.config import Profile
from swig_lib.experiments.crossseq import figures as crossseq_figures
from swig_lib.experiments.crossseq import pipeline, tables
from swig_lib.experiments.crossseq.settings import (
    ADAPTED,
    PROTOCOLS,
    REFERENCE,
    CalibrationSettings,
    CrossSequenceSettings,
    calibration_label,
)
from swig_lib.experiments.training.loop import train_variant

matplotlib.use("Agg")


class ArrayDataset:
    """A picklable two-subject dataset (one train, one test) of phantoms, for worker processes."""

    folder = Path("arrays")
    settings = {"keep": 0.5, "sigma": 0.1}

    def __init__(self) -> None:
        maps, mask, labels = phantom()
        self.maps = {"sub-01": maps, "sub-02": maps[:, ::-1].copy()}
        self.mask = {"sub-01": mask, "sub-02": mask[::-1].copy()}
        self.label_maps = {"sub-01": labels, "sub-02": labels[::-1].copy()}

    def subject_ids(self, split: str) -> list[str]:
        return {"train": ["sub-01"], "val": [], "test": ["sub-02"]}[split]

    def acquired(self, sid: str) -> SimpleNamespace:
        return SimpleNamespace(mask=self.mask[sid], affine=np.diag([1.0, 1.0, 2.0, 1.0]))

    def reference(self, sid: str) -> np.ndarray:
        return self.maps[sid]

    def labels(self, sid: str) -> np.ndarray:
        return self.label_maps[sid]


def test_worker_processes_give_the_same_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = ArrayDataset()
    monkeypatch.setattr(pipeline, "load_dataset", lambda *args, **kwargs: dataset)
    checkpoint(tmp_path / "tiny" / "checkpoints" / "M12++.pt")
    section = {"slice_stride": 2, "min_brain_fraction": 0.0,
               "acquisition": {"n_t1": 40, "n_t2": 40},
               "recon": {"epochs": 1, "batch_size": 2, "min_brain_fraction": 0.0}}
    results = [pipeline.run_cross_sequence(tiny_profile(name="tiny", model=MODEL,
                                                        crosssequence={**section, "workers": workers}),
                                           "M12++", results_dir=tmp_path, progress=False, force=True)
               for workers in (1, 2)]
    for name in pipeline.TABLES:
        pd.testing.assert_frame_equal(getattr(results[0], name), getattr(results[1], name))
    assert results[1].example.subject == "sub-02"


class LabelledDataset(FakeDataset):
    """The phantom dataset with tissue labels from the T1 values (GM 1, WM 2, CSF 3)."""

    folder = Path("fake")

    def labels(self, sid: str) -> np.ndarray:
        t1 = self.reference(sid)[1]
        return np.select([t1 == 1100.0, t1 == 650.0, t1 == 4000.0], [1, 2, 3], 0).astype(np.uint8)


def test_run_cross_sequence_end_to_end_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = LabelledDataset(n_train=1, n_val=0, n_test=2)
    monkeypatch.setattr(pipeline, "load_dataset", lambda *args, **kwargs: dataset)
    profile = tiny_profile(
        name="tiny", model=MODEL,
        crosssequence={"slice_stride": 2, "min_brain_fraction": 0.0,
                       "acquisition": {"n_t1": 40, "n_t2": 40},
                       "recon": {"epochs": 1, "batch_size": 2, "min_brain_fraction": 0.0}},
    )
    checkpoint(tmp_path / "tiny" / "checkpoints" / "M12++.pt")
    result = pipeline.run_cross_sequence(profile, "M12++", results_dir=tmp_path, progress=False)
    assert not result.info["reused"] and result.info["subjects"] == ["sub-01", "sub-02"]
    assert result.info["variant"] == "M12++"
    assert result.info["sr_checkpoint"] == str(tmp_path / "tiny" / "checkpoints" / "M12++.pt")
    assert set(result.synthesis["protocol"]) == {*PROTOCOLS, REFERENCE}
    assert set(result.maps["protocol"]) == set(PROTOCOLS) and set(result.tissue["tissue"]) == {"WM", "GM", "CSF"}
    # Untrained SWIG model = identity: SR equals its input (up to float rounding).
    part = result.maps.pivot_table(index=["subject", "protocol", "map", "slice"], columns="source",
                                   values="ssim")
    np.testing.assert_allclose(part["SR"], part["Q_l"], atol=1e-4)
    folder = tmp_path / "tiny" / "crosssequence"
    assert {p.name for p in folder.iterdir()} == {"synthesis.csv", "table2.csv", "maps.csv", "tissue.csv",
                                                  "sulci.csv", "adaptation.csv", "adaptation_runs.csv",
                                                  "calibration.csv", "run.json"}
    assert result.calibration.empty and list(result.calibration.columns) == list(pipeline.COLUMNS["calibration"])
    assert result.adaptation.empty and list(result.adaptation_runs.columns) == list(pipeline.COLUMNS["adaptation_runs"])
    again = pipeline.run_cross_sequence(profile, "M12++", results_dir=tmp_path, progress=False)
    assert again.info["reused"] and list(again.adaptation.columns) == list(pipeline.COLUMNS["adaptation"])
    pd.testing.assert_frame_equal(again.maps, result.maps, check_exact=False)
    assert again.example.slice == result.example.slice
    np.testing.assert_array_equal(again.example.maps[("Acq1", "SR")], result.example.maps[("Acq1", "SR")])
    figure = crossseq_figures.plot_tissue_errors(result.tissue)
    assert len(figure.axes) == 6  # T1 and T2 in WM, GM and CSF

    # The variant is the caller's: a selection file of the ablation does not change it.
    selection = tmp_path / "tiny" / "metrics" / "selected_model.json"
    selection.parent.mkdir(parents=True, exist_ok=True)
    selection.write_text('{"selected": "M2++"}')
    third = pipeline.run_cross_sequence(profile, "M12++", results_dir=tmp_path, progress=False)
    assert third.info["reused"] and third.info["variant"] == "M12++"
    # The profile's (training) seed seeds the simulation: another seed, another run.
    assert result.info["key"]["seed"] == profile.seed == 0
    reseeded = pipeline.run_cross_sequence(replace(profile, seed=1), "M12++", results_dir=tmp_path, progress=False)
    assert not reseeded.info["reused"] and reseeded.info["key"]["seed"] == 1
    assert not np.array_equal(reseeded.synthesis["ssim"], result.synthesis["ssim"])
    with pytest.raises(ValueError, match=r"unknown variant 'M99'; choose from \["):
        pipeline.run_cross_sequence(profile, "M99", results_dir=tmp_path, progress=False)


def test_settings_reject_unknown_keys_and_the_old_variant_setting() -> None:
    settings = CrossSequenceSettings.from_profile(
        tiny_profile(crosssequence={"slice_stride": 3, "recon": {"epochs": 4}}))
    assert settings.slice_stride == 3 and settings.recon.epochs == 4 and settings.workers == 1
    with pytest.raises(KeyError, match=r"unknown setting\(s\) \['variant'\]"):
        CrossSequenceSettings.from_profile(tiny_profile(crosssequence={"variant": "M12++"}))
    without = {key: value for key, value in tiny_profile(name="tiny").to_dict().items() if key != "crosssequence"}
    with pytest.raises(KeyError, match=r"profile 'tiny' lacks \['crosssequence'\]"):
        Profile.from_dict(without)
    with pytest.raises(ValueError, match="intensity_match must be 'affine' or 'none', got 'linear'"):
        CrossSequenceSettings(intensity_match="linear")


def test_the_cross_sequence_modules_do_not_import_the_book_tooling() -> None:
    code = ("import sys\n"
            "import swig_lib.experiments.crossseq.figures, swig_lib.experiments.crossseq.pipeline\n"
            "import swig_lib.experiments.crossseq.userdata\n"
            "print(sorted(m for m in sys.modules if m.startswith('swig_lib.book')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_adapting_the_sr_model_to_acq1_and_acq5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = LabelledDataset(n_train=1, n_val=1, n_test=2)
    monkeypatch.setattr(pipeline, "load_dataset", lambda *args, **kwargs: dataset)
    section = {"slice_stride": 2, "min_brain_fraction": 0.0, "acquisition": {"n_t1": 40, "n_t2": 40},
               "recon": {"epochs": 1, "batch_size": 2, "min_brain_fraction": 0.0}}
    profile = tiny_profile(name="tiny", model=MODEL, crosssequence=section | {"adapt_subjects": 1, "adapt_steps": 3})
    train_variant(profile, "M12++", tmp_path / "tiny", device="cpu", dataset=dataset, progress=False)
    result = pipeline.run_cross_sequence(profile, "M12++", results_dir=tmp_path, progress=False)
    runs, scores = result.adaptation_runs, result.adaptation
    assert runs[["subject", "protocol", "steps", "slices"]].values.tolist() == [
        ["sub-02", "Acq1", 3, 2], ["sub-02", "Acq5", 3, 2]]
    assert (runs["seconds"] > 0).all() and np.isfinite(runs[["loss_before", "loss_after"]]).all().all()
    keys = ["subject", "protocol", "map", "slice"]
    sr = result.maps[result.maps["source"] == "SR"].merge(scores[keys], on=keys)
    assert len(scores) == len(sr) == 2 * 3 * 2 and set(scores["source"]) == {ADAPTED}
    assert not np.allclose(scores.sort_values(keys)["ssim"], sr.sort_values(keys)["ssim"])  # the model moved
    # Everything else is as without adaptation.
    shutil.copytree(tmp_path / "tiny" / "checkpoints", tmp_path / "b" / "tiny" / "checkpoints")
    plain = pipeline.run_cross_sequence(tiny_profile(name="tiny", model=MODEL, crosssequence=section), "M12++",
                                        results_dir=tmp_path / "b", progress=False)
    for name in ("synthesis", "maps", "tissue", "sulci"):
        pd.testing.assert_frame_equal(getattr(result, name), getattr(plain, name))
    again = pipeline.run_cross_sequence(profile, "M12++", results_dir=tmp_path, progress=False)
    assert again.info["reused"]
    pd.testing.assert_frame_equal(again.adaptation_runs, runs, check_exact=False)


def test_calibration_candidates_share_the_chapters_slices_images_and_noise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = LabelledDataset(n_train=1, n_val=0, n_test=2)
    monkeypatch.setattr(pipeline, "load_dataset", lambda *args, **kwargs: dataset)
    chosen = {"n_t1": 40, "n_t2": 40, "noise_std": 0.5, "n_repetitions": 4, "kmax_fraction": 0.6}
    section = {"slice_stride": 2, "min_brain_fraction": 0.0, "acquisition": chosen,
               "recon": {"epochs": 1, "batch_size": 2, "min_brain_fraction": 0.0},
               "calibration": {"subjects": 1, "candidates": [[0.5, 4, 0.6], [0.0, 2, 0.5]]}}
    checkpoint(tmp_path / "tiny" / "checkpoints" / "M12++.pt")
    result = pipeline.run_cross_sequence(tiny_profile(name="tiny", model=MODEL, crosssequence=section), "M12++",
                                         results_dir=tmp_path, progress=False)
    calibration = result.calibration
    assert set(calibration["subject"]) == {"sub-01"} and set(calibration["source"]) == {"Q_l"}
    assert list(dict.fromkeys(calibration["setting"])) == [calibration_label(0.5, 4, 0.6),
                                                          calibration_label(0.0, 2, 0.5)]
    # A candidate equal to the chapter's setting reproduces the chapter's own "from Q_l" rows exactly.
    keys = ["protocol", "contrast", "slice"]
    same = calibration[calibration["setting"] == "noise 0.5, 4 spokes, kmax 0.6"].set_index(keys).sort_index()
    synthesis = result.synthesis
    ours = synthesis[(synthesis["subject"] == "sub-01") & (synthesis["source"] == "Q_l")
                     & synthesis["protocol"].isin(["Acq1", "Acq5"])]
    ours = ours.set_index(keys).sort_index()
    np.testing.assert_array_equal(same[["ssim", "hfen"]].to_numpy(), ours[["ssim", "hfen"]].to_numpy())
    table = tables.calibration_table(calibration, result.synthesis, calibration_label(0.5, 4, 0.6))
    assert list(table.index) == ["noise 0.5, 4 spokes, kmax 0.6", "noise 0, 2 spokes, kmax 0.5",
                                 "noise 0.5, 4 spokes, kmax 0.6 (chosen)", "paper (Table II)"]
    assert table.loc["paper (Table II)", ("Acq1", "T1w")] == 0.83
    assert table.loc["paper (Table II)", ("Acq5", "T2w")] == 0.75
    np.testing.assert_allclose(table.iloc[0], table.iloc[2])
    glue = tables.calibration_glue(table)
    assert glue["xs_cal_paper_Acq1_T2w"] == (0.79, ".2f") and len(glue) == 12
    with pytest.raises(ValueError, match=r"a calibration candidate is \[noise_std, n_repetitions, kmax_fraction\]"):
        CalibrationSettings.from_dict({"candidates": [[0.1, 4]]})
    with pytest.raises(KeyError, match="spokes"):
        CalibrationSettings.from_dict({"spokes": 4})
