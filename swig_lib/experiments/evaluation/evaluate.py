"""Evaluation against Q_h on the test subjects (Sec. III-C.1, Fig. 3, Table III): ``swig evaluate``.

This is the only place where the HR reference maps Q_h are read (:func:`score_split`: the test
subjects for the evaluation, the validation subjects for the model selection of
:mod:`swig_lib.experiments.evaluation.selection`). For every test subject the
baseline Q_l and each trained variant (its selected checkpoint) are scored with SSIM and HFEN on
PD, T1 and T2, averaged over axial slices, inside two regions:

* ``brain``: the brain mask, as in the paper;
* ``interior``: the brain mask eroded in-plane by ``eval.interior_voxels`` voxels. On masked maps
  the zero background makes the mask edge the strongest structure, so both metrics partly measure
  the edge; the interior region shows what happens inside the brain.

Outputs under ``<out>/metrics/``: ``per_subject.csv`` (long table: model, subject, map, region,
ssim, hfen), ``summary.csv`` (mean and 95 % CI over subjects), and per region
``table3_<region>.csv`` (percent change over Q_l and rank sums of the paper's four ranked models,
Table III) and ``ranking_<region>.csv`` (the same for every evaluated variant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from swig_lib.core.io import MissingFileError, write_csv
from swig_lib.core.metrics import map_metrics_many
from swig_lib.core.models import MAP_NAMES
from swig_lib.experiments.config import Profile
from swig_lib.experiments.evaluation.ranking import BASELINE, mean_ci, rank_models
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.training.checkpoints import checkpoint_paths
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import select_slices
from swig_lib.paper import TABLE3_MODELS


def score_subject(
    predictions: Mapping[str, np.ndarray],
    q_h: np.ndarray,
    mask: np.ndarray,
    subject: str,
    slices: np.ndarray,
    interior_voxels: int,
) -> list[dict[str, Any]]:
    """SSIM and HFEN of every prediction of one subject, per map and region.

    Parameters
    ----------
    predictions : mapping of str to numpy.ndarray
        (3, X, Y, Z) maps by model name (the baseline included as ``"Q_l"``).
    q_h : numpy.ndarray
        (3, X, Y, Z) reference maps: PD [a.u.], T1 [ms], T2 [ms].
    mask : numpy.ndarray
        (X, Y, Z) brain mask.
    subject : str
        Subject id for the rows.
    slices : numpy.ndarray
        Axial slices evaluated.
    interior_voxels : int
        Erosion of the ``interior`` region, voxels.

    Returns
    -------
    list of dict
        Rows with keys model, subject, map, region, ssim, hfen.
    """
    by_region = {region: map_metrics_many(predictions, q_h, mask, MAP_NAMES, slices=slices, interior_voxels=erosion)
                 for region, erosion in (("brain", 0), ("interior", interior_voxels))}
    return [
        {"model": model, "subject": subject, "map": name, "region": region,
         "ssim": result["ssim"], "hfen": result["hfen"]}
        for model in predictions
        for region, scores in by_region.items()
        for name, result in scores[model].items()
    ]


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % confidence interval over subjects per model, map, region and metric (Fig. 3)."""
    rows = []
    for (model, name, region), group in table.groupby(["model", "map", "region"], sort=False):
        for metric in ("ssim", "hfen"):
            mean, lo, hi = mean_ci(group[metric].to_numpy())
            rows.append(
                {
                    "model": model,
                    "map": name,
                    "region": region,
                    "metric": metric,
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(group),
                }
            )
    return pd.DataFrame(rows)


def trained_checkpoints(
    profile: Profile, out: str | Path, variants: Sequence[str] | None = None
) -> dict[str, Path]:
    """Return the selected checkpoint of each variant to evaluate, checking that all exist.

    Parameters
    ----------
    profile : Profile
        Reads ``eval.variants`` (the default variants) and ``name``.
    out : path
        Results folder holding ``checkpoints/``.
    variants : sequence of str, optional
        Default: ``eval.variants``.

    Raises
    ------
    ValueError
        For a name that is not a variant of :data:`VARIANTS`.
    swig_lib.core.io.MissingFileError
        When a variant's checkpoint is missing (a :class:`FileNotFoundError`).
    """
    names = list(profile.eval.variants if variants is None else variants)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    paths = {n: checkpoint_paths(Path(out), n)[0] for n in names}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingFileError(
            f"{', '.join(missing)}: no trained model; run `swig train --profile {profile.name} --variant ...` "
            "first, or pass --out with the results folder that holds it"
        )
    return paths


