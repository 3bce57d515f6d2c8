"""The data chapter (notebook 01) as one call: :func:`run_data_chapter`.

Opens (or builds) the profile's dataset of digital subjects and computes what the chapter shows:
one test subject drawn again from its seed beside the template, the tissue values of all
subjects, the degradation Φ (eq. 3) followed through that subject with its noise level, the
errors of the voxel-wise fit (the fitter alone, the resolution loss, and Q_l), the guides'
signals for pure tissues, the dataset's split and manifest, and the baseline of every result of
the book: SSIM and HFEN of Q_l against Q_h over the test subjects (:func:`subject_baseline`),
beside the paper's (:data:`swig_lib.paper.BASELINE`).

Output: ``<results_dir>/<profile>/data/baseline_per_subject.csv`` (one row per test subject,
region and map) and ``summary.json`` (dataset, Φ, fit errors, baseline). The figures are drawn by
:mod:`swig_lib.experiments.subjects.figures`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.io.formats.style import Styler

from swig_lib import paper
from swig_lib.core import physics
from swig_lib.core.io import PathLike, atomic_write_bytes, write_csv
from swig_lib.core.kspace import centre_mask
from swig_lib.core.models import MAP_NAMES
from swig_lib.core.protocols import GUIDE_PROTOCOLS, QMRIProtocol
from swig_lib.experiments.config import Profile, load_profile
from swig_lib.experiments.evaluation.generalisation import SOURCES, GeneralisationSettings, label_profile
from swig_lib.experiments.evaluation.ranking import baseline_metrics, mean_sd
from swig_lib.experiments.plotting import MAP_UNITS
from swig_lib.experiments.results import Glue
from swig_lib.experiments.subjects.anatomy import TISSUE_VALUES, TISSUES, SubjectAnatomy, mni152_template
from swig_lib.experiments.subjects.dataset import (
    SPLITS,
    Acquired,
    Dataset,
    fit_maps,
    folder_size,
    load_dataset,
    lr_contrasts,
)

#: The three fits of :func:`fit_errors`, in the order of the table's columns.
FIT_LABELS: tuple[str, str, str] = (
    "noise-free HR (fitter)", "noise-free LR (resolution)", "Q_l (resolution + noise)",
)

#: Sequence names of the guide protocols in :func:`guide_table`, by protocol class.
GUIDE_SEQUENCES: dict[str, str] = {
    "IRSPGRProtocol": "IR-SPGR (eq. 15-16)",
    "SpinEchoProtocol": "spin echo (eq. 17)",
}


@dataclass(frozen=True)
class ShownSlice:
    """The test subject and axial slice that the chapter's figures show.

    Attributes
    ----------
    subject : str
        Subject id (the first test subject).
    index : int
        Index of the slice among the stored slices (the middle one).
    mni152_slice : int
        Its axial index k on the MNI152 1 mm grid (z = k − 72 mm).
    acquired : Acquired
        What a scanner gives for the subject: Q_l, guides, mask, C_l.
    q_h : numpy.ndarray, shape (3, X, Y, Z), float32
        The subject's HR maps: PD [a.u.], T1 [ms], T2 [ms].
    anatomy : SubjectAnatomy
        The subject drawn again from its seed on this slice (tissue fractions, maps).
    template_fractions : numpy.ndarray, shape (3, X, Y)
        GM, WM, CSF fractions of the MNI152 template on this slice.
    redraw_error : numpy.ndarray, shape (3,)
        Per map, ``max |redrawn − stored Q_h| / max stored Q_h`` on this slice.
    """

    subject: str
    index: int
    mni152_slice: int
    acquired: Acquired
    q_h: np.ndarray
    anatomy: SubjectAnatomy
    template_fractions: np.ndarray
    redraw_error: np.ndarray


@dataclass(frozen=True)
class Degradation:
    """Φ (eq. 3) followed through the shown subject.

    Attributes
    ----------
    keep, sigma : float
        Kept fraction of each in-plane k-space axis; k-space noise σ [a.u.].
    protocol : QMRIProtocol
        TR and TE of the twelve contrasts [ms].
    titles : list of str
        Title of each contrast (:func:`contrast_titles`).
    c_h : numpy.ndarray, shape (12, X, Y)
        HR contrasts C_h of the shown slice [a.u.].
    c_l, c_l_clean : numpy.ndarray, shape (12, X, Y, Z)
        The noisy LR contrasts that were fitted into Q_l, and Φ of C_h without noise [a.u.].
    kept : numpy.ndarray of bool, shape (X, Y)
        The kept k-space square B.
    kept_fraction : float
        Fraction f of k-space kept.
    noise_sd, noise_sd_expected : float
        Image noise sd of C_l measured (all contrasts and slices) and expected, σ·√(f/2) [a.u.].
    wm_snr : numpy.ndarray, shape (12,)
        Signal of pure literature white matter over the measured noise sd, per contrast.
    table : pandas.DataFrame
        These quantities as the chapter lists them (:func:`noise_table`).
    """

    keep: float
    sigma: float
    protocol: QMRIProtocol
    titles: list[str]
    c_h: np.ndarray
    c_l: np.ndarray
    c_l_clean: np.ndarray
    kept: np.ndarray
    kept_fraction: float
    noise_sd: float
    noise_sd_expected: float
    wm_snr: np.ndarray
    table: pd.DataFrame


@dataclass(frozen=True)
class FitErrors:
    """Relative errors ``|fit − Q_h| / Q_h`` of the three fits of :data:`FIT_LABELS` in the brain mask.

    Attributes
    ----------
    median : dict of str to numpy.ndarray
        Per fit, the median relative error of PD, T1 and T2 (dimensionless).
    fitter_max : float
        Largest relative error of the noise-free HR fit over all voxels and maps.
    n_voxels : int
        Brain voxels of the subject.
    table : pandas.DataFrame
        Median and 95th percentile per map (rows) and fit (columns).
    caption : str
        Caption of the table.
    """

    median: dict[str, np.ndarray]
    fitter_max: float
    n_voxels: int
    table: pd.DataFrame
    caption: str

    def styled(self) -> Styler:
        """Return the table in scientific notation, with its caption."""
        return self.table.style.format("{:.1e}").set_caption(self.caption)


@dataclass(frozen=True)
class Baseline:
    """The ``Q_l`` baseline of a split (:func:`subject_baseline`).

    Attributes
    ----------
    per_subject : pandas.DataFrame
        :func:`~swig_lib.experiments.evaluation.ranking.baseline_metrics`: one row per subject,
        region and map.
    summary : pandas.DataFrame
        :func:`~swig_lib.experiments.evaluation.ranking.mean_sd` by region and map.
    interior_voxels : int
        In-plane erosion of the ``"interior"`` region.
    """

    per_subject: pd.DataFrame
    summary: pd.DataFrame
    interior_voxels: int


@dataclass(frozen=True)
class DataResults:
    """Everything :func:`run_data_chapter` produces.

    Attributes
    ----------
    dataset : Dataset
        The profile's dataset.
    split : dict of str to list of str
        Subject ids per split.
    shown : ShownSlice
        The subject and slice of the figures.
    tissue_values : pandas.DataFrame
        :func:`tissue_values_table` of all subjects.
    phi : Degradation
        Φ followed through the shown subject.
    fits : FitErrors
        Errors of the fitter, the resolution loss and Q_l on the shown subject.
    guide_signals : dict of str to dict of str to float
        :func:`pure_tissue_signals` of the guides.
    guides : pandas.DataFrame
        :func:`guide_table`.
    splits : pandas.DataFrame
        Subjects per split.
    overview : pandas.DataFrame
        The dataset in one column (:func:`dataset_overview`).
    subjects : pandas.DataFrame
        Per subject: split, seeds and the smallest Jacobian of its deformation.
    baseline : Baseline
        Q_l against Q_h on the test subjects.
    baseline_table : pandas.DataFrame
        :func:`baseline_table`, beside the paper's values.
    summary : dict
        The content of ``summary.json``.
    out_dir : Path
        ``<results_dir>/<profile>/data``, where the chapter's files go.
    glue : dict
        Values the chapter's prose quotes: name → (value, format specification).
    label_dataset : Dataset
        The label-derived dataset of ``[generalisation]``
        (:func:`~swig_lib.experiments.evaluation.generalisation.label_profile`).
    label_baseline : Baseline
        Q_l against Q_h on its test subjects.
    sources : pandas.DataFrame
        :func:`source_table`: the baselines of both sources side by side.
    """

    dataset: Dataset
    split: dict[str, list[str]]
    shown: ShownSlice
    tissue_values: pd.DataFrame
    phi: Degradation
    fits: FitErrors
    guide_signals: dict[str, dict[str, float]]
    guides: pd.DataFrame
    splits: pd.DataFrame
    overview: pd.DataFrame
    subjects: pd.DataFrame
    baseline: Baseline
    baseline_table: pd.DataFrame
    summary: dict[str, Any]
    out_dir: Path
    glue: Glue
    label_dataset: Dataset
    label_baseline: Baseline
    sources: pd.DataFrame

    def describe(self) -> str:
        """Two lines: the dataset (folder, subjects, grid) and the subject and slice shown."""
        n_all = sum(map(len, self.split.values()))
        k = self.shown.mni152_slice
        return (f"{self.dataset.folder}: {n_all} subjects, grid {self.dataset.manifest['shape']}\n"
                f"figures: {self.shown.subject}, MNI152 slice k = {k} (z = {k - 72} mm)")


def contrast_titles(protocol: QMRIProtocol) -> list[str]:
    """Titles of the twelve contrasts: ``"SR, TR 360 ms"`` …, then ``"SE, TE 10 ms"`` … (TR, TE in ms)."""
    return [f"SR, TR {tr:g} ms" for tr in protocol.tr] + [f"SE, TE {te:g} ms" for te in protocol.te]


def tissue_values_table(subjects: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Literature tissue values beside the mean ± sd of the subjects' tissue means.

    Parameters
    ----------
    subjects : mapping
        ``manifest["subjects"]``: per subject id a record whose ``"tissue_values"`` maps each
        tissue of :data:`~swig_lib.experiments.subjects.anatomy.TISSUES` to ``pd`` [a.u.], ``t1``
        and ``t2`` [ms].

    Returns
    -------
    pandas.DataFrame
        Indexed by tissue; per map a column ``"<map> literature [<unit>]"``
        (:data:`~swig_lib.experiments.subjects.anatomy.TISSUE_VALUES`) and ``"<map> subjects
        [<unit>]"`` (mean ± sample sd over the subjects, no decimals), as strings.
    """
    values = pd.DataFrame(
        [
            {"subject": sid, "tissue": tissue, **entry}
            for sid, record in subjects.items()
            for tissue, entry in record["tissue_values"].items()
        ]
    )
    rows = []
    for tissue in TISSUES:
        part = values[values["tissue"] == tissue]
        row = {"tissue": tissue}
        for key, name in (("pd", "PD"), ("t1", "T1"), ("t2", "T2")):
            unit = MAP_UNITS[name]
            row[f"{name} literature [{unit}]"] = f"{getattr(TISSUE_VALUES[tissue], key):g}"
            row[f"{name} subjects [{unit}]"] = f"{part[key].mean():.0f} ± {part[key].std(ddof=1):.0f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("tissue")


