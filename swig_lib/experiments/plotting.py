"""Figures of the paper: map grids (Fig. 2, Fig. 4a), per-subject metrics (Fig. 3), loss curves.

Display conventions, shared by every figure:

* Fixed display windows per parametric map (:data:`MAP_WINDOWS`, units in :data:`MAP_UNITS`), so
  that a colour means the same quantity in every panel and every figure; never auto-scaled.
* One colour map per parametric map (:data:`MAP_CMAPS`): Lipari for T1 and Navia for T2, as the
  ISMRM consensus on colour maps for relaxometry recommends (Fuderer et al., Magn. Reson. Med.
  93(2):490-506, 2025, doi:10.1002/mrm.30290; the maps of F. Crameri's ``cmcrameri`` package),
  greyscale for PD. Weighted images stay grey; signed differences use a diverging map.
* Axial slices are stored in NIfTI order ``(X, Y)`` and drawn through :func:`orient_axial`:
  anterior up, neurological convention (subject's right on the viewer's right) for arrays in
  RAS+ voxel order (e.g. after :func:`nibabel.as_closest_canonical`), as nilearn draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from cmcrameri import cm as crameri
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from swig_lib.core.io import read_csv
from swig_lib.core.metrics import to_numpy
from swig_lib.experiments.evaluation.ranking import BASELINE, mean_ci

MAP_WINDOWS: dict[str, tuple[float, float]] = {
    "PD": (0.0, 120.0),
    "T1": (0.0, 2500.0),
    "T2": (0.0, 200.0),
}
"""Display windows (min, max) per map, in :data:`MAP_UNITS`, for brain tissue at 1.5 T.

PD (a.u., water/CSF about 100): 0-120 shows CSF unclipped with WM (~70) and GM (~80) apart.
T1 (ms; WM ~600, GM ~1000, CSF ~4000): 0-2500 spreads WM/GM over the lower half; CSF saturates.
T2 (ms; WM ~80, GM ~100, CSF ~2000): 0-200 resolves WM/GM; CSF saturates (white).
"""

MAP_UNITS: dict[str, str] = {"PD": "a.u.", "T1": "ms", "T2": "ms"}
"""Units of the parametric maps (PD in arbitrary units, relaxation times in ms)."""

FIGURE_WIDTH = 9.5
"""Widest figure [in] of the book. The page shows figures about 780 px wide (1400 px window) and
the notebooks render 100 px per inch, so a figure this wide appears at about 80 % of its size:
10-point text about 11 px high.
"""

MAP_CMAPS: dict[str, str] = {"PD": "gray", "T1": f"cmc.{crameri.lipari.name}", "T2": f"cmc.{crameri.navia.name}"}
"""Matplotlib colour map of each parametric map: greyscale PD, Lipari T1, Navia T2.

