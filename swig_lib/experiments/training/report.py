"""The training chapter (notebook 02) as one call: :func:`run_training_chapter`.

Prepares the training data, describes the network and its inputs, checks that the untrained
model returns Q_l, computes α by the rule (and by the likelihood reading) and the loss terms of
the untrained models, trains every variant of the profile (reusing or resuming checkpoints),
and builds the tables of the chapter. No HR map Q_h is read.

Output: ``<results_dir>/<profile>/training/summary.csv`` (one row per variant: epochs, kept
epoch, training time, α, final losses, device, status, checkpoint checksum); the checkpoints and
logs are written by :func:`swig_lib.experiments.training.loop.train_variant`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from swig_lib.core.io import PathLike, read_csv, sha256, write_csv
from swig_lib.core.models import MAP_NAMES, SCALED_FLOOR, SwigResNet, receptive_radius
from swig_lib.core.physics import weighted_image
from swig_lib.core.protocols import GUIDE_PROTOCOLS
from swig_lib.experiments.config import ModelSettings, Profile
from swig_lib.experiments.plotting import MAP_UNITS, load_training_logs
from swig_lib.experiments.results import Glue
from swig_lib.experiments.training import checkpoints, loop
from swig_lib.experiments.training.augment import randomised_profile
from swig_lib.experiments.training.variants import GUIDE_ORDER, VARIANTS
from swig_lib.experiments.training.windows import SliceSet, TrainingData, prepare_data

#: Loss columns of the training logs: L_l, L_h and L_total (eq. 12).
LOSS_TERMS: tuple[str, str, str] = ("loss_lr", "loss_guide", "loss_total")
#: The variant whose numbers the chapter's prose quotes (else the first variant of the profile).
REFERENCE_VARIANT = "M12++"
#: Sentence on the two loss terms of the reference variant, by (L_l fell, L_h fell) at the kept epoch.
LOSS_DIRECTIONS: dict[tuple[bool, bool], str] = {
    (True, True): "Both terms fell: the two pull together rather than against each other, as expected "
                  "when the edges of the prediction move towards their true positions, because the true "
                  "maps minimise both terms (up to the noise).",
    (True, False): "The data term fell while the guide term rose: the prediction moved towards the LR data "
                   "at the expense of the guides' structure, so this α leaves the guides little weight.",
    (False, True): "The guide term fell while the data term rose: the prediction follows the guides at "
                   "the expense of consistency with the LR data, so this α gives the guides the upper hand.",
    (False, False): "Neither term fell below its starting value at the kept epoch: the optimiser has not "
                    "yet improved on the starting point Q_l in this run.",
}



@dataclass
class TrainingResults:
    """Everything :func:`run_training_chapter` produces.

    Attributes
    ----------
    data_summary : str
        One line: training and validation slices and subjects, crop window.
    network : pandas.DataFrame
        The layers of the full model: kernel, channels in → out, parameters per part.
    inputs : pandas.DataFrame
        Per variant: number of input channels, the inputs, parameters.
    scales : pandas.DataFrame
        Per map: unit and the fixed scale s of Q_l (training-set brain mean).
    guide_stats : pandas.DataFrame
        Per guide: mean and sd of the z-scored guide over the brain voxels of the training slices.
    example : dict of str to torch.Tensor
        The training slice with the most brain as the network receives it: ``"scaled"``
        (3, H, W) Q_l / s inside the brain (dimensionless) and ``"guides"`` (2, H, W) z-scores.
    identity_error : float
        Largest relative difference between the untrained full model's output and Q_l on the
        validation slices (brain voxels with Q_l / s above the floor).
    alpha : pandas.DataFrame
        The α rule, the profile's α, the likelihood reading, σ, the kept fraction of k-space and
        the noise floor of L_l (column ``value``, formatted strings).
    start : pandas.DataFrame
        Loss terms of the untrained models on the validation slices, index (variant, split).
    summary : pandas.DataFrame
        One row per variant (written to ``training/summary.csv``).
    logs : dict of str to pandas.DataFrame
        The per-epoch training log of every variant.
    selected_epochs : dict of str to int
        The kept epoch of every variant.
    balance : pandas.DataFrame
        Per variant: L_l, L_h and α·L_h at the start and at the kept epoch (validation slices).
    choice : pandas.DataFrame
        Per variant: epochs, kept epoch, validation L_total at the last and at the kept epoch.
    minima : pandas.DataFrame
        Per variant: smallest predicted PD, T1, T2 inside the brain on the validation slices.
    figure_dir : Path
        ``<results_dir>/<profile>/training``, for the figures.
    glue : dict of str to (value, format)
        The numbers the chapter's prose quotes, by glue name.
    """

    data_summary: str
    network: pd.DataFrame
    inputs: pd.DataFrame
    scales: pd.DataFrame
    guide_stats: pd.DataFrame
    example: dict[str, torch.Tensor]
    identity_error: float
    alpha: pd.DataFrame
    start: pd.DataFrame
    summary: pd.DataFrame
    logs: dict[str, pd.DataFrame]
    selected_epochs: dict[str, int]
    balance: pd.DataFrame
    choice: pd.DataFrame
    minima: pd.DataFrame
    figure_dir: Path
    glue: Glue


def n_params(module: torch.nn.Module) -> int:
    """Return the number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def network_table(model: SwigResNet) -> pd.DataFrame:
    """Describe a :class:`~swig_lib.core.models.SwigResNet` part by part (Fig. 1c).

    Parameters
    ----------
    model : SwigResNet
        The network.

    Returns
    -------
    pandas.DataFrame
        Index ``part`` (first convolution, residual blocks, output convolution, output head);
        columns ``layers``, ``kernel``, ``channels`` (in → out) and ``parameters``.
    """
    spec = model.spec
    first, last, width = spec["first_kernel"], spec["last_kernel"], spec["width"]
    in_channels = model.head[0].in_channels
    rows = [
        {"part": "first convolution + ReLU", "layers": "1", "kernel": f"{first} × {first}",
         "channels": f"{in_channels} → {width}", "parameters": n_params(model.head)},
        {"part": "residual blocks: 2 × (convolution, batch norm), ReLU between, identity skip",
         "layers": str(len(model.blocks)), "kernel": "3 × 3", "channels": f"{width} → {width}",
         "parameters": n_params(model.blocks)},
        {"part": f"output convolution {last} × {last}", "layers": "1", "kernel": f"{last} × {last}",
         "channels": f"{width} → {len(MAP_NAMES)}", "parameters": n_params(model.tail)},
        {"part": "output head: s · softplus(softplus⁻¹(Q_l / s) + r), masked", "layers": "–",
         "kernel": "–", "channels": f"{len(MAP_NAMES)} → {len(MAP_NAMES)}", "parameters": 0},
    ]
    return pd.DataFrame(rows).set_index("part")