def noise_table(sigma: float, kept_fraction: float, noise_sd_expected: float, noise_sd: float,
                wm_snr: np.ndarray, titles: Sequence[str]) -> pd.DataFrame:
    """Tabulate the noise of Φ as the chapter lists it.

    Parameters
    ----------
    sigma : float
        k-space noise σ [a.u.].
    kept_fraction : float
        Fraction f of k-space kept.
    noise_sd_expected, noise_sd : float
        Image noise sd, expected σ·√(f/2) and measured [a.u.].
    wm_snr : numpy.ndarray, shape (12,)
        White-matter SNR per contrast.
    titles : sequence of str
        Contrast titles (:func:`contrast_titles`).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``quantity``; one column ``value`` of formatted strings with units.
    """
    return pd.DataFrame(
        {
            "quantity": [
                "k-space noise σ",
                "kept fraction of k-space",
                "image noise sd, expected σ·√(f/2)",
                "image noise sd, measured",
                "white-matter SNR, lowest contrast",
                "white-matter SNR, highest contrast",
            ],
            "value": [
                f"{sigma:g} a.u.",
                f"{kept_fraction:.4f}",
                f"{noise_sd_expected:.4f} a.u.",
                f"{noise_sd:.4f} a.u.",
                f"{wm_snr.min():.0f} ({titles[int(wm_snr.argmin())]})",
                f"{wm_snr.max():.0f} ({titles[int(wm_snr.argmax())]})",
            ],
        }
    ).set_index("quantity")


