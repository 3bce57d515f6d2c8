"""The ``swig`` command line, on top of the package: nothing in :mod:`swig_lib` imports it.

``swig <command> [options]`` with the commands ``data``, ``train``, ``evaluate``, ``apply``,
``release`` (one module each in this package) and ``reproduce``, which imports the book tooling
(the ``book`` extra) only when it runs: every other command works with a core install
(``pip install .``).

Errors and exit codes
---------------------
A mistake the user can fix prints one line to stderr,
``swig <command>: error: <file or option>: <problem>; <fix>``, and exits non-zero:

* **2**: the command line itself is wrong: an unknown option or a missing one, a value out of
  range (``--batch-size 0``), a device that does not exist or is not available here;
* **1**: a file or folder it names cannot be used: missing, damaged or invalid data, a checkpoint
  from other settings, an output that would replace an existing file or an input, a folder that
  cannot be written; also any unexpected failure (its line says so).

Warnings print as one line ``swig <command>: warning: ...``. ``--debug`` (an option of every
command) shows the full traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import NoReturn

from swig_lib import __version__
from swig_lib.core.io import UserError, destination_of

#: The commands, in the order ``swig --help`` lists them; each is the module ``swig_lib.cli.<name>``
#: with ``add_parser(subparsers, common)`` and ``run(args) -> int``.
COMMANDS: tuple[str, ...] = ("data", "reproduce", "train", "evaluate", "apply", "release")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>; see `<prog> --help``` and exit with 2."""
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> Parser:
    """Return the ``swig`` argument parser with every command."""
    parser = Parser(
        prog="swig",
        description="SWIG qMRI SR: self-supervised weighted-image-guided qMRI super-resolution.",
        epilog="Errors print one line and exit with 2 (wrong command line) or 1 (unusable file or "
        "folder); --debug shows the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"swig_lib.cli.{name}").add_parser(subparsers, common)
    return parser


def _one_line(text: str) -> str:
    """Return ``text`` on one line (runs of whitespace, newlines included, become one space)."""
    return " ".join(text.split())


def describe_error(error: Exception) -> tuple[int, str]:
    """Return the exit code and the one-line message for an error raised by a command."""
    if isinstance(error, UserError):
        return error.exit_code, _one_line(str(error))
    if isinstance(error, OSError) and error.strerror:
        where = f"{destination_of(error.filename)}: " if error.filename else ""
        return 1, _one_line(f"{where}{error.strerror}; check the path, its permissions and the free space")
    return 1, _one_line(f"unexpected {type(error).__name__}: {error}; rerun with --debug for the "
                        "traceback and report it")


def main(argv: list[str] | None = None) -> int:
    """Run ``swig`` with ``argv`` (default: the process's arguments); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    prog = f"swig {args.command}"

    def show_warning(message: Warning | str, *_: object, **__: object) -> None:
        """Print a warning as one line."""
        print(f"{prog}: warning: {_one_line(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            return int(args.run(args) or 0)
        except KeyboardInterrupt:
            if args.debug:
                raise
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Exception as error:
            if args.debug:
                raise
            code, message = describe_error(error)
            print(f"{prog}: error: {message}", file=sys.stderr)
            return code
