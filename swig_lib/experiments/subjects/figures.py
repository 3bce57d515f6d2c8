"""Figures of the data chapter (notebook 01): a digital subject, Φ, the LR maps, the guides, the baseline.

Every panel is drawn through :func:`swig_lib.experiments.plotting.show_panels` (or its relatives)
with fixed windows: maps with :data:`~swig_lib.experiments.plotting.MAP_WINDOWS`, contrasts on
the PD window (each contrast is PD times a factor between 0 and 1), guides from zero to a little
above the brightest pure tissue (:func:`~swig_lib.experiments.subjects.report.pure_tissue_signals`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from swig_lib.core import physics
from swig_lib.core.kspace import fft2c
from swig_lib.core.models import MAP_NAMES
from swig_lib.core.protocols import GUIDE_PROTOCOLS
from swig_lib.experiments.plotting import (
    MAP_CMAPS,
    MAP_UNITS,
    MAP_WINDOWS,
    outline_region,
    plot_baseline,
    show_comparison,
    show_map_grid,
    show_panels,
)
from swig_lib.experiments.subjects.anatomy import TISSUES
from swig_lib.experiments.subjects.dataset import SPLITS, Dataset
from swig_lib.experiments.subjects.report import Baseline, Degradation, ShownSlice
from swig_lib.paper import BASELINE as PAPER_BASELINE

#: Display window of the contrasts [a.u.]: the PD window.
CONTRAST_WINDOW: tuple[float, float] = (0.0, MAP_WINDOWS["PD"][1])


def subject_construction(shown: ShownSlice) -> Figure:
    """Template tissue fractions, the subject's fractions after its construction, and its Q_h.

    Parameters
    ----------
    shown : ShownSlice
        The subject and slice (its anatomy drawn again from the seed).

    Returns
    -------
    matplotlib.figure.Figure
        Three rows of GM/WM/CSF (template, subject) and PD/T1/T2 (Q_h).
    """
    return show_panels(
        [*shown.template_fractions, *shown.anatomy.fractions[..., 0], *shown.q_h[..., shown.index]],
        [f"MNI152 template: {t}" for t in TISSUES]
        + [f"{shown.subject}: {t}" for t in TISSUES]
        + [f"{shown.subject}: $Q_h$ {name}" for name in MAP_NAMES],
        windows=[(0.0, 1.0)] * 6 + [MAP_WINDOWS[name] for name in MAP_NAMES],
        labels=["tissue fraction"] * 6 + [f"{name} [{MAP_UNITS[name]}]" for name in MAP_NAMES],
        ncols=3,
        cmap=["gray"] * 6 + [MAP_CMAPS[name] for name in MAP_NAMES],
        panel_size=2.6,
    )


def subject_gallery(dataset: Dataset, index: int, n: int = 4) -> Figure:
    """Show the same slice of ``n`` subjects spread over the dataset, captioned with their GM / WM means.

    For label-derived subjects (:mod:`swig_lib.experiments.subjects.synthsr`), whose tissue
    values are per class, the grey matter shown is the cortex.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    index : int
        Index of the stored slice.
    n : int
        Subjects shown (evenly spaced over train, val and test ids).

    Returns
    -------
    matplotlib.figure.Figure
        A PD/T1/T2 × subjects grid (:func:`~swig_lib.experiments.plotting.show_map_grid`).
    """
    split = {name: dataset.subject_ids(name) for name in SPLITS}
    all_ids = [sid for name in SPLITS for sid in split[name]]
    picked = list(dict.fromkeys(all_ids[i] for i in np.linspace(0, len(all_ids) - 1, n).round().astype(int)))
    role = {sid: name for name, ids in split.items() for sid in ids}
    images = [[dataset.reference(sid)[m, ..., index] for sid in picked] for m in range(3)]
    tv = {sid: dataset.manifest["subjects"][sid]["tissue_values"] for sid in picked}
    grey = {s: "GM" if "GM" in tv[s] else "cortex" for s in picked}  # label-derived subjects: per class
    captions = [
        [f"{grey[s]} {tv[s][grey[s]][key]:.0f} / WM {tv[s]['WM'][key]:.0f} {unit}" for s in picked]
        for key, unit in zip(("pd", "t1", "t2"), (MAP_UNITS[m] for m in MAP_NAMES))
    ]
    return show_map_grid(images, MAP_NAMES, [f"{sid} ({role[sid]})" for sid in picked], captions=captions,
                         panel_size=1.9)


def contrast_panels(phi: Degradation, contrasts: np.ndarray, suptitle: str) -> Figure:
    """Show the twelve contrasts of one slice on one shared grey scale, six per row.

    Parameters
    ----------
    phi : Degradation
        Gives the contrast titles.
    contrasts : numpy.ndarray, shape (12, X, Y)
        One axial slice of each contrast [a.u.].
    suptitle : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return show_panels(list(contrasts), phi.titles, CONTRAST_WINDOW, "signal [a.u.]", ncols=6,
                       shared_colorbar=True, panel_size=1.5, suptitle=suptitle)


