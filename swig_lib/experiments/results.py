"""What the chapter functions return to the book besides tables and figures: glued numbers.

Each chapter function (:func:`swig_lib.experiments.subjects.report.run_data_chapter`,
:func:`swig_lib.experiments.training.report.run_training_chapter`,
:func:`swig_lib.experiments.evaluation.ablation.run_ablation`,
:func:`swig_lib.experiments.performance.run_performance`, ...) returns a results object whose
``glue`` maps a key to a :data:`Glue` entry; the notebook glues each one
(:func:`swig_lib.book.notebook.glue_value`) and the prose pastes it by key.
"""

from __future__ import annotations

from typing import Any

#: Glued values by key: the value and its format specification (None: glued as is).
Glue = dict[str, tuple[Any, str | None]]
