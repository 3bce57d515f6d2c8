"""The simulated cross-sequence validation (paper Sec. III-D.2, IV-B, Table II, Fig. 4): run, cache, pool.

The paper applies its selected model, unchanged, to PD/T1/T2 maps of another qMRI sequence that
training never saw (3-D radial MuPa-ZTE with dictionary fitting) at three quality levels, and
judges the result by how well images synthesised from the maps match independently acquired
clinical images. Here, for the test subjects of a dataset (:func:`run_cross_sequence`):

1. **Maps of another sequence**: Acq1 and Acq5 from the simulated radial transient-state sequence
   (:func:`swig_lib.experiments.crossseq.sequence.simulate_protocols`); Acq5^R = Acq5 passed
   through a supervised CNN trained on training subjects
   (:mod:`swig_lib.experiments.crossseq.reconcnn`).
2. **Acquired images**: T1w, T2w (the guides) and T2-FLAIR (never a guide) from Q_h with noise and
   a receive-bias field (:mod:`swig_lib.experiments.crossseq.acquisition`).
3. **SR**: the SWIG model the caller names (notebook 04: the one the ablation selected,
   :func:`swig_lib.experiments.evaluation.selection.read_selection`) applied with Q_l := the
   protocol's maps and the acquired T1w/T2w as guides
   (:func:`swig_lib.experiments.inference.predict_volume`); trained first when its checkpoint is
   missing (:func:`ensure_sr_model`).
4. **Table II**: SSIM and HFEN of the T1w, T2w and T2-FLAIR synthesised from Q_l and from Q̂_h
   against the acquired ones, per axial slice inside the brain mask
   (:mod:`swig_lib.experiments.crossseq.scoring`); summarised as mean ± standard deviation over
   the slices of all subjects (:mod:`swig_lib.experiments.crossseq.tables`; the paper: over the
   slices of its one volunteer). The acquired images carry an unknown scale and bias, so by
   default each synthesised volume is first matched to the acquired one by a least-squares
   affine map a·S + b over the brain (``intensity_match="affine"``; ``"none"`` compares raw
   intensities). Images synthesised from Q_h itself give the floor that noise and bias leave
   (rows with protocol and source ``"Q_h"``).
5. **Ground truth** (which the paper lacked): SSIM and HFEN of every map against Q_h, the mean
   absolute percentage error of PD, T1 and T2 in pure white and grey matter (the dataset's tissue
   labels, :meth:`swig_lib.experiments.subjects.dataset.Dataset.labels`), and the T2-FLAIR error
   in sulcal CSF (:mod:`swig_lib.experiments.crossseq.sulci`), where the paper saw partial
   volumes escape the fluid suppression.
6. **Scan-specific adaptation** (``swig apply --adapt N``): for the first ``adapt_subjects`` test
   subjects, a copy of the SR model takes ``adapt_steps`` Adam steps of the self-supervised loss
   on the Acq1 maps, another on the Acq5 maps (:data:`~swig_lib.experiments.crossseq.settings.ADAPT_PROTOCOLS`;
   :func:`swig_lib.experiments.owndata.adapt.adapted_copy`, seeded by the profile's ``seed``),
   on the evaluated slices, with the acquired T1w/T2w as guides and, as ``swig apply`` without LR
   contrasts, contrasts synthesised from the protocol's maps in the data term; its output is
   scored against Q_h like SR, and the wall time of adapting and predicting each volume is kept.
7. **Calibration**: the first ``calibration.subjects`` test subjects are also acquired with each
   alternative setting of the radial sequence in ``calibration.candidates`` (noise, spokes,
   k-space extent) and scored "from Q_l" as in Table II, to show how the chapter's setting was
   chosen (:func:`swig_lib.experiments.crossseq.tables.calibration_table`).

Outputs under ``<results_dir>/<profile>/crosssequence/``: ``synthesis.csv`` (per slice),
``table2.csv`` (mean ± sd), ``maps.csv`` (per slice), ``tissue.csv`` and ``sulci.csv`` (per
subject), ``adaptation.csv`` (per slice), ``adaptation_runs.csv`` (per adapted volume),
``calibration.csv`` (per slice),
``run.json`` (what produced them: settings, variant, model checksums, package
fingerprint); the display slice of Fig. 4 goes to
``<results_dir>/<profile>/cache/crosssequence/example.npz``. A second call with the same inputs
reads these instead of recomputing (notebook 05 reuses notebook 04's run). The test subjects are
spread over ``workers`` processes; the results do not depend on it.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from swig_lib.core.io import PathLike, atomic_write_bytes, read_csv, sha256, write_csv
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.config import Profile
from swig_lib.experiments.crossseq.acquisition import acquire_images, image_protocols
from swig_lib.experiments.crossseq.example import Example, example_slice
from swig_lib.experiments.crossseq.reconcnn import RECON_NAME, subject_seed, train_recon_cnn
from swig_lib.experiments.crossseq.scoring import (
    REPORTED_TISSUES,
    map_scores,
    synthesis_scores,
    synthesized_images,
    tissue_errors,
)
from swig_lib.experiments.crossseq.sequence import simulate_protocols
from swig_lib.experiments.crossseq.settings import (
    ADAPT_PROTOCOLS,
    ADAPTED,
    PROTOCOLS,
    REFERENCE,
    CrossSequenceSettings,
)
from swig_lib.experiments.crossseq.sulci import sulcal_csf, sulcal_flair_errors
from swig_lib.experiments.crossseq.tables import table2
from swig_lib.experiments.inference import load_model, predict_volume
from swig_lib.experiments.owndata.adapt import AdaptSettings, Recipe, adapted_copy
from swig_lib.experiments.owndata.folder import synthesised_contrasts
from swig_lib.experiments.subjects.dataset import Acquired, load_dataset, torch_threads
from swig_lib.experiments.training.checkpoints import checkpoint_paths, load_checkpoint
from swig_lib.experiments.training.loop import train_variant
from swig_lib.experiments.training.variants import VARIANTS
from swig_lib.experiments.training.windows import select_slices
from swig_lib.provenance import package_fingerprint

#: Per-subject tables of :class:`CrossSequenceResults`, each written to ``<name>.csv``.
TABLES: tuple[str, ...] = ("synthesis", "maps", "tissue", "sulci", "adaptation", "adaptation_runs", "calibration")
#: Columns of the tables that are empty without adaptation or calibration.
COLUMNS: dict[str, tuple[str, ...]] = {
    "adaptation": ("subject", "protocol", "source", "map", "slice", "ssim", "hfen"),
    "adaptation_runs": ("subject", "protocol", "steps", "slices", "seconds", "loss_before", "loss_after"),
    "calibration": ("subject", "setting", "protocol", "source", "contrast", "slice", "ssim", "hfen"),
}

#: Random streams of the test subjects' radial acquisitions and weighted images.
TEST_STREAM, IMAGE_STREAM = 2, 3


@dataclass
class CrossSequenceResults:
    """Everything :func:`run_cross_sequence` produces.

    Attributes
    ----------
    synthesis : pandas.DataFrame
        Per slice: subject, protocol, source, contrast, slice, ssim, hfen.
    maps : pandas.DataFrame
        Per slice: subject, protocol, source, map, slice, ssim, hfen (against Q_h).
    tissue : pandas.DataFrame
        Per subject: subject, protocol, source, tissue, map, mape (%), n_voxels.
    sulci : pandas.DataFrame
        Per subject: subject, protocol, source, error (%), n_voxels
        (:func:`swig_lib.experiments.crossseq.sulci.sulcal_flair_errors`).
    adaptation : pandas.DataFrame
        Per slice of the adapted volumes: as ``maps``, source
        :data:`~swig_lib.experiments.crossseq.settings.ADAPTED`.
    adaptation_runs : pandas.DataFrame
        Per adapted volume: subject, protocol, steps, slices, seconds (adapting and predicting),
        loss_before, loss_after (mean total self-supervised loss over its slices).
    calibration : pandas.DataFrame
        Per slice of the calibration subjects and per candidate setting of the radial sequence
        (:class:`~swig_lib.experiments.crossseq.settings.CalibrationSettings`): subject, setting,
        protocol, source (Q_l), contrast, slice, ssim, hfen, as ``synthesis``.
    example : Example
        The display slice of Fig. 4.
    info : dict
        Variant, subjects, slices, seconds, reuse and the settings (``run.json``).
    """

    synthesis: pd.DataFrame
    maps: pd.DataFrame
    tissue: pd.DataFrame
    sulci: pd.DataFrame
    adaptation: pd.DataFrame
    adaptation_runs: pd.DataFrame
    calibration: pd.DataFrame
    example: Example
    info: dict[str, Any]


def ensure_sr_model(profile: Profile, out: Path, variant: str, dataset: Any,
                    device: torch.device, progress: bool) -> Path:
    """Return the selected checkpoint of ``variant``, training it first when it is missing.

    Parameters
    ----------
    profile : Profile
        The profile (its ``seed``, ``model`` and ``train`` train the variant).
    out : Path
        ``<results_dir>/<profile>``.
    variant : str
        A key of :data:`swig_lib.experiments.training.variants.VARIANTS`.
    dataset : Dataset
        The profile's dataset (a randomised variant loads its own, from ``data/``).
    device : torch.device
        Where the training runs.
    progress : bool
        Progress bars.

    Returns
    -------
    Path
        ``<out>/checkpoints/<variant>.pt``, trained by the code of ``swig train``
        (:func:`swig_lib.experiments.training.loop.train_variant`) if it did not exist.
    """
    path = checkpoint_paths(out, variant)[0]
    if not path.is_file():  # a randomised variant (M12++dr) trains on its own dataset, which it loads
        own = None if VARIANTS[variant].randomised else dataset
        train_variant(profile, variant, out, device=device, dataset=own, progress=progress)
    return path


def _key(settings: CrossSequenceSettings, seed: int, data_settings: Mapping[str, Any], variant: str,
         sr_path: Path, recon_path: Path) -> dict[str, Any]:
    """Return what the results depend on (stored in ``run.json``, compared for reuse; not ``workers``)."""
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k != "workers"}
    return json.loads(json.dumps({
        "settings": values, "seed": int(seed), "data": dict(data_settings),
        "variant": variant, "sr_sha256": sha256(sr_path), "recon_sha256": sha256(recon_path),
        "package": package_fingerprint(),
    }))


def _output_paths(out: Path) -> dict[str, Path]:
    """Files written by :func:`run_cross_sequence`."""
    folder = out / "crosssequence"
    return {**{name: folder / f"{name}.csv" for name in (*TABLES, "table2")},
            "run": folder / "run.json", "example": out / "cache" / "crosssequence" / "example.npz"}


def _adapt_subject(sid: str, guides: Mapping[str, np.ndarray], mask: np.ndarray, affine: np.ndarray,
                   inputs: Mapping[str, np.ndarray], q_h: np.ndarray, slices: np.ndarray,
                   settings: CrossSequenceSettings, seed: int, sr_model: SwigResNet, recipe: Recipe
                   ) -> dict[str, list[dict[str, Any]]]:
    """Adapt the SR model to each of :data:`ADAPT_PROTOCOLS` of one subject; score and time it (module doc, 6).

    ``guides`` are the subject's acquired guides, ``inputs`` the protocols' maps on ``slices``.
    Returns the rows of ``adaptation`` and ``adaptation_runs`` (without the subject).
    """
    device = next(sr_model.parameters()).device
    rows: dict[str, list[dict[str, Any]]] = {"adaptation": [], "adaptation_runs": []}
    for protocol in ADAPT_PROTOCOLS:
        start = time.perf_counter()
        q_l = inputs[protocol] * mask
        subject = Acquired(sid, q_l, dict(guides), mask, affine,
                           partial(synthesised_contrasts, q_l, recipe.acquisition.qmri_protocol))
        done = adapted_copy(sr_model, recipe, subject, AdaptSettings(settings.adapt_steps, seed=seed), 0, slices,
                            device)
        adapted = predict_volume(done.model, inputs[protocol], guides, mask, settings.batch_size, slices=slices)
        rows["adaptation_runs"].append({
            "protocol": protocol, "steps": settings.adapt_steps, "slices": len(slices),
            "seconds": time.perf_counter() - start,
            **{key: done.record[key]["loss_total"] for key in ("loss_before", "loss_after")}})
        rows["adaptation"] += map_scores({(protocol, ADAPTED): adapted}, q_h, mask, slices)
    return rows


def _calibrate_subject(q_h: np.ndarray, mask: np.ndarray, slices: np.ndarray, acquired: Mapping[str, np.ndarray],
                       index: int, settings: CrossSequenceSettings, seed: int) -> list[dict[str, Any]]:
    """Synthesis scores "from Q_l" of one subject acquired with each calibration candidate (module doc, 7).

    The same slices, acquired images and noise seed as the chapter's own acquisition; returns the
    rows of ``calibration`` (without the subject).
    """
    rows = []
    for label, acquisition in settings.calibration.acquisitions(settings.acquisition).items():
        radial = simulate_protocols(*q_h[..., slices], mask[..., slices], ("Acq1", "Acq5"),
                                    subject_seed(seed, TEST_STREAM, index), acquisition)
        maps = {}
        for protocol, values in radial.items():
            maps[(protocol, "Q_l")] = np.zeros_like(q_h)
            maps[(protocol, "Q_l")][..., slices] = np.stack(values)
        images = synthesized_images(maps, acquired, image_protocols(settings.images), mask, slices,
                                    settings.intensity_match)
        rows += [{"setting": label, **row} for row in synthesis_scores(images, acquired, mask, slices)]
    return rows


def _simulate_subject(dataset: Any, sid: str, index: int, settings: CrossSequenceSettings,
                      seed: int, sr_model: SwigResNet, recon_model: SwigResNet,
                      recipe: Recipe | None = None) -> dict[str, Any]:
    """Acquisitions, SR and scores of one test subject (``index`` in the test list).

    With the SR checkpoint's ``recipe``, the SR model is also adapted to the subject's maps
    (:func:`_adapt_subject`); the first ``settings.calibration.subjects`` subjects are also
    acquired with the calibration candidates (:func:`_calibrate_subject`). Returns the subject's
    volumes (mask, q_h, labels, acquired images, map sets, synthesised images), its evaluated
    ``slices`` and ``rows``: the rows of each of :data:`TABLES`.
    """
    acq = dataset.acquired(sid)
    mask = np.asarray(acq.mask, dtype=bool)
    q_h = np.asarray(dataset.reference(sid), dtype=np.float32)
    labels = dataset.labels(sid)
    slices = select_slices(mask, settings.min_brain_fraction, settings.slice_stride)
    acquired = acquire_images(q_h, mask, acq.affine, settings.images,
                              subject_seed(seed, IMAGE_STREAM, index))
    radial = simulate_protocols(*q_h[..., slices], mask[..., slices], ("Acq1", "Acq5"),
                                subject_seed(seed, TEST_STREAM, index), settings.acquisition)
    inputs = {}
    for protocol, maps in radial.items():
        inputs[protocol] = np.zeros_like(q_h)
        inputs[protocol][..., slices] = np.stack(maps)
    inputs[RECON_NAME] = predict_volume(recon_model, inputs["Acq5"], {}, mask,
                                        settings.batch_size, slices=slices)
    guides = {g: acquired[g] for g in sr_model.guides}
    maps: dict[tuple[str, str], np.ndarray] = {}
    for protocol in PROTOCOLS:
        maps[(protocol, "Q_l")] = inputs[protocol]
        maps[(protocol, "SR")] = predict_volume(sr_model, inputs[protocol], guides, mask,
                                                settings.batch_size, slices=slices)
    images = synthesized_images({**maps, (REFERENCE, REFERENCE): q_h}, acquired,
                                image_protocols(settings.images), mask, slices,
                                settings.intensity_match)
    spacing = float(np.linalg.norm(np.asarray(acq.affine)[:3, 0]))
    rows = {"synthesis": synthesis_scores(images, acquired, mask, slices),
            "maps": map_scores(maps, q_h, mask, slices),
            "tissue": tissue_errors(maps, q_h, labels, slices, REPORTED_TISSUES),
            "sulci": sulcal_flair_errors(images, sulcal_csf(labels, mask, spacing), mask, slices),
            "adaptation": [], "adaptation_runs": [], "calibration": []}
    if index < settings.calibration.subjects:
        rows["calibration"] = _calibrate_subject(q_h, mask, slices, acquired, index, settings, seed)
    if recipe is not None:
        rows |= _adapt_subject(sid, guides, mask, acq.affine, inputs, q_h, slices, settings, seed, sr_model, recipe)
    return {"mask": mask, "q_h": q_h, "labels": labels, "slices": slices, "acquired": acquired,
            "maps": maps, "images": images, "rows": rows}


@lru_cache(maxsize=4)
def _cached_model(path: str, modified_ns: int, device: str) -> SwigResNet:
    """Load a checkpoint's model once per process (and again when the file changes)."""
    return load_model(path, device)


