"""Figures of the paper: map grids (Fig. 2, Fig. 4a), per-subject metrics (Fig. 3), loss curves.

Display conventions, shared by every figure:

* Fixed display windows per parametric map (:data:`MAP_WINDOWS`, units in :data:`MAP_UNITS`), so
  that grey levels mean the same quantity in every panel and every figure; never auto-scaled.
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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from swig_lib.metrics import BASELINE, mean_ci, to_numpy

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
    cmap: str = "gray",
    panel_size: float = 2.0,
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
    cmap : str
        Matplotlib colour map.
    panel_size : float
        Panel edge length in inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(row_names) * len(col_names)`` image axes plus one colour-bar axis per row.
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

    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel_size * n_cols + 1.2, panel_size * n_rows + 0.4 * (captions is not None)),
        layout="constrained",
        squeeze=False,
    )
    for r, name in enumerate(row_names):
        vmin, vmax = windows[name]
        for c, source in enumerate(col_names):
            ax = axes[r, c]
            im = ax.imshow(orient_axial(images[r][c]), cmap=cmap, vmin=vmin, vmax=vmax)
            _hide_ticks(ax)
            if r == 0:
                ax.set_title(source)
            if c == 0:
                ax.set_ylabel(name)
            if captions is not None:
                ax.set_xlabel(captions[r][c], fontsize="small")
        fig.colorbar(im, ax=list(axes[r, :]), label=f"{name} [{units[name]}]", shrink=0.9)
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
        Confidence level of the Student-t interval of the mean (:func:`~swig_lib.metrics.mean_ci`).
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
        1, len(maps), figsize=(1.0 + 0.9 * len(order) * len(maps), 3.4),
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
