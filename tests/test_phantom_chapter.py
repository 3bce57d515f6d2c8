"""The real-scan chapter: degradation, fits, SR loss, reference choice and the chapter on a cropped copy."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from swig_lib.core.kspace import KSpaceTruncation, centre_mask, fft2c, ifft2c
from swig_lib.core.relaxometry import CLIP_12BIT
from swig_lib.core.sequences import GuideProtocol
from swig_lib.experiments.config import load_profile
from swig_lib.experiments.phantom.chapter import (
    RING_EDGES_MM,
    SOURCES,
    PhantomSettings,
    run_phantom_chapter,
)
from swig_lib.experiments.phantom.plates import (
    AMPLITUDE_LIMIT,
    PLATES,
    PlateData,
    clip_leak,
    degrade,
    fit_maps,
    load_plate,
    measurable_range,
    resample_to_grid,
    synthesise_guide,
    synthesise_series,
)
from swig_lib.experiments.phantom.reference import Sphere, choose_temperature, sphere_masks, sphere_medians
from swig_lib.experiments.phantom.superres import SeriesProblem, balanced_alpha, phantom_loss

COPY = Path(__file__).resolve().parents[1] / "datasets" / "nist-phantom"
TI = (35.0, 75.0, 100.0, 125.0, 150.0, 250.0, 1000.0, 1500.0, 2000.0, 3000.0)
TE = tuple(10.0 * (i + 1) for i in range(32))


def test_degradation_is_phi_of_the_hr_series():
    data = load_plate(COPY, PLATES["T2"], crop=(64, 48))
    phi = KSpaceTruncation(0.5)
    degraded = degrade(data.images, phi)
    # Φ of eq. 3 written out: the centred band of the orthonormal DFT, real part, no noise.
    band = centre_mask((64, 48), 0.5)
    expected = ifft2c(fft2c(data.images.to(torch.complex128)) * band).real
    torch.testing.assert_close(degraded, expected, rtol=0, atol=1e-9)
    assert torch.equal(degraded, phi.forward(data.images)) and torch.equal(degraded, degrade(data.images, phi))
    # Noise-free and a projection: degrading again changes nothing; the real noise stays in.
    torch.testing.assert_close(degrade(degraded, phi), degraded, rtol=0, atol=1e-9)
    assert data.images.shape == (32, 64, 48) and data.times == pytest.approx(TE, rel=1e-12)


def test_clip_leak_marks_the_main_lobe_of_clipped_samples():
    images = torch.full((1, 32, 32), 1000.0, dtype=torch.float64)
    images[0, 16, 16] = CLIP_12BIT
    leak = clip_leak(images, KSpaceTruncation(0.5))[0]
    # One clipped voxel: Φ of its indicator there is (17/32)² = 0.28 (17 of 32 frequencies kept
    # per axis); everywhere else it stays below the threshold.
    assert leak[16, 16] and int(leak.sum()) == 1
    images[0, 8:24, 8:24] = CLIP_12BIT  # a clipped block: ~0.73 on its edge, ~0.25 one voxel out
    leak = clip_leak(images, KSpaceTruncation(0.5))[0]
    assert leak[8:24, 8:24].all() and int(leak.sum()) <= 18 * 18
    assert not leak[[6, 25], :].any() and not leak[:, [6, 25]].any()  # two voxels out: kept


def test_lr_fit_recovers_large_discs_of_a_noise_free_phantom():
    """Known answer: discs of known (a, b, T1), Φ, LR fit; the centre of a large disc keeps its T1."""
    plate = PLATES["T1"]
    shape = (64, 64)
    truth = torch.zeros(3, *shape, dtype=torch.float64)
    truth[0], truth[1], truth[2] = 1000.0, 1900.0, 2500.0  # background "fluid"
    affine = np.eye(4)
    discs = [Sphere("T1", 1, (20.0, 20.0, 0.0), 12.0), Sphere("T1", 2, (46.0, 46.0, 0.0), 12.0),
             Sphere("T1", 3, (48.0, 14.0, 0.0), 1.0)]
    masks = sphere_masks((*shape, 1), affine, discs)[..., 0]
    values = [(800.0, 1500.0, 300.0), (1200.0, 2300.0, 900.0), (800.0, 1500.0, 300.0)]
    for mask, (a, b, t1) in zip(masks, values):
        truth[:, torch.from_numpy(mask)] = torch.tensor([a, b, t1], dtype=torch.float64)[:, None]
    hr = synthesise_series(plate, truth, torch.tensor(TI, dtype=torch.float64))
    everywhere = torch.ones(shape, dtype=torch.bool)
    torch.testing.assert_close(fit_maps(plate, hr, TI, everywhere), truth, rtol=1e-9, atol=1e-9)
    q_l = fit_maps(plate, degrade(hr, KSpaceTruncation(0.5)), TI, everywhere)
    centres = sphere_masks((*shape, 1), affine, [Sphere("T1", s.number, s.centre, min(3.0, s.radius))
                                                 for s in discs])[..., 0]
    medians = sphere_medians(q_l[2].numpy(), centres)
    assert abs(medians[0] / 300.0 - 1) < 0.01 and abs(medians[1] / 900.0 - 1) < 0.01
    assert abs(medians[2] / 300.0 - 1) > 0.2  # a disc 3 voxels across is lost at ~2-voxel resolution


def test_fit_maps_drops_amplitudes_extrapolated_from_the_tail():
    plate = PLATES["T2"]
    t = torch.tensor(TE, dtype=torch.float64)
    a = torch.tensor([3000.0, 1e12])
    t2 = torch.tensor([80.0, 15.0])
    signal = (a[None] * torch.exp(-t[:, None] / t2[None])).clamp(max=CLIP_12BIT)[:, :, None]
    maps = fit_maps(plate, signal, TE, torch.ones(2, 1, dtype=torch.bool))
    torch.testing.assert_close(maps[:, 0, 0], torch.tensor([3000.0, 80.0], dtype=torch.float64), rtol=1e-9, atol=0)
    assert 1e12 > AMPLITUDE_LIMIT * CLIP_12BIT and torch.equal(maps[:, 1, 0], torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="the inversion-recovery fit cannot exclude samples"):
        fit_maps(PLATES["T1"], signal[:10], TI, torch.ones(2, 1, dtype=torch.bool),
                 torch.zeros(10, 2, 1, dtype=torch.bool))


def test_measurable_ranges_of_the_phantom_timings():
    assert measurable_range(PLATES["T1"], TI) == (70.0, 3000.0)
    assert measurable_range(PLATES["T2"], TE) == (30.0, 320.0)


def test_resample_to_grid_averages_a_linear_image_exactly():
    # A source of 0.5 mm voxels holding 2x + 3y + 5z (mm); the 1 mm target's box averages of a
    # linear function equal its value at the target voxel centres.
    source_affine = np.diag([0.5, 0.5, 0.5, 1.0])
    i, j, k = np.meshgrid(np.arange(40), np.arange(40), np.arange(12), indexing="ij")
    volume = 2 * 0.5 * i + 3 * 0.5 * j + 5 * 0.5 * k
    target = np.array([[1.0, 0, 0, 3.25], [0, 1.0, 0, 4.25], [0, 0, 2.0, 2.75], [0, 0, 0, 1]])
    out = resample_to_grid(volume, source_affine, (10, 8), target)
    x, y = np.meshgrid(np.arange(10) + 3.25, np.arange(8) + 4.25, indexing="ij")
    np.testing.assert_allclose(out, 2 * x + 3 * y + 5 * 2.75, rtol=0, atol=1e-9)


def _plate_data(plate_name: str, shape=(24, 24), tr=5000.0, protocol=None) -> PlateData:
    plate = PLATES[plate_name]
    times = TI if plate_name == "T1" else TE
    return PlateData(plate=plate, images=torch.zeros(len(times), *shape, dtype=torch.float64), times=times,
                     repetition_time=tr, affine=np.eye(4), guide=torch.zeros(shape, dtype=torch.float64),
                     guide_clipped=torch.zeros(shape, dtype=torch.bool),
                     guide_protocol=protocol or GuideProtocol("SE", tr=5000.0, te=63.0),
                     mask=torch.ones(shape, dtype=torch.bool), sigma=10.0)


def test_synthesised_guides_follow_the_sidecar_models():
    maps = torch.tensor([[[2000.0]], [[80.0]]], dtype=torch.float64)
    tse = synthesise_guide(_plate_data("T2"), maps)  # same TR: A·e^(−TE/T2)
    assert tse.item() == pytest.approx(2000.0 * math.exp(-63.0 / 80.0), rel=1e-12)
    with pytest.raises(ValueError, match=r"the guide's TR \(5000.0 ms\) differs from the series' \(4500.0 ms\)"):
        synthesise_guide(_plate_data("T2", tr=4500.0), maps)
    gre = GuideProtocol("SPGR", tr=6.3, te=2.79, flip=10.0)
    maps = torch.tensor([[[1500.0]], [[2800.0]], [[400.0]]], dtype=torch.float64)
    e1, alpha = math.exp(-6.3 / 400.0), math.radians(10.0)
    ernst = 1500.0 * math.sin(alpha) * (1 - e1) / (1 - math.cos(alpha) * e1)  # no T2* decay
    assert synthesise_guide(_plate_data("T1", protocol=gre), maps).item() == pytest.approx(ernst, rel=1e-12)


def test_phantom_loss_vanishes_at_the_truth_and_alpha_balances():
    data = _plate_data("T2")
    truth = torch.zeros(2, 24, 24, dtype=torch.float64)
    truth[0], truth[1] = 3000.0, 100.0
    truth[0, 8:16, 8:16], truth[1, 8:16, 8:16] = 5000.0, 40.0  # clipped in its first echoes
    times = torch.tensor(TE, dtype=torch.float64)
    phi = KSpaceTruncation(0.5)
    c_l = degrade(synthesise_series(data.plate, truth, times), phi)
    guide = 3.0 * synthesise_guide(data, truth) + 7.0  # any affine image of the synthetic guide
    data = dataclasses.replace(data, guide=guide)
    problem = SeriesProblem.build(data, c_l, truth, phi, dc_dilation=0)
    terms = phantom_loss(truth.float(), problem, alpha=5.0)
    assert float(terms.data) < 1e-5 and abs(float(terms.guide)) < 1e-5  # float32 rounding
    start = truth.clone()
    start[1] *= 1.2
    alpha, l_data, l_guide = balanced_alpha(problem, start)
    assert l_data > 0 and l_guide > 0 and alpha == pytest.approx(l_data / l_guide, rel=1e-12)


def test_choose_temperature_picks_the_best_fitting_table_row():
    table = pd.DataFrame({"sphere": [1, 2, 3] * 2, "temperature_C": [20.0] * 3 + [22.0] * 3,
                          "T1_ms": [1000.0, 500.0, 40.0, 900.0, 450.0, 35.0]})
    measured = pd.Series({1: 900.0, 2: 450.0, 3: 70.0})  # sphere 3 is below the measurable range
    temperature, fits = choose_temperature(table, "T1", measured, (70.0, 3000.0))
    assert temperature == 22.0 and fits["n_spheres"].tolist() == [2, 2]
    assert fits["rms_log_ratio"].iloc[1] == 0.0 and fits["rms_log_ratio"].iloc[0] == pytest.approx(math.log(10 / 9))
    with pytest.raises(ValueError, match=r"no measured sphere has a reference T1 in \[1000, 3000\] ms"):
        choose_temperature(table, "T1", measured, (1000.0, 3000.0))


def test_phantom_settings_from_the_profiles():
    smoke = PhantomSettings.from_profile(load_profile("smoke"))
    assert smoke.keep == 0.5 and smoke.window == (128, 128) and smoke.inr.seed == 0 and smoke.inr.start == "ql"
    assert PhantomSettings.from_profile(load_profile("quick")).window is None
    bad = load_profile("smoke").to_dict()
    bad["phantom"]["inr"]["start"] = "mean"
    with pytest.raises(KeyError, match=r"unknown phantom.inr setting\(s\) \['start'\]"):
        PhantomSettings.from_profile(bad)
    del bad["phantom"]["inr"]["start"], bad["phantom"]["keep"]
    with pytest.raises(KeyError, match=r"missing setting\(s\) \['phantom.keep'\]"):
        PhantomSettings.from_profile(bad)


def test_chapter_on_a_cropped_copy(tmp_path):
    profile = load_profile("smoke", {"phantom.inr.steps": 2})
    results = run_phantom_chapter(profile, tmp_path)
    measured = [f"{s}_ms" for s in SOURCES]
    assert list(results.spheres.columns) == [
        "plate", "sphere", "reference_ms", "measurable", *measured,
        *[f"{s}_vs_reference_pct" for s in SOURCES], "Q_l_vs_HR_pct", "SR_vs_HR_pct"]
    assert len(results.spheres) == 28 and results.spheres.groupby("plate").size().tolist() == [14, 14]
    t1 = results.spheres[results.spheres["plate"] == "T1"]
    assert t1.loc[t1["measurable"], "sphere"].tolist() == list(range(1, 11))
    assert list(results.metrics.columns) == ["plate", "map", "source", "ssim", "hfen"] and len(results.metrics) == 4
    assert results.metrics[["ssim", "hfen"]].notna().all().all() and (results.metrics["ssim"] <= 1).all()
    assert list(results.rings.columns) == ["plate", "sphere", "inner_mm", "outer_mm", "sphere_HR_ms",
                                           *[c for s in SOURCES for c in (f"{s}_ms", f"{s}_error_pct")]]
    assert sorted(results.rings["outer_mm"].unique()) == [float(e) for e in RING_EDGES_MM[1:]]
    assert list(results.recovery.columns) == ["plate", "source", "outer_mm", "median_abs_error_pct", "recovered"]
    assert results.info["batch"] == "batch2_sn_gte_130-0042" and results.info["temperature_C"] == 22.0
    assert [len(r.sr.history) for r in results.plates.values()] == [2, 2]
    out = tmp_path / "smoke" / "phantom"
    assert list(results.terms.columns) == ["plate", "source", "loss_lr", "loss_guide"] and len(results.terms) == 6
    for name in ("spheres", "metrics", "rings", "recovery", "temperature", "terms", "losses"):
        assert (out / f"{name}.csv").is_file()
    assert json.loads((out / "info.json").read_text())["plates"]["T1"]["measurable_spheres"] == list(range(1, 11))
