"""The model selected by the ablation (Table III), stored for the chapters that use it.

The ablation (:func:`swig_lib.experiments.evaluation.ablation.run_ablation`) writes its selection
with :func:`write_selection`; the cross-sequence validation reads it with :func:`read_selection`.
The file is ``<results_dir>/<profile>/metrics/selected_model.json``: a JSON object with the keys
``selected`` (the variant), ``region`` (the mask the ranking used), ``models`` (the ranked
models), ``total_rank`` (their total ranks), ``selected_interior`` (the selection on the interior
mask) and ``profile``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from swig_lib.core.io import PathLike, atomic_write_json
from swig_lib.experiments.training.variants import VARIANTS

#: The selection file, relative to ``<results_dir>/<profile>``.
SELECTION_FILE = Path("metrics") / "selected_model.json"


def write_selection(
    out: PathLike,
    variant: str,
    *,
    region: str,
    total_rank: Mapping[str, float],
    selected_interior: str,
    profile: str,
) -> Path:
    """Write the selected model to ``<out>/metrics/selected_model.json`` (atomically).

    Parameters
    ----------
    out : str or PathLike
        ``<results_dir>/<profile>``.
    variant : str
        The selected model, a key of :data:`swig_lib.experiments.training.variants.VARIANTS`.
    region : str
        Mask of the ranking that selected it (``"brain"`` or ``"interior"``).
    total_rank : mapping of str to float
        Total rank of every ranked model, in table order (lower is better).
    selected_interior : str
        The model the same ranking selects on the interior mask.
    profile : str
        Name of the profile of the run.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If ``variant`` is not a known variant or not among the ranked models.
    """
    if variant not in VARIANTS or variant not in total_rank:
        raise ValueError(f"selected model {variant!r} is not a ranked variant ({', '.join(total_rank)})")
    path = Path(out) / SELECTION_FILE
    atomic_write_json(path, {
        "selected": variant, "region": region, "models": list(total_rank),
        "total_rank": {model: float(rank) for model, rank in total_rank.items()},
        "selected_interior": selected_interior, "profile": profile,
    })
    return path


def read_selection(out: PathLike) -> str:
    """Read the model selected by the ablation, as written by :func:`write_selection`.

    Parameters
    ----------
    out : str or PathLike
        ``<results_dir>/<profile>``.

    Returns
    -------
    str
        The selected variant.

    Raises
    ------
    FileNotFoundError
        If ``<out>/metrics/selected_model.json`` does not exist (the ablation has not run).
    ValueError
        If the file is not a JSON object whose ``selected`` is a known variant.
    """
    path = Path(out) / SELECTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no model selection at {path}: run the ablation (notebook 03) first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"model selection {path} is not valid JSON: {error}") from None
    name = record.get("selected") if isinstance(record, dict) else None
    if name not in VARIANTS:
        raise ValueError(f"model selection {path} names no known variant (selected: {name!r})")
    return name
