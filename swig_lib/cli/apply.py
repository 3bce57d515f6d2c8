"""``swig apply``: super-resolve your own PD/T1/T2 maps with the released or a trained model, optionally adapted."""

from __future__ import annotations

import argparse
from pathlib import Path

from swig_lib.cli.common import UsageError, add_command, parse_device, positive_int
from swig_lib.core.io import UserError
from swig_lib.experiments.owndata.protocols import DEFAULT_TOLERANCE, OVERRIDE_FLAG
from swig_lib.experiments.release import RELEASE_ENV, read_release, verified_release


def non_negative_float(text: str) -> float:
    """Argument type: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    """Argument type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig apply``."""
    parser = add_command(
        subparsers, "apply", common,
        summary="super-resolve your own PD/T1/T2 maps (the released model, or one you trained)",
        description=f"""Super-resolve low-resolution PD (a.u.), T1 and T2 (ms) maps, guided by
        high-resolution weighted images (T1w, T2w) on the same voxel grid, axial slices along the last
        NIfTI axis. Writes PDmap.nii.gz, T1map.nii.gz, T2map.nii.gz and the provenance sidecar
        swig_apply.json into --out, all or nothing. Existing files are replaced only with --overwrite;
        a folder that holds an input is refused.

        Without --model it uses the released model that ships with the package (its file must match
        the SHA-256 of its release manifest; ${RELEASE_ENV} names another release folder), and
        swig_apply.json records it under model.released: {released_model_text()}.

        A guide with a BIDS sidecar (x.json next to x.nii.gz) must have been acquired with the
        protocol the model was trained with, within the tolerances, unless {OVERRIDE_FLAG}.""",
        examples=["swig apply --pd PD.nii.gz --t1 T1.nii.gz --t2 T2.nii.gz --t1w T1w.nii.gz --t2w T2w.nii.gz \\",
                  "    --mask mask.nii.gz --out sr/          # the released model",
                  "swig apply --model results/quick/checkpoints/M12++.pt ... --adapt 100 --out sr/"],
    )
    parser.add_argument(
        "--model", default=None,
        help="checkpoint from `swig train`, e.g. results/quick/checkpoints/M12++.pt (default: the released "
        "model of the package, see above)",
    )
    parser.add_argument("--pd", required=True, help="LR PD map (NIfTI, a.u.)")
    parser.add_argument("--t1", required=True, help="LR T1 map (NIfTI, ms)")
    parser.add_argument("--t2", required=True, help="LR T2 map (NIfTI, ms)")
    parser.add_argument("--t1w", default=None, help="the guide T1w (the paper's: IR-SPGR) on the maps' grid")
    parser.add_argument("--t2w", default=None, help="the guide T2w (the paper's: spin echo) on the maps' grid")
    parser.add_argument(
        "--guide", nargs=2, action="append", default=[], metavar=("NAME", "FILE"),
        help="a guide of another name the model was trained with, e.g. --guide FLAIR flair.nii.gz (repeatable)",
    )
    parser.add_argument("--mask", default=None, help="brain mask (default: PD, T1, T2 finite and > 0)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="slices per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    protocols = parser.add_argument_group("guide protocols")
    protocols.add_argument(
        OVERRIDE_FLAG, action="store_true",
        help="use guides whose sidecar protocol differs from the model's beyond the tolerances (a warning)",
    )
    protocols.add_argument(
        "--time-tolerance", type=non_negative_float, default=DEFAULT_TOLERANCE.time,
        help=f"relative tolerance on TR, TE, TI (default {DEFAULT_TOLERANCE.time:g})",
    )
    protocols.add_argument(
        "--flip-tolerance", type=non_negative_float, default=DEFAULT_TOLERANCE.flip,
        help=f"tolerance on the flip angle, degrees (default {DEFAULT_TOLERANCE.flip:g})",
    )
    adaptation = parser.add_argument_group("scan-specific adaptation (self-supervised, no labels)")
    mode = adaptation.add_mutually_exclusive_group()
    mode.add_argument("--adapt", type=positive_int, default=None, metavar="N",
                      help="fine-tune the model on this subject for N steps before predicting")
    mode.add_argument("--from-scratch", type=positive_int, default=None, metavar="N",
                      help="train a fresh model of the checkpoint's kind on this subject alone for N steps")
    adaptation.add_argument("--seed", type=int, default=0, help="seed of the adaptation (default 0)")
    adaptation.add_argument(
        "--adapt-lr-scale", type=unit_fraction, default=None, metavar="F",
        help="peak learning rate of --adapt as a fraction of the training's, in (0, 1] "
             "(default 0.1; --from-scratch uses the training's)",
    )
    adaptation.add_argument(
        "--contrasts", default=None,
        help="4-D LR contrasts of the model's qMRI protocol for the data term (default: synthesised from the maps)",
    )
    parser.set_defaults(run=run)


def released_model_text() -> str:
    """Which guide protocols the released model expects, for ``--help`` (or why there is none)."""
    try:
        release = read_release()
    except UserError as err:
        return f"its manifest is unusable ({err})"
    if release is None:
        return "this installation has no released model (pass --model)"
    return release.expects()


def named_guides(pairs: list[list[str]], t1w: str | None, t2w: str | None) -> dict[str, str]:
    """The ``--guide NAME FILE`` pairs as a mapping; each name once, T1w and T2w through their own options.

    Raises
    ------
    UsageError
        For a name given twice.
    """
    guides: dict[str, str] = {}
    for name, path in pairs:
        own = {"T1w": ("--t1w", t1w), "T2w": ("--t2w", t2w)}.get(name)
        if name in guides or (own is not None and own[1] is not None):
            raise UsageError(f"--guide {name}: the guide {name} is given twice; give it once")
        guides[name] = path
    return guides


def run(args: argparse.Namespace) -> int:
    """Apply (after adapting, if asked) the model and print the written files."""
    from swig_lib.experiments.inference import SIDECAR_FILE, apply_files
    from swig_lib.experiments.owndata.adapt import AdaptSettings
    from swig_lib.experiments.owndata.protocols import ProtocolTolerance

    steps = args.adapt or args.from_scratch
    if args.contrasts is not None and steps is None:
        raise UsageError("--contrasts: only the data term of --adapt or --from-scratch reads LR contrasts; add one "
                         "of them or leave --contrasts out")
    release = verified_release() if args.model is None else None
    model = args.model if release is None else release.model
    if release is not None:
        print(f"model: the released {release.manifest['variant']} (profile {release.manifest['profile']}), "
              f"{release.model}")
    written = apply_files(
        model, args.pd, args.t1, args.t2, args.out, args.t1w, args.t2w, args.mask,
        args.batch_size, parse_device(args.device), overwrite=args.overwrite,
        guides=named_guides(args.guide, args.t1w, args.t2w), contrasts=args.contrasts,
        tolerance=ProtocolTolerance(args.time_tolerance, args.flip_tolerance),
        accept_protocol_mismatch=args.accept_protocol_mismatch,
        adaptation=None if steps is None else AdaptSettings(
            steps, args.from_scratch is not None, args.seed,
            **({} if args.adapt_lr_scale is None else {"lr_scale": args.adapt_lr_scale})),
        released=None if release is None else release.record(),
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    print(f"provenance: {Path(args.out) / SIDECAR_FILE}")
    return 0
