"""Figures of the ablation chapter (notebook 03): Fig. 2 on the representative slice, Fig. 3 per subject."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from swig_lib.core.metrics import METRICS
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.evaluation.ablation import REFERENCE_LABEL, RepresentativeSlice
from swig_lib.experiments.plotting import DIFF_LIMITS, MAP_UNITS, plot_subject_metrics, show_map_grid

#: Panel edge of the Fig. 2 grids, inches.
PANEL_SIZE = 2.0
#: Panels per line of the Fig. 2 grids: each map's sources wrap onto lines of this many panels, so
#: that the figure fits :data:`~swig_lib.experiments.plotting.FIGURE_WIDTH`.
PANELS_PER_LINE = 4


def fig2_maps(shown: RepresentativeSlice) -> Figure:
    """Fig. 2: PD, T1, T2 of Q_h, every model and Q_l on the fixed display windows.

    Parameters
    ----------
    shown : RepresentativeSlice
        The slice (:func:`~swig_lib.experiments.evaluation.ablation.representative_slice`).

    Returns
    -------
    matplotlib.figure.Figure
        One block per map, its sources :data:`PANELS_PER_LINE` to a line; under each panel but
        Q_h's, SSIM and HFEN against Q_h on the brain mask.
    """
    captions = [
        ["reference" if col == REFERENCE_LABEL else "SSIM {:.3f} · HFEN {:.3f}".format(*shown.scores[(col, name)])
         for col in shown.panels]
        for name in MAP_NAMES
    ]
    return show_map_grid([[img[c] for img in shown.panels.values()] for c in range(3)], MAP_NAMES,
                         list(shown.panels), captions=captions, panel_size=PANEL_SIZE, ncols=PANELS_PER_LINE)


def fig2_errors(shown: RepresentativeSlice) -> Figure:
    """Signed differences from Q_h inside the brain mask, on fixed symmetric windows.

    Parameters
    ----------
    shown : RepresentativeSlice
        The slice.

    Returns
    -------
    matplotlib.figure.Figure
        One block per map (``"<map> − Q_h"``, windows ±:data:`~swig_lib.experiments.plotting.DIFF_LIMITS`),
        every source but Q_h, :data:`PANELS_PER_LINE` to a line.
    """
    rows = [f"{name} − Q_h" for name in MAP_NAMES]
    windows = {row: (-DIFF_LIMITS[name], DIFF_LIMITS[name]) for row, name in zip(rows, MAP_NAMES, strict=True)}
    units = {row: MAP_UNITS[name] for row, name in zip(rows, MAP_NAMES, strict=True)}
    reference = shown.panels[REFERENCE_LABEL]
    sources = [col for col in shown.panels if col != REFERENCE_LABEL]
    errors = [[np.where(shown.mask, shown.panels[col][c] - reference[c], 0.0) for col in sources] for c in range(3)]
    return show_map_grid(errors, rows, sources, windows=windows, units=units, cmap="RdBu_r", panel_size=PANEL_SIZE,
                         ncols=PANELS_PER_LINE)


def fig2_zoom(shown: RepresentativeSlice) -> Figure:
    """Show the panels of :func:`fig2_maps` enlarged on the zoom window of the slice (no captions)."""
    return show_map_grid([[img[c][shown.zoom] for img in shown.panels.values()] for c in range(3)], MAP_NAMES,
                         list(shown.panels), panel_size=PANEL_SIZE, ncols=PANELS_PER_LINE)


def fig3(table: pd.DataFrame, region: str, models: Sequence[str], title: str) -> dict[str, Figure]:
    """Fig. 3: per-subject SSIM and HFEN with mean and 95 % CI, one figure per metric.

    Parameters
    ----------
    table : pandas.DataFrame
        The per-subject table of :func:`~swig_lib.experiments.evaluation.evaluate.evaluate`.
    region : str
        ``"brain"`` or ``"interior"``.
    models : sequence of str
        The models to show (next to the baseline Q_l).
    title : str
        End of the figure title, after ``"<METRIC> per test subject, "``.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        By metric (``"ssim"``, ``"hfen"``).
    """
    part = table[table["region"] == region]
    figures = {}
    for metric in METRICS:
        figures[metric] = plot_subject_metrics(part, metric, models=models)
        figures[metric].suptitle(f"{metric.upper()} per test subject, {title}")
    return figures
