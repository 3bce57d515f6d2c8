"""The ``swig`` command line: one sub-command per task, each registered by the module that does it.

Every module named in :data:`COMMAND_MODULES` exposes ``add_cli(subparsers)``, which adds its
sub-command and sets ``func`` (a callable taking the parsed arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import torch

from swig_lib import default_device
from swig_lib.experiments.config import PROFILES, load_profile

#: Modules that register a sub-command, in the order ``swig --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "experiments.subjects.dataset", "book.reproduce", "experiments.training.loop", "experiments.evaluation.evaluate",
    "experiments.inference",
)


def parse_device(name: str) -> torch.device:
    """``auto`` → :func:`swig_lib.default_device` (CUDA when present), else the named torch device."""
    return default_device() if name == "auto" else torch.device(name)


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every experiment command shares: ``--profile``, ``--out``, ``--data``, ``--device``."""
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--out", default=None, help="results folder (default results/<profile>)")
    parser.add_argument("--data", default="data", help="data root (default data)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def experiment_setup(args: argparse.Namespace) -> tuple[dict[str, Any], Path, Any]:
    """Profile, results folder and loaded dataset of an experiment command's parsed arguments."""
    from swig_lib.experiments.subjects.dataset import load_dataset

    profile = load_profile(args.profile)
    out = Path(args.out or Path("results") / args.profile)
    return profile, out, load_dataset(profile, root=args.data)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``swig`` argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="swig",
        description="SWIG qMRI SR: self-supervised weighted-image-guided qMRI super-resolution.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"swig_lib.{name}").add_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``swig``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