def degradation(shown: ShownSlice, keep: float, sigma: float) -> Degradation:
    """Follow Φ (eq. 3) through the shown subject: contrasts, kept k-space and noise level.

    Parameters
    ----------
    shown : ShownSlice
        The subject and slice.
    keep : float
        Kept fraction of each in-plane k-space axis.
    sigma : float
        k-space noise σ [a.u.].

    Returns
    -------
    Degradation
        With the protocol of the dataset's contrasts (:class:`~swig_lib.core.protocols.QMRIProtocol`).
    """
    protocol = QMRIProtocol()
    maps_slice = torch.from_numpy(shown.q_h[..., shown.index])
    c_h = physics.qmri_contrasts(maps_slice[0], maps_slice[1], maps_slice[2], protocol).numpy()
    c_l = shown.acquired.lr_contrasts()
    c_l_clean = lr_contrasts(shown.q_h, keep, 0.0, seed=0)
    kept = centre_mask(c_h.shape[-2:], keep).numpy()
    kept_fraction = float(kept.mean())
    noise_sd = float((c_l - c_l_clean).std())
    noise_sd_expected = sigma * np.sqrt(kept_fraction / 2)
    wm = TISSUE_VALUES["WM"]
    wm_signal = physics.qmri_contrasts(
        *(torch.tensor(v, dtype=torch.float64) for v in (wm.pd, wm.t1, wm.t2)), protocol,
    )
    snr = wm_signal.numpy() / noise_sd
    titles = contrast_titles(protocol)
    return Degradation(keep, sigma, protocol, titles, c_h, c_l, c_l_clean, kept, kept_fraction, noise_sd,
                       noise_sd_expected, snr,
                       noise_table(sigma, kept_fraction, noise_sd_expected, noise_sd, snr, titles))


