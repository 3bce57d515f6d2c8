"""Tests of the data chapter's analyses (swig_lib.experiments.subjects.report) and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from swig_lib.core.protocols import GUIDE_PROTOCOLS, QMRIProtocol  # noqa: E402
from swig_lib.experiments.config import load_profile  # noqa: E402
from swig_lib.experiments.evaluation.ranking import mean_sd  # noqa: E402
from swig_lib.experiments.subjects import figures  # noqa: E402
from swig_lib.experiments.subjects import report as rp  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_data_synthesis.ipynb"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tissues(gm_pd: float) -> dict[str, dict[str, float]]:
    return {"GM": {"pd": gm_pd, "t1": 1100.0, "t2": 95.0}, "WM": {"pd": 69.0, "t1": 700.0, "t2": 75.0},
            "CSF": {"pd": 100.0, "t1": 3900.0, "t2": 1700.0}}


def test_contrast_titles_follow_the_protocol() -> None:
    titles = rp.contrast_titles(QMRIProtocol())
    assert len(titles) == 12
    assert titles[0] == "SR, TR 360 ms" and titles[5] == "SR, TR 2733 ms"
    assert titles[6] == "SE, TE 10 ms" and titles[-1] == "SE, TE 320 ms"


def test_tissue_values_table() -> None:
    subjects = {"sub-01": {"tissue_values": _tissues(80.0)}, "sub-02": {"tissue_values": _tissues(86.0)}}
    table = rp.tissue_values_table(subjects)
    assert list(table.index) == ["GM", "WM", "CSF"]
    assert list(table.columns[:2]) == ["PD literature [a.u.]", "PD subjects [a.u.]"]
    assert table.loc["GM", "PD literature [a.u.]"] == "82"
    # mean 83, sample sd 3 * sqrt(2) = 4.24
    assert table.loc["GM", "PD subjects [a.u.]"] == "83 ± 4"
    assert table.loc["WM", "T1 subjects [ms]"] == "700 ± 0"
    assert table.loc["CSF", "T2 literature [ms]"] == "1700"


def test_noise_table() -> None:
    snr = np.arange(1.0, 13.0) * 100
    table = rp.noise_table(0.1, 0.25, 0.1 * np.sqrt(0.125), 0.0354, snr, rp.contrast_titles(QMRIProtocol()))
    assert table["value"].tolist() == [
        "0.1 a.u.", "0.2500", "0.0354 a.u.", "0.0354 a.u.",
        "100 (SR, TR 360 ms)", "1200 (SE, TE 320 ms)",
    ]


def test_fit_errors() -> None:
    q_h = np.stack([np.full((2, 3, 1), v) for v in (100.0, 1000.0, 50.0)])
    mask = np.ones((2, 3, 1), bool)
    mask[1, 2, 0] = False
    errors = np.array([0.0, 0.1, 0.2, 0.3, 0.4]).reshape(1, 5)
    fitted = q_h.copy()
    fitted[:, mask] *= 1 + errors
    fitted[:, ~mask] = 1e6  # outside the mask: ignored
    exact = q_h * (1 + 1e-7)
    result = rp.fit_errors(q_h, {"exact": exact, "off": fitted}, mask, "caption")
    assert list(result.table.columns) == ["exact", "off"]
    assert list(result.table.index)[:2] == [("PD", "median"), ("PD", "95th percentile")]
    assert result.fitter_max == pytest.approx(1e-7, rel=1e-6)
    np.testing.assert_allclose(result.median["off"], [0.2, 0.2, 0.2])
    # linear interpolation: 0.3 + 0.8 * 0.1
    assert result.table.loc[("T1", "95th percentile"), "off"] == pytest.approx(0.38)
    assert result.n_voxels == 5
    assert result.styled().caption == "caption"


def test_guide_signals_order_the_tissues() -> None:
    signals = rp.pure_tissue_signals()
    assert list(signals) == list(GUIDE_PROTOCOLS) and list(signals["T1w"]) == ["GM", "WM", "CSF"]
    t1w, t2w = signals["T1w"], signals["T2w"]
    assert t1w["WM"] > t1w["GM"] > t1w["CSF"]  # T1w: white matter bright, CSF dark
    assert t2w["CSF"] > t2w["GM"] > t2w["WM"]  # T2w: CSF bright


def test_guide_table() -> None:
    signals = {"T1w": {"GM": 1.04, "WM": 2.0, "CSF": 0.0}, "T2w": {"GM": 3.0, "WM": 2.5, "CSF": 9.96}}
    table = rp.guide_table(signals)
    assert list(table.columns) == ["T1w", "T2w"]
    assert table.loc["sequence"].tolist() == ["IR-SPGR (eq. 15-16)", "spin echo (eq. 17)"]
    assert table.loc["TR [ms]"].tolist() == [6.6, 5211.0]
    assert table.loc["flip angle α [°]"].tolist() == [12.0, 160.0]
    assert table.loc["TP [ms]"].tolist() == [450.0, ""]  # the spin echo has no inversion
    assert table.loc["GM signal [a.u.]"].tolist() == [1.0, 3.0]
    assert table.loc["CSF signal [a.u.]"].tolist() == [0.0, 10.0]


def _fake_dataset(slices: list[int], build: dict | None) -> SimpleNamespace:
    manifest = {"slices": slices, "shape": [4, 5, len(slices)],
                "subjects": {f"sub-0{i}": {"seed": [7, i], "noise_seed": 100 + i, "min_jacobian": 0.5}
                             for i in (1, 2, 3)}}
    if build is not None:
        manifest["build"] = build
    settings = {"source": "mni152", "seed": 7, "keep": 0.5, "sigma": 0.1}
    return SimpleNamespace(manifest=manifest, settings=settings, folder=Path("data/x"))


def test_dataset_overview_and_subject_table() -> None:
    split = {"train": ["sub-01"], "val": ["sub-02"], "test": ["sub-03"]}
    dataset = _fake_dataset([50, 54, 62], {"seconds": 12.4, "numpy": "2"})
    overview = rp.dataset_overview(dataset, split, 3.6)["value"]
    assert overview["subjects (train / val / test)"] == "3 (1 / 1 / 1)"
    assert overview["grid X × Y × slices"] == "4 × 5 × 3"
    assert overview["voxel size"] == "1 × 1 mm in-plane, every 4 mm axially"
    assert overview["their z"] == "-22 … -10 mm"
    assert overview["Φ: kept fraction of each axis, k-space σ"] == "0.5, 0.1 a.u."
    assert overview["build time"] == "12 s" and overview["built with"] == "numpy 2"
    assert overview["size on disk"] == "4 MiB"
    unbuilt = rp.dataset_overview(_fake_dataset([88], None), split, 1.0)["value"]
    assert unbuilt["build time"] == "not recorded"
    assert unbuilt["voxel size"] == "1 × 1 mm in-plane, every 1 mm axially"
    subjects = rp.subject_table(dataset.manifest["subjects"], split)
    assert subjects["split"].tolist() == ["train", "val", "test"]
    assert subjects.loc["sub-02", "seed"] == (7, 2) and subjects.loc["sub-03", "noise seed"] == 103


def test_baseline_table() -> None:
    rows = [{"subject": s, "region": r, "map": m, "ssim": v, "hfen": 2 * v}
            for s, v in (("a", 0.9), ("b", 0.95))
            for r in ("brain", "interior") for m in ("PD", "T2")]
    per_subject = pd.DataFrame(rows)
    baseline = rp.Baseline(per_subject, mean_sd(per_subject, by=("region", "map")), 4)
    table = rp.baseline_table(baseline, {("ssim", "T2"): (0.98, 0.005)})
    assert list(table.index) == [("brain", "PD"), ("brain", "T2"), ("interior (eroded 4)", "PD"),
                                 ("interior (eroded 4)", "T2")]
    assert table.loc[("brain", "T2"), "SSIM (mean ± sd)"] == "0.9250 ± 0.0354"
    assert table.loc[("brain", "T2"), "HFEN (mean ± sd)"] == "1.8500 ± 0.0707"
    assert table.loc[("brain", "T2"), "paper SSIM"] == "0.98 ± 0.005"
    assert table.loc[("brain", "PD"), "paper SSIM"] == "not stated"
    assert table.loc[("interior (eroded 4)", "T2"), "paper SSIM"] == ""


@pytest.fixture(scope="module")
def chapter(tmp_path_factory: pytest.TempPathFactory) -> rp.DataResults:
    """The data chapter on a tiny smoke dataset: 2 subjects (train, test) × 2 slices."""
    profile = load_profile("smoke", {"data.n_subjects": 2, "data.split": [1, 0, 1], "data.slices": [88, 92],
                                     "data.slice_step": 2, "generalisation.n_subjects": 2,
                                     "generalisation.split": [1, 0, 1]})
    root = tmp_path_factory.mktemp("chapter")
    return rp.run_data_chapter(profile, root / "data", root / "results")


def test_run_data_chapter(chapter: rp.DataResults) -> None:
    assert chapter.out_dir.parts[-2:] == ("smoke", "data")
    assert chapter.shown.subject == chapter.split["test"][0] == "sub-02"
    assert chapter.shown.index == 1 and chapter.shown.mni152_slice == 90  # slices [88, 92) step 2
    assert chapter.shown.redraw_error.max() < 1e-4
    phi = chapter.phi
    assert phi.kept_fraction == 0.25  # half of each axis (170 and 206 samples)
    assert phi.noise_sd == pytest.approx(phi.noise_sd_expected, rel=0.05)
    assert chapter.fits.fitter_max < 1e-4  # the fitter recovers Q_h from noise-free HR contrasts
    resolution, q_l = (chapter.fits.median[label] for label in rp.FIT_LABELS[1:])
    assert np.all(resolution > 1e-3)
    written = pd.read_csv(chapter.out_dir / "baseline_per_subject.csv")
    pd.testing.assert_frame_equal(written, chapter.baseline.per_subject)
    assert set(written["subject"]) == {"sub-02"}
    # one test subject: the sds are NaN, so compare the text
    assert (chapter.out_dir / "summary.json").read_text() == json.dumps(chapter.summary, indent=1) + "\n"
    assert chapter.summary["dataset"]["split"] == {"train": 1, "val": 0, "test": 1}


def test_label_source(chapter: rp.DataResults) -> None:
    labels = chapter.label_dataset
    assert labels.folder.name == "synthsr-heldout-smoke" and labels.settings["anatomy_source"] == "synthsr"
    assert labels.manifest["slices"] == chapter.dataset.manifest["slices"]  # the profile's slab
    brains = {sid: labels.manifest["subjects"][sid]["synthsr_brain"] for sid in ("sub-01", "sub-02")}
    assert brains == {"sub-01": 1, "sub-02": 5}  # train from brains 1-3, test from the held-out 4-5 (cycled)
    written = pd.read_csv(chapter.out_dir / "label_baseline_per_subject.csv")
    pd.testing.assert_frame_equal(written, chapter.label_baseline.per_subject)
    table = chapter.sources
    assert list(table.columns) == ["MNI152 (1 subjects)", "label maps (1 subjects)", "label maps / MNI152"]
    brain = chapter.label_baseline.summary.loc["brain"]
    assert table.loc[("HFEN", "T1"), "label maps (1 subjects)"] == brain.loc["T1", "hfen_mean"]
    assert table.loc[("SSIM", "PD"), "label maps / MNI152"] == (
        brain.loc["PD", "ssim_mean"] / chapter.baseline.summary.loc[("brain", "PD"), "ssim_mean"])
    glue = chapter.glue
    assert glue["label_n_subjects"] == (2, None) and glue["label_split"] == ("1 + 0 + 1", None)
    assert glue["src_synthsr_hfen_t1"] == (brain.loc["T1", "hfen_mean"], ".3f")
    ratios = table.loc["HFEN", "label maps / MNI152"]
    assert glue["src_hfen_text"][0].startswith(f"{ratios.min():.1f}")


def test_glue_covers_the_prose(chapter: rp.DataResults) -> None:
    text = NOTEBOOK.read_text()
    quoted = set(re.findall(r"01_data_synthesis\.ipynb::(\w+):s", text))
    assert quoted and quoted <= set(chapter.glue)
    assert chapter.glue["n_subjects"] == (2, None)
    assert chapter.glue["paper_baseline_ssim_t2"] == ("0.98 ± 0.005", None)
    assert chapter.glue["fit_voxels"] == (int(chapter.shown.acquired.mask.sum()), ",")


def test_figures(chapter: rp.DataResults) -> None:
    shown, phi = chapter.shown, chapter.phi

    def images(fig) -> int:
        return sum(1 for ax in fig.axes if ax.get_label() != "<colorbar>")

    assert images(figures.subject_construction(shown)) == 9
    assert images(figures.subject_gallery(chapter.dataset, shown.index)) == 3 * 2  # both subjects
    gallery = figures.subject_gallery(chapter.label_dataset, shown.index)
    assert images(gallery) == 3 * 2 and gallery.axes[0].get_xlabel().startswith("cortex ")
    assert images(figures.contrast_panels(phi, phi.c_h, "HR")) == 12
    fig = figures.phi_panels(phi, shown)
    assert images(fig) == 5 and fig.axes[0].get_title() == "$C_h$ (yellow: zoom)"
    assert len(fig.axes[1].patches) == 1 and fig.axes[1].patches[0].get_edgecolor()[:3] == (0.0, 1.0, 1.0)
    assert images(figures.q_l_comparison(shown)) == 9
    assert images(figures.guide_panels(shown, chapter.guide_signals)) == 4
    assert figures.baseline_figure(chapter.baseline).get_suptitle() == "$Q_l$ against $Q_h$, 1 test subjects"
