"""``swig apply``: super-resolve your own PD/T1/T2 maps with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from swig_lib.cli.common import parse_device, positive_int


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig apply``."""
    parser = subparsers.add_parser(
        "apply", parents=[common], help="super-resolve your own PD/T1/T2 maps with a trained model",
        description="Write PDmap.nii.gz, T1map.nii.gz, T2map.nii.gz and the provenance sidecar "
        "swig_apply.json into --out, all or nothing. Existing files are replaced only with "
        "--overwrite; a folder that holds an input is refused.",
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint, e.g. results/quick/checkpoints/M12++.pt"
    )
    parser.add_argument("--pd", required=True, help="LR PD map (NIfTI, a.u.)")
    parser.add_argument("--t1", required=True, help="LR T1 map (NIfTI, ms)")
    parser.add_argument("--t2", required=True, help="LR T2 map (NIfTI, ms)")
    parser.add_argument("--t1w", default=None, help="T1-weighted guide (IR-SPGR) on the maps' grid")
    parser.add_argument("--t2w", default=None, help="T2-weighted guide (spin echo) on the maps' grid")
    parser.add_argument("--mask", default=None, help="brain mask (default: PD, T1, T2 finite and > 0)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="slices per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Apply the model and print the written files."""
    from swig_lib.experiments.inference import SIDECAR_FILE, apply_files

    written = apply_files(
        args.model, args.pd, args.t1, args.t2, args.out, args.t1w, args.t2w, args.mask,
        args.batch_size, parse_device(args.device), overwrite=args.overwrite,
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    print(f"provenance: {Path(args.out) / SIDECAR_FILE}")
    return 0
