"""What several ``swig`` commands share: options, argument checks, the experiment set-up."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from swig_lib import default_device
from swig_lib.core.io import UserError, writable_folder_problem
from swig_lib.experiments.config import PROFILES, Profile, load_profile

#: Width of the wrapped description of a command's ``--help``.
HELP_WIDTH = 90


class UsageError(UserError):
    """The command line asks for something impossible (exit code 2)."""

    exit_code = 2


def add_command(subparsers: argparse._SubParsersAction, name: str, common: argparse.ArgumentParser, *,
                summary: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """Register ``swig <name>`` with its one-line summary, its description and examples for ``--help``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of ``swig``.
    name : str
        The command.
    common : argparse.ArgumentParser
        The options every command has (``--debug``).
    summary : str
        The line ``swig --help`` shows.
    description : str
        Paragraphs separated by blank lines, each wrapped to :data:`HELP_WIDTH` columns.
    examples : sequence of str
        Command lines (with ``# comments``), shown as written under "Examples:".
    """
    text = "\n\n".join(textwrap.fill(" ".join(part.split()), HELP_WIDTH, break_on_hyphens=False)
                         for part in description.split("\n\n"))
    return subparsers.add_parser(
        name, parents=[common], help=summary, description=text,
        epilog="Examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text: str) -> int:
    """Argument type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer of at least 1, got {text!r}")
    return value


def parse_device(name: str) -> torch.device:
    """Return the device named by ``--device``: ``auto`` (CUDA when present), ``cpu``, ``cuda[:N]``, ``mps``.

    Raises
    ------
    UsageError
        For a name that is not one of these, or a device this machine does not have.
    """
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"--device {name}: not a device; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA device found"
            raise UsageError(f"--device {name}: CUDA is not available here ({build}); use --device cpu "
                             "or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA device(s); use cuda:0 to "
                             f"cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {name}: MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def check_writable(folder: str | Path, option: str = "--out") -> None:
    """Raise :class:`~swig_lib.core.io.UserError` unless files can be written into ``folder``."""
    problem = writable_folder_problem(folder)
    if problem:
        raise UserError(f"{option} {folder}: cannot write there ({problem}); choose another {option}")


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every experiment command shares: ``--profile``, ``--out``, ``--data``, ``--device``."""
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="experiment profile: every setting and seed (default quick)")
    parser.add_argument("--out", default=None, help="results folder (default results/<profile>)")
    parser.add_argument("--data", default="data", help="data root (default data)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, mps")


def experiment_folder(args: argparse.Namespace) -> tuple[Profile, Path]:
    """Return the profile and the results folder of an experiment command's arguments.

    Sets torch's CPU threads to the profile's ``threads`` on the way (the trained weights depend on it).
    """
    profile = load_profile(args.profile)
    profile.apply_threads()
    return profile, Path(args.out or Path("results") / args.profile)


def load_data(profile: Profile, args: argparse.Namespace) -> Any:
    """Open (building if needed) the dataset of ``profile`` under ``--data``."""
    from swig_lib.experiments.subjects.dataset import load_dataset

    check_writable(args.data, "--data")
    return load_dataset(profile, root=args.data)
