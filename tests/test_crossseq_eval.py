"""Tests of the cross-sequence evaluation (swig_lib.experiments.crossseq.evaluate) and its figures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from _phantom import FakeDataset

from swig_lib.core.io import DataValidationError, save_nifti
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.crossseq import evaluate as xs
from swig_lib.experiments.crossseq import figures as crossseq_figures
from swig_lib.experiments.crossseq.acquisition import image_protocols, synthesize
from swig_lib.experiments.training.checkpoints import CHECKPOINT_FORMAT, save_checkpoint

matplotlib.use("Agg")

MODEL = {"width": 8, "n_blocks": 2, "first_kernel": 3, "last_kernel": 3}


def phantom(shape: tuple[int, int, int] = (40, 36, 4)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps (3, X, Y, Z) of a GM disc with a WM core and a CSF rim, the mask and the labels."""
    x, y = np.meshgrid(np.arange(shape[0]) - 20.0, np.arange(shape[1]) - 18.0, indexing="ij")
    r = np.broadcast_to(np.hypot(x, y + 0.3 * x)[..., None], shape)
    mask = r < 16
    labels = np.where(mask, 1, 0)
    labels[r < 9] = 2
    labels[(r >= 13.5) & mask] = 3
    values = {1: (82.0, 1100.0, 95.0), 2: (69.0, 700.0, 75.0), 3: (100.0, 3900.0, 1700.0)}
    maps = np.zeros((3, *shape), dtype=np.float32)
    for label, v in values.items():
        maps[:, labels == label] = np.array(v, dtype=np.float32)[:, None]
    return maps, mask, labels.astype(np.uint8)


def checkpoint(path: Path, guides: tuple[str, ...] = ("T1w", "T2w")) -> Path:
    """An untrained SWIG model (the identity on Q_l) in the checkpoint format."""
    model = SwigResNet(guides, True, [80.0, 1000.0, 150.0], **MODEL)
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_spec": model.spec,
                           "model_state": model.state_dict()})
    return path


def test_identical_images_give_ssim_one_and_hfen_zero() -> None:
    maps, mask, _ = phantom()
    protocols = image_protocols()
    acquired = {c: synthesize(p, maps) * mask for c, p in protocols.items()}
    slices = np.arange(4)
    for match, scale in (("none", 1.0), ("affine", 3.0)):
        truth = {c: scale * a + 7.0 * (scale != 1) * mask for c, a in acquired.items()}
        images = xs.synthesized_images({("Acq5", "Q_l"): maps}, truth, protocols, mask, slices, match)
        rows = pd.DataFrame(xs.synthesis_scores(images, truth, mask, slices))
        assert len(rows) == 3 * 4 and set(rows["contrast"]) == {"T1w", "T2w", "FLAIR"}
        np.testing.assert_allclose(rows["ssim"], 1.0, atol=1e-6)
        np.testing.assert_allclose(rows["hfen"], 0.0, atol=1e-5)
    summary = xs.table2(rows)
    assert summary.loc[("Acq5", "T1w", "Q_l"), "ssim_mean"] == pytest.approx(1.0)
    assert summary.loc[("Acq5", "T1w", "Q_l"), "n"] == 4


def test_match_intensity_recovers_an_affine_map() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(10, 10))
    region = np.ones((10, 10), dtype=bool)
    np.testing.assert_allclose(xs.match_intensity(image, 2.5 * image - 4.0, region), 2.5 * image - 4.0,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="non-constant"):
        xs.match_intensity(np.ones((4, 4)), image[:4, :4], np.ones((4, 4), dtype=bool))


def test_tissue_errors_and_the_acq1_versus_acq5_table() -> None:
    maps, mask, labels = phantom()
    slices = np.array([0, 2])
    sets = {(p, s): maps * f for (p, s), f in {("Acq1", "Q_l"): 1.2, ("Acq1", "SR"): 1.05,
                                                ("Acq5", "Q_l"): 1.1, ("Acq5", "SR"): 1.02}.items()}
    tissue = pd.DataFrame(xs.tissue_errors(sets, maps, labels, slices))
    assert set(tissue["tissue"]) == {"WM", "GM"}
    row = tissue[(tissue["protocol"] == "Acq1") & (tissue["source"] == "Q_l")]
    np.testing.assert_allclose(row["mape"], 20.0, rtol=1e-5)
    assert (row["n_voxels"] == 2 * (labels[..., 0] == 2).sum()).any()
    scores = pd.DataFrame(xs.map_scores(sets, maps, mask, slices))
    table = xs.acq1_versus_acq5(scores.assign(subject="s"), tissue.assign(subject="s"))
    assert table.loc[("mape", "T1", "WM"), "SR(Acq1) ≥ Acq5"]  # 5 % < 10 %
    assert not table.loc[("mape", "T1", "WM"), "Acq1"] <= table.loc[("mape", "T1", "WM"), "Acq5"]