def _subject_task(dataset: Any, sid: str, index: int, settings: CrossSequenceSettings, seed: int,
                  model_paths: tuple[str, str], device: str
                  ) -> tuple[dict[str, list[dict[str, Any]]], Example | None]:
    """Evaluate one test subject, in this or a worker process.

    Returns the rows of :data:`TABLES` (with the subject id) and, for the first subject, the
    Fig. 4 example (its middle evaluated slice). The first ``settings.adapt_subjects`` subjects
    (0: all) are also adapted to, when ``settings.adapt_steps`` > 0.
    """
    adapting = settings.adapt_steps > 0 and (settings.adapt_subjects == 0 or index < settings.adapt_subjects)
    recipe = Recipe.of_checkpoint(load_checkpoint(model_paths[0]), model_paths[0]) if adapting else None
    with torch_threads(1):
        sr_model, recon_model = (_cached_model(p, Path(p).stat().st_mtime_ns, device)
                                 for p in model_paths)
        result = _simulate_subject(dataset, sid, index, settings, seed, sr_model, recon_model, recipe)
    rows = {name: [{"subject": sid, **row} for row in result["rows"][name]] for name in TABLES}
    if index != 0:
        return rows, None
    z = result["slices"][len(result["slices"]) // 2]
    maps = {**result["maps"], (REFERENCE, REFERENCE): result["q_h"]}
    return rows, example_slice(sid, z, result["mask"], maps, result["acquired"], result["images"],
                          result["labels"])


def run_cross_sequence(
    profile: Profile,
    variant: str,
    data_dir: PathLike = "data",
    results_dir: PathLike = "results",
    device: str | torch.device = "cpu",
    progress: bool = True,
    force: bool = False,
) -> CrossSequenceResults:
    """Run the simulated cross-sequence validation of the profile's test subjects (see module doc).

    Trains what is missing first: the SWIG model (:func:`ensure_sr_model`) and the Acq5^R CNN
    (:func:`swig_lib.experiments.crossseq.reconcnn.train_recon_cnn`, cached in
    ``checkpoints/Acq5R.pt``). Results whose ``run.json`` matches the current inputs are read
    back instead of recomputed, unless ``force``.

    Parameters
    ----------
    profile : Profile
        Reads ``data``, ``model``, ``train``, ``crosssequence`` and ``seed``, the training seed,
        which also seeds every simulated acquisition and the Acq5^R training.
    variant : str
        The SWIG model to validate, a key of
        :data:`swig_lib.experiments.training.variants.VARIANTS` (notebook 04: the ablation's
        selection, :func:`swig_lib.experiments.evaluation.selection.read_selection`).
    data_dir, results_dir : path
        Data root and results root; outputs go to ``<results_dir>/<profile>/``.
    device : str or torch.device
        Where the networks run.
    progress : bool
        Progress bars.
    force : bool
        Recompute even if matching results exist.

    Returns
    -------
    CrossSequenceResults

    Raises
    ------
    ValueError
        If ``variant`` is not a known variant.
    """
    start = time.perf_counter()
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
    settings, seed = CrossSequenceSettings.from_profile(profile), profile.seed
    device = torch.device(device)
    out = Path(results_dir) / profile.name
    dataset = load_dataset(profile, root=data_dir, progress=progress)
    sr_path = ensure_sr_model(profile, out, variant, dataset, device, progress)
    recon_path = train_recon_cnn(dataset, out / "checkpoints" / f"{RECON_NAME}.pt", settings.recon,
                                 profile.model, settings.acquisition, seed, device, progress)
    paths = _output_paths(out)
    key = _key(settings, seed, dataset.settings, variant, sr_path, recon_path)
    if not force and all(p.is_file() for p in paths.values()):
        info = json.loads(paths["run"].read_text())
        if info.get("key") == key:
            tables = {name: read_csv(paths[name]) for name in TABLES}
            return CrossSequenceResults(**tables,
                                        example=Example.load(paths["example"]),
                                        info=info | {"reused": True})

    subjects = dataset.subject_ids("test")
    subjects = subjects[: settings.n_subjects] if settings.n_subjects else subjects
    if not subjects:
        raise ValueError(f"the dataset {dataset.folder} has no test subjects")
    n = len(subjects)
    arguments = ([dataset] * n, subjects, range(n), [settings] * n, [seed] * n,
                 [(str(sr_path), str(recon_path))] * n, [str(device)] * n)
    bar = {"total": n, "desc": "cross-sequence", "disable": not progress}
    if settings.workers > 1:  # spawn: a clean interpreter per worker (no forked torch threads)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(settings.workers, n), mp_context=context) as pool:
            outputs = list(tqdm(pool.map(_subject_task, *arguments), **bar))
    else:
        outputs = list(tqdm(map(_subject_task, *arguments), **bar))
    tables = {name: pd.DataFrame([row for rows, _ in outputs for row in rows[name]], columns=COLUMNS.get(name))
              for name in TABLES}
    example = outputs[0][1]
    info = {"key": key, "variant": variant,
            "sr_checkpoint": str(sr_path), "subjects": subjects,
            "n_slices": int(tables["synthesis"][["subject", "slice"]].drop_duplicates().shape[0]),
            "seconds": round(time.perf_counter() - start, 1), "reused": False}
    for name, frame in tables.items():
        write_csv(frame, paths[name])
    write_csv(table2(tables["synthesis"]), paths["table2"], index=True)
    example.save(paths["example"])
    atomic_write_bytes(paths["run"], (json.dumps(info, indent=1) + "\n").encode())
    return CrossSequenceResults(**tables, example=example, info=info)
