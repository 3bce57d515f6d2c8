"""The models selected by the ablation, stored for the chapters that use them.

The ablation (:func:`swig_lib.experiments.evaluation.ablation.run_ablation`) ranks the method's
configurations (the models of Table III and the transfer model ``M12++dr``) by the rule of
Table III (total rank over maps × metrics) on the **validation** subjects, never on the test
subjects, and writes two selections with :func:`write_selection`:

* ``selected``, the default model (the benchmark, ``swig release``, ``swig apply``): ranked on the
  validation subjects of the profile's dataset, acquired with the paper's Φ;
* ``selected_transfer``, the model for maps of other sequences (the cross-sequence chapters):
  ranked on the validation subjects of the degradation-randomised dataset, each with its own Φ.

:func:`read_selection` reads either (``kind``). The file is
``<results_dir>/<profile>/metrics/selected_model.json``: a JSON object with the keys ``selected``,
``region`` (the mask the ranking used), ``models`` (the ranked models), ``total_rank`` (their total
ranks), ``selected_interior`` (the selection on the interior mask), then, when given,
``selected_transfer`` with ``total_rank_transfer`` and ``selected_test`` (what the same ranking
on the test subjects would select, for the record), and ``profile``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from swig_lib.core.io import PathLike, atomic_write_json
from swig_lib.experiments.training.variants import VARIANTS

#: The selection file, relative to ``<results_dir>/<profile>``.
SELECTION_FILE = Path("metrics") / "selected_model.json"
#: The kinds of selection (:func:`read_selection`) and their keys in the file.
KINDS: dict[str, str] = {"default": "selected", "transfer": "selected_transfer"}


def write_selection(
    out: PathLike,
    variant: str,
    *,
    region: str,
    total_rank: Mapping[str, float],
    selected_interior: str,
    profile: str,
    selected_transfer: str | None = None,
    total_rank_transfer: Mapping[str, float] | None = None,
    selected_test: str | None = None,
) -> Path:
    """Write the selected models to ``<out>/metrics/selected_model.json`` (atomically).

    Parameters
    ----------
    out : str or PathLike
        ``<results_dir>/<profile>``.
    variant : str
        The default model, a key of :data:`swig_lib.experiments.training.variants.VARIANTS`.
    region : str
        Mask of the ranking that selected it (``"brain"`` or ``"interior"``).
    total_rank : mapping of str to float
        Total rank of every ranked model, in table order (lower is better).
    selected_interior : str
        The model the same ranking selects on the interior mask.
    profile : str
        Name of the profile of the run.
    selected_transfer : str, optional
        The transfer model (ranked on the validation subjects with randomised Φ).
    total_rank_transfer : mapping of str to float, optional
        Its ranking's total ranks (required with ``selected_transfer``).
    selected_test : str, optional
        The model the same ranking selects on the test subjects (not used for any choice).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If ``variant`` is not a known variant or not among the ranked models.
    """
    for name, ranks in ((variant, total_rank), (selected_transfer, total_rank_transfer)):
        if name is not None and (name not in VARIANTS or ranks is None or name not in ranks):
            raise ValueError(f"selected model {name!r} is not a ranked variant ({', '.join(ranks or {})})")
    record: dict[str, object] = {
        "selected": variant, "region": region, "models": list(total_rank),
        "total_rank": {model: float(rank) for model, rank in total_rank.items()},
        "selected_interior": selected_interior,
    }
    if selected_transfer is not None and total_rank_transfer is not None:
        record["selected_transfer"] = selected_transfer
        record["total_rank_transfer"] = {model: float(rank) for model, rank in total_rank_transfer.items()}
    if selected_test is not None:
        record["selected_test"] = selected_test
    path = Path(out) / SELECTION_FILE
    atomic_write_json(path, record | {"profile": profile})
    return path


def read_selection(out: PathLike, kind: str = "default") -> str:
    """Read a model selected by the ablation, as written by :func:`write_selection`.

    Parameters
    ----------
    out : str or PathLike
        ``<results_dir>/<profile>``.
    kind : str
        ``"default"``: the model selected on the validation subjects with the paper's Φ (the
        benchmark, release and ``swig apply``); ``"transfer"``: the one selected on the validation
        subjects with randomised Φ (for maps of other sequences).

    Returns
    -------
    str
        The selected variant.

    Raises
    ------
    FileNotFoundError
        If ``<out>/metrics/selected_model.json`` does not exist (the ablation has not run).
    ValueError
        If ``kind`` is unknown, or the file is not a JSON object whose entry of that kind is a known
        variant (a file of an older ablation has no transfer selection).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of selection {kind!r}: choose one of {', '.join(KINDS)}")
    key = KINDS[kind]
    path = Path(out) / SELECTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no model selection at {path}: run the ablation (notebook 03) first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"model selection {path} is not valid JSON: {error}") from None
    name = record.get(key) if isinstance(record, dict) else None
    if name not in VARIANTS:
        raise ValueError(f"model selection {path} names no known variant ({key}: {name!r})"
                         + ("; rerun the ablation (notebook 03)" if kind == "transfer" and name is None else ""))
    return name


def selection_note(variant: str, kind: str = "default") -> str:
    """One line saying which model a chapter uses and why (the selection ``kind`` of :func:`read_selection`).

    Parameters
    ----------
    variant : str
        The model read with :func:`read_selection`.
    kind : str
        ``"default"`` or ``"transfer"``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown.
    """
    why = {
        "default": "the lowest total rank (rule of Table III) on the validation subjects acquired with the "
                   "paper's Φ: the model for data like the digital subjects'",
        "transfer": "the lowest total rank (rule of Table III) on the validation subjects of the "
                    "degradation-randomised dataset, each acquired with its own Φ (k-space extent, noise, "
                    "box/apodised/radial point-spread function): the model for maps of another sequence",
    }
    if kind not in why:
        raise ValueError(f"unknown kind of selection {kind!r}: choose one of {', '.join(KINDS)}")
    return f"SWIG model: {variant}, selected by notebook 03 as {why[kind]}"
