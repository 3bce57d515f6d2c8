"""Tests of swig_lib.experiments.plotting: orientation, fixed windows, axes and colour-bar counts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from swig_lib.experiments import plotting as p  # noqa: E402
from swig_lib.experiments.evaluation.ranking import mean_ci  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _colorbar_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_orient_axial_anterior_up_right_on_right():
    s = np.zeros((4, 3))  # (X, Y)
    s[3, 2] = 1.0  # most right (high X), most anterior (high Y)
    s[0, 0] = 2.0  # most left, most posterior
    out = p.orient_axial(s)
    assert out.shape == (3, 4)
    assert out[0, -1] == 1.0  # top row (anterior), right column
    assert out[-1, 0] == 2.0  # bottom row (posterior), left column
    with pytest.raises(ValueError, match="2-D"):
        p.orient_axial(np.zeros((2, 2, 2)))


def test_windows_and_units_cover_the_maps():
    assert set(p.MAP_WINDOWS) == set(p.MAP_UNITS) == {"PD", "T1", "T2"}
    wm_gm_csf = {"PD": (70, 80, 100), "T1": (600, 1000, 4000), "T2": (80, 100, 2000)}
    for name, (lo, hi) in p.MAP_WINDOWS.items():
        wm, gm, _ = wm_gm_csf[name]
        assert lo <= wm < gm < hi  # WM and GM are inside the window, not clipped


def test_show_map_grid_axes_colorbars_windows_captions():
    rng = np.random.default_rng(0)
    rows, cols = ["PD", "T1", "T2"], ["Q_h", "M12++", "Q_l"]
    images = [[rng.uniform(0, 100, (16, 20)) for _ in cols] for _ in rows]
    captions = [[f"SSIM 0.9{r}{c} / HFEN 0.2" for c in range(3)] for r in range(3)]
    fig = p.show_map_grid(images, rows, cols, p.MAP_WINDOWS, p.MAP_UNITS, captions=captions)
    assert len(fig.axes) == 9 + 3
    cbars = _colorbar_axes(fig)
    assert len(cbars) == 3
    assert cbars[1].get_ylabel() == "T1 [ms]"
    image_axes = [ax for ax in fig.axes if ax not in cbars]
    for r, name in enumerate(rows):
        for c in range(3):
            ax = image_axes[3 * r + c]
            (im,) = ax.get_images()
            assert im.get_clim() == p.MAP_WINDOWS[name]
            assert im.get_array().shape == (20, 16)  # oriented (Y, X)
            assert ax.get_xlabel() == captions[r][c]
    assert image_axes[0].get_title() == "Q_h"
    assert image_axes[3].get_ylabel() == "T1"


def test_show_map_grid_errors():
    img = np.zeros((8, 8))
    with pytest.raises(ValueError, match="nested list"):
        p.show_map_grid([[img, img]], ["PD"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="window"):
        p.show_map_grid([[img]], ["FLAIR"], ["a"])


def _subject_table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for model, shift in [("Q_l", 0.0), ("M1++", 0.02), ("M12++", 0.04)]:
        for s in range(6):
            for name in ("PD", "T1", "T2"):
                rows.append((model, f"s{s}", name, 0.9 + shift + rng.normal(0, 0.01), 0.5 - shift))
    return pd.DataFrame(rows, columns=["model", "subject", "map", "ssim", "hfen"])


def test_plot_subject_metrics_panels_points_and_ci():
    df = _subject_table()
    fig = p.plot_subject_metrics(df, "ssim", maps=("PD", "T1"), models=["M12++", "M1++"])
    assert len(fig.axes) == 2
    ax = fig.axes[1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Q_l", "M12++", "M1++"]
    points = ax.collections[0::2]  # scatter, then the errorbar's line collection, per model
    assert [len(c.get_offsets()) for c in points] == [6, 6, 6]
    np.testing.assert_allclose(
        np.sort(points[0].get_offsets()[:, 1]),
        np.sort(df.query("model == 'Q_l' and map == 'T1'")["ssim"]),
    )
    assert np.allclose(points[0].get_facecolor()[0][:3], matplotlib.colors.to_rgb("tab:red"))
    assert np.allclose(points[1].get_facecolor()[0][:3], matplotlib.colors.to_rgb("tab:blue"))
    mean, lo, hi = mean_ci(df.query("model == 'M1++' and map == 'T1'")["ssim"])
    segments = ax.collections[5].get_segments()  # CI bar of the third model
    np.testing.assert_allclose(sorted(segments[0][:, 1]), [lo, hi])
    with pytest.raises(ValueError, match="no ssim values"):
        p.plot_subject_metrics(df, "ssim", maps=("FLAIR",))


def test_plot_loss_curves_log_axes():
    log = pd.DataFrame(
        [(e, split, 1.0 / (e + 1), 0.5 / (e + 1), 1.5 / (e + 1) + (split == "val"))
         for e in range(5) for split in ("train", "val")],
        columns=["epoch", "split", "loss_lr", "loss_guide", "loss_total"],
    )
    fig = p.plot_loss_curves(log)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        assert len(ax.get_lines()) == 2
    assert "Eq. 9" in fig.axes[0].get_title()
    bad = log.assign(loss_lr=0.0)
    with pytest.raises(ValueError, match="positive"):
        p.plot_loss_curves(bad)


def test_difference_panel_symmetric_window():
    fig, ax = plt.subplots()
    diff = np.linspace(-3.0, 5.0, 100).reshape(10, 10)
    im = p.difference_panel(ax, diff, limit=2.0, units="a.u.", title="FLAIR")
    assert im.get_clim() == (-2.0, 2.0)
    assert len(_colorbar_axes(fig)) == 1
    fig2, ax2 = plt.subplots()
    mask = np.zeros((10, 10), dtype=bool)
    mask[:5] = True  # values -3 .. ~1
    im2 = p.difference_panel(ax2, diff, mask=mask, percentile=100.0)
    assert im2.get_clim() == pytest.approx((-3.0, 3.0))
    with pytest.raises(ValueError, match="limit"):
        p.difference_panel(ax2, np.zeros((4, 4)))


def test_show_panels_windows_colorbars_and_layout():
    rng = np.random.default_rng(1)
    images = [rng.uniform(0, 100, (12, 10)) for _ in range(5)]
    fig = p.show_panels(images, [f"c{i}" for i in range(5)], (0.0, 100.0), "signal [a.u.]",
                        ncols=3, shared_colorbar=True)
    image_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(image_axes) == 5 and len(_colorbar_axes(fig)) == 1
    assert all(ax.images[0].get_clim() == (0.0, 100.0) for ax in image_axes)
    assert image_axes[0].images[0].get_array().shape == (10, 12)  # oriented
    fig = p.show_panels(images[:2], ["a", "b"], [(0, 1), (0, 50)], ["fraction", "PD [a.u.]"])
    assert len(_colorbar_axes(fig)) == 2
    assert [ax.images[0].get_clim() for ax in fig.axes if ax.images] == [(0, 1), (0, 50)]
    with pytest.raises(ValueError, match="shared_colorbar"):
        p.show_panels(images[:2], ["a", "b"], [(0, 1), (0, 50)], "x", shared_colorbar=True)
    with pytest.raises(ValueError, match="title"):
        p.show_panels(images[:2], ["a"], (0, 1), "x")


def test_show_comparison_fixed_windows_and_difference():
    rng = np.random.default_rng(2)
    ref = np.stack([rng.uniform(50, 90, (16, 14)), rng.uniform(500, 1500, (16, 14)),
                    rng.uniform(60, 120, (16, 14))])
    mask = np.zeros((16, 14), bool)
    mask[3:13, 3:11] = True
    fig = p.show_comparison(ref, ref + 1.0, mask)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 9 and len(_colorbar_axes(fig)) == 6
    assert image_axes[3].images[0].get_clim() == p.MAP_WINDOWS["T1"]
    assert image_axes[5].images[0].get_clim() == (-p.DIFF_LIMITS["T1"], p.DIFF_LIMITS["T1"])
    with pytest.raises(ValueError, match="stacks"):
        p.show_comparison(ref, ref[:2], mask)


def test_plot_baseline_points_regions_and_paper():
    rng = np.random.default_rng(3)
    rows = [{"subject": f"s{i}", "map": name, "region": region, "ssim": rng.uniform(0.8, 1.0),
             "hfen": rng.uniform(0.1, 0.3)}
            for i in range(4) for name in ("PD", "T1", "T2") for region in ("brain", "interior")]
    fig = p.plot_baseline(pd.DataFrame(rows), paper={("ssim", "T2"): (0.98, 0.005)})
    assert len(fig.axes) == 2
    ssim_ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ssim_ax.collections if hasattr(c, "get_offsets")) >= 24
    assert "paper: mean ± sd" in ssim_ax.get_legend_handles_labels()[1]
    with pytest.raises(ValueError, match="lacks"):
        p.plot_baseline(pd.DataFrame(rows).drop(columns="region"))


def test_load_training_logs_and_plot_loss_grid(tmp_path):
    log = pd.DataFrame(
        [(e, split, 10.0 / e, 0.5 / e, 12.0 / e) for e in range(1, 5) for split in ("train", "val")],
        columns=["epoch", "split", "loss_lr", "loss_guide", "loss_total"],
    )
    for name in ("A", "B"):
        log.to_csv(tmp_path / f"{name}.csv", index=False)
    logs = p.load_training_logs(tmp_path, ["B", "A"])
    assert list(logs) == ["B", "A"] and logs["A"].equals(log)
    with pytest.raises(FileNotFoundError, match="C.csv"):
        p.load_training_logs(tmp_path, ["C"])
    fig = p.plot_loss_grid(logs, selected={"A": 3})
    assert len(fig.axes) == 6
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert len(fig.axes[0].get_lines()) == 2 and len(fig.axes[3].get_lines()) == 3  # + kept epoch
    assert fig.axes[0].get_ylabel() == "B" and "Eq. 9" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="lacks"):
        p.plot_loss_grid({"A": log.drop(columns="loss_guide")})


def test_outline_region_matches_oriented_bounding_box():
    region = np.zeros((10, 8), bool)
    region[2:5, 1:7] = True  # X 2-4, Y 1-6
    _, ax = plt.subplots()
    ax.imshow(p.orient_axial(region))
    patch = p.outline_region(ax, region, color="cyan")
    # oriented: rows = flipped Y (7 - y), columns = X
    assert patch.get_xy() == (1.5, 0.5) and patch.get_width() == 3 and patch.get_height() == 6
    with pytest.raises(ValueError, match="empty"):
        p.outline_region(ax, np.zeros((4, 4), bool))
