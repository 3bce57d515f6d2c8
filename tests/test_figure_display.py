"""How the book's figures are drawn: consensus colour maps for the maps, widths that fit the page."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from cmcrameri import cm as crameri  # noqa: E402

from swig_lib.experiments import plotting as p  # noqa: E402
from swig_lib.experiments.evaluation.ablation import REFERENCE_LABEL, RepresentativeSlice  # noqa: E402
from swig_lib.experiments.evaluation.figures import PANELS_PER_LINE, fig2_errors, fig2_maps  # noqa: E402

MAPS = ("PD", "T1", "T2")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _image_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_consensus_colour_maps_lipari_t1_navia_t2_grey_pd():
    assert p.MAP_CMAPS == {"PD": "gray", "T1": "cmc.lipari", "T2": "cmc.navia"}
    assert matplotlib.colormaps["cmc.lipari"](0.3) == crameri.lipari(0.3)
    assert matplotlib.colormaps["cmc.navia"](0.7) == crameri.navia(0.7)


def test_map_grid_draws_each_map_with_its_colour_map_unless_told():
    images = [[np.ones((6, 5))] * 2 for _ in MAPS]
    fig = p.show_map_grid(images, MAPS, ["a", "b"])
    for ax, name in zip(_image_axes(fig)[::2], MAPS):
        assert ax.get_images()[0].get_cmap().name == p.MAP_CMAPS[name]
    grey = p.show_map_grid(images, MAPS, ["a", "b"], cmap="gray")
    assert {ax.get_images()[0].get_cmap().name for ax in _image_axes(grey)} == {"gray"}
    with pytest.raises(ValueError, match=r"no colour map for row\(s\) \['T1w'\]: pass cmap"):
        p.show_map_grid([[np.ones((4, 4))]], ["T1w"], ["a"], windows={"T1w": (0, 1)}, units={"T1w": "a.u."})


def test_comparison_uses_the_map_colour_maps_and_a_diverging_difference():
    stack = np.ones((3, 8, 8))
    fig = p.show_comparison(stack, stack * 1.1, np.ones((8, 8), bool))
    axes = _image_axes(fig)
    for row, name in enumerate(MAPS):
        assert [ax.get_images()[0].get_cmap().name for ax in axes[3 * row : 3 * row + 3]] == [
            p.MAP_CMAPS[name], p.MAP_CMAPS[name], "RdBu_r"]


def test_wrapped_map_grid_fits_the_page_and_titles_every_panel():
    sources = [f"s{i}" for i in range(7)]
    images = [[np.full((6, 5), float(c)) for c in range(7)] for _ in MAPS]
    captions = [[f"{name} {c}" for c in range(7)] for name in MAPS]
    flat = p.show_map_grid(images, MAPS, sources, captions=captions, panel_size=2.0)
    assert flat.get_size_inches()[0] == pytest.approx(7 * 2.0 + 1.2)  # unwrapped: one line per map
    wrapped = p.show_map_grid(images, MAPS, sources, captions=captions, panel_size=2.0, ncols=4)
    assert wrapped.get_size_inches()[0] == pytest.approx(4 * 2.0 + 1.2)
    assert wrapped.get_size_inches()[0] <= p.FIGURE_WIDTH
    axes = _image_axes(wrapped)
    assert len(axes) == 3 * 7  # the unused eighth cell of each map's block is removed
    assert len(wrapped.axes) - len(axes) == 3  # one colour bar per map
    assert [ax.get_title() for ax in axes[:7]] == sources
    assert [ax.get_images()[0].get_array()[0, 0] for ax in axes[7:14]] == list(range(7))  # T1 block in order
    assert axes[7].get_xlabel() == "T1 0" and axes[11].get_ylabel() == "T1"  # second line starts a row label


def test_subject_metrics_figure_width_is_capped():
    rows = [{"model": m, "subject": s, "map": name, "ssim": 0.9}
            for m in ["Q_l", *(f"M{i}" for i in range(7))] for s in ("a", "b") for name in MAPS]
    fig = p.plot_subject_metrics(pd.DataFrame(rows), "ssim", baseline="Q_l")
    assert fig.get_size_inches()[0] == p.FIGURE_WIDTH  # 8 models x 3 maps would ask for 22.6 in


def test_fig2_wraps_eight_sources_into_lines_of_four():
    q = np.stack([np.full((10, 12), v) for v in (80.0, 1000.0, 100.0)])
    labels = [REFERENCE_LABEL, "M12++", "M2++", "M1++", "M12-+", "M12--", "M12++a0", "$Q_l$"]
    shown = RepresentativeSlice("sub-01", 0, 90, np.ones((10, 12), bool), {name: q for name in labels},
                                {(name, m): (0.9, 0.2) for name in labels for m in MAPS}, pd.DataFrame(),
                                (slice(0, 4), slice(0, 4)))
    for figure in (fig2_maps(shown), fig2_errors(shown)):
        assert figure.get_size_inches()[0] <= p.FIGURE_WIDTH
    axes = _image_axes(fig2_maps(shown))
    assert len(axes) == 3 * 8 and PANELS_PER_LINE == 4
    assert {ax.get_images()[0].get_cmap().name for ax in axes[8:16]} == {"cmc.lipari"}