The names ``cmc.lipari`` and ``cmc.navia`` are registered with matplotlib by :mod:`cmcrameri.cm`
(imported here). The maps are applied linearly on the fixed windows of :data:`MAP_WINDOWS`; the
consensus' optional log-like remapping of the colour table is not used.
"""

BASELINE_COLOR = "tab:red"
"""Colour of the low-resolution baseline ``Q_l`` in Fig. 3."""

MODEL_COLOR = "tab:blue"
"""Colour of the SR models in Fig. 3."""

LOSS_LABELS: dict[str, str] = {
    "loss_lr": r"$L_l$, data consistency (Eq. 9)",
    "loss_guide": r"$L_h$, guide (Eq. 11)",
    "loss_total": r"$L_{total} = L_l + \alpha L_h$ (Eq. 12)",
}
"""Panel titles of :func:`plot_loss_curves` for the loss columns of the training log."""


def orient_axial(slice2d: Any) -> np.ndarray:
    """Return an axial ``(X, Y)`` NIfTI slice ready for :meth:`~matplotlib.axes.Axes.imshow`.

    Transposes to ``(Y, X)`` (rows = anterior-posterior, columns = left-right) and flips the rows
    so that anterior (high Y) is at the top. For RAS+ voxel order, increasing X (towards the
    subject's right) runs left to right on screen: the neurological convention.

    Parameters
    ----------
    slice2d : array_like, shape (X, Y)
        Axial slice, NumPy array or torch tensor.

    Returns
    -------
    numpy.ndarray, shape (Y, X)
    """
    arr = to_numpy(slice2d)
    if arr.ndim != 2:
        raise ValueError(f"orient_axial expects a 2-D slice, got shape {arr.shape}")
    return np.flipud(arr.T)


def _hide_ticks(ax: Axes) -> None:
    """Remove ticks and frame but keep the axis labels (row names, captions) visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def show_map_grid(
    images: Sequence[Sequence[Any]],
    row_names: Sequence[str],
    col_names: Sequence[str],
    windows: Mapping[str, tuple[float, float]] = MAP_WINDOWS,
    units: Mapping[str, str] = MAP_UNITS,
    captions: Sequence[Sequence[str]] | None = None,
    cmap: str | None = None,
    panel_size: float = 2.0,
    ncols: int | None = None,
) -> Figure:
    """Grid of axial map slices with fixed windows (paper Fig. 2 and Fig. 4a).

    Parameters
    ----------
    images : list of lists of array_like, shape (X, Y)
        ``images[r][c]`` is the slice of map ``row_names[r]`` from source ``col_names[c]``,
        in NIfTI order (drawn through :func:`orient_axial`).
    row_names : sequence of str
        Map per row, e.g. ``("PD", "T1", "T2")``; keys of ``windows`` and ``units``.
    col_names : sequence of str
        Source per column, e.g. ``("Q_h", "M1++", ..., "Q_l")``; column titles.
    windows : mapping
        Display window ``(vmin, vmax)`` per row name, in the map's units.
    units : mapping
        Unit per row name, shown on the row's colour bar.
    captions : list of lists of str, optional
        Text under each panel, same nesting as ``images`` (e.g. ``"SSIM 0.953 / HFEN 0.21"``).
    cmap : str, optional
        Matplotlib colour map of every row (e.g. ``"gray"`` for weighted images, ``"RdBu_r"`` for
        differences); default: each row's map colour map, :data:`MAP_CMAPS` ``[row_name]``.
    panel_size : float
        Panel edge length in inches.
    ncols : int, optional
        Panels per line: a row of more sources wraps onto several lines (one block per map, every
        panel titled with its source), so that a wide grid stays readable at page width
        (:data:`FIGURE_WIDTH`); default: every source on one line.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(row_names) * len(col_names)`` image axes plus one colour-bar axis per row (the
        unused cells of a wrapped grid are removed).
    """
    n_rows, n_cols = len(row_names), len(col_names)
    if len(images) != n_rows or any(len(row) != n_cols for row in images):
        raise ValueError(f"images must be a {n_rows} x {n_cols} nested list (rows x columns)")
    if captions is not None and (
        len(captions) != n_rows or any(len(row) != n_cols for row in captions)
    ):
        raise ValueError(f"captions must be a {n_rows} x {n_cols} nested list like images")
    missing = [name for name in row_names if name not in windows or name not in units]
    if missing:
        raise ValueError(f"no display window or unit for row(s) {missing}")
    if cmap is None and not set(row_names) <= set(MAP_CMAPS):
        raise ValueError(f"no colour map for row(s) {sorted(set(row_names) - set(MAP_CMAPS))}: pass cmap")

    per_line = n_cols if ncols is None else max(1, min(ncols, n_cols))
    lines = -(-n_cols // per_line)
    fig, axes = plt.subplots(
        n_rows * lines,
        per_line,
        figsize=(panel_size * per_line + 1.2, (panel_size * n_rows + 0.4 * (captions is not None)) * lines),
        layout="constrained",
        squeeze=False,
    )
    for r, name in enumerate(row_names):
        vmin, vmax = windows[name]
        block = axes[r * lines : (r + 1) * lines].ravel()
        for c, source in enumerate(col_names):
            ax = block[c]
            im = ax.imshow(orient_axial(images[r][c]), cmap=cmap or MAP_CMAPS[name], vmin=vmin, vmax=vmax)
            _hide_ticks(ax)
            if r == 0 or lines > 1:
                ax.set_title(source)
            if c % per_line == 0:
                ax.set_ylabel(name)
            if captions is not None:
                ax.set_xlabel(captions[r][c], fontsize="small")
        for ax in block[n_cols:]:
            ax.remove()
        fig.colorbar(im, ax=list(block[:n_cols]), label=f"{name} [{units[name]}]", shrink=0.9)
    return fig


def plot_subject_metrics(
    df: pd.DataFrame,
    metric: str,
    maps: Sequence[str] = ("PD", "T1", "T2"),
    baseline: str = BASELINE,
    models: Sequence[str] | None = None,
    level: float = 0.95,
    jitter: float = 0.15,
    seed: int = 0,
) -> Figure:
    """Per-subject metric values with mean and confidence interval per model (paper Fig. 3).

    Parameters
    ----------
    df : pandas.DataFrame
        Long table with columns ``model``, ``subject``, ``map`` and ``metric`` (one row per model x
        subject x map; each value is a subject's mean over its brain-masked axial slices).
    metric : str
        Column to plot, e.g. ``"ssim"`` or ``"hfen"``.
    maps : sequence of str
        One panel per map.
    baseline : str
        Baseline model, drawn first and in red (:data:`BASELINE_COLOR`); a dotted line marks its
        mean across the panel.
    models : sequence of str, optional
        Other models in drawing order; default: order of first appearance in ``df``.
    level : float
        Confidence level of the Student-t interval of the mean
        (:func:`~swig_lib.experiments.evaluation.ranking.mean_ci`).
    jitter : float
        Half-width of the uniform horizontal jitter of the subject points (x units).
    seed : int
        Seed of the jitter, so that the figure is reproducible.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per map.
    """
    missing = {"model", "subject", "map", metric} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks column(s) {sorted(missing)}")
    others = [m for m in pd.unique(df["model"]) if m != baseline] if models is None else models
    order = [baseline, *others]
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(
        1, len(maps), figsize=(min(1.0 + 0.9 * len(order) * len(maps), FIGURE_WIDTH), 3.4),
        layout="constrained", squeeze=False,
    )
    for ax, name in zip(axes[0], maps):
        for x, model in enumerate(order):
            values = df.loc[(df["model"] == model) & (df["map"] == name), metric].to_numpy(float)
            if values.size == 0:
                raise ValueError(f"no {metric} values for model {model!r} on map {name!r}")
            color = BASELINE_COLOR if model == baseline else MODEL_COLOR
            mean, lo, hi = mean_ci(values, level)
            ax.scatter(x + rng.uniform(-jitter, jitter, values.size), values,
                       s=12, color=color, alpha=0.45, linewidths=0)
            ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]], fmt="_", markersize=18,
                        capsize=5, color=color, elinewidth=1.5, markeredgewidth=2)
            if model == baseline:
                ax.axhline(mean, color=BASELINE_COLOR, linestyle=":", linewidth=1)
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    direction = "higher is better" if metric.lower() == "ssim" else "lower is better"
    axes[0, 0].set_ylabel(f"{metric.upper()} ({direction})")
    fig.suptitle(f"{metric.upper()} per subject: points, mean and {level:.0%} CI")
    return fig


