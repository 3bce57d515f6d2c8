"""``swig reproduce``: execute the book's notebooks with papermill, then build the book.

The book tooling (:mod:`swig_lib.book.reproduce`: nbformat, papermill, jupyter-book) is the
``book`` extra; it is imported only when this command runs.
"""

from __future__ import annotations

import argparse

from swig_lib.cli.common import add_command, parse_device
from swig_lib.core.io import UserError
from swig_lib.experiments.config import PROFILES


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig reproduce``."""
    parser = add_command(
        subparsers, "reproduce", common,
        summary="execute the notebooks with papermill, then build the book",
        description="""Execute notebooks/NN_name.ipynb in numeric order with papermill (skipping those
        whose executed copy is up to date), write results/<profile>/provenance.json (commit, versions,
        device, seconds per notebook), then build the book with `jupyter-book build . -W` into
        _build/html. Needs the book extra (pip install -e '.[book]'). The measured run time of each
        notebook is in the book's performance chapter (06).""",
        examples=["swig reproduce --profile quick                    # the whole book (make book)",
                  "swig reproduce --profile smoke --only 01 02 03 --no-book --data-dir /tmp/d --results-dir /tmp/r"],
    )
    parser.add_argument(
        "--profile", choices=PROFILES, default="quick", help="experiment profile (default: quick)"
    )
    parser.add_argument("--force", action="store_true", help="rerun notebooks even when up to date")
    parser.add_argument(
        "--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (name or number)"
    )
    parser.add_argument("--no-book", action="store_true", help="do not build the book")
    parser.add_argument(
        "--seed", type=int, default=None,
        help="training seed of the notebooks: retrains on the same data (default: the profile's seed)"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device injected into the notebooks (default: auto)"
    )
    parser.add_argument("--data-dir", default="data", help="data folder, relative to the repository root")
    parser.add_argument(
        "--results-dir", default="results", help="results folder, relative to the repository root"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run :func:`swig_lib.book.reproduce.reproduce` with the parsed arguments."""
    parse_device(args.device)
    try:
        from swig_lib.book.reproduce import reproduce
    except ModuleNotFoundError as err:
        raise UserError(f"{err.name}: not installed; `swig reproduce` needs the book extra: "
                        "pip install -e '.[book]' in the repository") from err
    return reproduce(
        args.profile,
        force=args.force,
        only=args.only,
        build_book=not args.no_book,
        seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        results_dir=args.results_dir,
        progress=not args.no_progress,
    )
