"""The model selection file written by the ablation and read by the cross-sequence validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swig_lib.experiments.evaluation.selection import (
    SELECTION_FILE,
    read_selection,
    selection_note,
    write_selection,
)

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
    optional = {key: record[key] for key in ("selected_transfer", "total_rank_transfer", "selected_test")
                if key in record}
    write_selection(tmp_path, record["selected"], region=record["region"], total_rank=record["total_rank"],
                    selected_interior=record["selected_interior"], profile=record["profile"], **optional)
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


def test_two_kinds_of_selection(tmp_path) -> None:
    path = write_selection(tmp_path, "M12++", region="brain", total_rank={"M12++": 6.0, "M12++dr": 12.0},
                           selected_interior="M12++", profile="tiny", selected_transfer="M12++dr",
                           total_rank_transfer={"M12++": 12.0, "M12++dr": 6.0}, selected_test="M12++dr")
    assert read_selection(tmp_path) == read_selection(tmp_path, kind="default") == "M12++"
    assert read_selection(tmp_path, kind="transfer") == "M12++dr"
    record = json.loads(path.read_text())
    assert list(record) == ["selected", "region", "models", "total_rank", "selected_interior", "selected_transfer",
                            "total_rank_transfer", "selected_test", "profile"]
    assert record["total_rank_transfer"] == {"M12++": 12.0, "M12++dr": 6.0} and record["selected_test"] == "M12++dr"
    with pytest.raises(ValueError, match="unknown kind of selection 'test': choose one of default, transfer"):
        read_selection(tmp_path, kind="test")
    with pytest.raises(ValueError, match="unknown kind of selection 'best'"):
        selection_note("M12++", "best")
    note = selection_note("M12++dr", "transfer")
    assert note.startswith("SWIG model: M12++dr, selected by notebook 03 as the lowest")
    assert "randomised" in selection_note("M12++dr", "transfer") and "paper's Φ" in selection_note("M12++")
    # An older file (no transfer selection) names no transfer model.
    write_selection(tmp_path, "M12++", region="brain", total_rank={"M12++": 6.0}, selected_interior="M12++",
                    profile="tiny")
    with pytest.raises(ValueError, match=r"names no known variant \(selected_transfer: None\); rerun the ablation"):
        read_selection(tmp_path, kind="transfer")
    with pytest.raises(ValueError, match=r"selected model 'M12\+\+a0' is not a ranked variant \(M12\+\+\)"):
        write_selection(tmp_path, "M12++", region="brain", total_rank={"M12++": 6.0}, selected_interior="M12++",
                        profile="tiny", selected_transfer="M12++a0", total_rank_transfer={"M12++": 6.0})
