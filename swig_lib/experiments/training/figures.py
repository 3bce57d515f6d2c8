"""Figures of the training chapter (notebook 02), drawn from its :class:`~.report.TrainingResults`."""

from __future__ import annotations

from matplotlib.figure import Figure

from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.plotting import MAP_CMAPS, plot_loss_grid, show_panels
from swig_lib.experiments.training.report import TrainingResults
from swig_lib.experiments.training.variants import GUIDE_ORDER


def plot_network_inputs(results: TrainingResults) -> Figure:
    """One training slice as the network receives it: Q_l / s (window 0-2) and z-scored guides (±3).

    Parameters
    ----------
    results : TrainingResults
        Uses ``results.example``.

    Returns
    -------
    matplotlib.figure.Figure
        Five panels: PD, T1, T2 of Q_l / s, then the T1w and T2w guides.
    """
    example = results.example
    return show_panels(
        [*example["scaled"], *example["guides"]],
        [f"$Q_l$ {name} / s" for name in MAP_NAMES] + [f"$W$ {g}, z-scored" for g in GUIDE_ORDER],
        windows=[(0.0, 2.0)] * 3 + [(-3.0, 3.0)] * 2,
        labels=["scaled map (dimensionless)"] * 3 + ["z-score"] * 2,
        cmap=[MAP_CMAPS[name] for name in MAP_NAMES] + ["gray"] * 2,
        panel_size=2.4,
    )


def plot_training_losses(results: TrainingResults) -> Figure:
    """Loss curves of every variant (training solid, validation dashed), kept epoch dotted.

    Parameters
    ----------
    results : TrainingResults
        Uses ``results.logs`` and ``results.selected_epochs``.

    Returns
    -------
    matplotlib.figure.Figure
        One row per variant, one column per loss term (:func:`~swig_lib.experiments.plotting.plot_loss_grid`).
    """
    return plot_loss_grid(results.logs, selected=results.selected_epochs)