def plot_loss_curves(
    log_df: pd.DataFrame,
    terms: Sequence[str] | None = None,
    x: str = "epoch",
    split: str = "split",
) -> Figure:
    """Training and validation curves of the loss terms on a log axis (Eqs. 9, 11, 12).

    Parameters
    ----------
    log_df : pandas.DataFrame
        Training log, one row per epoch and split, e.g. columns
        ``epoch, split, loss_lr, loss_guide, loss_total``.
    terms : sequence of str, optional
        Loss columns to draw, one panel each; default: every column starting with ``loss_``.
    x : str
        Column of the horizontal axis.
    split : str
        Column naming the split (``"train"``, ``"val"``); one line per split, the first split
        solid and the others dashed.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per term, log-scaled y.
    """
    terms = [c for c in log_df.columns if c.startswith("loss_")] if terms is None else list(terms)
    missing = {x, split, *terms} - set(log_df.columns)
    if missing or not terms:
        raise ValueError(f"log_df lacks column(s) {sorted(missing) or ['loss_*']}")
    if (log_df[terms].to_numpy(float) <= 0).any():
        raise ValueError("loss values must be positive for a log axis")
    fig, axes = plt.subplots(
        1, len(terms), figsize=(3.6 * len(terms), 3.0), layout="constrained", squeeze=False
    )
    splits = list(pd.unique(log_df[split]))
    for ax, term in zip(axes[0], terms):
        for i, name in enumerate(splits):
            part = log_df[log_df[split] == name].sort_values(x)
            ax.plot(part[x], part[term], linestyle="-" if i == 0 else "--", label=str(name))
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_title(LOSS_LABELS.get(term, term))
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("loss")
    axes[0, -1].legend()
    return fig


