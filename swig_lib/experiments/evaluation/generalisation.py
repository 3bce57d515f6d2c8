"""Generalisation across anatomy (notebook 10) as one call: :func:`run_generalisation`.

The digital subjects of the main benchmark all deform one population average (MNI152). A second
source deforms five real brains' label maps (:mod:`swig_lib.experiments.subjects.synthsr`); its
dataset for this chapter (:func:`label_profile`, settings :class:`GeneralisationSettings`) holds
the test brains out of training. Three models of the same recipe (M12++, the profile's
``[train]`` and ``[model]``) are compared:

* **trained on MNI152**: the M12++ of the training chapter (notebook 02), reused as it is (trained
  here, as notebook 02 would, only when missing);
* **trained on label maps**: M12++ on the label-derived training subjects (``M12++@synthsr``);
* **trained on the mix**: M12++ on the training subjects of both sources together
  (``M12++@mix``), read from the two datasets (:class:`CombinedDataset`, no third dataset).

The two new models train with exactly as many optimisation steps as M12++ (``train.epochs``
passes over the MNI152 training slices, :func:`model_steps`; the learning-rate schedule spans
them), so that they differ from it only in the anatomy they saw. Checkpoints go to
``<results>/<profile>/checkpoints/<name>.pt`` and are reused while the settings they were trained
with hold. Every model and Q_l are then scored on the first ``test_subjects`` test subjects of
each source (:func:`~swig_lib.experiments.evaluation.cross_anatomy.cross_anatomy`: SSIM and HFEN
per map, and the edge overshoot at tissue/CSF boundaries).

Output: ``<results_dir>/<profile>/generalisation/``: ``metrics.csv`` and ``edges.csv`` (per
subject), ``summary.csv`` (means), ``change.csv`` (% change against Q_l), ``overshoot.csv`` and
``runs.csv`` (the training runs).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import ndimage

from swig_lib.core.io import PathLike, write_csv
from swig_lib.core.models import MAP_NAMES, receptive_radius
from swig_lib.experiments.config import Profile, Section, load_profile
from swig_lib.experiments.evaluation.cross_anatomy import (
    CSF_LABELS,
    CrossAnatomyResults,
    cross_anatomy,
)
from swig_lib.experiments.evaluation.ranking import BASELINE
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.plotting import DIFF_LIMITS, orient_axial, show_map_grid
from swig_lib.experiments.results import Glue
from swig_lib.experiments.subjects.dataset import Dataset, load_dataset
from swig_lib.experiments.subjects.synthsr import BRAINS
from swig_lib.experiments.training.checkpoints import (
    CheckpointError,
    checkpoint_paths,
    comparable_settings,
    load_checkpoint,
    setting_differences,
)
from swig_lib.experiments.training.loop import train_variant
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import prepare_data, select_slices

#: The anatomy sources, by key, with their names in tables and prose.
SOURCES: dict[str, str] = {"mni152": "MNI152", "synthsr": "label maps"}
#: The recipe of every model.
BASE_VARIANT = "M12++"
#: The models: name in tables → (checkpoint name, training sources).
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "trained on MNI152": (BASE_VARIANT, ("mni152",)),
    "trained on label maps": (f"{BASE_VARIANT}@synthsr", ("synthsr",)),
    "trained on mix": (f"{BASE_VARIANT}@mix", ("mni152", "synthsr")),
}
#: Short keys of the models in glue names and file names.
MODEL_KEYS: dict[str, str] = dict(zip(MODELS, ("mni152", "synthsr", "mix")))
#: Sides of the boundary band (:func:`~swig_lib.experiments.evaluation.cross_anatomy.edge_overshoot`).
SIDES: dict[str, str] = {"tissue side": "edge_signed_tissue", "CSF side": "edge_signed_csf"}


@dataclass(frozen=True, eq=False)
class GeneralisationSettings(Section):
    """``[generalisation]``: the label-derived dataset and the cross-anatomy evaluation (``profiles.toml``).

    Attributes
    ----------
    dataset : str
        Folder of the label-derived dataset under the data root.
    n_subjects : int
        Label-derived subjects.
    split : (int, int, int)
        Train, validation and test subjects (summing to ``n_subjects``).
    brains : tuple of tuple of int
        The SynthSR brains each split draws from, cycled (disjoint: test brains held out).
    test_subjects : int
        First n test subjects of each source scored (0 = all).
    slice_stride : int
        Every n-th of their qualifying slices (``eval.min_brain_fraction``).
    band : int
        Half-width of the boundary band of the edge overshoot, voxels.
    """

    dataset: str
    n_subjects: int
    split: tuple[int, int, int]
    brains: tuple[tuple[int, ...], ...]
    test_subjects: int
    slice_stride: int
    band: int

    def __post_init__(self) -> None:
        if sum(self.split) != self.n_subjects or min(self.split) < 0:
            raise ValueError(f"generalisation.split {list(self.split)} must sum to n_subjects = {self.n_subjects}")
        if len(self.brains) != 3 or any(not b or set(b) - set(BRAINS) for b in self.brains):
            raise ValueError(f"generalisation.brains must be three non-empty lists of brains from {list(BRAINS)}")
        if self.test_subjects < 0 or self.slice_stride < 1 or self.band < 1:
            raise ValueError("need generalisation.test_subjects >= 0, slice_stride >= 1 and band >= 1")

    @classmethod
    def from_profile(cls, profile: Profile) -> GeneralisationSettings:
        """Read ``profile.generalisation``; unknown or missing keys raise KeyError, bad values ValueError."""
        return cls.from_table(profile.generalisation, "generalisation")


def label_profile(profile: Profile) -> Profile:
    """``profile`` whose dataset is the label-derived one of ``[generalisation]`` (the rest of ``[data]`` kept)."""
    settings = GeneralisationSettings.from_profile(profile)
    data = profile.data.to_dict()
    data.update(dataset=settings.dataset, n_subjects=settings.n_subjects, split=list(settings.split),
                anatomy_source="synthsr",
                synthsr={**data.get("synthsr", {}), "brains": [list(b) for b in settings.brains]})
    return Profile.from_dict(profile.to_dict() | {"data": data})


def mix_profile(profile: Profile) -> Profile:
    """The profile recorded in the mix model's checkpoint: ``data`` names both datasets and holds both."""
    mni, labels = profile.data.to_dict(), label_profile(profile).data.to_dict()
    data = {**mni, "dataset": f"{mni['dataset']}+{labels['dataset']}", "anatomy_source": "mix",
            "sources": {"mni152": mni, "synthsr": labels}}
    return Profile.from_dict(profile.to_dict() | {"data": data})