def input_table(variants: Sequence[str], q_scale: Sequence[float], model_cfg: ModelSettings,
                datasets: Mapping[bool, str] | None = None) -> pd.DataFrame:
    """Tabulate the inputs, the parameter count and the training data of every variant's network.

    Parameters
    ----------
    variants : sequence of str
        Keys of :data:`~swig_lib.experiments.training.variants.VARIANTS`.
    q_scale : sequence of float
        Scales s of PD [a.u.], T1 [ms], T2 [ms].
    model_cfg : ModelSettings
        The profile's ``model`` section.
    datasets : mapping of bool to str, optional
        The dataset each kind of variant trains on, by ``Variant.randomised`` (default: no column).

    Returns
    -------
    pandas.DataFrame
        Index ``variant``; columns ``input channels``, ``inputs``, ``parameters`` and, with
        ``datasets``, ``training data``.
    """
    return pd.DataFrame(
        [{"variant": name,
          "input channels": (3 if v.use_ql else 0) + len(v.guides),
          "inputs": " + ".join((["Q_l (PD, T1, T2)"] if v.use_ql else []) + list(v.guides)),
          "parameters": n_params(SwigResNet(v.guides, v.use_ql, q_scale, **model_cfg)),
          **({} if datasets is None else {"training data": datasets[v.randomised]})}
         for name, v in ((n, VARIANTS[n]) for n in variants)]
    ).set_index("variant")


