"""Figures of the cross-sequence validation: the paper's Fig. 4a-c and the ground-truth errors.

All panels are drawn through :func:`swig_lib.experiments.plotting.orient_axial` with fixed windows: maps with
:data:`swig_lib.experiments.plotting.MAP_WINDOWS`; weighted images with one window per contrast taken from the
acquired image (:func:`image_window`), shared by every image synthesised for that contrast (they
are intensity-matched to it, or on its scale). Captions give SSIM / HFEN of the shown slice
(:func:`swig_lib.core.metrics.ssim`, :func:`swig_lib.core.metrics.hfen`, brain mask) against Q_h (maps) or
against the acquired image (synthesised images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from swig_lib.core.metrics import hfen, ssim
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.crossseq.example import Example
from swig_lib.experiments.crossseq.settings import PROTOCOL_LABELS, REFERENCE, SOURCE_LABELS, SOURCES
from swig_lib.experiments.crossseq.sulci import sulcal_csf, zoom_window
from swig_lib.experiments.plotting import (
    BASELINE_COLOR,
    MODEL_COLOR,
    orient_axial,
    show_map_grid,
)

#: Panels per line of Fig. 4a-c: the sources (Q_h, then Q_l and SR per protocol) wrap onto lines of
#: this many panels, so that each figure fits :data:`swig_lib.experiments.plotting.FIGURE_WIDTH`.
PANELS_PER_LINE = 4
#: Panel edge of Fig. 4a-c, inches.
PANEL_SIZE = 2.0


def _protocols(example: Example) -> list[str]:
    """Map-set names of the example other than Q_h, in stored order."""
    return list(dict.fromkeys(p for p, _ in example.maps if p != REFERENCE))


def _column_title(protocol: str, source: str) -> str:
    r"""Column title such as ``Acq5$^R$ $\hat{Q}_h$``."""
    return f"{PROTOCOL_LABELS.get(protocol, protocol)} {SOURCE_LABELS[source]}"


def _caption(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> str:
    """``SSIM 0.912 / HFEN 0.35`` of one slice inside the mask."""
    return f"SSIM {ssim(pred, ref, mask):.3f} / HFEN {hfen(pred, ref, mask):.2f}"


def image_window(image: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
                 ) -> tuple[float, float]:
    """Display window of a weighted image: percentiles of its values inside the mask."""
    lo, hi = np.percentile(np.asarray(image)[np.asarray(mask, dtype=bool)], percentiles)
    return float(lo), float(max(hi, lo + 1e-6))


def fig4a_maps(example: Example) -> Figure:
    """Fig. 4a: PD, T1, T2 rows; Q_h (when known), then input Q_l and SR output per protocol.

    Parameters
    ----------
    example : Example
        The display slice (:class:`swig_lib.experiments.crossseq.example.Example`).

    Returns
    -------
    matplotlib.figure.Figure
        With SSIM / HFEN against Q_h under each panel when Q_h is known.
    """
    keys = [(p, s) for p in _protocols(example) for s in SOURCES]
    reference = example.maps.get((REFERENCE, REFERENCE))
    if reference is not None:
        keys = [(REFERENCE, REFERENCE), *keys]
    titles = ["$Q_h$" if k[0] == REFERENCE else _column_title(*k) for k in keys]
    images = [[example.maps[k][m] for k in keys] for m in range(len(MAP_NAMES))]
    captions = None
    if reference is not None:
        captions = [["reference" if k[0] == REFERENCE else
                     _caption(example.maps[k][m], reference[m], example.mask) for k in keys]
                    for m in range(len(MAP_NAMES))]
    return show_map_grid(images, MAP_NAMES, titles, captions=captions, panel_size=PANEL_SIZE, ncols=PANELS_PER_LINE)


def fig4b_guides(example: Example, contrasts: Sequence[str] = ("T1w", "T2w")) -> Figure:
    """Fig. 4b: acquired guides (first column) and the images synthesised from Q_l and Q̂_h.

    Parameters
    ----------
    example : Example
        The display slice.
    contrasts : sequence of str
        Rows (acquired contrasts).

    Returns
    -------
    matplotlib.figure.Figure
        SSIM / HFEN against the acquired image under each synthesised panel.
    """
    keys = [(p, s) for p in _protocols(example) for s in SOURCES]
    titles = ["acquired", *(_column_title(*k) for k in keys)]
    images, captions = [], []
    for contrast in contrasts:
        acquired = example.acquired[contrast]
        synthesized = [example.synthesized[(*k, contrast)] for k in keys]
        images.append([acquired, *synthesized])
        captions.append(["", *(_caption(s, acquired, example.mask) for s in synthesized)])
    windows = {c: image_window(example.acquired[c], example.mask) for c in contrasts}
    return show_map_grid(images, list(contrasts), titles, windows=windows,
                         units={c: "a.u." for c in contrasts}, captions=captions, cmap="gray",
                         panel_size=PANEL_SIZE, ncols=PANELS_PER_LINE)


def fig4c_flair(example: Example, zoom: int = 40) -> Figure:
    """Fig. 4c: T2-FLAIR synthesised from Q_l and Q̂_h versus the acquired one, sulci zoomed.

    Three blocks of panels, each with the sources :data:`PANELS_PER_LINE` to a line: the whole
    slice (the zoom window outlined), the zoom window on the region with the most sulcal CSF
    (:func:`swig_lib.experiments.crossseq.sulci.zoom_window`, from the tissue labels; sulcal CSF
    outlined in the acquired panel), and synthesised − acquired. The first panel of the last
    block shows the image synthesised from Q_h minus the acquired one, the floor that noise and bias
    leave, when Q_h is known. Without tissue labels (users' data) the zoom is the slice centre.

    Parameters
    ----------
    example : Example
        The display slice, with an acquired ``"FLAIR"``.
    zoom : int
        Side of the zoom window, voxels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    keys = [(p, s) for p in _protocols(example) for s in SOURCES]
    acquired, mask = example.acquired["FLAIR"], example.mask
    synthesized = [example.synthesized[(*k, "FLAIR")] for k in keys]
    if example.labels is not None:
        x0, y0, size = zoom_window(example.labels, mask, zoom)
    else:
        size = min(zoom, *mask.shape)
        x0, y0 = (mask.shape[0] - size) // 2, (mask.shape[1] - size) // 2
    window = image_window(acquired, mask)
    floor = example.synthesized.get((REFERENCE, REFERENCE, "FLAIR"))
    differences = [s - acquired for s in synthesized]
    limit = float(np.percentile(np.abs(np.stack(differences))[:, mask], 99))
    n = len(keys) + 1
    per_line = min(PANELS_PER_LINE, n)
    lines = -(-n // per_line)
    fig, axes = plt.subplots(3 * lines, per_line, figsize=(PANEL_SIZE * per_line + 1.2, 3 * lines * (PANEL_SIZE + 0.2)),
                             layout="constrained", squeeze=False)
    blocks = [axes[b * lines : (b + 1) * lines].ravel() for b in range(3)]  # slice, zoom, difference
    height = mask.shape[1]
    crop = np.s_[x0 : x0 + size, y0 : y0 + size]
    titles = ["acquired", *(_column_title(*k) for k in keys)]
    for col, (image, title) in enumerate(zip([acquired, *synthesized], titles)):
        top, middle = blocks[0][col], blocks[1][col]
        im = top.imshow(orient_axial(image), cmap="gray", vmin=window[0], vmax=window[1])
        top.add_patch(Rectangle((x0 - 0.5, height - y0 - size - 0.5), size, size,
                                fill=False, edgecolor="tab:red", linewidth=1.0))
        top.set_title(title, fontsize="medium")
        if col > 0:
            top.set_xlabel(_caption(image, acquired, mask), fontsize="small")
        middle.imshow(orient_axial(image[crop]), cmap="gray", vmin=window[0], vmax=window[1])
        if lines > 1:  # wrapped: the panels below the first block say which source they show
            middle.set_title(title, fontsize="small")
        if col == 0 and example.labels is not None:
            middle.contour(orient_axial(sulcal_csf(example.labels, mask)[crop].astype(float)),
                           levels=[0.5], colors="tab:red", linewidths=0.6)
    fig.colorbar(im, ax=list(blocks[0][:n]), label="FLAIR [a.u.]", shrink=0.85)
    for col, diff in enumerate([floor - acquired if floor is not None else None, *differences]):
        ax = blocks[2][col]
        if diff is None:
            ax.axis("off")
            continue
        im = ax.imshow(orient_axial(np.where(mask, diff, 0.0)), cmap="RdBu_r", vmin=-limit, vmax=limit)
        if col == 0:
            ax.set_title("from $Q_h$: noise and bias", fontsize="small")
        elif lines > 1:
            ax.set_title(titles[col], fontsize="small")
    fig.colorbar(im, ax=list(blocks[2][:n]), label="synthesised − acquired [a.u.]", shrink=0.85)
    for block, label in zip(blocks, ("slice", "sulci (zoom)", "synthesised − acquired")):
        for col, ax in enumerate(block):
            if col >= n:
                ax.remove()
                continue
            ax.set_xticks([])
            ax.set_yticks([])
            if col % per_line == 0:
                ax.set_ylabel(label)
    return fig


def plot_tissue_errors(tissue: pd.DataFrame, maps: Sequence[str] = ("T1", "T2"),
                       protocols: Sequence[str] | None = None,
                       colors: Mapping[str, str] | None = None) -> Figure:
    """Mean absolute percentage error against Q_h in WM and GM: input Q_l and SR per protocol.

    Parameters
    ----------
    tissue : pandas.DataFrame
        Per-subject rows: protocol, source, tissue, map, mape (:class:`CrossSequenceResults`).
    maps : sequence of str
        One row of panels per map.
    protocols : sequence of str, optional
        Bar groups (default: order of appearance).
    colors : mapping, optional
        Colour per source (default: Q_l red, SR blue, as Fig. 3).

    Returns
    -------
    matplotlib.figure.Figure
        Bars: mean over subjects; error bars: sd; a dotted line at Acq5's input error.
    """
    colors = colors or {"Q_l": BASELINE_COLOR, "SR": MODEL_COLOR}
    protocols = list(pd.unique(tissue["protocol"])) if protocols is None else list(protocols)
    tissues = list(pd.unique(tissue["tissue"]))
    fig, axes = plt.subplots(len(maps), len(tissues), figsize=(3.4 * len(tissues), 2.6 * len(maps)),
                             layout="constrained", squeeze=False)
    width = 0.38
    for r, name in enumerate(maps):
        for c, tissue_name in enumerate(tissues):
            ax = axes[r, c]
            part = tissue[(tissue["map"] == name) & (tissue["tissue"] == tissue_name)]
            for i, source in enumerate(SOURCES):
                stats = [part[(part["protocol"] == p) & (part["source"] == source)]["mape"]
                         for p in protocols]
                ax.bar(np.arange(len(protocols)) + (i - 0.5) * width, [s.mean() for s in stats],
                       width, yerr=[s.std(ddof=1) if len(s) > 1 else 0.0 for s in stats],
                       color=colors[source], label=SOURCE_LABELS[source], capsize=3)
            acq5 = part[(part["protocol"] == "Acq5") & (part["source"] == "Q_l")]["mape"]
            if len(acq5):
                ax.axhline(acq5.mean(), color="k", linestyle=":", linewidth=1, label="Acq5 input")
            ax.set_xticks(range(len(protocols)), [PROTOCOL_LABELS.get(p, p) for p in protocols])
            ax.set_title(f"{name}, {tissue_name}")
            ax.set_ylabel("error [%]")
            ax.grid(axis="y", alpha=0.3)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    return fig
