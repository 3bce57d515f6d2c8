"""Figures of the limits chapter: lesion crops, curves of metric change against mismatch size, the worst mismatch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.limits.chapter import KINDS, LesionCrops, LimitsResults, MismatchExample
from swig_lib.experiments.plotting import (
    DIFF_LIMITS,
    MAP_CMAPS,
    MAP_UNITS,
    MAP_WINDOWS,
    difference_panel,
    orient_axial,
)

#: Display windows of the tumour's crops: its core reaches T1 and T2 far above the book's windows.
TUMOUR_WINDOWS: dict[str, tuple[float, float]] = {"PD": (0.0, 120.0), "T1": (0.0, 3000.0), "T2": (0.0, 500.0)}
#: Colour of each map's curves.
MAP_COLORS: dict[str, str] = {"PD": "tab:gray", "T1": "tab:orange", "T2": "tab:blue"}
#: Line style of each method's curves.
METHOD_STYLES: dict[str, str] = {"SWIG": "-", "guided filter": "--"}
#: Colour of each method in the figures that compare the methods.
METHOD_COLORS: dict[str, str] = {"SWIG": "tab:red", "guided filter": "tab:green", "supervised": "tab:purple",
                                 "Q2MRI-like": "tab:brown"}


def worst_lesion(results: LimitsResults, kind: str, method: str = "SWIG", name: str = "T2") -> LesionCrops:
    """The lesion of ``kind`` where ``method`` is worst on map ``name``.

    MS lesions: the lowest contrast kept in the "maps only" case relative to the true contrast;
    tumours: the largest ``|bias|`` in the core with lesions in maps and guides.
    """
    rows = results.lesions[(results.lesions["kind"] == kind) & (results.lesions["method"] == method)
                           & (results.lesions["map"] == name)]
    if kind == "ms":
        picked = rows[rows["case"] == "maps only"]
        score = picked["contrast"] / picked["true_contrast"]
    else:
        picked = rows[(rows["case"] == "both") & (rows["part"] == "core")]
        score = -picked["bias"].abs()
    worst = picked.loc[score.idxmin()]
    return next(c for c in results.crops if c.subject == worst["subject"] and c.lesion.kind == kind
                and c.lesion.radius_mm == worst["radius_mm"])


def lesion_figure(crops: LesionCrops, method: str = "SWIG", maps: Sequence[str] = ("T1", "T2"),
                  panel_size: float = 1.9) -> Figure:
    """Crops around a lesion: Q_h, Q_l and the method's output in the three lesion cases, and the T2w guide.

    The parts of the lesion are outlined (white); the guide column shows the lesioned subject's
    T2w, which the "maps only" case does not see.
    """
    sources = ["Q_h", "Q_l", f"{method}, both", f"{method}, maps only", f"{method}, guides only"]
    titles = ["$Q_h$ (lesion)", "$Q_l$ (lesion)", "SR: lesion in\nmaps and guides", "SR: lesion in\nmaps only",
              "SR: lesion in\nguides only", "T2w guide\n(lesion)"]
    windows = TUMOUR_WINDOWS if crops.lesion.kind == "tumour" else MAP_WINDOWS
    fig, axes = plt.subplots(len(maps), len(titles), figsize=(panel_size * len(titles) + 1.0, panel_size * len(maps)
                                                                  + 0.6), layout="constrained", squeeze=False)
    guide = crops.guides["T2w"]
    for r, name in enumerate(maps):
        c_index = MAP_NAMES.index(name)
        for c, source in enumerate([*sources, "guide"]):
            ax = axes[r, c]
            if source == "guide":
                ax.imshow(orient_axial(guide), cmap="gray", vmin=0.0, vmax=float(np.percentile(guide, 99.5)))
            else:
                im = ax.imshow(orient_axial(crops.maps[source][c_index]), cmap=MAP_CMAPS[name],
                               vmin=windows[name][0], vmax=windows[name][1])
            for region in crops.regions.values():
                ax.contour(orient_axial(region.astype(float)), levels=[0.5], colors="white", linewidths=0.6)
            ax.set(xticks=[], yticks=[])
            if r == 0:
                ax.set_title(titles[c], fontsize="small")
            if c == 0:
                ax.set_ylabel(name)
        fig.colorbar(im, ax=list(axes[r, : len(sources)]), label=f"{name} [{MAP_UNITS[name]}]", shrink=0.85)
    lesion = crops.lesion
    what = f"tumour (core {lesion.core_mm:g} mm, oedema to {lesion.radius_mm:g} mm)" if lesion.kind == "tumour" \
        else f"MS-like lesion, radius {lesion.radius_mm:g} mm"
    fig.suptitle(f"{crops.subject}, {what}; SR = {method}", fontsize="medium")
    return fig


def mismatch_curves_figure(curves: pd.DataFrame, metric: str = "ssim", maps: Sequence[str] = ("PD", "T1", "T2"),
                           methods: Sequence[str] = tuple(METHOD_STYLES), kinds: Sequence[str] = tuple(KINDS),
                           ncols: int = 4, panel_size: float = 2.6) -> Figure:
    """Change of a metric (mean over subjects) against mismatch size, one panel per kind.

    Solid: SWIG; dashed: the guided filter (keys of :data:`METHOD_STYLES`); one colour per map.
    The dotted lines mark, per map, the change at which the first of ``methods`` would fall to
    Q_l's value (below it for SSIM, above it for HFEN, SR is worse than its input).
    """
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.4),
                             layout="constrained", squeeze=False)
    ql = curves[curves["kind"] == "none"].set_index("map")[metric]
    for ax, kind in zip(axes.ravel(), kinds):
        rows = curves[curves["kind"] == kind]
        for name in maps:
            for method in methods:
                style = METHOD_STYLES[method]
                line = rows[(rows["method"] == method) & (rows["map"] == name)].sort_values("size")
                ax.plot(line["size"], line[f"d_{metric}"], style, marker=".", color=MAP_COLORS[name],
                        label=f"{name}, {method}")
            zero = rows[(rows["method"] == methods[0]) & (rows["map"] == name) & (rows["size"] == 0.0)][metric]
            ax.axhline(float(ql[name] - zero.iloc[0]), color=MAP_COLORS[name], linestyle=":", linewidth=0.8)
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_xlabel(KINDS[kind], fontsize="small")
        ax.set_title(kind)
    for ax in axes.ravel()[len(kinds):]:
        ax.remove()
    axes[0, 0].set_ylabel(f"Δ {metric.upper()}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(maps) * len(methods), fontsize="small")
    return fig


def mismatch_methods_figure(curves: pd.DataFrame, metric: str = "ssim", name: str = "T2",
                            kinds: Sequence[str] = tuple(KINDS), ncols: int = 4, panel_size: float = 2.6) -> Figure:
    """A metric of one map (mean over subjects) against mismatch size for every method, one panel per kind.

    One colour per method (:data:`METHOD_COLORS`); the dotted black line is Q_l's value: below it
    (SSIM) or above it (HFEN) a method is worse than its input.
    """
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.4),
                             layout="constrained", squeeze=False)
    rows = curves[curves["map"] == name]
    ql = float(rows.loc[rows["kind"] == "none", metric].iloc[0])
    methods = [m for m in METHOD_COLORS if m in set(rows["method"])]
    for ax, kind in zip(axes.ravel(), kinds):
        for method in methods:
            line = rows[(rows["kind"] == kind) & (rows["method"] == method)].sort_values("size")
            ax.plot(line["size"], line[metric], marker=".", color=METHOD_COLORS[method], label=method)
        ax.axhline(ql, color="black", linestyle=":", linewidth=0.8, label="$Q_l$")
        ax.set_xlabel(KINDS[kind], fontsize="small")
        ax.set_title(kind)
    for ax in axes.ravel()[len(kinds):]:
        ax.remove()
    axes[0, 0].set_ylabel(f"{metric.upper()} of {name}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small")
    return fig


def worst_kind(curves: pd.DataFrame, maps: Sequence[str] = ("T1", "T2")) -> str:
    """The kind whose largest size lowers SWIG's SSIM most (mean over ``maps``)."""
    rows = curves[(curves["method"] == "SWIG") & curves["map"].isin(maps) & (curves["kind"].isin(list(KINDS)))]
    largest = rows.loc[rows.groupby(["kind", "map"])["size"].transform(lambda s: s.abs().max()) == rows["size"].abs()]
    return str(largest.groupby("kind")["d_ssim"].mean().idxmin())