def test_paper_table2_and_the_side_by_side_layout() -> None:
    paper = xs.paper_table2()
    assert len(paper) == 9 * 4
    row = paper[(paper["protocol"] == "Acq5R") & (paper["contrast"] == "T2w")
                & (paper["source"] == "Q_l") & (paper["metric"] == "ssim")]
    assert row[["mean", "sd"]].to_numpy().tolist() == [[0.63, 0.12]]
    ours = pd.DataFrame([{"protocol": "Acq1", "contrast": "FLAIR", "source": s, "slice": z,
                          "ssim": 0.5 + 0.1 * z, "hfen": 1.0} for s in ("Q_l", "SR") for z in (0, 1)])
    table = xs.format_table2(xs.table2(ours), contrasts=("FLAIR",))
    assert table.index.tolist() == [("Acq1", "FLAIR")]
    assert table.loc[("Acq1", "FLAIR"), ("ours", "SSIM ↑", "from Q_l")] == "0.55 ± 0.07"
    assert table.loc[("Acq1", "FLAIR"), ("paper", "HFEN ↓", "from Q̂_h")] == "1.13 ± 0.12"


def test_sulcal_csf_and_zoom_window_follow_the_labels() -> None:
    labels = np.zeros((80, 80), dtype=np.uint8)
    mask = np.zeros((80, 80), dtype=bool)
    mask[5:75, 5:75] = True
    labels[mask] = 1
    labels[38:42, 38:42] = 3  # "ventricle": deep
    labels[6:9, 60:70] = 3  # sulcus near the surface
    labels[9, 60:70] = 4  # its partial-volume rim
    sulci = xs.sulcal_csf(labels, mask)
    assert sulci[6:10, 60:70].all() and not sulci[38:42, 38:42].any()
    x0, y0, size = xs.zoom_window(labels, mask, size=20)
    assert size == 20 and x0 <= 6 and x0 + size >= 10 and y0 <= 60 and y0 + size >= 70

    truth = np.where(mask, 10.0, 0.0)[..., None]
    images = {(xs.REFERENCE, xs.REFERENCE, "FLAIR"): truth,
              ("Acq1", "Q_l", "FLAIR"): truth + 2.0 * sulci[..., None],
              ("Acq1", "Q_l", "T1w"): truth}
    rows = xs.sulcal_flair_errors(images, sulci[..., None], mask[..., None], np.array([0]))
    assert rows == [{"protocol": "Acq1", "source": "Q_l", "error": pytest.approx(20.0),
                     "n_voxels": int(sulci.sum())}]


def _user_files(tmp_path: Path) -> dict:
    maps, mask, _ = phantom()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    files = {"mask": save_nifti(tmp_path / "mask.nii.gz", mask, affine)}
    noisy = maps * (1 + 0.05 * np.random.default_rng(0).normal(size=maps.shape)) * mask
    for name, data in (("fast", noisy), ("slow", maps)):
        files[name] = {m: save_nifti(tmp_path / f"{name}_{m}.nii.gz", data[i], affine)
                       for i, m in enumerate(("PD", "T1", "T2"))}
    for contrast, protocol in image_protocols().items():
        files[contrast] = save_nifti(tmp_path / f"{contrast}.nii.gz", 3 * synthesize(protocol, maps) * mask,
                                     affine)
    return files


