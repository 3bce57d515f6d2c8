"""Experiment profiles: every setting of an experiment lives in ``profiles.toml``, never in code.

Three profiles share one schema: ``smoke`` (CI, seconds), ``quick`` (a laptop CPU, the whole book
in about 40 minutes on 2 cores) and ``paper`` (a GPU, the paper's settings where it states them).
``profiles.toml`` holds a base (the settings the three share, and the explanation of each) and,
per profile, the settings in which it differs; :func:`load_profile` merges the two and reads the
result once into a frozen :class:`Profile`.

The sections no other module owns are typed here (:class:`TrainSettings`, :class:`ModelSettings`,
:class:`EvalSettings`, :class:`BenchSettings`). ``data``, ``crosssequence``, ``arms``,
``limits``, ``phantom`` and ``generalisation`` are kept as read-only :class:`Table` s: their typed
readers are :class:`swig_lib.experiments.subjects.dataset.DataSettings`,
:class:`swig_lib.experiments.crossseq.settings.CrossSequenceSettings`,
:class:`swig_lib.experiments.arms.chapter.ArmsSettings`,
:class:`swig_lib.experiments.limits.settings.LimitsSettings`,
:class:`swig_lib.experiments.phantom.chapter.PhantomSettings` and
:class:`swig_lib.experiments.evaluation.generalisation.GeneralisationSettings`, which sit above this module (they
import from it).

Every section, and the profile itself, also reads as the plain mapping of its TOML table
(``profile["train"]["epochs"]``, ``dict(profile)``): each look-up returns a fresh plain value
(dicts, lists, numbers, strings) equal to the TOML's, so checkpoints and cache keys that store or
hash a profile see the same dicts as before the typed tree existed.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

PROFILES = ("smoke", "quick", "paper")

_S = TypeVar("_S", bound="Section")


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


def _plain(value: Any) -> Any:
    """Return the plain TOML-like form of a setting: mappings become dicts, tuples lists (fresh copies)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def _typed(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` checked against type ``hint`` (int, float, str or tuple of those; int → float).

    Raises
    ------
    TypeError
        Naming the setting ``where``, the expected type and the value.
    """
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"setting {where} must be a list, got {value!r}")
        items = (args[0],) * len(value) if args[-1] is Ellipsis else args
        if len(items) != len(value):
            raise TypeError(f"setting {where} must have {len(items)} values, got {value!r}")
        return tuple(_typed(item, kind, f"{where}[{i}]") for i, (item, kind) in enumerate(zip(value, items)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and not isinstance(value, bool):
        return value
    raise TypeError(f"setting {where} must be {hint.__name__}, got {value!r}")


class Section(Mapping[str, Any]):
    """Base of the frozen settings dataclasses: typed attributes, and the read-only mapping view.

    ``section[key]`` is the plain form of the field ``key`` (tuples as lists), so a section compares
    equal to the dict of its TOML table and serialises like one (``dict(section)``).
    """

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return _plain(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def to_dict(self) -> dict[str, Any]:
        """Return the plain nested dict of the section (as its TOML table reads; JSON-ready)."""
        return _plain(self)

    @classmethod
    def from_table(cls: type[_S], table: Mapping[str, Any], what: str) -> _S:
        """Read a TOML table; unknown or missing keys raise KeyError, wrong types TypeError.

        Parameters
        ----------
        table : mapping
            The table (plain values).
        what : str
            The section's name in the profile, for the messages (e.g. ``"train"``).
        """
        check_known_fields(cls, table, what)
        missing = [name for name in cls.__dataclass_fields__ if name not in table]
        if missing:
            raise KeyError(f"missing {what} setting(s) {missing}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _typed(table[name], hints[name], f"{what}.{name}") for name in cls.__dataclass_fields__})


class Table(Mapping[str, Any]):
    """A read-only TOML table whose keys the module that owns it checks.

    Look-ups return fresh copies, so nothing a caller does to them reaches the profile.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = _plain(values)

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Table({self._values!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return the plain nested dict of the table (a copy)."""
        return copy.deepcopy(self._values)


@dataclass(frozen=True, eq=False)
class TrainSettings(Section):
    """``[train]``: training of the SWIG variants (see ``profiles.toml``).

    Attributes
    ----------
    epochs : int
        Passes over the training slices.
    batch_size : int
        Slices per step.
    lr : float
        Peak Adam learning rate (linear warm-up over ``warmup_steps``, then cosine decay to 0).
    warmup_steps : int
        Steps of the warm-up.
    alpha : float
        Weight α of the guide term L_h (eq. 12).
    slice_stride : int
        Every n-th of the qualifying axial slices.
    min_brain_fraction : float
        Slices whose brain area is below this fraction of the largest are skipped.
    dc_dilation : int
        Voxels by which the brain mask is dilated for L_l.
    """

    epochs: int
    batch_size: int
    lr: float
    warmup_steps: int
    alpha: float
    slice_stride: int
    min_brain_fraction: float
    dc_dilation: int


@dataclass(frozen=True, eq=False)
class ModelSettings(Section):
    """``[model]``: the ResNet of Fig. 1c (the keyword arguments of ``SwigResNet``'s architecture).

    Attributes
    ----------
    width : int
        Feature channels.
    n_blocks : int
        Residual blocks.
    first_kernel, last_kernel : int
        Kernel sizes of the first and last convolution (voxels).
    """

    width: int
    n_blocks: int
    first_kernel: int
    last_kernel: int


@dataclass(frozen=True, eq=False)
class EvalSettings(Section):
    """``[eval]``: evaluation of the trained variants on the test subjects.

    Attributes
    ----------
    variants : tuple of str
        Variants that ``swig evaluate`` evaluates.
    interior_voxels : int
        Erosion of the brain mask (voxels) that gives the interior mask.
    slice_stride : int
        Every n-th of the qualifying test slices.
    val_slice_stride : int
        Every n-th of the qualifying validation slices, for the model selection.
    min_brain_fraction : float
        Slices whose brain area is below this fraction of the largest are skipped.
    batch_size : int
        Slices per forward pass.
    """

    variants: tuple[str, ...]
    interior_voxels: int
    slice_stride: int
    val_slice_stride: int
    min_brain_fraction: float
    batch_size: int


@dataclass(frozen=True, eq=False)
class BenchSettings(Section):
    """``[bench]``: sizes of the performance benchmarks (``benchmarks/``, notebook 06).

    Attributes
    ----------
    threads : tuple of int
        torch CPU thread counts each timed benchmark runs with.
    fitter_voxels, fitter_repeats : int
        Voxels fitted by the fitter benchmark, best of ``fitter_repeats`` runs.
    build_subjects : int
        Subjects built afresh to time the data.
    train_steps : int
        Timed training steps.
    train_crop : (int, int)
        In-plane crop of the timed training steps (voxels).
    infer_slices : int
        Axial slices of the volume timed for inference.
    crosssequence_shape : (int, int)
        Grid of the cross-sequence benchmark (voxels).
    crosssequence_slices, crosssequence_repeats : int
        Slices and repeats of the cross-sequence benchmark.
    book_target_minutes : int
        Run-time target of the whole book on 2 CPU cores (0: none).
    """

    threads: tuple[int, ...]
    fitter_voxels: int
    fitter_repeats: int
    build_subjects: int
    train_steps: int
    train_crop: tuple[int, int]
    infer_slices: int
    crosssequence_shape: tuple[int, int]
    crosssequence_slices: int
    crosssequence_repeats: int
    book_target_minutes: int


#: The typed sections of a profile, by name.
SECTIONS: dict[str, type[Section]] = {
    "train": TrainSettings, "model": ModelSettings, "eval": EvalSettings, "bench": BenchSettings,
}
#: The sections kept as :class:`Table` s (typed by the modules that own them).
TABLES = ("data", "crosssequence", "arms", "limits", "phantom", "generalisation")


@dataclass(frozen=True, eq=False)
class Profile(Section):
    """One experiment profile, frozen: typed sections, and the mapping view of the TOML.

    Attributes
    ----------
    seed : int
        The training seed: network initialisation and slice shuffling, the cross-sequence
        simulation and the fitter benchmark (the dataset has its own, ``data["seed"]``).
    train, model, eval, bench : Section
        The typed sections.
    data : Table
        Read by :class:`swig_lib.experiments.subjects.dataset.DataSettings`.
    crosssequence : Table
        Read by :class:`swig_lib.experiments.crossseq.settings.CrossSequenceSettings`.
    arms : Table
        Read by :class:`swig_lib.experiments.arms.chapter.ArmsSettings`.
    limits : Table
        Read by :class:`swig_lib.experiments.limits.settings.LimitsSettings`.
    phantom : Table
        Read by :class:`swig_lib.experiments.phantom.chapter.PhantomSettings`.
    generalisation : Table
        Read by :class:`swig_lib.experiments.evaluation.generalisation.GeneralisationSettings`.
    threads : int
        torch's CPU intra-op threads for the experiments (:meth:`apply_threads`); 0 leaves
        torch's default, one per physical core.
    name : str
        ``"smoke"``, ``"quick"`` or ``"paper"``.
    """

    seed: int
    train: TrainSettings
    model: ModelSettings
    eval: EvalSettings
    data: Table
    crosssequence: Table
    bench: BenchSettings
    arms: Table
    limits: Table
    phantom: Table
    generalisation: Table
    threads: int
    name: str

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Profile:
        """Read a merged profile (plain nested dict, with ``name``); unknown or missing keys raise."""
        check_known_fields(cls, values, "profile")
        missing = [name for name in cls.__dataclass_fields__ if name not in values]
        if missing:
            raise KeyError(f"profile {values.get('name', '?')!r} lacks {missing}")
        return cls(
            seed=_typed(values["seed"], int, "seed"),
            threads=_typed(values["threads"], int, "threads"),
            **{name: kind.from_table(values[name], name) for name, kind in SECTIONS.items()},
            **{name: Table(values[name]) for name in TABLES},
            name=_typed(values["name"], str, "name"),
        )

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"setting threads must be 0 (torch's default) or a positive count, got {self.threads}")

    def apply_threads(self) -> int:
        """Set torch's CPU intra-op threads to ``threads`` and return the count now in use.

        On the CPU the trained weights depend on this count (the threads split the reductions of
        the backward pass, so float sums are added in another order), not on the cores the machine
        has: with the count fixed, a profile gives the same numbers on any CPU (of the same torch
        build). 0 leaves torch's default, one thread per physical core. The book's page header
        and the experiment commands of the CLI call it; a script that calls the package's
        training functions itself should call it first.
        """
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        return torch.get_num_threads()

    def __or__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        """``profile | {...}``: the plain dict of the profile updated by ``other`` (as for a dict)."""
        return self.to_dict() | dict(other)


def merge_tables(base: Mapping[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Return ``base`` updated by ``override`` key by key, recursing into tables present in both.

    Parameters
    ----------
    base, override : mapping
        Nested TOML tables.
    where : str
        Dotted path of the tables, for the messages.

    Returns
    -------
    dict
        A new nested dict: the base's keys in its order, then the override's new ones.

    Raises
    ------
    TypeError
        When one side has a table where the other has a value.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if key in merged and isinstance(merged[key], dict) != isinstance(value, dict):
            raise TypeError(f"setting {where}{key} is a table on one side and a value on the other")
        if isinstance(value, dict) and key in merged:
            merged[key] = merge_tables(merged[key], value, f"{where}{key}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merged_profile(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings of profile ``name`` as a plain nested dict: base, profile, overrides.

    Parameters
    ----------
    name : str
        One of :data:`PROFILES`.
    overrides : mapping, optional
        Dotted keys replacing profile values, e.g. ``{"train.epochs": 2}``; each must name an
        existing setting.

    Returns
    -------
    dict
        The settings, with the key ``"name"`` last.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    with resources.files("swig_lib.experiments").joinpath("profiles.toml").open("rb") as fh:
        document = tomllib.load(fh)
    base = {key: value for key, value in document.items() if key not in PROFILES}
    profile = merge_tables(base, document.get(name, {}))
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


def load_profile(name: str, overrides: Mapping[str, Any] | None = None) -> Profile:
    """Return the settings of profile ``name``, frozen and typed.

    Parameters
    ----------
    name : str
        One of ``"smoke"``, ``"quick"``, ``"paper"``.
    overrides : mapping, optional
        Dotted keys replacing profile values, e.g. ``{"train.epochs": 2}`` or ``{"seed": 1}``.

    Returns
    -------
    Profile
        Typed sections (``profile.train.epochs``) that also read as the profile's nested dict
        (``profile["train"]["epochs"]``, ``dict(profile)``; see :class:`Section`).
    """
    return Profile.from_dict(_merged_profile(name, overrides))