class CombinedDataset:
    """The subjects of several datasets read as one, for training on a mix without a third dataset.

    Subject ids are ``<source>/<id>``; :meth:`acquired` reads from the source's dataset. Every
    part must share Φ's ``keep`` and ``sigma`` (one data term).
    """

    def __init__(self, parts: Mapping[str, Any]) -> None:
        self.parts = dict(parts)
        phis = {(float(d.settings["keep"]), float(d.settings["sigma"])) for d in self.parts.values()}
        if len(phis) != 1:
            raise ValueError(f"the datasets of a mix must share keep and sigma, got {sorted(phis)}")
        keep, sigma = phis.pop()
        self.settings = {"keep": keep, "sigma": sigma}

    def subject_ids(self, split: str) -> list[str]:
        """Ids of ``split`` of every part, in part order: ``["mni152/sub-01", ...]``."""
        return [f"{name}/{sid}" for name, dataset in self.parts.items() for sid in dataset.subject_ids(split)]

    def acquired(self, sid: str) -> Any:
        """The acquired data of ``<source>/<id>``."""
        name, _, own = sid.partition("/")
        return self.parts[name].acquired(own)


class _FirstTest:
    """A dataset whose test split is cut to its first ``n`` subjects (0 = all)."""

    def __init__(self, dataset: Dataset, n: int) -> None:
        self.dataset, self.n = dataset, n

    def subject_ids(self, split: str) -> list[str]:
        ids = self.dataset.subject_ids(split)
        return ids[: self.n] if split == "test" and self.n else ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)


