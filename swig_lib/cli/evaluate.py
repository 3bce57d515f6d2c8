"""``swig evaluate``: SSIM/HFEN of the trained variants on the test subjects, Table III."""

from __future__ import annotations

import argparse

from swig_lib.cli.common import (
    add_command,
    add_experiment_arguments,
    check_writable,
    experiment_folder,
    load_data,
    parse_device,
)
from swig_lib.experiments.training.variants import VARIANTS


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig evaluate``."""
    parser = add_command(
        subparsers, "evaluate", common,
        summary="SSIM/HFEN of the trained variants on the test subjects, Table III",
        description="""Score Q_l and the trained variants (<out>/checkpoints/<variant>.pt) on the test
        subjects against the high-resolution maps Q_h: SSIM (higher is better) and HFEN (relative
        high-frequency error, lower is better), both dimensionless, per map (PD, T1, T2), in the brain
        mask and its interior. Writes per_subject.csv, summary.csv (means and 95 % intervals),
        the rankings and Table III to <out>/metrics/ and prints the % change over Q_l.""",
        examples=["swig evaluate --profile quick                         # the profile's eval.variants",
                  "swig evaluate --profile quick --variants M12++ M2++   # two of them"],
    )
    add_experiment_arguments(parser)
    parser.add_argument(
        "--variants", nargs="+", default=None, choices=list(VARIANTS),
        help="default: the profile's eval.variants",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the tables and print the rankings."""
    from swig_lib.experiments.evaluation.evaluate import evaluate, trained_checkpoints
    from swig_lib.experiments.evaluation.ranking import BASELINE, rank_models

    device = parse_device(args.device)
    profile, out = experiment_folder(args)
    trained_checkpoints(profile, out, args.variants)
    check_writable(out / "metrics")
    table = evaluate(profile, out, args.variants, device, load_data(profile, args))
    for region in table["region"].unique():
        part = table[table["region"] == region][["model", "subject", "map", "ssim", "hfen"]]
        print(f"\n{region} mask: % change over {BASELINE} and rank sums")
        print(rank_models(part, BASELINE).to_table().to_string())
    print(f"\ntables written to {out / 'metrics'}")
    return 0
