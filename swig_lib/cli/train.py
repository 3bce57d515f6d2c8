"""``swig train``: train SWIG models self-supervised, on the digital subjects or on your own data."""

from __future__ import annotations

import argparse
from pathlib import Path

from swig_lib.cli.common import (
    UsageError,
    add_command,
    add_experiment_arguments,
    check_writable,
    experiment_folder,
    load_data,
    parse_device,
)
from swig_lib.core.io import OutputExistsError, UserError
from swig_lib.experiments.owndata.folder import DATASET_FILE, OWN_VARIANT, is_own_data
from swig_lib.experiments.training.checkpoints import checkpoint_paths
from swig_lib.experiments.training.variants import VARIANTS


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig train``."""
    parser = add_command(
        subparsers, "train", common,
        summary="train SWIG models self-supervised (Table I variants, or on your data)",
        description=f"""Train variants of Table I on the digital subjects, or, when --data is a folder of
        your own data (with {DATASET_FILE} and sub-* folders), the model {OWN_VARIANT} with every guide of
        it. No high-resolution quantitative map is used: the loss compares the prediction's synthesised
        LR contrasts (MSE) and weighted images (1 - squared Pearson correlation, weight α) with the
        acquired ones.

        Writes <out>/checkpoints/<variant>.pt (the epoch with the lowest validation loss),
        <variant>.last.pt and <out>/logs/<variant>.csv (losses per epoch, seconds per epoch). An
        existing run is continued with --resume or replaced with --overwrite, never silently.""",
        examples=["swig train --profile quick --variant M12++        # one model of Table I",
                  "swig train --profile quick --variant all --resume # every variant, continuing earlier runs",
                  "swig train --data mydata --check                  # check your own data folder",
                  "swig train --data mydata --out results/mine       # train the model SWIG on it"],
    )
    add_experiment_arguments(parser)
    parser.add_argument(
        "--variant", nargs="+", default=None, choices=[*VARIANTS, "all"],
        help="variant(s) of Table I, or 'all' (default M12++; not with your own data)",
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true",
        help="continue from checkpoints/<variant>.last.pt (variants without one start from scratch)",
    )
    again.add_argument("--overwrite", action="store_true", help="replace existing checkpoints and logs")
    parser.add_argument(
        "--suggest-alpha", action="store_true",
        help="print the α rule's value (L_l/L_h at Q_l on the training slices) and exit",
    )
    parser.add_argument(
        "--alpha", type=float, default=None,
        help="your own data: weight α of the guide term, dimensionless (default: the α rule on your "
        "training slices)",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="your own data: check the folder, every sidecar and image, print what training would use, and exit",
    )
    parser.set_defaults(run=run)


def check_runs(out: Path, names: list[str], resume: bool, overwrite: bool) -> list[str]:
    """Refuse to replace or to pretend to resume a run; return the variants that start from scratch.

    Raises
    ------
    swig_lib.core.io.OutputExistsError
        Without ``resume`` or ``overwrite``, when a checkpoint of a variant exists.
    swig_lib.core.io.UserError
        With ``resume``, when no variant has a checkpoint to resume from.
    """
    paths = {name: checkpoint_paths(out, name) for name in names}
    fresh = [name for name, (_, last) in paths.items() if not last.is_file()]
    if resume and len(fresh) == len(names):
        raise UserError(f"{paths[names[0]][1].parent}: nothing to resume (no last checkpoint of "
                        f"{', '.join(names)}); train without --resume, or pass the --out of the run")
    existing = [path for pair in paths.values() for path in pair if path.exists()]
    if existing and not resume and not overwrite:
        raise OutputExistsError(f"{existing[0]}: a training run exists; pass --resume to continue it or "
                                "--overwrite to train again from scratch")
    return fresh


def run(args: argparse.Namespace) -> int:
    """Train the requested variants one after the other, or the model of your own data."""
    from swig_lib.core.models import receptive_radius
    from swig_lib.experiments.training.augment import randomised_profile
    from swig_lib.experiments.training.loop import balanced_alpha, train_variant
    from swig_lib.experiments.training.windows import TrainingData, prepare_data

    device = parse_device(args.device)
    if is_own_data(args.data):
        return run_own_data(args, device)
    for option, given in (("--alpha", args.alpha is not None), ("--check", args.check)):
        if given:
            raise UsageError(f"{option}: only for your own data (--data DIR with {DATASET_FILE}); the profile's "
                             "train.alpha sets α of the digital subjects")
    profile, out = experiment_folder(args)
    chosen = args.variant or ["M12++"]
    names = list(VARIANTS) if "all" in chosen else list(dict.fromkeys(chosen))
    if not args.suggest_alpha:
        check_writable(out)
        fresh = check_runs(out, names, args.resume, args.overwrite)
    prepared: dict[bool, TrainingData] = {}

    def data_for(name: str) -> TrainingData:
        """The prepared data of variant ``name``: the profile's dataset, or the randomised one (built on first use)."""
        randomised = VARIANTS[name].randomised
        if randomised not in prepared:
            chosen = randomised_profile(profile) if randomised else profile
            prepared[randomised] = prepare_data(load_data(chosen, args), chosen, receptive_radius(**profile["model"]))
        return prepared[randomised]

    if args.suggest_alpha:
        data = data_for(names[0])
        alpha, l_data, l_guide = balanced_alpha(data)
        print(
            f"at Q_l on {len(data.train)} training slices: L_l = {l_data:.4g}, L_h = {l_guide:.4g}; "
            f"balanced alpha = L_l/L_h = {alpha:.4g} (profile {args.profile}: "
            f"train.alpha = {profile['train']['alpha']:g})"
        )
        return 0
    for name in names:
        if args.resume and name in fresh:
            print(f"{name}: no checkpoint to resume, training from the start")
        path = train_variant(profile, name, out, resume=args.resume, device=device, data=data_for(name))
        print(f"{name}: selected checkpoint {path}")
    return 0