def test_user_data_path_on_small_nifti_files(tmp_path: Path) -> None:
    files = _user_files(tmp_path)
    model = checkpoint(tmp_path / "M12++.pt")
    flair = vars(image_protocols()["FLAIR"])
    result = xs.evaluate_user_data(model, {"fast": files["fast"], "slow": files["slow"]},
                                   t1w=files["T1w"], t2w=files["T2w"], flair=files["FLAIR"],
                                   mask=files["mask"], flair_protocol=flair)
    table = result.synthesis
    assert len(table) == 2 * 2 * 3 * 4  # map sets x sources x contrasts x slices
    assert np.isfinite(table[["ssim", "hfen"]].to_numpy()).all()
    # The exact maps ("slow") reproduce the acquired images after the affine match.
    slow = table[(table["protocol"] == "slow") & (table["source"] == "Q_l")]
    np.testing.assert_allclose(slow["ssim"], 1.0, atol=1e-5)
    fast = xs.table2(table).loc[("fast", "T1w", "Q_l"), "ssim_mean"]
    assert fast < 0.99
    assert set(result.example.synthesized) >= {("fast", "SR", "FLAIR"), ("slow", "Q_l", "T1w")}
    for figure in (crossseq_figures.fig4a_maps(result.example), crossseq_figures.fig4b_guides(result.example),
                   crossseq_figures.fig4c_flair(result.example, zoom=16)):
        assert figure.axes
        matplotlib.pyplot.close(figure)

    with pytest.raises(DataValidationError, match="flair_protocol"):
        xs.evaluate_user_data(model, {"fast": files["fast"]}, files["T1w"], files["T2w"], files["FLAIR"])
    with pytest.raises(DataValidationError, match="guide"):
        xs.evaluate_user_data(model, {"fast": files["fast"]}, t1w=files["T1w"])
    moved = save_nifti(tmp_path / "moved.nii.gz", np.ones((40, 36, 4)), np.diag([1.0, 1.0, 3.0, 1.0]))
    with pytest.raises(DataValidationError, match="affine"):
        xs.evaluate_user_data(model, {"fast": files["fast"]}, files["T1w"], moved, mask=files["mask"])


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
    monkeypatch.setattr(xs, "load_dataset", lambda *args, **kwargs: dataset)
    checkpoint(tmp_path / "tiny" / "checkpoints" / "M12++.pt")
    section = {"slice_stride": 2, "min_brain_fraction": 0.0, "variant": "M12++",
               "acquisition": {"n_t1": 40, "n_t2": 40},
               "recon": {"epochs": 1, "batch_size": 2, "min_brain_fraction": 0.0}}
    results = [xs.run_cross_sequence({"name": "tiny", "model": MODEL,
                                      "crosssequence": {**section, "workers": workers}},
                                     results_dir=tmp_path, progress=False, force=True)
               for workers in (1, 2)]
    for name in xs.TABLES:
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
    monkeypatch.setattr(xs, "load_dataset", lambda *args, **kwargs: dataset)
    profile = {
        "name": "tiny", "model": MODEL,
        "crosssequence": {"slice_stride": 2, "min_brain_fraction": 0.0, "variant": "M12++",
                          "acquisition": {"n_t1": 40, "n_t2": 40},
                          "recon": {"epochs": 1, "batch_size": 2, "min_brain_fraction": 0.0}},
    }
    checkpoint(tmp_path / "tiny" / "checkpoints" / "M12++.pt")
    result = xs.run_cross_sequence(profile, results_dir=tmp_path, progress=False)
    assert not result.info["reused"] and result.info["subjects"] == ["sub-01", "sub-02"]
    assert set(result.synthesis["protocol"]) == {*xs.PROTOCOLS, xs.REFERENCE}
    assert set(result.maps["protocol"]) == set(xs.PROTOCOLS) and set(result.tissue["tissue"]) == {"WM", "GM"}
    # Untrained SWIG model = identity: SR equals its input (up to float rounding).
    part = result.maps.pivot_table(index=["subject", "protocol", "map", "slice"], columns="source",
                                   values="ssim")
    np.testing.assert_allclose(part["SR"], part["Q_l"], atol=1e-4)
    folder = tmp_path / "tiny" / "crosssequence"
    assert {p.name for p in folder.iterdir()} == {"synthesis.csv", "table2.csv", "maps.csv", "tissue.csv",
                                                  "sulci.csv", "run.json"}
    again = xs.run_cross_sequence(profile, results_dir=tmp_path, progress=False)
    assert again.info["reused"]
    pd.testing.assert_frame_equal(again.maps, result.maps, check_exact=False)
    assert again.example.slice == result.example.slice
    np.testing.assert_array_equal(again.example.maps[("Acq1", "SR")], result.example.maps[("Acq1", "SR")])
    figure = crossseq_figures.plot_tissue_errors(result.tissue)
    assert len(figure.axes) == 4
    selection = tmp_path / "tiny" / xs.SELECTION_FILE
    assert xs.selected_variant(tmp_path / "tiny")[0] == "M12++"
    selection.parent.mkdir(parents=True, exist_ok=True)
    selection.write_text("not json")
    assert xs.selected_variant(tmp_path / "tiny")[0] == "M12++"
    selection.write_text('{"selected": "M2++"}')
    assert xs.selected_variant(tmp_path / "tiny") == ("M2++", f"selected by the ablation ranking ({selection})")
    assert xs.selected_variant(tmp_path / "tiny", "M1++")[0] == "M1++"