def score_split(
    profile: Profile,
    models: Mapping[str, torch.nn.Module],
    dataset: Any,
    split: str = "test",
    progress: bool = False,
) -> pd.DataFrame:
    """Score ``Q_l`` and ``models`` against Q_h on the subjects of one split of ``dataset``.

    Parameters
    ----------
    profile : Profile
        Reads ``eval.interior_voxels``, ``eval.slice_stride`` (``eval.val_slice_stride`` for the
        ``"val"`` split), ``eval.min_brain_fraction`` and ``eval.batch_size``.
    models : mapping of str to torch.nn.Module
        The loaded models by variant name (:func:`swig_lib.experiments.inference.load_model`).
    dataset
        A loaded dataset (``subject_ids``, ``acquired``, ``reference``).
    split : str
        ``"test"`` (the evaluation) or ``"val"`` (model selection, never the test subjects).
    progress : bool
        Progress bar.

    Returns
    -------
    pandas.DataFrame
        The long per-subject table (:func:`score_subject`), subjects in split order.
    """
    cfg = profile.eval
    stride = cfg.val_slice_stride if split == "val" else cfg.slice_stride
    rows = []
    for sid in tqdm(dataset.subject_ids(split), desc=f"evaluate ({split})", disable=not progress):
        acq = dataset.acquired(sid)
        mask = np.asarray(acq.mask, dtype=bool)
        slices = select_slices(mask, cfg.min_brain_fraction, stride)
        predictions = {BASELINE: np.asarray(acq.q_l, dtype=np.float32)}
        for name, model in models.items():
            predictions[name] = predict_volume(
                model, acq.q_l, acq.guides, mask, cfg.batch_size, slices=slices
            )
        rows += score_subject(
            predictions,
            np.asarray(dataset.reference(sid)),
            mask,
            sid,
            slices,
            cfg.interior_voxels,
        )
    return pd.DataFrame(rows)


def evaluate(
    profile: Profile,
    out: str | Path,
    variants: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    dataset: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score Q_l and the trained variants on the test subjects and write the metric tables.

    Parameters
    ----------
    profile : Profile
        Reads ``eval.variants``, ``eval.interior_voxels``, ``eval.slice_stride``,
        ``eval.min_brain_fraction``, ``eval.batch_size``.
    out : path
        Results folder holding ``checkpoints/``; tables go to ``<out>/metrics/``.
    variants : sequence of str, optional
        Default: ``eval.variants``. Each needs ``checkpoints/<variant>.pt``.
    device : str or torch.device
        Where the models run.
    dataset
        A loaded dataset (default: ``swig_lib.experiments.subjects.dataset.load_dataset(profile)``).
    progress : bool
        Progress bars.

    Returns
    -------
    pandas.DataFrame
        The long per-subject table (also written to ``per_subject.csv``).

    Raises
    ------
    swig_lib.core.io.MissingFileError
        When a variant's checkpoint is missing (:func:`trained_checkpoints`).
    """
    out = Path(out)
    paths = trained_checkpoints(profile, out, variants)
    models = {n: load_model(p, device) for n, p in paths.items()}
    if dataset is None:
        from swig_lib.experiments.subjects.dataset import load_dataset

        dataset = load_dataset(profile, progress=progress)

    table = score_split(profile, models, dataset, "test", progress)
    folder = out / "metrics"
    write_csv(table, folder / "per_subject.csv")
    write_csv(summarise(table), folder / "summary.csv")
    for region, part in table.groupby("region", sort=False):
        columns = ["model", "subject", "map", "ssim", "hfen"]
        write_csv(
            rank_models(part[columns], BASELINE).to_table(),
            folder / f"ranking_{region}.csv",
            index=True,
        )
        ranked = part[part["model"].isin([BASELINE, *TABLE3_MODELS])]
        if ranked["model"].nunique() > 2:
            write_csv(
                rank_models(ranked[columns], BASELINE).to_table(),
                folder / f"table3_{region}.csv",
                index=True,
            )
    return table