def run_own_data(args: argparse.Namespace, device: object) -> int:
    """Check, or train :data:`OWN_VARIANT` on, the user's folder ``--data``."""
    from swig_lib.core.models import receptive_radius
    from swig_lib.experiments.owndata.folder import OwnDataset
    from swig_lib.experiments.training.loop import balanced_alpha, train_variant
    from swig_lib.experiments.training.variants import Variant
    from swig_lib.experiments.training.windows import prepare_data

    if args.variant is not None:
        raise UsageError(f"--variant: your own data trains one model, {OWN_VARIANT}, with every guide of "
                         f"{DATASET_FILE}; leave --variant out")
    base, out = experiment_folder(args)
    dataset = OwnDataset.open(args.data)
    if args.check:
        for line in dataset.summary():
            print(line)
        for sid in dataset.subjects:
            dataset.acquired(sid)
        print(f"every image of the {len(dataset.subjects)} subjects is usable")
        return 0
    if not args.suggest_alpha:
        check_writable(out)
        check_runs(out, [OWN_VARIANT], args.resume, args.overwrite)
    profile = dataset.training_profile(base)
    data = prepare_data(dataset, profile, receptive_radius(**profile.model))
    rule, l_data, l_guide = balanced_alpha(data)
    print(f"at Q_l on {len(data.train)} training slices: L_l = {l_data:.4g}, L_h = {l_guide:.4g}; "
          f"balanced alpha = L_l/L_h = {rule:.4g}")
    if args.suggest_alpha:
        return 0
    alpha = rule if args.alpha is None else args.alpha
    variant = Variant(OWN_VARIANT, tuple(dataset.guide_protocols), use_ql=True, data_consistency=True)
    path = train_variant(dataset.training_profile(base, alpha), variant, out, resume=args.resume, device=device,
                         data=data)
    print(f"{OWN_VARIANT} (alpha = {alpha:.4g}): selected checkpoint {path}")
    return 0