def input_statistics(data: TrainingData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tabulate the fixed scales of Q_l and the z-scored guides' statistics on the training slices.

    Returns
    -------
    (scales, guide_stats) : tuple of pandas.DataFrame
        ``scales``: index ``map``, columns ``unit`` and the scale s (formatted, one decimal);
        ``guide_stats``: index ``guide``, mean and sd over the brain voxels.
    """
    scales = pd.DataFrame(
        {"map": MAP_NAMES, "unit": [MAP_UNITS[m] for m in MAP_NAMES],
         "scale s (training-set brain mean)": [f"{s:.1f}" for s in data.q_scale]}
    ).set_index("map")
    brain = data.train.mask
    guide_stats = pd.DataFrame(
        [{"guide": g, "mean over brain voxels": float(data.train.guides[:, i][brain].mean()),
          "sd over brain voxels": float(data.train.guides[:, i][brain].std())}
         for i, g in enumerate(GUIDE_ORDER)]
    ).set_index("guide")
    return scales, guide_stats


def example_slice(data: TrainingData) -> dict[str, torch.Tensor]:
    """Return the training slice with the most brain voxels as the network receives it.

    Returns
    -------
    dict of str to torch.Tensor
        ``"scaled"``: (3, H, W) Q_l / s inside the brain, zero outside (dimensionless);
        ``"guides"``: (2, H, W) z-scored guides.
    """
    i = int(data.train.mask.flatten(1).sum(1).argmax())  # the first slice with the most brain
    scaled = data.train.q_l[i] / torch.tensor(data.q_scale, dtype=torch.float32).view(3, 1, 1) * data.train.mask[i]
    return {"scaled": scaled, "guides": data.train.guides[i]}


def identity_error(data: TrainingData, model_cfg: ModelSettings) -> float:
    """Largest relative difference between the untrained full model's output and Q_l.

    Over the brain voxels of the validation slices where Q_l / s exceeds
    :data:`~swig_lib.core.models.SCALED_FLOOR`; float32 rounding when the output head starts at Q_l.
    """
    untrained = SwigResNet(VARIANTS["M12++"].guides, True, data.q_scale, **model_cfg).eval()
    with torch.no_grad():
        identity = untrained(data.val.q_l, data.val.guides, data.val.mask)
    scale = torch.tensor(data.q_scale).view(1, 3, 1, 1)
    valid = data.val.mask.unsqueeze(1) & (data.val.q_l / scale > SCALED_FLOOR)
    return float(((identity - data.val.q_l).abs() / data.val.q_l)[valid].max())


def alpha_table(dataset: Any, data: TrainingData, alpha_used: float) -> tuple[pd.DataFrame, dict[str, float]]:
    """α by the rule and by the likelihood reading, with the scales of the two loss terms.

    The rule is :func:`~swig_lib.experiments.training.loop.balanced_alpha`. The likelihood reading
    treats each guide as one more image with the contrasts' noise σ:
    α = mean over the guides of Var_brain(guide synthesised from Q_l) / σ² (training subjects).
    The noise floor of L_l is n_contrasts · f / 2 with f the kept fraction of k-space.

    Parameters
    ----------
    dataset
        The dataset (``subject_ids``, ``acquired``).
    data : TrainingData
        The prepared slices.
    alpha_used : float
        The profile's ``train.alpha``.

    Returns
    -------
    (table, values)
        ``table``: one formatted ``value`` per quantity; ``values``: ``alpha_rule``,
        ``alpha_likelihood``, ``alpha_used``, ``ll_q_l``, ``lh_q_l``, ``ll_floor``.
    """
    alpha_rule, ll_q_l, lh_q_l = loop.balanced_alpha(data)
    acquired = [dataset.acquired(sid) for sid in dataset.subject_ids("train")]
    guide_variance = [  # Var over the training brains of each guide synthesised from Q_l, a.u.²
        float(torch.cat([weighted_image(GUIDE_PROTOCOLS[g], *torch.as_tensor(a.q_l, dtype=torch.float64))[
            torch.as_tensor(np.asarray(a.mask, bool))] for a in acquired]).var())
        for g in GUIDE_ORDER
    ]
    alpha_likelihood = float(np.mean(guide_variance)) / data.sigma**2
    n_contrasts = data.train.c_l.shape[1]
    ll_floor = n_contrasts * data.keep**2 / 2
    table = pd.Series({
        "L_l at Q_l (training slices)": f"{ll_q_l:.4g}",
        "L_h at Q_l (training slices, both guides)": f"{lh_q_l:.4g}",
        "α by the rule, L_l / L_h at Q_l": f"{alpha_rule:.4g}",
        "α used (profile train.alpha)": f"{alpha_used:.4g}",
        "α by the likelihood reading": f"{alpha_likelihood:.4g}",
        "σ of the k-space noise": f"{data.sigma:g} a.u.",
        "kept fraction f of k-space": f"{data.keep**2:g}",
        f"noise floor of L_l, {n_contrasts} · f/2": f"{ll_floor:.2f}",
    }, name="value").to_frame()
    values = {"alpha_rule": alpha_rule, "alpha_likelihood": alpha_likelihood, "alpha_used": alpha_used,
              "ll_q_l": ll_q_l, "lh_q_l": lh_q_l, "ll_floor": ll_floor}
    return table, values


def mean_terms(model: SwigResNet, slices: SliceSet, variant: str, alpha: float, data: TrainingData,
               batch_size: int) -> dict[str, float]:
    """Slice-weighted means of the loss terms of ``model`` over ``slices``, in batches (as the log).

    Parameters
    ----------
    model : SwigResNet
        The network (in eval mode).
    slices : SliceSet
        E.g. ``data.val``.
    variant : str
        The variant (its inputs and loss terms).
    alpha : float
        The profile's ``train.alpha`` (the variant may override it).
    data : TrainingData
        For Φ and σ.
    batch_size : int
        Slices per batch (memory only).

    Returns
    -------
    dict of str to float
        ``loss_lr``, ``loss_guide``, ``loss_total``.
    """
    v = VARIANTS[variant]
    phi = loop.crop_phi(data)
    sums = np.zeros(3)
    with torch.no_grad():
        for first in range(0, len(slices), batch_size):
            index = torch.arange(first, min(first + batch_size, len(slices)))
            terms = loop.batch_loss(model, slices.batch(index, "cpu"), v, v.resolved_alpha(alpha), phi, data.sigma)
            sums += len(index) * np.array([float(terms.data), float(terms.guide), float(terms.total)])
    return dict(zip(LOSS_TERMS, sums / len(slices), strict=True))


def start_losses(variants: Sequence[str], data: Mapping[str, TrainingData], model_cfg: ModelSettings,
                 alpha: float, batch_size: int) -> pd.DataFrame:
    """Loss terms of the untrained models on the validation slices (:func:`mean_terms`).

    ``data`` gives each variant's prepared slices (a randomised variant's are those of its own
    dataset, each slice with its own Φ).

    Returns
    -------
    pandas.DataFrame
        Index (variant, split) with split ``"val"``; columns ``loss_lr``, ``loss_guide``,
        ``loss_total``.
    """
    start = {}
    for name in variants:
        v = VARIANTS[name]
        model = SwigResNet(v.guides, v.use_ql, data[name].q_scale, **model_cfg).eval()
        start[(name, "val")] = mean_terms(model, data[name].val, name, alpha, data[name], batch_size)
    return pd.DataFrame(start).T.rename_axis(["variant", "split"])


def _finished_epochs(path: Path) -> int:
    """Epochs recorded in a latest-epoch checkpoint (0 when missing or unusable)."""
    try:
        return int(checkpoints.load_checkpoint(path)["epoch"])
    except (FileNotFoundError, checkpoints.CheckpointError):
        return 0


def train_all(profile: Profile, variants: Sequence[str], out: Path, device: torch.device,
              data: Mapping[str, TrainingData], device_label: str, previous: pd.DataFrame | None = None,
              progress: bool = False) -> dict[str, dict[str, Any]]:
    """Train every variant, reusing finished and resuming interrupted runs.

    A checkpoint that cannot be resumed (written with other settings, or damaged) is replaced by
    a run from scratch.

    Parameters
    ----------
    profile : Profile
        The profile.
    variants : sequence of str
        The variants to train, in order.
    out : Path
        ``<results_dir>/<profile>``.
    device : torch.device
        Where to train.
    data : mapping of str to TrainingData
        The prepared slices of each variant (a randomised variant's come from its own dataset).
    device_label : str
        How this device is recorded for runs made now.
    previous : pandas.DataFrame, optional
        The last ``summary.csv`` (index ``variant``): the device of a reused checkpoint that does
        not record it is taken from there when the checksum matches.
    progress : bool
        Progress bars.

    Returns
    -------
    dict of str to dict
        Per variant: ``status`` (``"reused"``, ``"resumed at epoch N"``, ``"trained"`` or
        ``"retrained (settings changed)"``), ``wall_s`` (seconds of this call), ``device``,
        ``checkpoint_sha256`` (of the kept checkpoint), ``epochs``, ``selected_epoch``.
    """
    epochs = profile.train.epochs
    runs = {}
    for name in variants:
        best_path, last_path = checkpoints.checkpoint_paths(out, name)
        before = _finished_epochs(last_path)
        started = time.perf_counter()
        try:
            loop.train_variant(profile, name, out, resume=True, device=device, data=data[name], progress=progress)
            status = "reused" if before >= epochs else f"resumed at epoch {before}" if before else "trained"
        except checkpoints.CheckpointError:
            loop.train_variant(profile, name, out, resume=False, device=device, data=data[name], progress=progress)
            status = "retrained (settings changed)"
        wall = time.perf_counter() - started
        payload = checkpoints.load_checkpoint(last_path)
        checksum = sha256(best_path)
        if status != "reused":
            where = device_label
        elif payload.get("device"):
            where = str(payload["device"])
        elif previous is not None and name in previous.index and previous.loc[name, "checkpoint_sha256"] == checksum:
            where = previous.loc[name, "device"]
        else:
            where = "not recorded"
        runs[name] = {"status": status, "wall_s": wall, "device": where, "checkpoint_sha256": checksum,
                      "epochs": int(payload["epoch"]), "selected_epoch": int(payload["best_epoch"])}
    return runs


def _log_row(log: pd.DataFrame, split: str, epoch: int) -> pd.Series:
    """Return the log row of ``split`` at ``epoch``."""
    return log[(log["split"] == split) & (log["epoch"] == epoch)].iloc[0]


def summary_table(logs: Mapping[str, pd.DataFrame], runs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per variant: epochs, kept epoch, seconds, α, final losses, device, status, checksum.

    ``seconds`` sums the per-epoch times of the log (validation included); ``train_*`` and
    ``val_*`` are the loss terms at the last epoch.
    """
    rows = []
    for name, run in runs.items():
        log = logs[name]
        final = {split: _log_row(log, split, run["epochs"]) for split in ("train", "val")}
        rows.append({
            "variant": name, "epochs": run["epochs"], "selected_epoch": run["selected_epoch"],
            "seconds": float(log["time_s"].sum()), "alpha": float(log["alpha"].iloc[0]),
            **{f"{split}_{term}": float(final[split][term]) for split in ("train", "val") for term in LOSS_TERMS},
            "device": run["device"], "status": run["status"], "checkpoint_sha256": run["checkpoint_sha256"],
        })
    return pd.DataFrame(rows).set_index("variant")


def balance_table(logs: Mapping[str, pd.DataFrame], start: pd.DataFrame, summary: pd.DataFrame,
                  selected: Mapping[str, int]) -> pd.DataFrame:
    """L_l, L_h and α·L_h of every variant at the start and at the kept epoch (validation slices)."""
    rows = []
    for name in summary.index:
        alpha = summary.loc[name, "alpha"]
        kept = _log_row(logs[name], "val", selected[name])
        s = start.loc[(name, "val")]
        rows.append({
            "variant": name, "α": alpha,
            "L_l start": s["loss_lr"], "L_l kept": kept["loss_lr"],
            "L_h start": s["loss_guide"], "L_h kept": kept["loss_guide"],
            "α·L_h start": alpha * s["loss_guide"], "α·L_h kept": alpha * kept["loss_guide"],
        })
    return pd.DataFrame(rows).set_index("variant")


def choice_table(logs: Mapping[str, pd.DataFrame], summary: pd.DataFrame,
                 selected: Mapping[str, int]) -> pd.DataFrame:
    """Per variant: epochs, kept epoch, validation L_total at the last and at the kept epoch."""
    choice = summary[["epochs", "selected_epoch", "val_loss_total"]].copy()
    choice["val L_total at the kept epoch"] = [
        float(_log_row(logs[n], "val", selected[n])["loss_total"]) for n in choice.index
    ]
    return choice.rename(columns={"val_loss_total": "val L_total at the last epoch"})


def output_minima(out: Path, variants: Sequence[str], data: Mapping[str, TrainingData]) -> pd.DataFrame:
    """Smallest predicted PD, T1, T2 inside the brain of every kept checkpoint, on its validation slices."""
    minima = {}
    for name in variants:
        v = VARIANTS[name]
        kept = checkpoints.load_checkpoint(checkpoints.checkpoint_paths(out, name)[0])
        model = checkpoints.model_from_checkpoint(kept)
        channels = [GUIDE_ORDER.index(g) for g in v.guides]
        val = data[name].val
        with torch.no_grad():
            pred = model(val.q_l if v.use_ql else None, val.guides[:, channels], val.mask)
        minima[name] = {f"min {m} [{MAP_UNITS[m]}]": float(pred[:, c][val.mask].min())
                        for c, m in enumerate(MAP_NAMES)}
    return pd.DataFrame(minima).T


def _training_glue(profile: Profile, data: TrainingData, summary: pd.DataFrame) -> Glue:
    """Glue the training length, time and device."""
    train_cfg = profile.train
    seconds = summary["seconds"]
    recorded = [d for d in pd.unique(summary["device"]) if d != "not recorded"]
    unrecorded = int((summary["device"] == "not recorded").sum())
    device = "; ".join(
        ([", ".join(recorded)] if recorded else [])
        + ([f"the device of {unrecorded} reused checkpoint(s) is not recorded"] if unrecorded else []))
    return {
        "epochs": (train_cfg.epochs, None),
        "batch_size": (train_cfg.batch_size, None),
        "lr": (train_cfg.lr, "g"),
        "steps": (train_cfg.epochs * -(-len(data.train) // train_cfg.batch_size), None),
        "train_minutes_total": (float(seconds.sum()) / 60, ".1f"),
        "train_seconds_min": (float(seconds.min()), ".0f"),
        "train_seconds_max": (float(seconds.max()), ".0f"),
        "train_device": (device, None),
    }


def _loss_glue(balance: pd.DataFrame, ll_floor: float) -> Glue:
    """Glue the start and kept losses of the reference variant."""
    full = balance.loc[REFERENCE_VARIANT] if REFERENCE_VARIANT in balance.index else balance.iloc[0]
    directions = (bool(full["L_l kept"] < full["L_l start"]), bool(full["L_h kept"] < full["L_h start"]))
    return {
        "ll_start": (full["L_l start"], ".4g"),
        "ll_kept": (full["L_l kept"], ".4g"),
        "lh_start": (full["L_h start"], ".4f"),
        "lh_kept": (full["L_h kept"], ".4f"),
        "alpha_lh_start": (full["α·L_h start"], ".4g"),
        "alpha_lh_kept": (full["α·L_h kept"], ".4g"),
        "ll_change_pct": (100 * (full["L_l kept"] / full["L_l start"] - 1), "+.0f"),
        "lh_change_pct": (100 * (full["L_h kept"] / full["L_h start"] - 1), "+.0f"),
        "ll_kept_over_floor": (full["L_l kept"] / ll_floor, ".0f"),
        "guide_share_kept": (100 * full["α·L_h kept"] / (full["α·L_h kept"] + full["L_l kept"]), ".0f"),
        "loss_directions": (LOSS_DIRECTIONS[directions], None),
    }


def run_training_chapter(
    profile: Profile,
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    device: str | torch.device = "cpu",
    *,
    device_label: str | None = None,
    dataset: Any = None,
    randomised: Any = None,
    progress: bool = False,
) -> TrainingResults:
    """Run the analyses of the training chapter and train every variant of the profile.

    Parameters
    ----------
    profile : Profile
        A loaded profile (:func:`swig_lib.experiments.config.load_profile`): reads ``seed``,
        ``train``, ``model``, ``eval.variants`` and ``eval.batch_size``.
    data_dir : str or PathLike
        Root of the datasets (:func:`swig_lib.experiments.subjects.dataset.load_dataset`).
    results_dir : str or PathLike
        Results root; everything goes to ``<results_dir>/<profile name>/``.
    device : str or torch.device
        Where the models train.
    device_label : str, optional
        How the device is recorded in ``summary.csv`` for runs made now (default: ``str(device)``;
        the notebook passes :func:`swig_lib.book.notebook.describe_device`).
    dataset
        A loaded dataset (default: loaded from ``data_dir``); only its acquired data are read.
    randomised
        The loaded degradation-randomised dataset on which the ``randomised`` variants (``M12++dr``)
        train (default: that of :func:`~swig_lib.experiments.training.augment.randomised_profile`,
        from ``data_dir``, built on first use); read only when such a variant is trained.
    progress : bool
        Progress bars.

    Returns
    -------
    TrainingResults
        The tables, logs and glued numbers of the chapter; ``training/summary.csv`` is written.
    """
    device = torch.device(device)
    train_cfg, model_cfg = profile.train, profile.model
    out = Path(results_dir) / profile.name
    figure_dir = out / "training"
    figure_dir.mkdir(parents=True, exist_ok=True)
    variants = list(profile.eval.variants)
    if dataset is None:
        from swig_lib.experiments.subjects.dataset import load_dataset

        dataset = load_dataset(profile, root=data_dir, progress=progress)
    radius = receptive_radius(**model_cfg)
    data = prepare_data(dataset, profile, radius, progress=progress)  # acquired data only
    prepared, names = {False: data}, None
    if any(VARIANTS[name].randomised for name in variants):  # the transfer model's own dataset
        chosen = randomised_profile(profile)
        if randomised is None:
            from swig_lib.experiments.subjects.dataset import load_dataset

            randomised = load_dataset(chosen, root=data_dir, progress=progress)
        prepared[True] = prepare_data(randomised, chosen, radius, progress=progress)
        names = {False: profile.data["dataset"], True: f"{chosen.data['dataset']} (own Φ per train/val subject)"}
    by_variant = {name: prepared[VARIANTS[name].randomised] for name in variants}
    crop = tuple(data.train.q_l.shape[-2:])
    n_train, n_val = len(dataset.subject_ids("train")), len(dataset.subject_ids("val"))
    glue: Glue = {
        "n_train_slices": (len(data.train), None), "n_val_slices": (len(data.val), None),
        "n_train_subjects": (n_train, None), "n_val_subjects": (n_val, None),
        "crop": (f"{crop[0]} × {crop[1]}", None), "receptive_radius": (radius, None),
        "n_variants": (len(variants), None),
    }
    data_summary = (f"training slices: {len(data.train)} from {n_train} subjects; "
                    f"validation slices: {len(data.val)} from {n_val} subjects; "
                    f"crop {crop[0]} × {crop[1]} voxels of the {data.grid[0]} × {data.grid[1]} grid")

    full_model = SwigResNet(VARIANTS["M12++"].guides, True, data.q_scale, **model_cfg)
    network = network_table(full_model)
    inputs = input_table(variants, data.q_scale, model_cfg, names)
    for key in ("width", "n_blocks", "first_kernel", "last_kernel"):
        value = getattr(model_cfg, key)
        glue[key] = (f"{value} × {value}" if key.endswith("kernel") else value, None)
    glue["n_params_m12"] = (n_params(full_model), None)

    scales, guide_stats = input_statistics(data)
    for name, s in zip(MAP_NAMES, data.q_scale, strict=True):
        glue[f"q_scale_{name.lower()}"] = (s, ".1f")
    example = example_slice(data)
    identity = identity_error(data, model_cfg)
    glue["identity_max_rel"] = (identity, ".1e")
    glue["scaled_floor"] = (SCALED_FLOOR, "g")

    alpha, a = alpha_table(dataset, data, train_cfg.alpha)
    glue |= {
        "alpha_rule": (a["alpha_rule"], ".3g"), "alpha_likelihood": (a["alpha_likelihood"], ".3g"),
        "alpha_profile": (a["alpha_used"], ".3g"),
        "alpha_rule_deviation": (100 * abs(a["alpha_used"] / a["alpha_rule"] - 1), ".0f"),
        "alpha_ratio_rule_likelihood": (a["alpha_rule"] / a["alpha_likelihood"], ".0f"),
        "ll_floor": (a["ll_floor"], ".2f"), "dc_dilation": (train_cfg.dc_dilation, None),
    }
    start = start_losses(variants, by_variant, model_cfg, train_cfg.alpha, profile.eval.batch_size)
    ref = REFERENCE_VARIANT if REFERENCE_VARIANT in variants else variants[0]
    glue["ll_start_over_floor"] = (start.loc[(ref, "val"), "loss_lr"] / a["ll_floor"], ".0f")
    glue["lh_start_full"] = (start.loc[(ref, "val"), "loss_guide"], ".3f")
    if "M12-+" in variants:
        glue["ll_flat_over_ql"] = (start.loc[("M12-+", "val"), "loss_lr"] / start.loc[(ref, "val"), "loss_lr"],
                                   ".0f")

    summary_path = figure_dir / "summary.csv"
    previous = None
    if summary_path.is_file():
        previous = read_csv(summary_path).set_index("variant")
    runs = train_all(profile, variants, out, device, by_variant, device_label or str(device), previous, progress)
    logs = load_training_logs(out / "logs", variants)
    summary = summary_table(logs, runs)
    write_csv(summary, summary_path, index=True)
    glue |= _training_glue(profile, data, summary)

    selected = {name: runs[name]["selected_epoch"] for name in variants}
    balance = balance_table(logs, start, summary, selected)
    glue |= _loss_glue(balance, a["ll_floor"])
    choice = choice_table(logs, summary, selected)
    glue["selected_epoch_m12"] = (int(summary.loc[ref, "selected_epoch"]), None)
    glue["n_selected_last"] = (int((summary["selected_epoch"] == summary["epochs"]).sum()), None)
    minima = output_minima(out, variants, by_variant)
    glue["all_positive"] = ("all positive" if bool((minima > 0).all().all()) else "NOT all positive", None)
    return TrainingResults(
        data_summary=data_summary, network=network, inputs=inputs, scales=scales, guide_stats=guide_stats,
        example=example, identity_error=identity, alpha=alpha, start=start, summary=summary, logs=logs,
        selected_epochs=selected, balance=balance, choice=choice, minima=minima, figure_dir=figure_dir,
        glue=glue,
    )