def difference_panel(
    ax: Axes,
    diff: Any,
    limit: float | None = None,
    mask: Any | None = None,
    units: str = "",
    title: str | None = None,
    cmap: str = "RdBu_r",
    percentile: float = 99.0,
) -> AxesImage:
    """Draw a signed difference map with a symmetric diverging window and its colour bar.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Target axis.
    diff : array_like, shape (X, Y)
        Signed difference (e.g. synthesized minus acquired T2-FLAIR), NIfTI order.
    limit : float, optional
        Window ``(-limit, +limit)``. Pass a fixed value to compare panels; default: the
        ``percentile`` of ``|diff|`` over ``mask`` (the whole slice without a mask).
    mask : array_like of bool, shape (X, Y), optional
        Region for the default limit; values outside are shown as 0.
    units : str
        Unit of ``diff``, shown on the colour bar.
    title : str, optional
        Axis title.
    cmap : str
        Diverging colour map; zero maps to its centre.
    percentile : float
        Percentile of ``|diff|`` used when ``limit`` is None.

    Returns
    -------
    matplotlib.image.AxesImage
        The image, with ``get_clim() == (-limit, limit)``.
    """
    d = to_numpy(diff)
    if d.ndim != 2:
        raise ValueError(f"diff must be a 2-D slice, got shape {d.shape}")
    if mask is not None:
        mask_b = to_numpy(mask) > 0
        if mask_b.shape != d.shape:
            raise ValueError(f"shape mismatch: mask {mask_b.shape} vs diff {d.shape}")
        if not mask_b.any():
            raise ValueError("empty mask")
        d = np.where(mask_b, d, 0.0)
        inside = d[mask_b]
    else:
        inside = d.ravel()
    if limit is None:
        limit = float(np.percentile(np.abs(inside), percentile))
    if not limit > 0:
        raise ValueError(f"limit must be positive, got {limit} (pass limit for an all-zero diff)")
    im = ax.imshow(orient_axial(d), cmap=cmap, vmin=-limit, vmax=limit)
    _hide_ticks(ax)
    if title is not None:
        ax.set_title(title)
    label = f"difference [{units}]" if units else "difference"
    ax.figure.colorbar(im, ax=ax, label=label, shrink=0.85)
    return im


DIFF_LIMITS: dict[str, float] = {"PD": 10.0, "T1": 400.0, "T2": 40.0}
"""Fixed symmetric windows ``(-limit, +limit)`` of difference maps per map, in :data:`MAP_UNITS`.

About an eighth of :data:`MAP_WINDOWS`, enough to show errors at tissue boundaries (GM/WM differ
by about 10 a.u., 400 ms and 20 ms) without saturating everywhere near CSF.
"""