def fit_errors(q_h: np.ndarray, fits: Mapping[str, np.ndarray], mask: np.ndarray, caption: str) -> FitErrors:
    """Relative errors ``|fit − Q_h| / Q_h`` of several fits inside the mask.

    Parameters
    ----------
    q_h : numpy.ndarray, shape (3, X, Y, Z)
        The true maps (non-zero inside the mask).
    fits : mapping of str to numpy.ndarray, shape (3, X, Y, Z)
        Fitted maps by label; the first is the fitter's own error (its maximum is reported).
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Brain mask.
    caption : str
        Caption of the table.

    Returns
    -------
    FitErrors
    """
    error_rows, median_error, fitter_max = [], {}, None
    for label, maps in fits.items():
        relative = np.abs(maps[:, mask] - q_h[:, mask]) / q_h[:, mask]
        if fitter_max is None:
            fitter_max = float(relative.max())
        median_error[label] = np.median(relative, axis=1)
        for m, name in enumerate(MAP_NAMES):
            for stat, q in (("median", 0.5), ("95th percentile", 0.95)):
                error_rows.append({"map": name, "statistic": stat, "fit": label,
                                   "error": np.quantile(relative[m], q)})
    table = pd.DataFrame(error_rows).pivot_table(index=["map", "statistic"], columns="fit", values="error",
                                                 sort=False)
    return FitErrors(median_error, fitter_max, int(mask.sum()), table, caption)


def pure_tissue_signals(protocols: Mapping[str, Any] = GUIDE_PROTOCOLS) -> dict[str, dict[str, float]]:
    """Signal [a.u.] of each guide for each pure literature tissue (float64).

    Parameters
    ----------
    protocols : mapping
        Guide protocols by name (:data:`~swig_lib.core.protocols.GUIDE_PROTOCOLS`).

    Returns
    -------
    dict
        ``{guide: {tissue: signal}}`` with the tissues of
        :data:`~swig_lib.experiments.subjects.anatomy.TISSUE_VALUES` in the order of
        :data:`~swig_lib.experiments.subjects.anatomy.TISSUES`.
    """
    pure = {
        t: [torch.tensor(v, dtype=torch.float64) for v in (TISSUE_VALUES[t].pd, TISSUE_VALUES[t].t1,
                                                            TISSUE_VALUES[t].t2)]
        for t in TISSUES
    }
    return {key: {t: float(physics.weighted_image(p, *pure[t])) for t in TISSUES} for key, p in protocols.items()}


def _protocol_column(field: str) -> str:
    """Column title of a protocol field, with its unit."""
    return "flip angle α [°]" if field == "flip" else f"{field.upper()} [ms]"


