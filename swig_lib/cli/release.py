"""``swig release``: the selected model of a profile's results as the released model, with its model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from swig_lib.cli.common import add_command, check_writable
from swig_lib.experiments.config import PROFILES
from swig_lib.experiments.release import CARD_FILE, MANIFEST_FILE, MODEL_FILE, RELEASE_ENV


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig release``."""
    parser = add_command(
        subparsers, "release", common,
        summary="release the selected model of a profile (slimmed checkpoint and model card)",
        description=f"""Take the model the ablation selected (<results>/metrics/selected_model.json,
        i.e. <results>/checkpoints/<variant>.pt) and write, all or nothing, into the release folder:
        {MODEL_FILE} (weights, model spec, variant, acquisition record and profile settings; no
        optimiser state, log or timings, so the same weights always give the same bytes),
        {MANIFEST_FILE} (its SHA-256 and the guide protocols it expects) and {CARD_FILE} (the model
        card: training data, Φ, protocols in ms and degrees, SSIM/HFEN on the test subjects from
        <results>/metrics/summary.csv, intended use, known limits, commit from
        <results>/provenance.json, checksums).

        The release folder is swig_lib/released/ in the package (shipped by `pip install .`; `swig
        apply` uses its model when --model is not given), or ${RELEASE_ENV} when set, or --into.""",
        examples=["swig release --profile quick            # results/quick -> swig_lib/released/ (make release)",
                  "swig release --profile smoke --results /tmp/r/smoke --into /tmp/released"],
    )
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="profile whose results are released: picks the default --results (default quick)")
    parser.add_argument("--results", default=None,
                        help="results folder of the run (default results/<profile>)")
    parser.add_argument("--into", default=None,
                        help=f"release folder (default ${RELEASE_ENV}, or swig_lib/released/ in the package)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Release the selected model and print what was written."""
    from swig_lib.experiments.release import release_folder, release_model

    into = Path(args.into) if args.into is not None else release_folder()
    check_writable(into, "--into")
    release = release_model(Path(args.results or Path("results") / args.profile), into)
    print(f"released {release.manifest['variant']} (profile {release.manifest['profile']}) into {release.folder}:")
    for name in (MODEL_FILE, MANIFEST_FILE, CARD_FILE):
        print(f"  {release.folder / name}")
    print(f"{MODEL_FILE} SHA-256 {release.manifest['sha256']}")
    print(release.expects())
    return 0
