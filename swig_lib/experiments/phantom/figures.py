"""Figures of the real-scan chapter: maps, per-sphere values against the reference, rings, SR losses.

Conventions of :mod:`swig_lib.experiments.plotting`: fixed display windows (:data:`WINDOWS`,
:data:`DIFF_LIMITS`, ms), the relaxometry colour maps (:data:`~swig_lib.experiments.plotting.MAP_CMAPS`),
the Q_l and SR colours of Fig. 3, colour bars with units.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from swig_lib.experiments.phantom.chapter import SOURCES, PhantomResults, PlateResult
from swig_lib.experiments.plotting import BASELINE_COLOR, FIGURE_WIDTH, MAP_CMAPS, MODEL_COLOR, show_panels

#: Display windows of the relaxation maps, ms: the measurable spheres (T1 85-1940 ms, T2 31-280 ms).
WINDOWS: dict[str, tuple[float, float]] = {"T1": (0.0, 2000.0), "T2": (0.0, 400.0)}
#: Symmetric windows of the difference maps, ms (a tenth of :data:`WINDOWS`).
DIFF_LIMITS: dict[str, float] = {"T1": 200.0, "T2": 40.0}
#: How each source is named in the figures (matplotlib mathtext).
LABELS: dict[str, str] = {"HR": "HR fit", "Q_l": "$Q_l$", "SR": "SR"}
#: Colour and marker of each source.
STYLES: dict[str, tuple[str, str]] = {"HR": ("black", "o"), "Q_l": (BASELINE_COLOR, "s"), "SR": (MODEL_COLOR, "^")}
#: Voxels shown around the spheres' regions of interest in the map figure.
VIEW_MARGIN = 12


def _view(result: PlateResult) -> tuple[slice, slice]:
    """The in-plane window holding every sphere's region of interest plus :data:`VIEW_MARGIN`."""
    rows, cols = np.nonzero(result.masks.any(axis=0))
    shape = result.masks.shape[1:]
    return (slice(max(0, rows.min() - VIEW_MARGIN), min(shape[0], rows.max() + VIEW_MARGIN + 1)),
            slice(max(0, cols.min() - VIEW_MARGIN), min(shape[1], cols.max() + VIEW_MARGIN + 1)))


def plot_maps(results: PhantomResults) -> Figure:
    """One row per plate: the HR fit, Q_l and SR relaxation maps, and Q_l and SR minus the HR fit.

    Differences are shown where both maps hold a fitted value (0 elsewhere).
    """
    images, titles, windows, labels, cmaps = [], [], [], [], []
    for name, result in results.plates.items():
        view = _view(result)
        maps = {source: result.relaxation(source)[view] for source in SOURCES}
        for source in SOURCES:
            images.append(maps[source])
            titles.append(f"{name} plate: {LABELS[source]}")
            windows.append(WINDOWS[name])
            labels.append(f"{name} [ms]")
            cmaps.append(MAP_CMAPS[name])
        for source in SOURCES[1:]:
            fitted = (maps[source] > 0) & (maps["HR"] > 0)
            images.append(np.where(fitted, maps[source] - maps["HR"], 0.0))
            titles.append(f"{LABELS[source]} − HR fit")
            windows.append((-DIFF_LIMITS[name], DIFF_LIMITS[name]))
            labels.append(f"{name} difference [ms]")
            cmaps.append("RdBu_r")
    return show_panels(images, titles, windows, labels, ncols=2 * len(SOURCES) - 1, cmap=cmaps, panel_size=1.9)


def plot_spheres(spheres: pd.DataFrame, reference_label: str) -> Figure:
    """Per-sphere ROI medians against the reference values, log axes, one panel per plate.

    Filled markers: spheres the series' timings can measure; hollow: the others. The line is
    identity.

    Parameters
    ----------
    spheres : DataFrame
        :attr:`PhantomResults.spheres`.
    reference_label : str
        Says which reference (batch, temperature), e.g. ``"batch 2, 22 °C"``.
    """
    plates = list(dict.fromkeys(spheres["plate"]))
    fig, axes = plt.subplots(1, len(plates), figsize=(FIGURE_WIDTH, 4.2), layout="constrained", squeeze=False)
    for ax, name in zip(axes[0], plates):
        table = spheres[spheres["plate"] == name]
        values = table[[f"{s}_ms" for s in SOURCES] + ["reference_ms"]].to_numpy()
        values = values[np.isfinite(values) & (values > 0)]
        lo, hi = values.min() / 1.5, values.max() * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.6", linewidth=1, zorder=0)
        for source in SOURCES:
            color, marker = STYLES[source]
            for measurable in (True, False):
                part = table[table["measurable"] == measurable]
                ax.scatter(part["reference_ms"], part[f"{source}_ms"], marker=marker, s=28,
                           facecolors=color if measurable else "none", edgecolors=color,
                           label=LABELS[source] if measurable else None)
        for row in table.itertuples():
            if np.isfinite(row.HR_ms) and row.HR_ms > 0:
                ax.annotate(str(row.sphere), (row.reference_ms, row.HR_ms), textcoords="offset points",
                            xytext=(4, -9), fontsize="x-small", color="0.35")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), aspect="equal",
               xlabel=f"reference {name} [ms] ({reference_label})", ylabel=f"measured {name} [ms]",
               title=f"{name} plate")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(title="filled: measurable", fontsize="small")
    return fig


def plot_recovery(recovery: pd.DataFrame, tolerance: float, walls: dict[str, float]) -> Figure:
    """Median ``|error|`` of the ring values against the sphere's value, by ring, one panel per plate.

    Parameters
    ----------
    recovery : DataFrame
        :attr:`PhantomResults.recovery`.
    tolerance : float
        Relative tolerance (drawn as a horizontal line).
    walls : dict of str to float
        Wall radius per plate, mm (drawn as a vertical line).
    """
    plates = list(dict.fromkeys(recovery["plate"]))
    fig, axes = plt.subplots(1, len(plates), figsize=(FIGURE_WIDTH, 3.4), layout="constrained", squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], plates):
        for source in SOURCES:
            part = recovery[(recovery["plate"] == name) & (recovery["source"] == source)]
            color, marker = STYLES[source]
            ax.plot(part["outer_mm"], part["median_abs_error_pct"], marker=marker, color=color, label=LABELS[source])
        ax.axhline(100.0 * tolerance, color="0.5", linestyle="--", linewidth=1, label="tolerance")
        if np.isfinite(walls.get(name, np.nan)):
            ax.axvline(walls[name], color="0.5", linestyle=":", linewidth=1, label="wall")
        ax.set(yscale="log", xlabel="ring outer radius [mm]", title=f"{name} plate")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("median |error| vs the sphere's value [%]")
    axes[0, -1].legend(fontsize="small")
    return fig


def plot_losses(results: PhantomResults) -> Figure:
    """The two terms of the SR loss over the Adam steps, one panel per plate (L_l and α·L_h)."""
    fig, axes = plt.subplots(1, len(results.plates), figsize=(FIGURE_WIDTH, 3.0), layout="constrained",
                             squeeze=False)
    for ax, (name, result) in zip(axes[0], results.plates.items()):
        history = result.sr.history
        ax.plot(history["step"], history["loss_lr"], label=r"$L_l$ (eq. 9)")
        ax.plot(history["step"], result.sr.alpha * history["loss_guide"], label=r"$\alpha L_h$ (eq. 11)")
        ax.set(yscale="log", xlabel="Adam step", title=f"{name} plate (α = {result.sr.alpha:.3g})")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("loss")
    axes[0, -1].legend(fontsize="small")
    return fig
