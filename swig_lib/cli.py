"""The ``swig`` command line: one sub-command per task, each registered by the module that does it.

Every module named in :data:`COMMAND_MODULES` exposes ``add_cli(subparsers)``, which adds its
sub-command and sets ``func`` (a callable taking the parsed arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that register a sub-command, in the order ``swig --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("data", "reproduce", "training", "evaluation", "inference")


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
