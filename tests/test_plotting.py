"""Tests of swig_lib.plotting: orientation, fixed windows, axes and colour-bar counts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from swig_lib import plotting as p  # noqa: E402
from swig_lib.metrics import mean_ci  # noqa: E402


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