def guide_table(signals: Mapping[str, Mapping[str, float]],
                protocols: Mapping[str, Any] = GUIDE_PROTOCOLS) -> pd.DataFrame:
    """Tabulate the guide protocols and their signals for pure tissues, one column per guide.

    Parameters
    ----------
    signals : mapping
        :func:`pure_tissue_signals` of ``protocols``.
    protocols : mapping
        Guide protocols by name.

    Returns
    -------
    pandas.DataFrame
        Rows: ``sequence``, each protocol field (times [ms], flip angle [°]) and
        ``"<tissue> signal [a.u.]"`` (rounded to 0.1); columns: the guides; fields a protocol
        lacks are empty strings.
    """
    table = pd.DataFrame(
        [
            {
                "guide": key,
                "sequence": GUIDE_SEQUENCES.get(type(p).__name__, type(p).__name__),
                **{_protocol_column(field): value for field, value in vars(p).items()},
            }
            for key, p in protocols.items()
        ]
    ).set_index("guide")
    for key in protocols:
        for t in TISSUES:
            table.loc[key, f"{t} signal [a.u.]"] = round(signals[key][t], 1)
    return table.astype(object).fillna("").T


def dataset_overview(dataset: Dataset, split: Mapping[str, Sequence[str]], size_mib: float) -> pd.DataFrame:
    """Describe the dataset in one column: source, folder, split, grid, slices, seed, Φ, build, size.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    split : mapping of str to sequence of str
        Subject ids per split.
    size_mib : float
        Size on disk [MiB].

    Returns
    -------
    pandas.DataFrame
        One column ``value``, indexed by the quantity.
    """
    manifest, settings = dataset.manifest, dataset.settings
    slices = manifest["slices"]
    build = manifest.get("build", {})
    build_s = build.get("seconds")
    spacing = np.diff(slices).min() if len(slices) > 1 else 1
    counts = [str(len(v)) for v in split.values()]
    # MNI152: z = k − 72 mm
    z_mm = (slices[0] - 72, slices[-1] - 72)
    rows = {
        "source": settings["source"],
        "folder": str(dataset.folder),
        "subjects (train / val / test)": f"{len(manifest['subjects'])} ({' / '.join(counts)})",
        "grid X × Y × slices": " × ".join(map(str, manifest["shape"])),
        "voxel size": f"1 × 1 mm in-plane, every {spacing} mm axially",
        "stored MNI152 slices k": f"{slices[0]} … {slices[-1]}",
        "their z": f"{z_mm[0]} … {z_mm[1]} mm",
        "dataset seed": settings["seed"],
        "Φ: kept fraction of each axis, k-space σ": f"{float(settings['keep']):g}, {float(settings['sigma']):g} a.u.",
        "build time": "not recorded" if build_s is None else f"{build_s:.0f} s",
        "built with": ", ".join(f"{k} {v}" for k, v in build.items() if k != "seconds"),
        "size on disk": f"{size_mib:.0f} MiB",
    }
    return pd.Series(rows, name="value").to_frame()