def mismatch_figure(example: MismatchExample, kind: str, maps: Sequence[str] = ("T1", "T2"),
                    limits: Mapping[str, float] = DIFF_LIMITS, panel_size: float = 2.3) -> Figure:
    """One slice: Q_h, SWIG with matched guides, SWIG with the ``kind`` mismatch at its largest size, their difference.

    The last column shows the perturbed guide (T2w for the echo-train and TE mismatches, T1w
    otherwise) on a grey window of its own.
    """
    size, guides, sr = example.perturbed[kind]
    guide_name = "T2w" if kind in ("FSE", "TE") else "T1w"
    fig, axes = plt.subplots(len(maps), 5, figsize=(panel_size * 5 + 1.6, panel_size * len(maps) + 0.5),
                             layout="constrained", squeeze=False)
    for r, name in enumerate(maps):
        c = MAP_NAMES.index(name)
        vmin, vmax = MAP_WINDOWS[name]
        for col, (image, title) in enumerate(((example.q_h[c], "$Q_h$"), (example.sr[c], "SR, matched guides"),
                                              (sr[c], f"SR, {kind} = {size:g}"))):
            im = axes[r, col].imshow(orient_axial(image), cmap=MAP_CMAPS[name], vmin=vmin, vmax=vmax)
            axes[r, col].set(xticks=[], yticks=[])
            axes[r, col].set_title(title if r == 0 else "", fontsize="small")
        axes[r, 0].set_ylabel(name)
        fig.colorbar(im, ax=list(axes[r, :3]), label=f"{name} [{MAP_UNITS[name]}]", shrink=0.85)
        difference_panel(axes[r, 3], sr[c] - example.sr[c], limit=limits[name], mask=example.mask,
                         units=MAP_UNITS[name], title="mismatched − matched" if r == 0 else None)
        guide = guides[guide_name]
        axes[r, 4].imshow(orient_axial(guide), cmap="gray", vmin=float(np.percentile(guide, 0.5)),
                          vmax=float(np.percentile(guide, 99.5)))
        axes[r, 4].set(xticks=[], yticks=[])
        axes[r, 4].set_title(f"{guide_name} guide, {kind} = {size:g}" if r == 0 else "", fontsize="small")
    fig.suptitle(f"{example.subject}, slice {example.slice} of the stored slab", fontsize="medium")
    return fig