def show_panels(
    images: Sequence[Any],
    titles: Sequence[str],
    windows: tuple[float, float] | Sequence[tuple[float, float]],
    labels: str | Sequence[str],
    ncols: int | None = None,
    cmap: str | Sequence[str] = "gray",
    shared_colorbar: bool = False,
    panel_size: float = 2.0,
    suptitle: str | None = None,
) -> Figure:
    """Grid of axial slices, each with its own fixed window and colour bar (or one shared bar).

    Parameters
    ----------
    images : sequence of array_like, shape (X, Y)
        Slices in NIfTI order (drawn through :func:`orient_axial`), filled row by row.
    titles : sequence of str
        Panel titles, one per image.
    windows : (vmin, vmax) or sequence of them
        Display window of every panel, or one per panel; never auto-scaled.
    labels : str or sequence of str
        Colour-bar label with unit (e.g. ``"signal [a.u.]"``), for all panels or one per panel.
    ncols : int, optional
        Panels per row (default: all in one row).
    cmap : str or sequence of str
        Colour map for all panels or one per panel.
    shared_colorbar : bool
        One colour bar for the whole figure; needs a single window, label and colour map.
    panel_size : float
        Panel edge length in inches.
    suptitle : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per image (unused grid cells removed) plus the colour-bar axes.
    """
    n = len(images)
    if n == 0 or len(titles) != n:
        raise ValueError(f"need one title per image; got {n} images and {len(titles)} titles")

    def per_panel(value: Any, name: str, single: Any) -> list[Any]:
        if isinstance(value, single):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise ValueError(f"{name}: expected one per image ({n}), got {len(value)}")
        return value

    single_window = len(windows) == 2 and np.isscalar(windows[0])
    window_list = [tuple(windows)] * n if single_window else per_panel(windows, "windows", type(None))
    label_list = per_panel(labels, "labels", str)
    cmap_list = per_panel(cmap, "cmap", str)
    if shared_colorbar and (len(set(map(tuple, window_list))) > 1 or len(set(label_list)) > 1
                            or len(set(cmap_list)) > 1):
        raise ValueError("shared_colorbar needs one window, one label and one colour map")
    ncols = n if ncols is None else max(1, min(ncols, n))
    nrows = -(-n // ncols)
    bar_width = 0.9 if shared_colorbar else 0.5 * ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols + bar_width, panel_size * nrows + 0.3 * bool(suptitle)),
        layout="constrained", squeeze=False,
    )
    im = None
    for index, ax in enumerate(axes.ravel()):
        if index >= n:
            ax.remove()
            continue
        vmin, vmax = window_list[index]
        im = ax.imshow(orient_axial(images[index]), cmap=cmap_list[index], vmin=vmin, vmax=vmax)
        _hide_ticks(ax)
        ax.set_title(titles[index], fontsize="medium")
        if not shared_colorbar:
            fig.colorbar(im, ax=ax, label=label_list[index], shrink=0.8)
    if shared_colorbar:
        fig.colorbar(im, ax=[ax for ax in axes.ravel()[:n]], label=label_list[0], shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_comparison(
    reference: Any,
    candidate: Any,
    mask: Any,
    names: Sequence[str] = ("PD", "T1", "T2"),
    reference_name: str = "Q_h",
    candidate_name: str = "Q_l",
    windows: Mapping[str, tuple[float, float]] = MAP_WINDOWS,
    units: Mapping[str, str] = MAP_UNITS,
    limits: Mapping[str, float] = DIFF_LIMITS,
    panel_size: float = 2.4,
) -> Figure:
    """Rows of maps: reference, candidate and candidate − reference, with fixed windows and :data:`MAP_CMAPS`.

    Parameters
    ----------
    reference, candidate : array_like, shape (M, X, Y)
        One axial slice of each map (e.g. Q_h and Q_l), NIfTI order.
    mask : array_like of bool, shape (X, Y)
        Brain mask; the difference is shown inside it only.
    names : sequence of str
        Map names, one per channel (keys of ``windows``, ``units`` and ``limits``).
    reference_name, candidate_name : str
        Column titles.
    windows, units, limits : mapping
        Map windows, units and the fixed difference windows ``(-limit, limit)``.
    panel_size : float
        Panel edge length in inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``3 * M`` image axes, a colour bar per map row for the maps and one per difference panel.
    """
    ref, cand = to_numpy(reference), to_numpy(candidate)
    if ref.shape != cand.shape or ref.ndim != 3 or ref.shape[0] != len(names):
        raise ValueError(f"expected two ({len(names)}, X, Y) stacks, got {ref.shape} and {cand.shape}")
    mask_b = to_numpy(mask) > 0
    fig, axes = plt.subplots(
        len(names), 3, figsize=(3 * panel_size + 2.2, panel_size * len(names)),
        layout="constrained", squeeze=False,
    )
    for row, name in enumerate(names):
        vmin, vmax = windows[name]
        for col, (image, title) in enumerate(((ref[row], reference_name), (cand[row], candidate_name))):
            im = axes[row, col].imshow(orient_axial(image), cmap=MAP_CMAPS[name], vmin=vmin, vmax=vmax)
            _hide_ticks(axes[row, col])
            axes[row, col].set_title(f"{title}: {name}")
        fig.colorbar(im, ax=list(axes[row, :2]), label=f"{name} [{units[name]}]", shrink=0.85)
        difference_panel(axes[row, 2], cand[row] - ref[row], limit=limits[name], mask=mask_b,
                         units=units[name], title=f"{candidate_name} − {reference_name}")
    return fig


def plot_baseline(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("ssim", "hfen"),
    maps: Sequence[str] = ("PD", "T1", "T2"),
    paper: Mapping[tuple[str, str], tuple[float, float]] | None = None,
    jitter: float = 0.08,
    seed: int = 0,
) -> Figure:
    """Per-subject metrics of one model (e.g. the ``Q_l`` baseline) by map and region.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with columns ``subject``, ``map``, ``region`` and the ``metrics`` (one row per
        subject, map and region), e.g. from :func:`swig_lib.experiments.evaluation.ranking.baseline_metrics`.
    metrics : sequence of str
        One panel per metric.
    maps : sequence of str
        Maps along the horizontal axis.
    paper : mapping, optional
        ``(metric, map) -> (mean, sd)`` values to mark for comparison (e.g.
        :data:`swig_lib.paper.BASELINE`), drawn as black diamonds with ±sd bars.
    jitter : float
        Half-width of the horizontal jitter of the subject points.
    seed : int
        Seed of the jitter.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per metric: subject points, mean ± sd per region, the paper's values.
    """
    missing = {"subject", "map", "region", *metrics} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}")
    regions = list(pd.unique(table["region"]))
    colors = dict(zip(regions, [BASELINE_COLOR, "tab:orange", "tab:purple", "tab:green"]))
    width = 0.5 / max(1, len(regions))
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.3),
                             layout="constrained", squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for r, region in enumerate(regions):
            for x, name in enumerate(maps):
                values = table.loc[(table["region"] == region) & (table["map"] == name), metric]
                values = values.to_numpy(float)
                if values.size == 0:
                    continue
                pos = x + (r - (len(regions) - 1) / 2) * width
                ax.scatter(pos + rng.uniform(-jitter, jitter, values.size) * width / 0.25, values,
                           s=10, color=colors[region], alpha=0.4, linewidths=0)
                sd = values.std(ddof=1) if values.size > 1 else 0.0
                ax.errorbar(pos, values.mean(), yerr=sd, fmt="_", markersize=14, capsize=4,
                            color=colors[region], elinewidth=1.5, markeredgewidth=2,
                            label=f"{region}: mean ± sd" if x == 0 else None)
        stated = [(x, paper[(metric, name)]) for x, name in enumerate(maps) if paper and (metric, name) in paper]
        for i, (x, (mean, sd)) in enumerate(stated):
            ax.errorbar(x + 0.42, mean, yerr=sd, fmt="D", color="black", markersize=5, capsize=3,
                        label="paper: mean ± sd" if i == 0 else None)
        ax.set_xticks(range(len(maps)), maps)
        ax.set_xlim(-0.6, len(maps) - 0.4)
        direction = "higher is better" if metric.lower() == "ssim" else "lower is better"
        ax.set_ylabel(f"{metric.upper()} ({direction})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    return fig


def load_training_logs(folder: Any, variants: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Read the per-epoch training logs ``<folder>/<variant>.csv`` of several variants.

    Parameters
    ----------
    folder : path-like
        The log folder, ``results/<profile>/logs``.
    variants : sequence of str
        Variant names; each needs its log.

    Returns
    -------
    dict of str to pandas.DataFrame
        One log per variant, in the given order (columns of
        :data:`swig_lib.experiments.training.checkpoints.LOG_COLUMNS`).
    """
    from pathlib import Path

    logs = {}
    for name in variants:
        path = Path(folder) / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no training log {path}: train {name} first (`swig train`)")
        logs[name] = read_csv(path)
    return logs


def plot_loss_grid(
    logs: Mapping[str, pd.DataFrame],
    terms: Sequence[str] = ("loss_lr", "loss_guide", "loss_total"),
    selected: Mapping[str, int] | None = None,
    panel_size: tuple[float, float] = (3.4, 1.9),
) -> Figure:
    """Loss curves of several training runs: one row per run, one column per loss term.

    Training (solid) and validation (dashed) per panel, log-scaled y; an optional dotted vertical
    line marks the epoch whose checkpoint was kept.

    Parameters
    ----------
    logs : mapping of str to pandas.DataFrame
        Training log per run (columns ``epoch``, ``split`` and the ``terms``), e.g. from
        :func:`load_training_logs`.
    terms : sequence of str
        Loss columns, one column of panels each (titles from :data:`LOSS_LABELS`).
    selected : mapping of str to int, optional
        Selected epoch per run.
    panel_size : (float, float)
        Width and height of one panel, inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(logs) * len(terms)`` axes.
    """
    if not logs:
        raise ValueError("no logs to plot")
    fig, axes = plt.subplots(
        len(logs), len(terms), figsize=(panel_size[0] * len(terms) + 0.8, panel_size[1] * len(logs) + 0.5),
        layout="constrained", squeeze=False, sharex=True,
    )
    for r, (name, log) in enumerate(logs.items()):
        missing = {"epoch", "split", *terms} - set(log.columns)
        if missing:
            raise ValueError(f"log of {name!r} lacks column(s) {sorted(missing)}")
        for c, term in enumerate(terms):
            ax = axes[r, c]
            for i, split in enumerate(pd.unique(log["split"])):
                part = log[log["split"] == split].sort_values("epoch")
                values = part[term].to_numpy(float)
                ax.plot(part["epoch"], np.where(values > 0, values, np.nan), marker=".", markersize=3,
                        linestyle="-" if i == 0 else "--", color=f"C{i}", label=str(split))
            if selected is not None and name in selected:
                ax.axvline(selected[name], color="0.4", linestyle=":", linewidth=1,
                           label="kept checkpoint")
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            if r == 0:
                ax.set_title(LOSS_LABELS.get(term, term), fontsize="medium")
            if c == 0:
                ax.set_ylabel(name)
            if r == len(logs) - 1:
                ax.set_xlabel("epoch")
    axes[0, -1].legend(fontsize="small")
    return fig


def outline_region(ax: Axes, region: Any, color: str = "yellow", linewidth: float = 1.2) -> Any:
    """Draw the bounding box of a region of an axial ``(X, Y)`` slice.

    The slice is drawn with :func:`orient_axial` (e.g. a zoomed area, or the kept k-space square of eq. 3).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axis showing an oriented slice of the same shape as ``region``.
    region : array_like of bool, shape (X, Y)
        The region, NIfTI order.
    color : str
        Edge colour.
    linewidth : float
        Edge width in points.

    Returns
    -------
    matplotlib.patches.Rectangle
        The drawn rectangle (edges on voxel borders).
    """
    from matplotlib.patches import Rectangle

    rows, cols = np.nonzero(orient_axial(to_numpy(region) > 0))
    if rows.size == 0:
        raise ValueError("empty region")
    patch = Rectangle((cols.min() - 0.5, rows.min() - 0.5), np.ptp(cols) + 1, np.ptp(rows) + 1,
                      fill=False, edgecolor=color, linewidth=linewidth)
    ax.add_patch(patch)
    return patch