def subject_table(subjects: Mapping[str, Mapping[str, Any]], split: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per subject: its split, the seeds of its anatomy and noise, and its smallest Jacobian.

    Parameters
    ----------
    subjects : mapping
        ``manifest["subjects"]`` (records with ``seed``, ``noise_seed``, ``min_jacobian``).
    split : mapping of str to sequence of str
        Subject ids per split.

    Returns
    -------
    pandas.DataFrame
        Indexed by subject.
    """
    role = {sid: name for name, ids in split.items() for sid in ids}
    return pd.DataFrame(
        [
            {
                "subject": sid,
                "split": role[sid],
                "seed": tuple(r["seed"]),
                "noise seed": r["noise_seed"],
                "min. Jacobian of the deformation": r["min_jacobian"],
            }
            for sid, r in subjects.items()
        ]
    ).set_index("subject")


def subject_baseline(dataset: Dataset, interior_voxels: int, split: str = "test") -> Baseline:
    """SSIM and HFEN of Q_l against Q_h for the subjects of a split, and their mean ± sd.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    interior_voxels : int
        In-plane erosion of the ``"interior"`` region (0: brain mask only).
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    Baseline
    """
    per_subject = baseline_metrics(dataset, split, interior_voxels=interior_voxels, names=MAP_NAMES)
    return Baseline(per_subject, mean_sd(per_subject, by=("region", "map")), interior_voxels)


def baseline_table(baseline: Baseline,
                   stated: Mapping[tuple[str, str], tuple[float, float]] = paper.BASELINE) -> pd.DataFrame:
    """Mean ± sd of the baseline per region and map, beside the paper's values on the brain mask.

    Parameters
    ----------
    baseline : Baseline
        :func:`subject_baseline`.
    stated : mapping
        The paper's values, ``(metric, map) → (mean, sd)``.

    Returns
    -------
    pandas.DataFrame
        Indexed by region label and map; columns ``"SSIM (mean ± sd)"``, ``"paper SSIM"``,
        ``"HFEN (mean ± sd)"``, ``"paper HFEN"`` (strings; ``"not stated"`` where the paper gives
        no number, empty on the interior region).
    """
    rows = []
    for (region, name), row in baseline.summary.iterrows():
        label = "brain" if region == "brain" else f"interior (eroded {baseline.interior_voxels})"
        entry = {"region": label, "map": name}
        for metric in ("ssim", "hfen"):
            mean, sd = row[f"{metric}_mean"], row[f"{metric}_sd"]
            entry[f"{metric.upper()} (mean ± sd)"] = f"{mean:.4f} ± {sd:.4f}"
            value = stated.get((metric, name))
            text = "not stated" if value is None else f"{value[0]:g} ± {value[1]:g}"
            entry[f"paper {metric.upper()}"] = text if region == "brain" else ""
        rows.append(entry)
    return pd.DataFrame(rows).set_index(["region", "map"])


def source_table(baselines: Mapping[str, Baseline]) -> pd.DataFrame:
    """Mean SSIM and HFEN of Q_l per map on the brain mask, one column per anatomy source, and their ratio.

    Parameters
    ----------
    baselines : mapping
        ``{"mni152": ..., "synthsr": ...}``: :func:`subject_baseline` of each source's test subjects.

    Returns
    -------
    pandas.DataFrame
        Index (metric, map); columns the sources' names
        (:data:`~swig_lib.experiments.evaluation.generalisation.SOURCES`) with their number of test
        subjects, and ``"label maps / MNI152"``.
    """
    columns = {}
    for source, baseline in baselines.items():
        brain = baseline.summary.loc["brain"]
        name = f"{SOURCES[source]} ({int(brain['n'].iloc[0])} subjects)"
        columns[name] = {(metric.upper(), m): float(brain.loc[m, f"{metric}_mean"])
                         for metric in ("ssim", "hfen") for m in MAP_NAMES}
    table = pd.DataFrame(columns)
    first, second = table.columns
    table[f"{SOURCES['synthsr']} / {SOURCES['mni152']}"] = table[second] / table[first]
    table.index.names = ["metric", "map"]
    return table

def _shown_slice(dataset: Dataset, subject: str, index: int) -> ShownSlice:
    """Load the subject and draw its anatomy again on stored slice ``index``."""
    k = dataset.manifest["slices"][index]
    acquired, q_h = dataset.acquired(subject), dataset.reference(subject)
    anatomy = dataset.anatomy(subject, [k])
    template = mni152_template(int(dataset.settings["margin"]))
    template_fractions = template.fractions[..., k - template.offset[2]]
    redraw = np.abs(anatomy.maps[..., 0] - q_h[..., index]).max(axis=(1, 2)) / q_h[..., index].max(axis=(1, 2))
    return ShownSlice(subject, index, k, acquired, q_h, anatomy, template_fractions, redraw)


def _glue(phi: Degradation, fits: FitErrors, dataset: Dataset, split: Mapping[str, Sequence[str]],
          size_mib: float, baseline: Baseline) -> Glue:
    """Collect the values that the chapter's prose quotes, with their formats."""
    manifest = dataset.manifest
    n_subjects = len(manifest["subjects"])
    lr_label, q_l_label = FIT_LABELS[1:]
    glue: Glue = {
        "kept_fraction": (phi.kept_fraction, ".3f"),
        "noise_sigma": (phi.sigma, "g"),
        "image_noise_sd": (phi.noise_sd, ".4f"),
        "image_noise_sd_expected": (phi.noise_sd_expected, ".4f"),
        "snr_wm_min": (float(phi.wm_snr.min()), ".0f"),
        "snr_wm_max": (float(phi.wm_snr.max()), ".0f"),
        "fitter_max_rel_err": (fits.fitter_max, ".1e"),
    }
    for m, name in enumerate(MAP_NAMES):
        key = name.lower()
        glue[f"lr_clean_median_rel_err_{key}"] = (100 * fits.median[lr_label][m], ".1f")
        glue[f"q_l_median_rel_err_{key}"] = (100 * fits.median[q_l_label][m], ".1f")
    glue["fit_voxels"] = (fits.n_voxels, ",")
    glue["n_subjects"] = (n_subjects, None)
    for name, ids in split.items():
        glue[f"n_{name}"] = (len(ids), None)
    glue["grid_shape"] = (" × ".join(map(str, manifest["shape"])), None)
    glue["dataset_size_mib"] = (size_mib, ".0f")
    build_s = manifest.get("build", {}).get("seconds")
    if build_s is not None:
        glue["build_seconds"] = (float(build_s), ".0f")
        glue["build_seconds_per_subject"] = (float(build_s) / n_subjects, ".1f")
    summary = baseline.summary
    for (region, name), row in summary.iterrows():
        prefix = "baseline" if region == "brain" else "baseline_interior"
        for metric in ("ssim", "hfen"):
            key = f"{prefix}_{metric}_{name.lower()}"
            glue[key] = (float(row[f"{metric}_mean"]), ".3f")
            glue[f"{key}_sd"] = (float(row[f"{metric}_sd"]), ".3f")
    glue["interior_voxels"] = (baseline.interior_voxels, None)
    glue["baseline_best_ssim_map"] = (str(summary.loc["brain", "ssim_mean"].idxmax()), None)
    glue["baseline_n_subjects"] = (int(summary["n"].iloc[0]), None)
    paper_t2 = paper.BASELINE[("ssim", "T2")]
    glue["paper_baseline_ssim_t2"] = (f"{paper_t2[0]:g} ± {paper_t2[1]:g}", None)
    return glue


def _source_glue(label_dataset: Dataset, gen: GeneralisationSettings, sources: pd.DataFrame) -> Glue:
    """The values of the chapter's section on the label-derived subjects: dataset, baselines, their ratios."""
    n_subjects = len(label_dataset.manifest["subjects"])
    glue: Glue = {
        "label_n_subjects": (n_subjects, None),
        "label_split": (" + ".join(str(len(label_dataset.subject_ids(name))) for name in SPLITS), None),
        "label_train_brains": (", ".join(map(str, gen.brains[0])), None),
        "label_test_brains": (", ".join(map(str, gen.brains[2])), None),
    }
    build_s = label_dataset.manifest.get("build", {}).get("seconds")
    if build_s is not None:
        glue["label_build_seconds"] = (float(build_s), ".0f")
    mni, labels, ratio = sources.columns
    for (metric, name), row in sources.iterrows():
        key = f"{metric.lower()}_{name.lower()}"
        glue[f"src_mni152_{key}"] = (float(row[mni]), ".3f")
        glue[f"src_synthsr_{key}"] = (float(row[labels]), ".3f")
        glue[f"src_ratio_{key}"] = (float(row[ratio]), ".1f")
    hfen = sources.loc["HFEN", ratio]
    glue["src_hfen_text"] = (
        f"{hfen.min():.1f} to {hfen.max():.1f} times" if round(hfen.min(), 1) != round(hfen.max(), 1)
        else f"{hfen.min():.1f} times", None)
    return glue


def _summary(profile: str, dataset: Dataset, split: Mapping[str, Sequence[str]], size_mib: float,
             phi: Degradation, fits: FitErrors, shown: ShownSlice, baseline: Baseline) -> dict[str, Any]:
    """Return the content of ``summary.json``."""
    manifest = dataset.manifest
    return {
        "profile": profile,
        "dataset": {
            "folder": str(dataset.folder),
            "n_subjects": len(manifest["subjects"]),
            "split": {name: len(ids) for name, ids in split.items()},
            "shape": manifest["shape"],
            "slices": manifest["slices"],
            "seed": dataset.settings["seed"],
            "build_seconds": manifest.get("build", {}).get("seconds"),
            "size_mib": round(size_mib, 1),
        },
        "phi": {
            "keep": phi.keep,
            "sigma": phi.sigma,
            "kept_fraction": phi.kept_fraction,
            "image_noise_sd": phi.noise_sd,
            "image_noise_sd_expected": float(phi.noise_sd_expected),
        },
        "fit_median_relative_error": {
            label: dict(zip(MAP_NAMES, map(float, value))) for label, value in fits.median.items()
        },
        "shown": {"subject": shown.subject, "mni152_slice": shown.mni152_slice},
        "baseline": {
            f"{region}/{name}": {key: float(value) for key, value in row.items()}
            for (region, name), row in baseline.summary.iterrows()
        },
        "interior_voxels": baseline.interior_voxels,
        "paper_baseline": {f"{metric}/{name}": list(value) for (metric, name), value in paper.BASELINE.items()},
    }


def run_data_chapter(
    profile: str | Profile,
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    progress: bool = False,
) -> DataResults:
    """Run the analyses of the data chapter and write its files (see the module's docstring).

    Parameters
    ----------
    profile : str or Profile
        Profile name or a loaded profile (:func:`~swig_lib.experiments.config.load_profile`);
        its ``data`` section defines the dataset, ``eval.interior_voxels`` the interior region.
    data_dir, results_dir : path
        Data root (the dataset is built there on first use) and results root.
    progress : bool
        Progress bar while building the dataset.

    Returns
    -------
    DataResults
    """
    settings = load_profile(profile) if isinstance(profile, str) else profile
    out_dir = Path(results_dir) / settings.name / "data"
    out_dir.mkdir(parents=True, exist_ok=True)

    dataset = load_dataset(settings, root=data_dir, progress=progress)
    split = {name: dataset.subject_ids(name) for name in SPLITS}
    # a test subject, never used for training or model selection; the middle stored slice
    shown = _shown_slice(dataset, split["test"][0], len(dataset.manifest["slices"]) // 2)
    phi = degradation(shown, float(dataset.settings["keep"]), float(dataset.settings["sigma"]))

    q_h, mask = shown.q_h, shown.acquired.mask
    fitted = (
        fit_maps(physics.qmri_contrasts(*torch.from_numpy(q_h), phi.protocol).numpy(), mask),
        fit_maps(phi.c_l_clean, mask),
        shown.acquired.q_l,
    )
    caption = f"|fit − Q_h| / Q_h in the brain mask of {shown.subject}, {len(dataset.manifest['slices'])} slices"
    fits = fit_errors(q_h, dict(zip(FIT_LABELS, fitted)), mask, caption)
    signals = pure_tissue_signals()
    size_mib = folder_size(dataset.folder) / 2**20

    baseline = subject_baseline(dataset, settings.eval.interior_voxels)
    write_csv(baseline.per_subject, out_dir / "baseline_per_subject.csv")
    # the second anatomy source: label-derived subjects, test brains held out (notebook 10 trains on it)
    label_dataset = load_dataset(label_profile(settings), root=data_dir, progress=progress)
    label_baseline = subject_baseline(label_dataset, settings.eval.interior_voxels)
    write_csv(label_baseline.per_subject, out_dir / "label_baseline_per_subject.csv")
    sources = source_table({"mni152": baseline, "synthsr": label_baseline})
    summary = _summary(settings.name, dataset, split, size_mib, phi, fits, shown, baseline)
    summary["label_baseline"] = {f"{metric}/{name}": float(v) for (metric, name), v in sources.iloc[:, 1].items()}
    atomic_write_bytes(out_dir / "summary.json", (json.dumps(summary, indent=1) + "\n").encode("utf-8"))

    subjects = dataset.manifest["subjects"]
    splits = pd.DataFrame(
        [{"split": name, "subjects": len(ids), "ids": ", ".join(ids)} for name, ids in split.items()]
    ).set_index("split")
    return DataResults(
        dataset=dataset,
        split=split,
        shown=shown,
        tissue_values=tissue_values_table(subjects),
        phi=phi,
        fits=fits,
        guide_signals=signals,
        guides=guide_table(signals),
        splits=splits,
        overview=dataset_overview(dataset, split, size_mib),
        subjects=subject_table(subjects, split),
        baseline=baseline,
        baseline_table=baseline_table(baseline),
        summary=summary,
        out_dir=out_dir,
        glue=_glue(phi, fits, dataset, split, size_mib, baseline)
        | _source_glue(label_dataset, GeneralisationSettings.from_profile(settings), sources),
        label_dataset=label_dataset,
        label_baseline=label_baseline,
        sources=sources,
    )
