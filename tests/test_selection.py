"""The model selection file written by the ablation and read by the cross-sequence validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swig_lib.experiments.evaluation.selection import SELECTION_FILE, read_selection, write_selection

ROOT = Path(__file__).resolve().parent.parent


def test_round_trip_and_format(tmp_path) -> None:
    path = write_selection(tmp_path, "M2++", region="brain", total_rank={"M1++": 7.5, "M2++": 4.5},
                           selected_interior="M1++", profile="tiny")
    assert path == tmp_path / "metrics" / "selected_model.json"
    assert read_selection(tmp_path) == "M2++"
    assert path.read_text() == (
        '{\n  "selected": "M2++",\n  "region": "brain",\n  "models": [\n    "M1++",\n    "M2++"\n  ],\n'
        '  "total_rank": {\n    "M1++": 7.5,\n    "M2++": 4.5\n  },\n  "selected_interior": "M1++",\n'
        '  "profile": "tiny"\n}\n')


def test_committed_selection_stays_valid(tmp_path) -> None:
    committed = ROOT / "results" / "quick" / SELECTION_FILE
    record = json.loads(committed.read_text())
    assert read_selection(ROOT / "results" / "quick") == record["selected"]
    write_selection(tmp_path, record["selected"], region=record["region"], total_rank=record["total_rank"],
                    selected_interior=record["selected_interior"], profile=record["profile"])
    assert (tmp_path / SELECTION_FILE).read_bytes() == committed.read_bytes()


def test_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no model selection at .*selected_model.json: run the ablation"):
        read_selection(tmp_path)
    path = tmp_path / SELECTION_FILE
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_selection(tmp_path)
    for text, shown in (('{"selected": "M3++"}', "'M3++'"), ('["M12++"]', "None"), ("{}", "None")):
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"names no known variant \(selected: {re.escape(shown)}\)"):
            read_selection(tmp_path)
    with pytest.raises(ValueError, match="selected model 'M12--' is not a ranked variant \\(M1\\+\\+, M2\\+\\+\\)"):
        write_selection(tmp_path, "M12--", region="brain", total_rank={"M1++": 1.0, "M2++": 2.0},
                        selected_interior="M1++", profile="tiny")
