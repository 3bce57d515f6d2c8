"""The released model: the selected checkpoint of a profile, slimmed, with its model card.

:func:`release_model` (the ``swig release`` command, ``make release``) takes the model the ablation
selected (``<results>/metrics/selected_model.json``, :mod:`swig_lib.experiments.evaluation.selection`),
that is ``<results>/checkpoints/<variant>.pt``, and writes three files, as one all-or-nothing set
(:func:`swig_lib.core.io.atomic_paths`), into the release folder:

* :data:`MODEL_FILE`: a checkpoint that :func:`~swig_lib.experiments.training.checkpoints.load_checkpoint`
  reads (``weights_only=True``) holding only what applying and adapting the model needs
  (:data:`RELEASED_KEYS`: format, model spec, weights and their SHA-256, variant, acquisition
  record, profile settings) and the profile's name; no optimiser or RNG state, epoch log or
  timings, so that the same weights always give the same bytes;
* :data:`MANIFEST_FILE`: the SHA-256 of :data:`MODEL_FILE`, of its weights, the variant, the
  profile, the commit of the run and the guide protocols the model expects (read by ``swig apply
  --help`` without loading torch);
* :data:`CARD_FILE`: the model card (Markdown) generated from the results: training data, Φ,
  protocols, metrics on the test subjects, intended use, known limits, provenance, checksums.

The release folder is :data:`PACKAGED_RELEASE` (``swig_lib/released/``, package data, so that
``pip install .`` ships it), or the folder named by the environment variable :data:`RELEASE_ENV`
(``SWIG_RELEASE_DIR``) when it is set. ``swig apply`` without ``--model`` uses the model there after
:func:`verified_release` has compared the file's SHA-256 with the manifest's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from swig_lib.core.io import MissingFileError, UserError, atomic_paths, new_folder, read_csv, sha256
from swig_lib.core.models import MAP_NAMES
from swig_lib.core.sequences import GuideProtocol, ProtocolError
from swig_lib.experiments.evaluation.selection import SELECTION_FILE, read_selection
from swig_lib.experiments.training.checkpoints import (
    Acquisition,
    checkpoint_paths,
    load_checkpoint,
    model_from_checkpoint,
)

#: Environment variable naming another release folder (tests, a model of your own).
RELEASE_ENV = "SWIG_RELEASE_DIR"
#: The release folder shipped inside the package.
PACKAGED_RELEASE = Path(__file__).resolve().parents[1] / "released"
#: The slimmed checkpoint, the manifest and the model card in a release folder.
MODEL_FILE, MANIFEST_FILE, CARD_FILE = "model.pt", "release.json", "MODEL_CARD.md"
#: Format tag of :data:`MANIFEST_FILE`.
RELEASE_FORMAT = "swig-release-1"
#: The keys of a training checkpoint a released one keeps (plus ``release``: the profile's name).
RELEASED_KEYS: tuple[str, ...] = (
    "format", "model_spec", "model_state", "weights_sha256", "variant", "acquisition", "profile"
)
#: Units of the fields of a guide protocol (:class:`swig_lib.core.sequences.GuideProtocol`).
FIELD_UNITS: dict[str, tuple[str, str]] = {
    "tr": ("TR", " ms"), "te": ("TE", " ms"), "ti": ("TI", " ms"), "flip": ("flip angle", "°"),
    "td": ("TD", " ms"), "tr_prep": ("TR_prep", " ms"), "readout_pulses": ("readout pulses", ""),
    "centre_pulse": ("centre pulse", ""),
}
#: What each anatomy source of the digital subjects is, for the card.
ANATOMY_TEXT: dict[str, str] = {
    "mni152": "random smooth deformations of the MNI ICBM152 2009 population-average tissue templates "
              "(shipped with nilearn)",
    "synthsr": "random smooth deformations of five real brains' label maps (SynthSR)",
    "mix": "random smooth deformations of the MNI ICBM152 2009 templates and of five real brains' "
           "label maps (SynthSR)",
}


class ReleaseError(UserError):
    """A released model cannot be used or made: tampered, damaged, or its results are incomplete."""


def release_folder() -> Path:
    """The release folder: ``$SWIG_RELEASE_DIR`` when set (and not empty), else :data:`PACKAGED_RELEASE`."""
    return Path(os.environ.get(RELEASE_ENV) or PACKAGED_RELEASE)


def protocol_text(protocol: GuideProtocol) -> str:
    """``"IR-SPGR: TR 6.6 ms, TE 2.6 ms, TI 450 ms, flip angle 12°"``: the fields set, with units."""
    fields = [f"{FIELD_UNITS[key][0]} {value:g}{FIELD_UNITS[key][1]}"
              for key, value in asdict(protocol).items() if key != "sequence" and value is not None]
    return f"{protocol.sequence}: {', '.join(fields)}"


@dataclass(frozen=True)
class Release:
    """A release folder and its manifest (:data:`MANIFEST_FILE`).

    Attributes
    ----------
    folder : Path
        The folder holding :data:`MODEL_FILE`, :data:`MANIFEST_FILE` and :data:`CARD_FILE`.
    manifest : dict
        ``format``, ``profile``, ``variant``, ``file``, ``sha256`` (of the file), ``weights_sha256``,
        ``commit``, ``dirty``, ``keep``, ``sigma``, ``qmri_protocol`` (TR/TE, ms) and
        ``guide_protocols`` (by guide; times in ms, flip angles in degrees).
    """

    folder: Path
    manifest: dict[str, Any]

    @property
    def model(self) -> Path:
        """The released checkpoint."""
        return self.folder / MODEL_FILE

    @property
    def card(self) -> Path:
        """The model card."""
        return self.folder / CARD_FILE

    def guide_protocols(self) -> dict[str, GuideProtocol]:
        """The protocol of each guide the model expects."""
        return {name: GuideProtocol(**fields) for name, fields in self.manifest["guide_protocols"].items()}

    def expects(self) -> str:
        """One sentence: the model, and the guide protocols it expects with their units."""
        guides = "; ".join(f"{name} {protocol_text(p)}" for name, p in self.guide_protocols().items())
        return (f"the released model {self.manifest['variant']} (profile {self.manifest['profile']}) expects "
                f"the guides {guides}")

    def record(self) -> dict[str, Any]:
        """What ``swig apply`` records of the release in its sidecar."""
        keys = ("profile", "variant", "commit")
        return {"folder": str(self.folder), **{key: self.manifest[key] for key in keys}}


def read_release(folder: str | Path | None = None) -> Release | None:
    """The release in ``folder`` (default :func:`release_folder`), or None when it has no manifest.

    Raises
    ------
    ReleaseError
        When the manifest is not a release manifest (damaged or edited).
    """
    folder = Path(folder) if folder is not None else release_folder()
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        release = Release(folder, manifest)
        release.guide_protocols()
        fits = manifest["format"] == RELEASE_FORMAT and isinstance(manifest["sha256"], str)
        problem = "" if fits else f"format {manifest['format']!r}"
    except (ValueError, KeyError, TypeError, ProtocolError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        raise ReleaseError(f"{path}: not a {RELEASE_FORMAT} manifest ({problem}); reinstall the package or "
                           "release the model again (`swig release`), or pass --model")
    return release


def verified_release(folder: str | Path | None = None) -> Release:
    """The release in ``folder`` (default :func:`release_folder`), its model file checked against the manifest.

    Raises
    ------
    swig_lib.core.io.MissingFileError
        When the folder holds no release or its model file is missing.
    ReleaseError
        When the model file's SHA-256 differs from the manifest's (modified or damaged).
    """
    folder = Path(folder) if folder is not None else release_folder()
    release = read_release(folder)
    if release is None:
        raise MissingFileError(f"{folder / MANIFEST_FILE}: no released model in this installation; pass --model "
                               f"CHECKPOINT (from `swig train`), or set {RELEASE_ENV} to a release folder")
    if not release.model.is_file():
        raise MissingFileError(f"{release.model}: the released model file is missing; reinstall the package, "
                               "or pass --model CHECKPOINT")
    if sha256(release.model) != release.manifest["sha256"]:
        raise ReleaseError(f"{release.model}: modified or damaged, its SHA-256 differs from the one recorded in "
                           f"{MANIFEST_FILE}; reinstall the package, or pass --model CHECKPOINT")
    return release


def slim_checkpoint(payload: Mapping[str, Any], profile: str) -> bytes:
    """The bytes of the released checkpoint of a training checkpoint: :data:`RELEASED_KEYS` and the profile name.

    The weights are copied to compact CPU tensors and serialised into memory (archive name
    ``archive``, not the file's), so the bytes depend on the checkpoint's content only.
    """
    slim = {key: payload[key] for key in RELEASED_KEYS if key in payload}
    slim["model_state"] = {name: tensor.detach().cpu().clone().contiguous()
                           for name, tensor in payload["model_state"].items()}
    slim["release"] = {"profile": profile}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    return buffer.getvalue()


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from ``path``; MissingFileError / ReleaseError naming ``what`` and ``fix``."""
    if not path.is_file():
        raise MissingFileError(f"{path}: no {what}; {fix}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ReleaseError(f"{path}: {what} is not valid JSON ({err}); {fix}") from err
    if not isinstance(record, dict):
        raise ReleaseError(f"{path}: {what} is not a JSON object; {fix}")
    return record


def held_out_metrics(summary: pd.DataFrame, variant: str, region: str) -> pd.DataFrame:
    """Mean SSIM/HFEN of Q_l and ``variant`` per map in ``region``, and the change over Q_l (%).

    Parameters
    ----------
    summary : pandas.DataFrame
        ``metrics/summary.csv`` of ``swig evaluate`` (columns model, map, region, metric, mean, n).
    variant, region : str
        The released model and the mask of its selection.

    Returns
    -------
    pandas.DataFrame
        Index the maps (PD, T1, T2); columns ``(metric, "Q_l" | variant | "change %")`` and
        ``("n", "")`` (the number of test subjects).

    Raises
    ------
    ReleaseError
        When the table lacks a row of Q_l or of the model.
    """
    rows = summary[(summary["region"] == region) & summary["model"].isin(["Q_l", variant])]
    table = rows.pivot_table(index="map", columns=["metric", "model"], values="mean")
    needed = [(metric, model) for metric in ("ssim", "hfen") for model in ("Q_l", variant)]
    missing = [f"{model} {metric}" for metric, model in needed if (metric, model) not in table.columns]
    if missing or sorted(table.index) != sorted(MAP_NAMES):
        raise ReleaseError(f"summary.csv: no {region}-mask rows of {', '.join(missing) or 'every map'}; evaluate "
                           f"the model first (`swig evaluate --variants {variant}` or notebook 03)")
    columns = {}
    for metric in ("ssim", "hfen"):
        base, model = table[(metric, "Q_l")], table[(metric, variant)]
        columns |= {(metric, "Q_l"): base, (metric, variant): model, (metric, "change %"): 100 * (model / base - 1)}
    result = pd.DataFrame(columns).loc[list(MAP_NAMES)]
    result[("n", "")] = rows[rows["model"] == variant].groupby("map")["n"].max()
    return result


def model_card(payload: Mapping[str, Any], manifest: Mapping[str, Any], metrics: pd.DataFrame,
               provenance: Mapping[str, Any], region: str) -> str:
    """The model card (Markdown) of a release.

    Parameters
    ----------
    payload : mapping
        The released checkpoint.
    manifest : mapping
        Its manifest (:class:`Release`).
    metrics : pandas.DataFrame
        :func:`held_out_metrics` of the model.
    provenance : mapping
        ``provenance.json`` of the run (``swig reproduce``).
    region : str
        The mask of the selection and of the metrics.
    """
    profile, variant, spec = payload["profile"], manifest["variant"], payload["model_spec"]
    data, train = profile["data"], profile["train"]
    acquisition = Acquisition.of_checkpoint(payload)
    n_train, n_val, n_test = data["split"]
    parameters = sum(weight.numel() for weight in model_from_checkpoint(payload).parameters())
    guides = "\n".join(f"| {name} | {protocol_text(p)} |" for name, p in acquisition.guide_protocols.items())
    protocol = acquisition.qmri_protocol
    table = "\n".join(
        f"| {name} | {row[('ssim', 'Q_l')]:.4f} | {row[('ssim', variant)]:.4f} | {row[('ssim', 'change %')]:+.1f} % "
        f"| {row[('hfen', 'Q_l')]:.4f} | {row[('hfen', variant)]:.4f} | {row[('hfen', 'change %')]:+.1f} % |"
        for name, row in metrics.iterrows())
    git = provenance.get("git") or {}
    versions = provenance.get("versions") or {}
    commit = f"`{git.get('commit', 'not recorded')}`" + (" (with uncommitted changes)" if git.get("dirty") else "")
    name = manifest["profile"]
    return f"""# Model card: SWIG {variant}, profile `{name}`

The model `swig apply` uses when no `--model` is given: the variant {variant} of Table I (guides
{', '.join(spec['guides'])}{', with the LR maps Q_l as input' if spec['use_ql'] else ''}), selected by the
ablation of the `{name}` profile on its validation subjects ({region} mask), {parameters:,} weights (ResNet of width
{spec['width']}, {spec['n_blocks']} blocks).

## Training data

- **Digital subjects**, no real scans: {ANATOMY_TEXT.get(data['anatomy_source'], data['anatomy_source'])},
  with literature PD, T1 and T2 of each tissue at **1.5 T**, on a **1 mm**
  grid; {n_train} training, {n_val} validation and {n_test} test subjects (data seed {data['seed']}).
- **2-D axial slices** (slices {data['slices'][0]}-{data['slices'][1]} of the grid,
  {data['slice_step']} mm apart), trained slice by slice.
- **Low-resolution acquisition Φ** (the paper's eq. 3): the central fraction keep = {acquisition.keep:g}
  of each in-plane k-space axis, complex Gaussian noise σ = {acquisition.sigma:g} (a.u.); LR contrasts
  with TR {', '.join(f'{t:g}' for t in protocol.tr)} ms and TE {', '.join(f'{t:g}' for t in protocol.te)} ms.
- **Self-supervised**: no high-resolution quantitative map was used; {train['epochs']} epochs, batch
  {train['batch_size']}, learning rate {train['lr']:g}, α = {train['alpha']:g}, seed {profile['seed']}.

## Guide protocols it expects

The guides must be acquired with these protocols (times in ms, flip angles in degrees);
`swig apply` checks each guide's BIDS sidecar against them (5 % on TR/TE/TI, 2° on the flip angle)
and refuses a mismatch unless `--accept-protocol-mismatch`.

| guide | protocol |
| --- | --- |
{guides}

Inputs: LR maps PD (a.u.), T1 and T2 (ms) on the guides' voxel grid, axial slices along the last
NIfTI axis.

## Metrics on the test subjects

Mean over the {int(metrics[('n', '')].max())} test subjects of the `{name}` profile, {region} mask
(`metrics/summary.csv`). SSIM: higher is better; HFEN: lower is better. Q_l is the LR input.

| map | SSIM Q_l | SSIM {variant} | change | HFEN Q_l | HFEN {variant} | change |
| --- | --- | --- | --- | --- | --- | --- |
{table}

## Intended use

Research on quantitative-MRI super-resolution: reproducing and extending the paper, trying the
method on your own maps, a starting point for adapting to your data (`swig apply --adapt N`).
**Not for diagnosis** or any clinical decision: it has never seen a patient, a lesion or a real
scanner's artefacts.

## Known limits

- Trained on smooth digital anatomy: on a brain with real single-subject anatomy (measured
  outside the book, project issue 11) the HFEN gain over Q_l is about half of that on the
  digital test subjects and PD SSIM falls below Q_l; the maps overshoot along sharp CSF
  boundaries.
- Lesions, mismatched guides (another sequence or timing) and multi-compartment tissue break its
  assumptions: the book's limits chapter (09) measures how far.
- Other super-resolution systems and baselines on the same subjects: the comparison chapter (08).
- Another field strength, resolution, k-space fraction or noise level than above is outside its
  training; adapt it (`swig apply --adapt N`) or train on your data (`swig train --data`).

## How it was produced

- Profile `{name}`, commit {commit}, {provenance.get('device', 'device not recorded')},
  torch {versions.get('torch', 'not recorded')}, swig_lib {versions.get('swig_lib', 'not recorded')}.
- Commands: `swig reproduce --profile {name}` (notebooks 01-03: data, training, ablation and
  selection), then `swig release --profile {name}` (`make release PROFILE={name}`), which slims
  `results/{name}/checkpoints/{variant}.pt` to its weights, spec and acquisition record.

## Checksums

- `{MODEL_FILE}` SHA-256: `{manifest['sha256']}`
- weights SHA-256 (as recorded in the checkpoint): `{manifest['weights_sha256']}`
"""


def release_model(results: str | Path, into: str | Path | None = None) -> Release:
    """Release the selected model of a results folder: slimmed checkpoint, manifest and card, all or nothing.

    Parameters
    ----------
    results : str or Path
        ``<results_dir>/<profile>``, with ``metrics/selected_model.json``, the selected
        ``checkpoints/<variant>.pt``, ``metrics/summary.csv`` and ``provenance.json``.
    into : str or Path, optional
        The release folder (default :func:`release_folder`); created if missing.

    Returns
    -------
    Release
        The release written.

    Raises
    ------
    swig_lib.core.io.MissingFileError, ReleaseError, swig_lib.experiments.training.checkpoints.CheckpointError
        When a file of the results is missing or unusable; nothing is written then.
    """
    results = Path(results)
    into = Path(into) if into is not None else release_folder()
    fix = f"run notebooks 01-03 of that profile (`swig reproduce --only 01 02 03`) with results in {results}"
    selection = _read_json(results / SELECTION_FILE, "model selection", fix)
    try:
        variant = read_selection(results)
    except ValueError as err:
        raise ReleaseError(f"{err}; {fix}") from err
    profile = str(selection.get("profile", results.name))
    provenance = _read_json(results / "provenance.json", "provenance record of `swig reproduce`", fix)
    summary_path = results / "metrics" / "summary.csv"
    if not summary_path.is_file():
        raise MissingFileError(f"{summary_path}: no test metrics; {fix}")
    metrics = held_out_metrics(read_csv(summary_path), variant, str(selection.get("region", "brain")))

    source = checkpoint_paths(results, variant)[0]
    model_bytes = slim_checkpoint(load_checkpoint(source), profile)
    payload = torch.load(io.BytesIO(model_bytes), weights_only=True)
    model_from_checkpoint(payload, source=source)  # the spec fits the weights
    acquisition = Acquisition.of_checkpoint(payload, source)
    git = provenance.get("git") or {}
    manifest = {
        "format": RELEASE_FORMAT, "profile": profile, "variant": variant, "file": MODEL_FILE,
        "sha256": hashlib.sha256(model_bytes).hexdigest(), "weights_sha256": payload["weights_sha256"],
        "commit": git.get("commit"), "dirty": git.get("dirty"),
        **acquisition.to_record(),
    }
    card = model_card(payload, manifest, metrics, provenance, str(selection.get("region", "brain")))
    files = {MODEL_FILE: model_bytes, MANIFEST_FILE: (json.dumps(manifest, indent=2) + "\n").encode(),
             CARD_FILE: card.encode()}
    with new_folder(into), atomic_paths([into / name for name in files]) as temporaries:
        for data, tmp in zip(files.values(), temporaries):
            tmp.write_bytes(data)
    return Release(into, manifest)