def training_slices(dataset: Any, profile: Profile) -> int:
    """Training slices of ``dataset`` under ``profile.train`` (what :func:`prepare_data` stacks)."""
    cfg = profile.train
    return sum(len(select_slices(np.asarray(dataset.acquired(sid).mask, bool), cfg.min_brain_fraction,
                                 cfg.slice_stride)) for sid in dataset.subject_ids("train"))


def model_steps(profile: Profile, n_slices: int) -> int:
    """Optimisation steps of ``train.epochs`` passes over ``n_slices`` in batches of ``train.batch_size``."""
    return profile.train.epochs * -(-n_slices // profile.train.batch_size)


def _finished(out: Path, name: str, profile: Profile, epochs: int) -> bool:
    """Whether ``checkpoints/<name>`` holds a finished run of ``profile``'s settings (``epochs`` done)."""
    _, last = checkpoint_paths(out, name)
    try:
        state = load_checkpoint(last)
    except (FileNotFoundError, CheckpointError):
        return False
    variant = asdict(replace(VARIANTS[BASE_VARIANT], name=name))
    recorded = {**comparable_settings(state["profile"]), "variant": state["variant"]}
    wanted = {**comparable_settings(profile.to_dict()), "variant": variant}
    return not setting_differences(recorded, wanted) and int(state["epoch"]) >= epochs


def train_models(profile: Profile, datasets: Mapping[str, Dataset], out: Path, device: torch.device,
                 progress: bool = False) -> pd.DataFrame:
    """Train the models of :data:`MODELS` that are missing or stale; return one row per model.

    Parameters
    ----------
    profile : Profile
        The profile (``[train]``, ``[model]``, ``seed``).
    datasets : mapping
        ``{"mni152": ..., "synthsr": ...}``: the profile's dataset and :func:`label_profile`'s.
    out : Path
        ``<results_dir>/<profile>``; checkpoints under ``checkpoints/``.
    device : torch.device
        Where to train.
    progress : bool
        Progress bars.

    Returns
    -------
    pandas.DataFrame
        Index model; columns checkpoint, sources, training slices, steps, epochs, status
        ("reused" or "trained"), wall_s.
    """
    slices = {source: training_slices(ds, profile) for source, ds in datasets.items()}
    steps = model_steps(profile, slices["mni152"])
    profiles = {"trained on MNI152": profile, "trained on label maps": label_profile(profile),
                "trained on mix": mix_profile(profile)}
    rows = []
    for model, (name, sources) in MODELS.items():
        started = time.perf_counter()
        n = sum(slices[s] for s in sources)
        budget = None if name == BASE_VARIANT else steps  # M12++ is notebook 02's run: its own epochs
        epochs = profile.train.epochs if budget is None else -(-budget // -(-n // profile.train.batch_size))
        status = "reused"
        # notebook 02's M12++ is reused as it is (notebook 02 keeps it up to date); the others while their settings hold
        if budget is None:
            done = checkpoint_paths(out, name)[0].is_file()
        else:
            done = _finished(out, name, profiles[model], epochs)
        if not done:
            source = datasets[sources[0]] if len(sources) == 1 else CombinedDataset({s: datasets[s] for s in sources})
            data = prepare_data(source, profiles[model], receptive_radius(**profile.model), progress=progress)
            variant = replace(VARIANTS[BASE_VARIANT], name=name)
            try:
                train_variant(profiles[model], variant, out, resume=True, device=device, data=data,
                              progress=progress, steps=budget)
            except CheckpointError:
                train_variant(profiles[model], variant, out, resume=False, device=device, data=data,
                              progress=progress, steps=budget)
            status = "trained"
        rows.append({"model": model, "checkpoint": f"{name}.pt", "sources": " + ".join(SOURCES[s] for s in sources),
                     "training slices": n, "steps": steps, "epochs": epochs, "status": status,
                     "wall_s": round(time.perf_counter() - started, 1)})
    return pd.DataFrame(rows).set_index("model")


def change_table(summary: pd.DataFrame) -> pd.DataFrame:
    """% change of SSIM and HFEN against Q_l: rows the models, columns (tested on, metric, map).

    Parameters
    ----------
    summary : pandas.DataFrame
        :meth:`~swig_lib.experiments.evaluation.cross_anatomy.CrossAnatomyResults.summary`.
    """
    means = summary.set_index(["model", "test", "map"])
    columns = {}
    for test, label in SOURCES.items():
        for metric in ("ssim", "hfen"):
            for name in MAP_NAMES:
                q_l = means.loc[(BASELINE, test, name), metric]
                columns[(f"tested on {label}", metric.upper(), name)] = [
                    100.0 * (means.loc[(model, test, name), metric] - q_l) / q_l for model in MODELS]
    table = pd.DataFrame(columns, index=pd.Index(list(MODELS), name="model"))
    table.columns.names = ["test", "metric", "map"]
    return table


def overshoot_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Signed edge overshoot (% of Q_h) on each side of the boundary band.

    Rows (tested on, map); columns (model, side), Q_l first.
    """
    means = summary.set_index(["model", "test", "map"])
    models = [BASELINE, *MODELS]
    rows = {(f"tested on {label}", name): [100.0 * means.loc[(model, test, name), column]
                                           for model in models for column in SIDES.values()]
            for test, label in SOURCES.items() for name in MAP_NAMES}
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=pd.MultiIndex.from_product([models, list(SIDES)], names=["model", "side"]))
    table.index = pd.MultiIndex.from_tuples(table.index, names=["test", "map"])
    return table


@dataclass(frozen=True)
class OvershootExample:
    """A zoom beside a ventricle of one label-derived test subject, for the overshoot figure.

    Attributes
    ----------
    subject : str
        Subject id.
    slice : int
        Axial index of the slice among the stored slices.
    box : (int, int, int, int)
        Zoom window ``x0, x1, y0, y1`` (voxels) on the dataset grid.
    maps : dict of str to ndarray, shape (3, h, w)
        Q_h, Q_l and every model's map on the zoom: PD [a.u.], T1 [ms], T2 [ms].
    band : ndarray of bool, shape (h, w)
        The boundary band (both sides) on the zoom.
    """

    subject: str
    slice: int
    box: tuple[int, int, int, int]
    maps: dict[str, np.ndarray]
    band: np.ndarray


def overshoot_example(dataset: Dataset, models: Mapping[str, Any], slices: np.ndarray, band: int,
                      device: torch.device, half: int = 24) -> OvershootExample:
    """The first test subject's evaluated slice with the largest interior CSF region, zoomed on it.

    The interior CSF is the largest connected region of pure CSF at least ``2·band`` voxels inside
    the brain (a ventricle rather than sulcal CSF); the zoom is ``2·half`` voxels wide around its
    centre, clipped to the grid.
    """
    from swig_lib.experiments.evaluation.cross_anatomy import boundary_band

    sid = dataset.subject_ids("test")[0]
    acq, q_h, labels = dataset.acquired(sid), dataset.reference(sid), dataset.labels(sid)
    mask = np.asarray(acq.mask, bool)
    best, best_size, centre = int(slices[0]), -1, (0.0, 0.0)
    for z in slices:
        inner = ndimage.binary_erosion(mask[..., z], iterations=2 * band) & (labels[..., z] == CSF_LABELS[0])
        parts, count = ndimage.label(inner)
        if count:
            sizes = ndimage.sum(inner, parts, range(1, count + 1))
            if sizes.max() > best_size:
                best, best_size = int(z), int(sizes.max())
                centre = ndimage.center_of_mass(parts == int(np.argmax(sizes)) + 1)
    x0 = int(np.clip(round(centre[0]) - half, 0, mask.shape[0] - 2 * half))
    y0 = int(np.clip(round(centre[1]) - half, 0, mask.shape[1] - 2 * half))
    box = (x0, x0 + 2 * half, y0, y0 + 2 * half)
    zoom = (slice(None), slice(box[0], box[1]), slice(box[2], box[3]), best)
    maps = {"Q_h": q_h[zoom], BASELINE: np.asarray(acq.q_l)[zoom]}
    for name, path in models.items():
        maps[name] = predict_volume(load_model(path, device), acq.q_l, acq.guides, mask, slices=np.array([best]))[zoom]
    tissue, csf = boundary_band(labels[..., best : best + 1], mask[..., best : best + 1], band)
    return OvershootExample(sid, best, box, maps, (tissue | csf)[zoom[1:3]][..., 0])


def overshoot_maps(example: OvershootExample) -> Figure:
    """Q_h, Q_l and every model's maps on the zoom, on the fixed windows of every map in the book."""
    sources = list(example.maps)
    return show_map_grid([[example.maps[s][m] for s in sources] for m in range(len(MAP_NAMES))], MAP_NAMES,
                         [s.replace("trained on ", "") for s in sources], panel_size=1.6)


def overshoot_errors(example: OvershootExample) -> Figure:
    """Q_l's and every model's error against Q_h on the zoom (±:data:`DIFF_LIMITS`), the band's edge outlined."""
    compared = [s for s in example.maps if s != "Q_h"]
    errors = show_map_grid(
        [[example.maps[s][m] - example.maps["Q_h"][m] for s in compared] for m in range(len(MAP_NAMES))],
        MAP_NAMES, [f"{s.replace('trained on ', '')} − Q_h" for s in compared],
        windows={name: (-DIFF_LIMITS[name], DIFF_LIMITS[name]) for name in MAP_NAMES}, cmap="RdBu_r",
        panel_size=1.6)
    for ax in errors.axes:
        if ax.images:
            ax.contour(orient_axial(example.band), levels=[0.5], colors="k", linewidths=0.5)
    return errors


@dataclass(frozen=True)
class GeneralisationResults:
    """Everything :func:`run_generalisation` produces.

    Attributes
    ----------
    settings : GeneralisationSettings
        The ``[generalisation]`` section.
    runs : pandas.DataFrame
        :func:`train_models`.
    scores : CrossAnatomyResults
        Per subject SSIM/HFEN and edge overshoot of Q_l and the models.
    change : pandas.DataFrame
        :func:`change_table` (brain mask).
    overshoot : pandas.DataFrame
        :func:`overshoot_table`.
    baseline : pandas.DataFrame
        Q_l's SSIM and HFEN per tested source and map (brain mask).
    example : OvershootExample
        The zoom of the overshoot figure.
    out_dir : Path
        ``<results_dir>/<profile>/generalisation``.
    glue : dict
        Values the chapter quotes: name → (value, format).
    """

    settings: GeneralisationSettings
    runs: pd.DataFrame
    scores: CrossAnatomyResults
    change: pd.DataFrame
    overshoot: pd.DataFrame
    baseline: pd.DataFrame
    example: OvershootExample
    out_dir: Path
    glue: Glue


def _verdict(change: pd.DataFrame) -> str:
    """One sentence on the transfer from MNI152 to label maps, from the numbers."""
    ssim = change["tested on label maps"]["SSIM"]
    own, other = ssim.loc["trained on label maps"], ssim.loc["trained on MNI152"]
    worse = [name for name in MAP_NAMES if other[name] < own[name]]
    if not worse:
        return ("On the label-derived test subjects the MNI152-trained model's SSIM gain is as large as that of "
                "the model trained on label maps for every map: no anatomy gap shows in SSIM.")
    return ("On the label-derived test subjects the MNI152-trained model gains less SSIM than the model "
            f"trained on label maps for {', '.join(worse)}: part of its gain on the benchmark is tied to the "
            "MNI152 anatomy.")


def _glue(settings: GeneralisationSettings, runs: pd.DataFrame, change: pd.DataFrame, overshoot: pd.DataFrame,
          baseline: pd.DataFrame, n_test: Mapping[str, int], example: OvershootExample, seconds: float) -> Glue:
    """Collect the values the chapter's prose quotes."""
    glue: Glue = {
        "gen_test_subjects_mni152": (n_test["mni152"], None),
        "gen_test_subjects_synthsr": (n_test["synthsr"], None),
        "gen_slice_stride": (settings.slice_stride, None),
        "gen_band": (settings.band, None),
        "gen_steps": (int(runs["steps"].iloc[0]), None),
        "gen_train_brains": (", ".join(map(str, settings.brains[0])), None),
        "gen_test_brains": (", ".join(map(str, settings.brains[2])), None),
        "gen_example_subject": (example.subject, None),
        "gen_seconds": (seconds, ".0f"),
        "gen_verdict": (_verdict(change), None),
    }
    for model in MODELS:
        key = MODEL_KEYS[model]
        glue[f"gen_slices_{key}"] = (int(runs.loc[model, "training slices"]), None)
        for test, label in SOURCES.items():
            for metric in ("SSIM", "HFEN"):
                for name in MAP_NAMES:
                    value = float(change.loc[model, (f"tested on {label}", metric, name)])
                    glue[f"gen_{key}_on_{test}_{metric.lower()}_{name.lower()}"] = (value, "+.1f")
    for test, label in SOURCES.items():
        for name in MAP_NAMES:
            for metric in ("ssim", "hfen"):
                glue[f"gen_ql_{test}_{metric}_{name.lower()}"] = (float(baseline.loc[(label, name), metric]), ".3f")
            for model in [BASELINE, *MODELS]:
                key = "ql" if model == BASELINE else MODEL_KEYS[model]
                for side, short in (("tissue side", "tissue"), ("CSF side", "csf")):
                    value = float(overshoot.loc[(f"tested on {label}", name), (model, side)])
                    glue[f"gen_edge_{key}_on_{test}_{name.lower()}_{short}"] = (value, "+.1f")
    return glue


def run_generalisation(profile: str | Profile, data_dir: PathLike = "data", results_dir: PathLike = "results",
                       device: str | torch.device = "cpu", progress: bool = False) -> GeneralisationResults:
    """Train what is missing, score the three models and Q_l on both sources, write the tables.

    Parameters
    ----------
    profile : str or Profile
        Profile name or loaded profile.
    data_dir, results_dir : path
        Data root (both datasets; built on first use) and results root.
    device : str or torch.device
        Where the models train and run.
    progress : bool
        Progress bars.

    Returns
    -------
    GeneralisationResults
    """
    started = time.perf_counter()
    config = load_profile(profile) if isinstance(profile, str) else profile
    settings = GeneralisationSettings.from_profile(config)
    device = torch.device(device)
    out = Path(results_dir) / config.name
    out_dir = out / "generalisation"
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = {"mni152": load_dataset(config, data_dir, progress=progress),
                "synthsr": load_dataset(label_profile(config), data_dir, progress=progress)}
    runs = train_models(config, datasets, out, device, progress)
    paths = {model: out / "checkpoints" / runs.loc[model, "checkpoint"] for model in MODELS}
    evaluation = replace(config.eval, slice_stride=settings.slice_stride)
    tested = {name: _FirstTest(ds, settings.test_subjects) for name, ds in datasets.items()}
    scores = cross_anatomy(tested, paths, evaluation, settings.band, device, progress)
    summary = scores.summary()
    change, overshoot = change_table(summary), overshoot_table(summary)
    baseline = (summary[summary["model"] == BASELINE].assign(test=lambda f: f["test"].map(SOURCES))
                .set_index(["test", "map"])[["ssim", "hfen"]])
    first = tested["synthsr"]
    mask = np.asarray(first.acquired(first.subject_ids("test")[0]).mask, bool)
    slices = select_slices(mask, evaluation.min_brain_fraction, evaluation.slice_stride)
    example = overshoot_example(first, paths, slices, settings.band, device)
    for name, frame, index in (("metrics", scores.metrics, False), ("edges", scores.edges, False),
                               ("summary", summary, False), ("change", change, True),
                               ("overshoot", overshoot, True), ("runs", runs, True)):
        write_csv(frame, out_dir / f"{name}.csv", index=index)
    n_test = {name: len(ds.subject_ids("test")) for name, ds in tested.items()}
    glue = _glue(settings, runs, change, overshoot, baseline, n_test, example, time.perf_counter() - started)
    return GeneralisationResults(settings, runs, scores, change, overshoot, baseline, example, out_dir, glue)

