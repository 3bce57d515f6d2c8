"""``swig data``: build (or verify) the digital subjects of a profile."""

from __future__ import annotations

import argparse
import json

from swig_lib.cli.common import add_command, check_writable, positive_int
from swig_lib.experiments.config import PROFILES


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``swig data``."""
    from swig_lib.experiments.subjects.dataset import ANATOMY_SOURCES

    parser = add_command(
        subparsers, "data", common, summary="build (or verify) the digital subjects of a profile",
        description="""Build the digital subjects of a profile under <data>/<dataset> (e.g.
        data/mni152-quick), or reuse them when their settings, code fingerprint and checksums match.
        Each subject holds, as NIfTI files in a BIDS-like layout (sub-XX/anat), the high-resolution
        maps Q_h (PD in a.u., T1 and T2 in ms, 1 mm grid), the guides T1w and T2w, the low-resolution
        maps Q_l (the profile's k-space fraction and noise level, Φ of the paper's eq. 3), the brain
        mask and the tissue labels.""",
        examples=["swig data --profile quick                           # the 27 digital subjects under data/",
                  "swig data --profile quick --anatomy-source synthsr  # from five real brains' label maps",
                  "swig data --profile smoke --data /tmp/swig-data --force"],
    )
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="experiment profile: number of subjects, slices, seeds (default quick)")
    parser.add_argument("--data", "--root", dest="root", default="data",
                        help="data root folder, as for the other commands (default: data)")
    parser.add_argument("--anatomy-source", choices=tuple(ANATOMY_SOURCES), default=None,
                        help="where the subjects' anatomy comes from (default: the profile's data.anatomy_source); "
                        "synthsr builds the label-derived dataset of the book's chapters 01 and 10 (the profile's "
                        "[generalisation] section: held-out brains for validation and test), mix its own "
                        "dataset mix-<profile>")
    parser.add_argument("--force", action="store_true", help="rebuild even if intact")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="processes building subjects in parallel (default: CPU cores, at most 4)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build or verify the dataset and print a summary."""
    from swig_lib.experiments.config import load_profile
    from swig_lib.experiments.subjects.dataset import MANIFEST, SPLITS, Dataset, build_dataset, folder_size

    check_writable(args.root, "--data")
    profile = load_profile(args.profile)
    source = args.anatomy_source
    if source == "synthsr":  # the label-derived subjects of chapters 01 and 10 ([generalisation])
        from swig_lib.experiments.evaluation.generalisation import label_profile

        profile = label_profile(profile)
    elif source is not None and source != profile.data["anatomy_source"]:
        overrides = {"data.anatomy_source": source, "data.dataset": f"{source}-{args.profile}"}
        profile = load_profile(args.profile, overrides)
    folder, reused = build_dataset(profile, args.root, force=args.force, progress=not args.no_progress,
                                   workers=args.workers)
    if reused:
        print(f"reusing {folder}: settings match and checksums verify")
    dataset = Dataset(folder, json.loads((folder / MANIFEST).read_text()))
    sizes = {split: len(dataset.subject_ids(split)) for split in SPLITS}
    print(f"{folder}: {sum(sizes.values())} subjects (train {sizes['train']}, val {sizes['val']}, "
          f"test {sizes['test']}), grid {dataset.manifest['shape']}, "
          f"{folder_size(folder) / 2**20:.0f} MiB")
    return 0
