"""Why the ventricles stay grey in the FLAIR synthesised from the transient-state maps (issue 11).

The acquired T2-FLAIR nulls CSF: its inversion time nulls T1 = ``flair_null_t1`` (eq. 18 = 0).
Near that null the magnitude image, PD·abs(1 − 2e^(−TI/T1) + e^(−TR/T1))·e^(−TE/T2), is steep in T1
and rectifies: an error of either sign in a CSF voxel's T1 makes it brighter. Two things can lift
the synthesised ventricles above the acquired ones:

* a *bias* of the CSF T1 of the maps (the median over the ventricle moves away from the truth);
* a voxel-to-voxel *spread* of that T1 (noise of the maps), which the magnitude turns into signal
  even when the median is right.

:func:`ventricle_budget` separates the two on the display slice of Fig. 4c: the FLAIR of the
ventricles synthesised voxel by voxel (bias and spread) and from the ventricle's median PD, T1 and
T2 (bias only), both relative to the white matter's FLAIR from the same maps.
:func:`noise_free_maps` simulates the radial protocols once more on the slice's true maps without
noise, which separates what the noise does to CSF from what the sequence and its resolution do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from swig_lib.core import physics
from swig_lib.core.io import write_csv
from swig_lib.core.protocols import FlairProtocol
from swig_lib.experiments.crossseq.example import Example
from swig_lib.experiments.crossseq.scoring import REPORTED_TISSUES
from swig_lib.experiments.crossseq.sequence import AcquisitionSettings, simulate_protocols
from swig_lib.experiments.crossseq.settings import PROTOCOLS, REFERENCE, SOURCES, CrossSequenceSettings

#: File of :func:`ventricle_table` in the chapter's results folder (``<results>/<profile>/crosssequence``).
VENTRICLES_FILE = "ventricles.csv"
#: Source name of the maps simulated without noise (:func:`noise_free_maps`).
NOISE_FREE = "Q_l, no noise"


def ventricle_core(labels: np.ndarray, mask: np.ndarray, erosion: int = 2) -> np.ndarray:
    """Pure-CSF voxels at least ``erosion`` voxels inside a CSF region (the ventricles), bool.

    Thin sulcal CSF disappears under the erosion; the ventricles keep a core far from the
    partial volumes of their walls.
    """
    csf = (labels == REPORTED_TISSUES["CSF"]) & mask
    return ndimage.binary_erosion(csf, iterations=erosion) if erosion > 0 else csf


def _flair(maps: np.ndarray, protocol: FlairProtocol) -> np.ndarray:
    """Magnitude FLAIR (eq. 18 × PD) of a (3, ...) map stack (PD a.u., T1 ms, T2 ms), float64."""
    pd_, t1, t2 = (torch.from_numpy(np.asarray(m, dtype=np.float64)) for m in maps)
    t1, t2 = t1.clamp_min(1e-3), t2.clamp_min(1e-3)
    return physics.flair(pd_, t1, t2, protocol.ti, protocol.tr, protocol.te, magnitude=True).numpy()


def ventricle_budget(example: Example, protocol: FlairProtocol, sources: Sequence[tuple[str, str]],
                     erosion: int = 2) -> pd.DataFrame:
    """CSF bias and spread of each map set in the ventricles, and the FLAIR they leave there.

    Parameters
    ----------
    example : Example
        The display slice, with its tissue labels and the true maps ``(Q_h, Q_h)``.
    protocol : FlairProtocol
        The FLAIR protocol of the acquired image (TI, TR, TE in ms).
    sources : sequence of (protocol, source)
        Map sets to report (keys of ``example.maps``); the true maps come first anyway.
    erosion : int
        Voxels by which the CSF label is eroded (:func:`ventricle_core`).

    Returns
    -------
    DataFrame
        Indexed by (protocol, source); columns ``t1_bias``, ``t2_bias``, ``pd_bias`` (median in the
        core relative to the true maps' median, %), ``t1_spread``, ``t2_spread`` (sd / mean in the
        core, %), ``flair_voxelwise`` (mean FLAIR in the core / mean FLAIR in pure white matter, %)
        and ``flair_median`` (the same with the core's median PD, T1 and T2: bias only, %).

    Raises
    ------
    ValueError
        When the example has no labels or no true maps, or the core or white matter is empty.
    """
    if example.labels is None or (REFERENCE, REFERENCE) not in example.maps:
        raise ValueError("the ventricle budget needs the tissue labels and the true maps Q_h")
    core = ventricle_core(example.labels, example.mask, erosion)
    wm = (example.labels == REPORTED_TISSUES["WM"]) & example.mask
    if not core.any() or not wm.any():
        raise ValueError(f"no ventricle core (erosion {erosion}) or no white matter on slice {example.slice}")
    truth = example.maps[(REFERENCE, REFERENCE)][:, core].astype(np.float64)
    rows = {}
    for key in [(REFERENCE, REFERENCE), *[k for k in sources if k != (REFERENCE, REFERENCE)]]:
        maps = example.maps[key].astype(np.float64)
        inside = maps[:, core]
        medians = np.median(inside, axis=1)
        wm_flair = _flair(maps[:, wm], protocol).mean()
        bias = 100 * (medians / np.median(truth, axis=1) - 1)
        spread = 100 * inside.std(axis=1) / inside.mean(axis=1)
        rows[key] = {
            "t1_bias": bias[1], "t2_bias": bias[2], "pd_bias": bias[0],
            "t1_spread": spread[1], "t2_spread": spread[2],
            "flair_voxelwise": 100 * _flair(inside, protocol).mean() / wm_flair,
            "flair_median": 100 * float(_flair(medians[:, None], protocol)[0]) / wm_flair,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["protocol", "source"])
    return table


def noise_free_maps(example: Example, acquisition: AcquisitionSettings,
                    protocols: Sequence[str] = ("Acq1", "Acq5")) -> dict[tuple[str, str], np.ndarray]:
    """Maps of the radial ``protocols`` simulated on the example's true maps without noise.

    Parameters
    ----------
    example : Example
        The display slice, with the true maps ``(Q_h, Q_h)`` (PD a.u., T1 ms, T2 ms).
    acquisition : AcquisitionSettings
        The radial sequence; its ``noise_std`` is set to 0.
    protocols : sequence of str
        Radial protocols (Acq1 and Acq5; the CNN of Acq5^R is not re-run).

    Returns
    -------
    dict of (protocol, :data:`NOISE_FREE`) to ndarray (3, X, Y)
        Keys and layout of ``example.maps``, to be merged into it.
    """
    truth = example.maps[(REFERENCE, REFERENCE)].astype(np.float64)
    maps = simulate_protocols(*truth, example.mask, tuple(protocols), 0, acquisition, noise_std=0.0)
    return {(p, NOISE_FREE): np.stack(maps[p]) for p in protocols}


def ventricle_table(example: Example, settings: CrossSequenceSettings, folder: str | Path | None = None
                    ) -> pd.DataFrame:
    """The ventricle table of the FLAIR chapter, on the example slice.

    :func:`ventricle_budget` of every protocol and source, and of Acq1 and Acq5 simulated without
    noise (:func:`noise_free_maps`); written to ``folder`` / :data:`VENTRICLES_FILE` when given
    (read by :mod:`swig_lib.experiments.findings`).
    """
    noise_free = noise_free_maps(example, settings.acquisition)
    example = dataclasses.replace(example, maps={**example.maps, **noise_free})
    sources = [(p, s) for p in PROTOCOLS for s in SOURCES] + list(noise_free)
    table = ventricle_budget(example, settings.images.flair_protocol, sources)
    if folder is not None:
        write_csv(table, Path(folder) / VENTRICLES_FILE, index=True)
    return table


#: Column titles of :func:`ventricle_budget`'s table on the page.
COLUMN_TITLES: dict[str, str] = {
    "t1_bias": "T1 bias [%]", "t2_bias": "T2 bias [%]", "pd_bias": "PD bias [%]", "t1_spread": "T1 sd [%]",
    "t2_spread": "T2 sd [%]", "flair_voxelwise": "FLAIR / WM [%]", "flair_median": "FLAIR of medians / WM [%]",
}


def ventricle_glue(budget: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Glue of the ventricle table: ``flair_csf_<protocol>_<source>_<column>``, whole percent.

    The noise-free source (:data:`NOISE_FREE`) is written ``<source>_nn``, e.g. ``Q_l_nn``.
    """
    source_key = {NOISE_FREE: "Q_l_nn"}
    return {f"flair_csf_{protocol}_{source_key.get(source, source)}_{column}": (float(row[column]), ".0f")
            for (protocol, source), row in budget.iterrows()
            for column in ("t1_bias", "t2_bias", "t1_spread", "flair_voxelwise", "flair_median")}