def phi_panels(phi: Degradation, shown: ShownSlice, te: float = 80.0) -> Figure:
    """One spin-echo contrast followed through Φ: C_h, its k-space with B, the noise, zooms of C_h and C_l.

    Parameters
    ----------
    phi : Degradation
        Φ on the shown subject.
    shown : ShownSlice
        The subject and slice.
    te : float
        Echo time of the contrast followed [ms] (one of the protocol's).

    Returns
    -------
    matplotlib.figure.Figure
        Five panels; the kept square B outlined in cyan on the k-space, the zoom in yellow on C_h.
    """
    z, mask = shown.index, shown.acquired.mask
    i = len(phi.protocol.tr) + phi.protocol.te.index(te)
    c_h, c_l = phi.c_h, phi.c_l
    log_k = np.log10(np.abs(fft2c(torch.from_numpy(c_h[i]).to(torch.complex64)).numpy()) + 1e-6)
    noise_window = (-4 * phi.noise_sd_expected, 4 * phi.noise_sd_expected)
    # zoom: 64 × 64 voxels at the brain's lateral edge (left on screen)
    xs, ys = np.nonzero(mask[..., z])
    zoom = np.s_[
        xs.min() - 4 : xs.min() + 60,
        (ys.min() + ys.max()) // 2 - 32 : (ys.min() + ys.max()) // 2 + 32,
    ]
    fig = show_panels(
        [c_h[i], log_k, (c_l - phi.c_l_clean)[i, ..., z], c_h[i][zoom], c_l[i, ..., z][zoom]],
        ["$C_h$ (yellow: zoom)", "k-space, kept square $B$", "noise in $C_l$", "$C_h$, zoom", "$C_l$, zoom"],
        windows=[CONTRAST_WINDOW, (-2.0, 3.0), noise_window, CONTRAST_WINDOW, CONTRAST_WINDOW],
        labels=["signal [a.u.]", "log$_{10}$ |k-space| [a.u.]", "noise [a.u.]", "signal [a.u.]",
                "signal [a.u.]"],
        cmap=["gray", "magma", "RdBu_r", "gray", "gray"],
        ncols=3,
        panel_size=2.4,
        suptitle=f"{phi.titles[i]} through $\\Phi$ (eq. 3)",
    )
    outline_region(fig.axes[1], phi.kept, color="cyan", linewidth=1.5)
    box = np.zeros(mask.shape[:2], bool)
    box[zoom] = True
    outline_region(fig.axes[0], box, color="yellow")
    return fig


def q_l_comparison(shown: ShownSlice) -> Figure:
    """Q_h, Q_l and Q_l − Q_h of the shown slice (:func:`~swig_lib.experiments.plotting.show_comparison`)."""
    z = shown.index
    return show_comparison(shown.q_h[..., z], shown.acquired.q_l[..., z], shown.acquired.mask[..., z],
                           reference_name="$Q_h$", candidate_name="$Q_l$")


def guide_panels(shown: ShownSlice, signals: Mapping[str, Mapping[str, float]]) -> Figure:
    """Each guide W beside the same protocol applied to Q_l, on a window from its pure-tissue signals.

    Parameters
    ----------
    shown : ShownSlice
        The subject and slice.
    signals : mapping
        :func:`~swig_lib.experiments.subjects.report.pure_tissue_signals`.

    Returns
    -------
    matplotlib.figure.Figure
        One row per guide of :data:`~swig_lib.core.protocols.GUIDE_PROTOCOLS`.
    """
    z = shown.index
    q_l_t = torch.from_numpy(shown.acquired.q_l[..., z]).double()
    images, titles, windows = [], [], []
    for key, p in GUIDE_PROTOCOLS.items():
        pure = list(signals[key].values())
        window = (min(0.0, min(pure)), 1.2 * max(pure))
        images += [shown.acquired.guides[key][..., z], physics.weighted_image(p, *q_l_t).numpy()]
        titles += [f"$W$ {key} (from $Q_h$)", f"{key} from $Q_l$"]
        windows += [window, window]
    return show_panels(images, titles, windows, "signal [a.u.]", ncols=2, panel_size=3.0)


def baseline_figure(baseline: Baseline,
                    paper: Mapping[tuple[str, str], tuple[float, float]] = PAPER_BASELINE) -> Figure:
    """Per-subject SSIM and HFEN of Q_l against Q_h, with the paper's values (:func:`plot_baseline`).

    Parameters
    ----------
    baseline : Baseline
        :func:`~swig_lib.experiments.subjects.report.subject_baseline`.
    paper : mapping
        The paper's values, ``(metric, map) → (mean, sd)`` (default :data:`swig_lib.paper.BASELINE`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = plot_baseline(baseline.per_subject, maps=MAP_NAMES, paper=paper)
    n = baseline.per_subject["subject"].nunique()
    fig.suptitle(f"$Q_l$ against $Q_h$, {n} test subjects")
    return fig
