"""Experiment profiles: every setting of an experiment lives in ``profiles.toml``, never in code.

Three profiles share one schema: ``smoke`` (CI, seconds), ``quick`` (a laptop CPU, the whole book
in about 30 minutes) and ``paper`` (a GPU, the paper's settings where it states them). Each profile
has sections (``data``, ``train``, ...) owned by the module that reads them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from importlib import resources
from typing import Any

import tomllib

PROFILES = ("smoke", "quick", "paper")


def load_profile(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings of profile ``name`` as a nested dict.

    Parameters
    ----------
    name : str
        One of ``"smoke"``, ``"quick"``, ``"paper"``.
    overrides : dict, optional
        Dotted keys replacing profile values, e.g. ``{"train.epochs": 2}``.

    Returns
    -------
    dict
        A fresh copy (safe to modify) with the key ``"name"`` added.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    with resources.files("swig_lib.experiments").joinpath("profiles.toml").open("rb") as fh:
        profiles = tomllib.load(fh)
    profile = copy.deepcopy(profiles[name])
    profile["name"] = name
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = profile
        for key in parents:
            if key not in node:
                raise KeyError(f"profile {name!r} has no section {key!r} (override {dotted!r})")
            node = node[key]
        if leaf not in node:
            raise KeyError(f"profile {name!r} has no setting {dotted!r}")
        node[leaf] = value
    return profile


def check_known_fields(cls: type, values: Mapping[str, Any], what: str) -> None:
    """Raise KeyError naming any key of ``values`` that is not a field of dataclass ``cls``.

    Parameters
    ----------
    cls : dataclass type
        The settings class a profile table is read into.
    values : mapping
        The table.
    what : str
        What the settings are, for the message (e.g. ``"recon"``).
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise KeyError(f"unknown {what} setting(s) {sorted(unknown)}; known: {sorted(known)}")
