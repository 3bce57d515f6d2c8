"""Where SWIG stands (notebook 08): every comparison arm beside SWIG on the ablation's test subjects.

:func:`run_comparison` trains (or reuses) what the arms need, runs every arm on the test subjects
and scores it exactly as the ablation scores the SWIG variants
(:func:`swig_lib.experiments.evaluation.evaluate.score_subject`: SSIM and HFEN per map and
axial slice, averaged over the slices that ``[eval]`` selects, in the brain mask and in its
interior), adds the mean absolute percentage error of PD, T1 and T2 in pure white matter, grey
matter and CSF (the dataset's tissue labels), ranks all arms by the paper's rank-sum rule
(:func:`swig_lib.experiments.evaluation.ranking.rank_models`), times every arm, and checks two goals:

* SWIG is the best of the arms that need no HR qMRI labels for training (the paper's rule applied
  to them alone; the guided filters count as label-free although their parameters are tuned
  against the validation subjects' Q_h, which only favours them);
* SWIG's HFEN gain over Q_l reaches at least :data:`HFEN_SHARE_GOAL` of the supervised upper
  bound's, per map.

The arms (:mod:`swig_lib.experiments.arms`; settings in the profile's ``[arms]`` section,
:class:`ArmsSettings`): SWIG (the variant the caller names, its checkpoint from notebook 02),
SWIG with scan-specific adaptation (a copy of that model fine-tuned on each test subject with the
self-supervised loss, ``adapt_steps`` Adam steps over the subject's slices with brain, before it
predicts: ``swig apply --adapt N``, :func:`swig_lib.experiments.owndata.adapt.adapt`), the
guided filter and the joint bilateral filter of Q_l (tuned per map on validation slices), the
MRI2Qmap-like plug-and-play reconstruction (a denoiser trained on weighted images of the training
subjects), the REFINE-MORE-like INR fitted per slice with the SWIG loss and with L_l alone, the
supervised upper bound and the Q2MRI-like direct estimation (both trained with HR labels). The
per-scan arms (SWIG with adaptation, PnP, INR) may run on a subset, the first
``per_scan_subjects`` test subjects and ``per_scan_slices`` of their evaluated slices (each
adapted copy of SWIG still adapts on all of its subject's slices with brain, as
``swig apply --adapt`` does); every arm is then also scored on that subset
(scope ``"subset"``), where the ranking over all arms is made, while scope ``"all"`` holds the
arms that ran on every test subject and slice. The first goal ranks SWIG as trained against the
other label-free arms; its adapted copy is ranked with every arm and compared with SWIG in
:meth:`ComparisonResults.adaptation_table`.

Trained arms are cached under ``<results_dir>/<profile>/checkpoints/arm-<name>.pt`` with the
settings they were trained with; a checkpoint is reused only when those equal the current ones.
Tables are written to ``<results_dir>/<profile>/comparison/``: ``per_subject.csv``,
``summary.csv``, ``ranking.csv``, ``features.csv``, ``tissue.csv``, ``goals.csv``, ``adaptation.csv``
(per adapted subject: steps and the self-supervised loss before and after).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor
from tqdm.auto import tqdm

from swig_lib.core.io import PathLike
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.metrics import METRICS, hfen, map_metrics, ssim
from swig_lib.core.models import MAP_NAMES, SwigResNet, masked_channel_means, receptive_radius
from swig_lib.experiments.arms.guided import FilterParams, filter_maps, tune_filter
from swig_lib.experiments.arms.pnp import (
    ContrastDenoiser,
    PnPSettings,
    WeightedPatches,
    pnp_reconstruct,
    train_denoiser,
    training_slices,
)
from swig_lib.experiments.arms.q2mri import q2mri_model, q2mri_terms
from swig_lib.experiments.arms.scan_specific import INRSettings, fit_adam, fit_subject
from swig_lib.experiments.arms.supervised import (
    LabelledSlices,
    labelled_data,
    mse_terms,
    supervised_model,
    train_with_labels,
)
from swig_lib.experiments.config import Profile, check_known_fields
from swig_lib.experiments.crossseq.scoring import tissue_errors
from swig_lib.experiments.crossseq.tables import adaptation_verdict
from swig_lib.experiments.evaluation.ablation import median_slice, median_subject
from swig_lib.experiments.evaluation.evaluate import score_subject, summarise, trained_checkpoints, write_csv
from swig_lib.experiments.evaluation.ranking import BASELINE, TOTAL_ROW, Ranking, rank_models
from swig_lib.experiments.inference import predict_volume
from swig_lib.experiments.owndata.adapt import AdaptSettings, Recipe, adapted_copy
from swig_lib.experiments.plotting import plot_subject_metrics, show_map_grid
from swig_lib.experiments.subjects.dataset import TISSUE_LABELS
from swig_lib.experiments.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    seed_everything,
)
from swig_lib.experiments.training.windows import (
    SliceSet,
    TrainingData,
    prepare_data,
    prepare_subject,
    select_slices,
    window_indices,
    window_size,
)

#: Names of the arms in tables and figures, in table order (SWIG first).
SWIG, SWIG_ADAPT, GUIDED, BILATERAL, PNP, INR, INR_DC, SUPERVISED, Q2MRI = (
    "SWIG", "SWIG + adaptation", "Guided filter", "Joint bilateral", "PnP", "INR", "INR (L_l only)", "Supervised",
    "Q2MRI-like")
#: What an arm needs of HR qMRI labels: none, the validation subjects' Q_h for tuning, or training labels.
LABELS_NONE, LABELS_TUNING, LABELS_TRAINING = "no", "validation Q_h (tuning)", "training Q_h"
#: Scopes of the scores: every test subject and evaluated slice, or the per-scan arms' subset.
ALL, SUBSET = "all", "subset"
#: The headline region (the paper's brain mask).
HEADLINE = "brain"
#: SWIG's HFEN gain over Q_l should reach this share of the supervised upper bound's.
HFEN_SHARE_GOAL = 0.8
#: Tissues of the percentage errors: pure white matter, grey matter and CSF (dataset labels).
TISSUES: dict[str, int] = {name: code for code, name in TISSUE_LABELS.items() if name in ("WM", "GM", "CSF")}
#: The column of the HR reference maps in the slice figure.
REFERENCE = "Q_h"
#: Panel edge of the slice figure, inches.
PANEL_SIZE = 1.7
#: Columns of :attr:`ComparisonResults.adaptation`.
ADAPTATION_COLUMNS = ("subject", "steps", "loss_before", "loss_after")
#: A glued value: the value and its format specification (None: glued as is).
Glue = dict[str, tuple[Any, str | None]]


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiserSettings:
    """``[arms.denoiser]``: the PnP arm's denoiser (:func:`~swig_lib.experiments.arms.pnp.train_denoiser`).

    Attributes
    ----------
    patches, patch : int
        Training samples and their side, voxels.
    epochs, batch_size : int
        Passes over the samples and samples per step.
    lr : float
        Peak Adam learning rate.
    warmup_steps : int
        Steps of the linear warm-up.
    width, depth : int
        Of :class:`~swig_lib.experiments.arms.pnp.ContrastDenoiser`.
    sigma_min, sigma_max : float
        Range of the training noise levels, a.u. (drawn log-uniformly).
    """

    patches: int
    patch: int
    epochs: int
    batch_size: int
    lr: float
    warmup_steps: int
    width: int
    depth: int
    sigma_min: float
    sigma_max: float


@dataclass(frozen=True)
class ArmsSettings:
    """The profile's ``[arms]`` section (see ``profiles.toml`` for each setting).

    Attributes
    ----------
    per_scan_subjects : int
        The per-scan arms run on the first n test subjects (0 = all).
    per_scan_slices : int
        ... and on n of each subject's evaluated slices, evenly spread (0 = all).
    tune_stride : int
        The filters are tuned on every n-th validation slice.
    tune_metric : {"ssim", "hfen"}
        The score the filters are tuned for (per map, against the validation subjects' Q_h).
    guided_radius, guided_eps : tuple
        Grid of the guided filter: radii (voxels) and ε (z-scored guides: dimensionless).
    bilateral_radius, bilateral_sigma_color, bilateral_sigma_space : tuple
        Grid of the joint bilateral filter: radii (voxels), σ_color (z-score units), σ_space (voxels).
    denoiser : DenoiserSettings
        ``[arms.denoiser]``.
    pnp : PnPSettings
        ``[arms.pnp]``: iterations, σ schedule (a.u.) and λ of the reconstruction.
    inr : INRSettings
        ``[arms.inr]``: encoding, network and optimisation of the INR (fitted per slice).
    adapt_steps : int
        Adam steps of the scan-specific adaptation of SWIG on each subject (0: SWIG unchanged).
    """

    per_scan_subjects: int
    per_scan_slices: int
    tune_stride: int
    tune_metric: str
    guided_radius: tuple[int, ...]
    guided_eps: tuple[float, ...]
    bilateral_radius: tuple[int, ...]
    bilateral_sigma_color: tuple[float, ...]
    bilateral_sigma_space: tuple[float, ...]
    denoiser: DenoiserSettings
    pnp: PnPSettings
    inr: INRSettings
    adapt_steps: int

    def __post_init__(self) -> None:
        if self.per_scan_subjects < 0 or self.per_scan_slices < 0 or self.tune_stride < 1 or self.adapt_steps < 0:
            raise ValueError("need per_scan_subjects >= 0, per_scan_slices >= 0, tune_stride >= 1 and "
                             "adapt_steps >= 0")
        if self.tune_metric not in METRICS:
            raise ValueError(f"tune_metric must be one of {METRICS}, got {self.tune_metric!r}")

    @classmethod
    def from_profile(cls, profile: Profile) -> ArmsSettings:
        """Read ``profile.arms``.

        Every key of the section and of its ``denoiser`` table is required; ``pnp`` and ``inr`` may
        leave fields at the defaults of :class:`PnPSettings` and :class:`INRSettings`.
        """
        section = profile.arms.to_dict()
        _check_complete(cls, section, "arms")
        _check_complete(DenoiserSettings, section["denoiser"], "arms.denoiser")
        check_known_fields(PnPSettings, section["pnp"], "arms.pnp")
        check_known_fields(INRSettings, section["inr"], "arms.inr")
        tables = {"denoiser": DenoiserSettings(**section.pop("denoiser")), "pnp": PnPSettings(**section.pop("pnp")),
                  "inr": INRSettings(**section.pop("inr"))}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}, **tables)

    def window_margin(self, dc_dilation: int) -> int:
        """Voxels around the brain in the test subjects' windows (:attr:`SubjectInputs.window`).

        Enough for the data-consistency region of the INR's loss (``dc_dilation``) and for every
        filter window of a brain voxel to stay inside (the guided filter averages box means over
        boxes, so it reaches twice its radius): the filters and the loss on the window then equal
        those on the whole slice. Smaller than the networks' receptive radius, so the INR's steps
        cost less.
        """
        return max(dc_dilation, 2 * max(self.guided_radius), max(self.bilateral_radius))


def _check_complete(cls: type, values: Mapping[str, Any], what: str) -> None:
    """Raise KeyError for a key of ``values`` that is no field of dataclass ``cls``, or a field it lacks."""
    check_known_fields(cls, values, what)
    missing = sorted({f.name for f in fields(cls)} - set(values))
    if missing:
        raise KeyError(f"missing {what} setting(s) {missing}")


# ----------------------------------------------------------------------------------------------
# The arms
# ----------------------------------------------------------------------------------------------


@dataclass
class SubjectInputs:
    """What the arms read of one test subject (never its Q_h).

    Attributes
    ----------
    sid : str
        Subject id.
    acq
        The acquired data (:meth:`Dataset.acquired`): ``q_l``, ``guides``, ``mask``, ``lr_contrasts()``.
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    slices : numpy.ndarray
        The evaluated axial slices.
    window : SliceSet
        Those slices cropped to the brain plus :meth:`ArmsSettings.window_margin`
        (:func:`swig_lib.experiments.training.windows.prepare_subject`); with C_l only for the
        subjects of the per-scan arms (the others' ``c_l`` has no channels).
    rows, cols : numpy.ndarray
        In-plane indices of the window.
    """

    sid: str
    acq: Any
    mask: np.ndarray
    slices: np.ndarray
    window: SliceSet
    rows: np.ndarray
    cols: np.ndarray

    def paste(self, maps: Tensor, index: np.ndarray, full_grid: bool = False) -> np.ndarray:
        """Place (B, 3, h, w) maps of the slices ``slices[index]`` into a (3, X, Y, Z) float32 volume.

        ``full_grid``: the maps cover the whole slice instead of the window. Other voxels are 0.
        """
        rows, cols = (np.arange(self.mask.shape[0]), np.arange(self.mask.shape[1])) if full_grid else (
            self.rows, self.cols)
        volume = np.zeros((len(MAP_NAMES), *self.mask.shape), dtype=np.float32)
        block = maps.detach().float().cpu().numpy().transpose(1, 0, 2, 3)
        volume[:, rows[None, :, None], cols[None, None, :], self.slices[index][:, None, None]] = block
        return volume


#: An arm's prediction: (subject, positions in ``subject.slices``) → (3, X, Y, Z) maps on those slices.
Predict = Callable[[SubjectInputs, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Arm:
    """One arm of the comparison: what it needs, where it comes from and how it predicts.

    Attributes
    ----------
    name : str
        Its name in the tables and figures.
    key : str
        Its name in glue keys (``rank_<key>``, ...).
    labels : str
        HR qMRI labels it needs: :data:`LABELS_NONE`, :data:`LABELS_TUNING` or :data:`LABELS_TRAINING`.
    guides : bool
        Needs the subject's HR weighted guides.
    training_set : bool
        Needs a training set.
    per_scan : bool
        Optimises per scan (and may therefore run on the subset only).
    follows : str
        The method or system it follows.
    predict : Predict
        Its prediction.
    """

    name: str
    key: str
    labels: str
    guides: bool
    training_set: bool
    per_scan: bool
    follows: str
    predict: Predict

    @property
    def label_free(self) -> bool:
        """No HR qMRI labels for training (tuning on validation labels allowed)."""
        return self.labels != LABELS_TRAINING


def network_arm(model: torch.nn.Module, batch_size: int) -> Predict:
    """Predict with a trained :class:`~swig_lib.core.models.SwigResNet` (:func:`predict_volume`)."""
    def predict(subject: SubjectInputs, index: np.ndarray) -> np.ndarray:
        acq = subject.acq
        return predict_volume(model, acq.q_l, acq.guides, subject.mask, batch_size, slices=subject.slices[index])

    return predict


@dataclass
class AdaptedArm:
    """SWIG fine-tuned on each subject before it predicts (a :data:`Predict`), and what each adaptation did.

    A copy of the model takes ``steps`` Adam steps of the self-supervised loss on every slice of
    the subject with brain voxels, its own LR contrasts in the data term on the mask dilated by
    the training's ``dc_dilation`` (:func:`~swig_lib.experiments.owndata.adapt.adapted_copy`; the
    guides have the model's protocols), then predicts as :func:`network_arm`. With 0 steps the
    model predicts unchanged. The model itself is never changed.

    Attributes
    ----------
    model : SwigResNet
        The trained SWIG model.
    recipe : Recipe
        Its checkpoint's training settings.
    steps, seed : int
        Adam steps per subject and the seed of each adaptation.
    batch_size : int
        Slices per forward pass.
    device : torch.device
        Where the steps run.
    records : list of dict
        Per adapted subject: ``subject``, ``steps``, ``loss_before``, ``loss_after`` (mean total
        self-supervised loss over its slices).
    """

    model: SwigResNet
    recipe: Recipe
    steps: int
    seed: int
    batch_size: int
    device: torch.device
    records: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, subject: SubjectInputs, index: np.ndarray) -> np.ndarray:
        """Adapt a copy of the model to ``subject`` (unless 0 steps), then predict ``subject.slices[index]``."""
        model = self.model
        if self.steps:
            done = adapted_copy(model, self.recipe, subject.acq, AdaptSettings(self.steps, seed=self.seed),
                                self.recipe.dc_dilation, device=self.device)
            model = done.model
            self.records.append({"subject": subject.sid, "steps": self.steps,
                                 **{key: done.record[key]["loss_total"] for key in ("loss_before", "loss_after")}})
        return network_arm(model, self.batch_size)(subject, index)


def filter_arm(params: Mapping[str, FilterParams], batch_size: int) -> Predict:
    """Filter Q_l with both guides, each map with its own parameters (:func:`filter_maps`), in batches."""
    def predict(subject: SubjectInputs, index: np.ndarray) -> np.ndarray:
        parts = []
        for first in range(0, len(index), batch_size):
            part = subject.window.batch(torch.from_numpy(index[first : first + batch_size]), torch.device("cpu"))
            with torch.no_grad():
                out = {p: filter_maps(part.q_l, part.guides, part.mask, p) for p in set(params.values())}
            parts.append(torch.stack([out[params[name]][:, c] for c, name in enumerate(MAP_NAMES)], dim=1))
        return subject.paste(torch.cat(parts), index)

    return predict


def pnp_arm(denoiser: ContrastDenoiser, phi: KSpaceTruncation, settings: PnPSettings,
            device: torch.device) -> Predict:
    """Reconstruct the maps from the whole slices' LR contrasts (:func:`pnp_reconstruct`, float64)."""
    prior = denoiser.prior()

    def predict(subject: SubjectInputs, index: np.ndarray) -> np.ndarray:
        z = subject.slices[index]
        c_l = torch.from_numpy(np.asarray(subject.acq.lr_contrasts())[..., z]).permute(3, 0, 1, 2)
        mask = torch.from_numpy(subject.mask[..., z]).permute(2, 0, 1)
        result = pnp_reconstruct(c_l.double().to(device), mask.to(device), phi, prior, settings)
        return subject.paste(result.maps, index, full_grid=True)

    return predict


def inr_arm(data_phi: KSpaceTruncation, grid: tuple[int, int], alpha: float, settings: INRSettings,
            device: torch.device) -> Predict:
    """Fit one INR per slice (:func:`fit_subject`) with weight α of the guide term (0: L_l alone).

    The maps are scaled by the subject's own Q_l brain means (no training set).
    """
    def predict(subject: SubjectInputs, index: np.ndarray) -> np.ndarray:
        window = tuple(subject.window.q_l.shape[-2:])
        phi = data_phi.on_window(grid, window, device=device)
        scale = masked_channel_means([torch.as_tensor(np.asarray(subject.acq.q_l))],
                                     [torch.from_numpy(subject.mask)]).tolist()
        fits = [fit_subject(subject.window.batch(torch.tensor([i]), device), phi, data_phi.sigma, scale, alpha,
                            settings).maps for i in index]
        return subject.paste(torch.cat(fits), index)

    return predict


# ----------------------------------------------------------------------------------------------
# Training and tuning, cached
# ----------------------------------------------------------------------------------------------


@dataclass
class Trained:
    """A trained (or tuned) arm: its prediction, training time and how it was obtained."""

    predict: Predict
    seconds: float
    status: str


def cached_training(path: Path, key: Mapping[str, Any], train: Callable[[], dict[str, Any]]) -> tuple[dict, str]:
    """Return the checkpoint at ``path`` if it was trained with ``key``, else train and write it.

    Parameters
    ----------
    path : Path
        The checkpoint file.
    key : mapping
        What the training depends on (plain data); stored as canonical JSON under ``arm_key``.
    train : callable
        Returns the checkpoint's payload: ``model_spec``, ``model_state``, ``log`` (rows with
        ``time_s``).

    Returns
    -------
    (dict, str)
        The payload (as read back by :func:`load_checkpoint`) and ``"reused"`` or ``"trained"``.
    """
    text = json.dumps(key, sort_keys=True)
    if path.is_file():
        try:
            payload = load_checkpoint(path)
            if payload.get("arm_key") == text:
                return payload, "reused"
        except CheckpointError:
            pass  # damaged or foreign: train again and overwrite it
    payload = {"format": CHECKPOINT_FORMAT, **train(), "arm_key": text}
    save_checkpoint(path, payload)
    return load_checkpoint(path), "trained"


def log_seconds(log: Sequence[Mapping[str, Any]]) -> float:
    """Sum of the per-epoch times of a training log, s."""
    return float(sum(row["time_s"] for row in log))


def train_label_arms(profile: Profile, dataset: Any, data: TrainingData,
                     labelled: tuple[LabelledSlices, LabelledSlices], out: Path, device: torch.device,
                     progress: bool) -> dict[str, Trained]:
    """Train (or reuse) the supervised upper bound and the Q2MRI-like arm: SWIG's network and budget, Q_h labels."""
    seed = profile.seed
    key = {"train": profile.train.to_dict(), "model": profile.model.to_dict(), "seed": seed,
           "data": dict(dataset.settings), "subjects": dataset.subject_ids("train") + dataset.subject_ids("val")}
    arms = {SUPERVISED: (supervised_model, mse_terms, "supervised"), Q2MRI: (q2mri_model, q2mri_terms, "q2mri")}
    trained = {}
    for name, (build, loss, tag) in arms.items():
        def train(build: Callable = build, loss: Callable = loss) -> dict[str, Any]:
            seed_everything(seed)
            model, log = train_with_labels(build(data.q_scale, profile.model), *labelled, profile.train, loss=loss,
                                           seed=seed, device=device, progress=progress)
            return {"model_spec": model.spec, "model_state": model.state_dict(), "log": log}

        payload, status = cached_training(out / "checkpoints" / f"arm-{tag}.pt", {**key, "arm": tag}, train)
        model = model_from_checkpoint(payload, device)
        trained[name] = Trained(network_arm(model, profile.eval.batch_size), log_seconds(payload["log"]), status)
    return trained


def train_pnp(profile: Profile, dataset: Any, settings: ArmsSettings, phi: KSpaceTruncation, out: Path,
              device: torch.device, progress: bool) -> Trained:
    """Train (or reuse) the contrast-conditional denoiser on weighted images of the training subjects."""
    cfg, seed = settings.denoiser, profile.seed
    subjects = dataset.subject_ids("train")

    def train() -> dict[str, Any]:
        volumes = [torch.from_numpy(np.asarray(dataset.reference(sid), dtype=np.float32)) for sid in subjects]
        masks = [torch.from_numpy(np.asarray(dataset.acquired(sid).mask, dtype=bool)) for sid in subjects]
        maps, brains = training_slices(volumes, masks)
        scale = float(np.percentile(maps[:, 0][brains].numpy(), 99))  # PD, a.u.
        samples = WeightedPatches.draw(maps, brains, cfg.patches, cfg.patch, seed, (cfg.sigma_min, cfg.sigma_max))
        model, log = train_denoiser(samples, scale, cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup_steps, seed,
                                    cfg.width, cfg.depth, device, progress)
        return {"model_spec": model.spec, "model_state": model.state_dict(), "log": log}

    key = {"denoiser": asdict(cfg), "seed": seed, "data": dict(dataset.settings), "subjects": subjects}
    payload, status = cached_training(out / "checkpoints" / "arm-denoiser.pt", key, train)
    denoiser = ContrastDenoiser(**payload["model_spec"])
    denoiser.load_state_dict(payload["model_state"])
    return Trained(pnp_arm(denoiser.to(device).eval(), phi, settings.pnp, device), log_seconds(payload["log"]),
                   status)


def tune_filters(val: LabelledSlices, settings: ArmsSettings, batch_size: int) -> dict[str, Trained]:
    """Tune the guided and the joint bilateral filter per map on every ``tune_stride``-th validation slice."""
    part = val.batch(torch.arange(0, len(val), settings.tune_stride), torch.device("cpu"))
    grids = {
        GUIDED: ("guided", {"radius": settings.guided_radius, "eps": settings.guided_eps}),
        BILATERAL: ("bilateral", {"radius": settings.bilateral_radius, "sigma_color": settings.bilateral_sigma_color,
                                  "sigma_space": settings.bilateral_sigma_space}),
    }
    tuned = {}
    for name, (method, grid) in grids.items():
        start = time.perf_counter()
        params = tune_filter(part.slices.q_l, part.slices.guides, part.slices.mask, part.q_h, method, grid,
                             settings.tune_metric)
        tuned[name] = Trained(filter_arm(params, batch_size), time.perf_counter() - start, "tuned")
    return tuned


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass
class DisplaySlice:
    """One slice with every arm (the chapter's figure).

    Attributes
    ----------
    subject : str
        The test subject whose Q_l SSIM (brain, mean over maps) is the median of the headline scope.
    z : int
        Its evaluated slice whose Q_l SSIM is the median.
    mask : numpy.ndarray
        (X, Y) brain mask.
    panels : dict of str to numpy.ndarray
        (3, X, Y) maps: ``Q_h``, every arm, ``Q_l``.
    scores : dict of (str, str) to (float, float)
        SSIM and HFEN against Q_h in the brain mask, by (panel, map), Q_h excluded.
    """

    subject: str
    z: int
    mask: np.ndarray
    panels: dict[str, np.ndarray]
    scores: dict[tuple[str, str], tuple[float, float]]


@dataclass
class ComparisonResults:
    """Everything :func:`run_comparison` produces.

    Attributes
    ----------
    variant : str
        The SWIG variant compared.
    arms : list of Arm
        The arms, in table order.
    table : pandas.DataFrame
        Per scope, model (``Q_l`` included), subject, map and region: SSIM and HFEN.
    summary : pandas.DataFrame
        Mean and 95 % CI over subjects per scope, model, map, region and metric.
    rankings : dict of (str, str) to Ranking
        The paper's ranking over the arms of a (scope, region).
    label_free : Ranking
        The ranking of the label-free arms, headline scope, brain mask.
    tissue : pandas.DataFrame
        Per scope, model, subject, tissue and map: mean absolute percentage error (%), voxels.
    times : pandas.DataFrame
        Per arm and subject: slices predicted and wall time, s.
    features : pandas.DataFrame
        Per arm: what it needs, what it follows, its training and per-subject times.
    goals : pandas.DataFrame
        The two goals: value and whether met.
    display : DisplaySlice
        One slice with every arm.
    scope : str
        The headline scope: :data:`SUBSET` when the per-scan arms ran on a subset, else :data:`ALL`.
    glue : dict of str to (value, format)
        The numbers the chapter's prose quotes.
    adaptation : pandas.DataFrame
        Per adapted subject (:data:`ADAPTATION_COLUMNS`): Adam steps, mean total self-supervised
        loss over its slices before and after.
    """

    variant: str
    arms: list[Arm]
    table: pd.DataFrame
    summary: pd.DataFrame
    rankings: dict[tuple[str, str], Ranking]
    label_free: Ranking
    tissue: pd.DataFrame
    times: pd.DataFrame
    features: pd.DataFrame
    goals: pd.DataFrame
    display: DisplaySlice
    scope: str
    glue: Glue
    adaptation: pd.DataFrame

    @property
    def names(self) -> list[str]:
        """The arms' names in table order."""
        return [arm.name for arm in self.arms]

    def ranking_table(self, scope: str | None = None, region: str = HEADLINE) -> pd.DataFrame:
        """Percent change over Q_l with the rank in brackets, and the total rank (Table III's layout)."""
        ranking = self.rankings[(scope or self.scope, region)]
        cells = {model: [f"{p:+.2f} % ({r:g})" for p, r in zip(ranking.percent[model], ranking.ranks[model])]
                 for model in ranking.percent.columns}
        table = pd.DataFrame(cells, index=ranking.percent.index)
        total = pd.DataFrame([ranking.total.map("{:g}".format)], index=pd.MultiIndex.from_tuples([TOTAL_ROW]))
        return pd.concat([table, total])

    def ci_table(self, scope: str | None = None, region: str = HEADLINE) -> pd.DataFrame:
        """Mean [95 % confidence interval] over subjects, rows (metric, map), one column per model.

        The intervals are Student t (:func:`~swig_lib.experiments.evaluation.ranking.mean_ci`, via
        :func:`~swig_lib.experiments.evaluation.evaluate.summarise`).
        """
        part = self.summary[(self.summary["scope"] == (scope or self.scope)) & (self.summary["region"] == region)]
        cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(part["mean"], part["ci_low"], part["ci_high"])]
        table = part.assign(cell=cells).pivot(index=["metric", "map"], columns="model", values="cell")
        return table.reindex(index=[(m, n) for m in METRICS for n in MAP_NAMES],
                             columns=[m for m in [BASELINE, *self.names] if m in table.columns])

    def adaptation_table(self, scope: str | None = None, region: str = HEADLINE) -> pd.DataFrame:
        """What adaptation gains: mean SSIM and HFEN of SWIG and SWIG + adaptation per map, and the change.

        Returns
        -------
        pandas.DataFrame
            Index (metric, map); columns :data:`SWIG`, :data:`SWIG_ADAPT` (means over the subjects
            of ``scope``, default the headline one), ``change`` (adapted − SWIG) and ``better``
            (SSIM higher, HFEN lower).
        """
        part = self.summary[(self.summary["scope"] == (scope or self.scope)) & (self.summary["region"] == region)]
        table = part.pivot(index=["metric", "map"], columns="model", values="mean")
        table = table.reindex(index=pd.MultiIndex.from_tuples([(m, n) for m in METRICS for n in MAP_NAMES],
                                                              names=["metric", "map"]), columns=[SWIG, SWIG_ADAPT])
        table.columns.name = None
        table["change"] = table[SWIG_ADAPT] - table[SWIG]
        higher = table.index.get_level_values("metric") == "ssim"
        table["better"] = np.where(higher, table["change"] > 0, table["change"] < 0)
        return table

    def tissue_summary(self, scope: str | None = None) -> pd.DataFrame:
        """Mean ± sd over subjects of the percentage error, rows (tissue, map), one column per model."""
        part = self.tissue[self.tissue["scope"] == (scope or self.scope)]
        stats = part.groupby(["tissue", "map", "model"], sort=False)["mape"].agg(["mean", "std"])
        cells = stats.apply(lambda r: f"{r['mean']:.1f} ± {r['std']:.1f}" if np.isfinite(r["std"])
                            else f"{r['mean']:.1f}", axis=1)
        return cells.unstack("model")[[m for m in [BASELINE, *self.names] if m in set(part["model"])]]


def choose_subset(slices: np.ndarray, n: int) -> np.ndarray:
    """Positions of ``n`` evenly spread slices among ``slices`` (all when n is 0 or too large)."""
    if n == 0 or n >= len(slices):
        return np.arange(len(slices))
    return ((np.arange(n) + 0.5) * len(slices) / n).astype(int)


def eval_slices(mask: np.ndarray, profile: Profile) -> np.ndarray:
    """The axial slices the ablation evaluates (``[eval]`` stride and brain fraction)."""
    return select_slices(mask, profile.eval.min_brain_fraction, profile.eval.slice_stride)


def display_choice(dataset: Any, subjects: Sequence[str], profile: Profile, n_slices: int) -> tuple[str, int]:
    """The display slice by rule, from Q_l and Q_h alone, so that it is known before the arms run.

    The subject whose Q_l SSIM (mean over the maps, brain mask, its evaluated or subset slices) is
    the median (:func:`~swig_lib.experiments.evaluation.ablation.median_subject`), then its slice
    whose Q_l SSIM is the median (:func:`~swig_lib.experiments.evaluation.ablation.median_slice`).
    """
    rows, candidates = [], {}
    for sid in subjects:
        acq = dataset.acquired(sid)
        mask = np.asarray(acq.mask, dtype=bool)
        slices = eval_slices(mask, profile)
        candidates[sid] = slices[choose_subset(slices, n_slices)]
        scores = map_metrics(acq.q_l, dataset.reference(sid), mask, MAP_NAMES, slices=candidates[sid])
        rows += [{"model": BASELINE, "subject": sid, "map": name, "ssim": s["ssim"]} for name, s in scores.items()]
    shown = median_subject(pd.DataFrame(rows), BASELINE, "ssim", region=None)
    acq = dataset.acquired(shown)
    z, _ = median_slice(acq.q_l, dataset.reference(shown), np.asarray(acq.mask, bool), candidates[shown], "ssim")
    return shown, z


def features_table(arms: Sequence[Arm], trained: Mapping[str, Trained], times: pd.DataFrame) -> pd.DataFrame:
    """Per arm: what it needs, what it follows, training time and status, wall time per subject and slice."""
    yes = {True: "yes", False: "no"}
    per_arm = times.groupby("model", sort=False)[["seconds", "slices"]].mean()
    rows = []
    for arm in arms:
        fit = trained.get(arm.name)
        seconds, slices = per_arm.loc[arm.name, "seconds"], per_arm.loc[arm.name, "slices"]
        rows.append({
            "arm": arm.name, "HR qMRI labels": arm.labels, "subject guides": yes[arm.guides],
            "training set": yes[arm.training_set], "per-scan optimisation": yes[arm.per_scan],
            "follows": arm.follows, "training [s]": fit.seconds if fit else np.nan,
            "training": fit.status if fit else "none", "slices per subject": slices,
            "s per subject": seconds, "s per slice": seconds / slices,
        })
    return pd.DataFrame(rows).set_index("arm")


def goals_table(label_free: Ranking, everything: Ranking) -> pd.DataFrame:
    """The goals: SWIG best of the label-free arms; SWIG's HFEN gain ≥ :data:`HFEN_SHARE_GOAL` of the supervised one.

    Parameters
    ----------
    label_free : Ranking
        The label-free arms ranked (headline scope, brain mask).
    everything : Ranking
        A ranking that holds SWIG and the supervised arm (all test subjects).

    Returns
    -------
    pandas.DataFrame
        Index ``goal``; columns ``value`` (text), ``share`` (SWIG's HFEN gain over the supervised
        one; NaN for the first goal, and where the supervised arm gains nothing) and ``met`` (bool).
    """
    others = label_free.total.drop(SWIG)
    best_other = others.idxmin()
    rows = [{"goal": "SWIG best of the label-free arms (total rank, brain mask)",
             "value": f"{label_free.selected} selected; total rank of SWIG {label_free.total[SWIG]:g}, of the "
                      f"best other arm ({best_other}) {others[best_other]:g}",
             "share": np.nan, "met": label_free.selected == SWIG}]
    for name in MAP_NAMES:
        swig_gain, sup_gain = (-everything.percent.loc[("HFEN", name), m] for m in (SWIG, SUPERVISED))
        share = swig_gain / sup_gain if sup_gain > 0 else np.nan
        rows.append({"goal": f"SWIG's HFEN gain ≥ {HFEN_SHARE_GOAL:.0%} of the supervised one, {name}",
                     "value": f"HFEN vs Q_l: SWIG {-swig_gain:+.1f} %, supervised {-sup_gain:+.1f} %",
                     "share": share, "met": bool(share >= HFEN_SHARE_GOAL)})
    return pd.DataFrame(rows).set_index("goal")


def _glue(results: ComparisonResults, n_test: int, n_slices: int, subset: tuple[int, int] | None,
          seconds: float) -> Glue:
    """The numbers of the chapter's prose and of the book's introduction."""
    head = results.rankings[(results.scope, HEADLINE)]
    glue: Glue = {"cmp_variant": (results.variant, None), "cmp_n_test": (n_test, None),
                  "cmp_n_slices": (n_slices, None), "cmp_winner": (head.selected, None),
                  "cmp_labelfree_winner": (results.label_free.selected, None),
                  "cmp_minutes": (seconds / 60, ".1f"),
                  "cmp_display": (f"{results.display.subject}, axial slice {results.display.z}", None),
                  "cmp_scope": ("every test subject and evaluated slice" if subset is None else
                                f"the first {subset[0]} test subject(s), "
                                + (f"{subset[1]} evaluated slice(s) each" if subset[1] else "all their slices"),
                                None)}
    places = head.total.rank(method="min")
    for arm in results.arms:
        row = results.features.loc[arm.name]
        glue[f"rank_{arm.key}"] = (f"{head.total[arm.name]:g}", None)
        glue[f"place_{arm.key}"] = (int(places[arm.name]), None)
        glue[f"time_{arm.key}"] = (float(row["s per subject"]), ".1f")
        glue[f"train_{arm.key}"] = ("none" if np.isnan(row["training [s]"]) else f"{row['training [s]']:.0f} s", None)
    first, shares = results.goals.iloc[0], results.goals.iloc[1:]
    glue["cmp_goal_labelfree"] = ("met" if first["met"] else "not met", None)
    glue["cmp_goal_labelfree_value"] = (first["value"], None)
    glue["cmp_goal_hfen_met"] = (f"{int(shares['met'].sum())} of {len(shares)}", None)
    for name, share in zip(MAP_NAMES, shares["share"]):
        glue[f"cmp_hfen_share_{name.lower()}"] = ("n/a" if np.isnan(share) else f"{100 * share:.0f} %", None)
    short = [name for name, met in zip(MAP_NAMES, shares["met"]) if not met]
    glue["cmp_goal_hfen_short"] = (", ".join(short) if short else "none", None)
    adapted = next((arm.predict for arm in results.arms if isinstance(arm.predict, AdaptedArm)), None)
    if adapted is not None:
        table, runs = results.adaptation_table(), results.adaptation
        better = int(table["better"].sum())
        glue["cmp_adapt_steps"] = (adapted.steps, None)
        glue["cmp_adapt_better"] = (f"{better} of {len(table)}", None)
        glue["cmp_adapt_verdict"] = (adaptation_verdict(better, len(table)), None)
        glue["cmp_adapt_loss_fell"] = (f"{int((runs['loss_after'] < runs['loss_before']).sum())} of {len(runs)}",
                                       None)
    return glue


def warm_up_optimiser() -> None:
    """Take one Adam step on a dummy parameter, before the arms are timed.

    Torch imports much on the first optimiser step of a process (about 2 s); without the warm-up,
    that would land in the wall time of the first per-scan fit when every trained arm was reused.
    """
    parameter = torch.nn.Parameter(torch.zeros(1))
    fit_adam([parameter], lambda: parameter.square().sum(), steps=1, lr=1e-3)


def score_scopes(scopes: Mapping[str, tuple[Mapping[str, np.ndarray], np.ndarray]], q_h: np.ndarray,
                 labels: np.ndarray, mask: np.ndarray, sid: str, interior_voxels: int
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score one subject's predictions per scope: SSIM/HFEN as the ablation, and the tissue errors.

    Parameters
    ----------
    scopes : mapping of str to (mapping of str to numpy.ndarray, numpy.ndarray)
        Per scope: the (3, X, Y, Z) maps by model (``Q_l`` included) and the slices it scores.
    q_h : numpy.ndarray
        (3, X, Y, Z) reference maps.
    labels : numpy.ndarray
        (X, Y, Z) tissue labels.
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    sid : str
        Subject id.
    interior_voxels : int
        Erosion of the interior region, voxels.

    Returns
    -------
    (list of dict, list of dict)
        Rows of :func:`~swig_lib.experiments.evaluation.evaluate.score_subject` and of
        :func:`~swig_lib.experiments.crossseq.scoring.tissue_errors` (:data:`TISSUES`), each with
        its ``scope``.
    """
    rows, tissue = [], []
    for scope, (maps, slices) in scopes.items():
        rows += [{"scope": scope, **row} for row in score_subject(maps, q_h, mask, sid, slices, interior_voxels)]
        # tissue_errors labels its map sets (protocol, source): here (model, scope)
        errors = tissue_errors({(model, scope): m for model, m in maps.items()}, q_h, labels, slices, TISSUES)
        tissue += [{"scope": e.pop("source"), "model": e.pop("protocol"), "subject": sid, **e} for e in errors]
    return rows, tissue


def _slice_scores(panels: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[tuple[str, str], tuple[float, float]]:
    """SSIM and HFEN of every panel but Q_h against Q_h on one slice's brain mask."""
    ref = panels[REFERENCE]
    return {(col, name): (ssim(img[c], ref[c], mask), hfen(img[c], ref[c], mask))
            for col, img in panels.items() if col != REFERENCE for c, name in enumerate(MAP_NAMES)}


def build_arms(profile: Profile, settings: ArmsSettings, variant: str, swig_path: Path, dataset: Any, out: Path,
               device: torch.device, progress: bool) -> tuple[list[Arm], dict[str, Trained]]:
    """Train, tune or reuse what the built-in arms need; return the arms in table order and their training.

    The training and validation slices are prepared as for SWIG
    (:func:`~swig_lib.experiments.training.windows.prepare_data`, with their Q_h for the labelled
    arms and the tuning); the checkpoints go to ``<out>/checkpoints/arm-*.pt``. SWIG with
    adaptation (:class:`AdaptedArm`, seeded by the profile's ``seed``) counts SWIG's training.
    """
    data = prepare_data(dataset, profile, receptive_radius(**profile.model), progress=progress)
    labelled = labelled_data(dataset, profile, data)
    batch, phi = profile.eval.batch_size, data.phi
    trained = {**tune_filters(labelled[1], settings, batch),
               PNP: train_pnp(profile, dataset, settings, phi, out, device, progress),
               **train_label_arms(profile, dataset, data, labelled, out, device, progress)}
    swig_log = out / "logs" / f"{variant}.csv"
    swig_seconds = float(pd.read_csv(swig_log)["time_s"].sum()) if swig_log.is_file() else np.nan
    payload = load_checkpoint(swig_path)
    swig = model_from_checkpoint(payload, device, source=swig_path)
    trained[SWIG] = Trained(network_arm(swig, batch), swig_seconds, "notebook 02")
    trained[SWIG_ADAPT] = Trained(AdaptedArm(swig, Recipe.of_checkpoint(payload, str(swig_path)), settings.adapt_steps,
                                             profile.seed, batch, device), swig_seconds, "notebook 02")
    arms = [
        Arm(SWIG, "swig", LABELS_NONE, True, True, False, f"the paper (variant {variant})", trained[SWIG].predict),
        Arm(SWIG_ADAPT, "swig_adapt", LABELS_NONE, True, True, True,
            f"swig apply --adapt {settings.adapt_steps} (variant {variant})", trained[SWIG_ADAPT].predict),
        Arm(GUIDED, "guided", LABELS_TUNING, True, False, False, "He et al. 2013 (kornia)", trained[GUIDED].predict),
        Arm(BILATERAL, "bilateral", LABELS_TUNING, True, False, False, "Petschnigg et al. 2004 (kornia)",
            trained[BILATERAL].predict),
        Arm(PNP, "pnp", LABELS_NONE, False, True, True, "MRI2Qmap (plug-and-play HQS)", trained[PNP].predict),
        Arm(INR, "inr", LABELS_NONE, True, False, True, "REFINE-MORE (INR, SWIG loss)",
            inr_arm(phi, data.grid, profile.train.alpha, settings.inr, device)),
        Arm(INR_DC, "inr_dc", LABELS_NONE, False, False, True, "REFINE-MORE (INR, L_l only)",
            inr_arm(phi, data.grid, 0.0, settings.inr, device)),
        Arm(SUPERVISED, "supervised", LABELS_TRAINING, True, True, False, "upper bound (SWIG's network, MSE)",
            trained[SUPERVISED].predict),
        Arm(Q2MRI, "q2mri", LABELS_TRAINING, True, True, False, "Q2MRI (guides only, l1 + λ(1 − SSIM))",
            trained[Q2MRI].predict),
    ]
    return arms, trained


def run_comparison(
    profile: Profile,
    variant: str,
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    device: str | torch.device = "cpu",
    *,
    dataset: Any = None,
    extra_arms: Sequence[Arm] = (),
    progress: bool = False,
) -> ComparisonResults:
    """Run every arm on the test subjects, score, rank and time them, and check the goals (module notes).

    Parameters
    ----------
    profile : Profile
        Reads ``name``, ``seed``, ``train``, ``model``, ``eval`` and ``arms``.
    variant : str
        The SWIG variant to compare (notebook 08: the ablation's selection,
        :func:`swig_lib.experiments.evaluation.selection.read_selection`); its checkpoint
        ``<results_dir>/<profile>/checkpoints/<variant>.pt`` must exist (notebook 02).
    data_dir, results_dir : path
        Data root and results root.
    device : str or torch.device
        Where the networks train and run and the per-scan arms optimise (the filters run on the CPU).
    dataset
        A loaded dataset (default: loaded from ``data_dir``); ``labels(sid)`` gives the tissues.
    extra_arms : sequence of Arm
        More rows (e.g. SWIG with scan-specific adaptation), after the built-in arms.
    progress : bool
        Progress bars.

    Returns
    -------
    ComparisonResults
        Also written: the tables under ``<results_dir>/<profile>/comparison/``.

    Raises
    ------
    swig_lib.core.io.MissingFileError
        When the SWIG checkpoint is missing.
    """
    started = time.perf_counter()
    device = torch.device(device)
    out = Path(results_dir) / profile.name
    settings, swig_path = ArmsSettings.from_profile(profile), trained_checkpoints(profile, out, [variant])[variant]
    if dataset is None:
        from swig_lib.experiments.subjects.dataset import load_dataset

        dataset = load_dataset(profile, root=data_dir, progress=progress)
    arms, trained = build_arms(profile, settings, variant, swig_path, dataset, out, device, progress)
    arms += list(extra_arms)
    per_scan = {arm.name for arm in arms if arm.per_scan}

    test_ids = dataset.subject_ids("test")
    subset_ids = test_ids[: settings.per_scan_subjects or len(test_ids)]
    first_slices = eval_slices(np.asarray(dataset.acquired(test_ids[0]).mask, bool), profile)
    has_subset = bool(per_scan) and (len(subset_ids) < len(test_ids) or settings.per_scan_slices > 0)
    scope = SUBSET if has_subset else ALL
    shown, shown_z = display_choice(dataset, subset_ids if has_subset else test_ids, profile,
                                    settings.per_scan_slices if has_subset else 0)
    margin, interior = settings.window_margin(profile.train.dc_dilation), profile.eval.interior_voxels
    warm_up_optimiser()

    rows, tissue_rows, times = [], [], []
    for sid in tqdm(test_ids, desc="comparison", disable=not progress):
        acq = dataset.acquired(sid)
        mask = np.asarray(acq.mask, dtype=bool)
        slices = eval_slices(mask, profile)
        size = window_size([mask], margin)
        subset = choose_subset(slices, settings.per_scan_slices) if sid in subset_ids else None
        window = prepare_subject(acq, size, slices, profile.train.dc_dilation, contrasts=sid in subset_ids)
        subject = SubjectInputs(sid, acq, mask, slices, window, *window_indices(mask, size))
        predictions = {BASELINE: np.asarray(acq.q_l, dtype=np.float32)}
        for arm in arms:
            index = subset if arm.name in per_scan else np.arange(len(slices))
            if index is None:
                continue
            start = time.perf_counter()
            predictions[arm.name] = arm.predict(subject, index)
            times.append({"model": arm.name, "subject": sid, "slices": len(index),
                          "seconds": time.perf_counter() - start})
        q_h = np.asarray(dataset.reference(sid))
        scopes = {ALL: ({k: v for k, v in predictions.items() if not (has_subset and k in per_scan)}, slices)}
        if has_subset and subset is not None:
            scopes[SUBSET] = (predictions, slices[subset])
        scores, errors = score_scopes(scopes, q_h, dataset.labels(sid), mask, sid, interior)
        rows, tissue_rows = rows + scores, tissue_rows + errors
        if sid == shown:
            panels = {REFERENCE: q_h[..., shown_z], **{k: v[..., shown_z] for k, v in predictions.items()
                                                       if k != BASELINE}, BASELINE: predictions[BASELINE][..., shown_z]}
            display = DisplaySlice(sid, int(shown_z), mask[..., shown_z], panels,
                                   _slice_scores(panels, mask[..., shown_z]))

    table, times_frame = pd.DataFrame(rows), pd.DataFrame(times)
    columns = ["model", "subject", "map", "ssim", "hfen"]
    rankings = {(s, region): rank_models(part[columns], BASELINE)
                for (s, region), part in table.groupby(["scope", "region"], sort=False)}
    head = table[(table["scope"] == scope) & (table["region"] == HEADLINE)]
    free = [BASELINE, *(arm.name for arm in arms if arm.label_free and arm.name != SWIG_ADAPT)]
    label_free = rank_models(head[head["model"].isin(free)][columns], BASELINE)
    summary = pd.concat([summarise(part.drop(columns="scope")).assign(scope=s)
                         for s, part in table.groupby("scope", sort=False)], ignore_index=True)
    results = ComparisonResults(
        variant=variant, arms=arms, table=table, summary=summary, rankings=rankings, label_free=label_free,
        tissue=pd.DataFrame(tissue_rows), times=times_frame, features=features_table(arms, trained, times_frame),
        goals=goals_table(label_free, rankings[(ALL, HEADLINE)]), display=display, scope=scope, glue={},
        adaptation=pd.DataFrame([row for arm in arms if isinstance(arm.predict, AdaptedArm)
                                 for row in arm.predict.records], columns=ADAPTATION_COLUMNS),
    )
    results.glue = _glue(results, len(test_ids), len(first_slices),
                         (len(subset_ids), settings.per_scan_slices) if has_subset else None,
                         time.perf_counter() - started)
    folder = out / "comparison"
    for name, frame, index in (("per_subject", table, False), ("summary", summary, False),
                               ("tissue", results.tissue, False), ("features", results.features, True),
                               ("goals", results.goals, True), ("adaptation", results.adaptation, False)):
        write_csv(frame, folder / f"{name}.csv", index=index)
    ranking = pd.concat({key: r.to_table() for key, r in rankings.items()}, names=["scope", "region"])
    write_csv(ranking, folder / "ranking.csv", index=True)
    return results


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def fig_subjects(results: ComparisonResults, scope: str, region: str = HEADLINE) -> dict[str, Figure]:
    """Per-subject SSIM and HFEN with mean and 95 % CI of every arm of ``scope``, one figure per metric."""
    part = results.table[(results.table["scope"] == scope) & (results.table["region"] == region)]
    models = [name for name in results.names if name in set(part["model"])]
    figures = {}
    for metric in METRICS:
        figures[metric] = plot_subject_metrics(part, metric, models=models)
        figures[metric].suptitle(f"{metric.upper()} per test subject ({scope}, {region} mask)")
    return figures


def fig_slice(results: ComparisonResults) -> Figure:
    """PD, T1 and T2 of Q_h, every arm and Q_l on the display slice, with SSIM and HFEN under each panel."""
    shown = results.display
    captions = [["reference" if col == REFERENCE else "{:.3f} · {:.3f}".format(*shown.scores[(col, name)])
                 for col in shown.panels] for name in MAP_NAMES]
    return show_map_grid([[img[c] for img in shown.panels.values()] for c in range(len(MAP_NAMES))], MAP_NAMES,
                         list(shown.panels), captions=captions, panel_size=PANEL_SIZE)
