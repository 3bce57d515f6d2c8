"""Training throughput (slices/s) and inference time per volume of the SWIG network.

Runs the model and the full self-supervised loss (eq. 12, exact Φ on the crop) on synthetic
tensors of the size a profile trains on, on the CPU and, when present, on CUDA. No dataset needed.

    python benchmarks/bench_training.py --profile quick [--crop 150 180] [--grid 182 218] \
        [--slices 150] [--threads 2] [--out results/quick/benchmarks/training.csv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from swig_lib.core.io import write_csv
from swig_lib.core.kspace import KSpaceTruncation
from swig_lib.core.losses import swig_loss
from swig_lib.core.models import SwigResNet
from swig_lib.experiments.config import PROFILES, Profile, load_profile
from swig_lib.experiments.inference import predict_volume


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training(
    profile: Profile, crop: tuple[int, int], grid: tuple[int, int], device: torch.device, steps: int
) -> float:
    """Training slices per second (forward, both loss terms, backward, Adam step)."""
    batch = profile.train.batch_size
    gen = torch.Generator().manual_seed(0)
    q_l = (
        torch.tensor([80.0, 1100.0, 130.0]).view(1, 3, 1, 1)
        * (0.5 + torch.rand((batch, 3, *crop), generator=gen))
    ).to(device)
    guides = torch.randn((batch, 2, *crop), generator=gen).to(device)
    c_l = (50 * torch.rand((batch, 12, *crop), generator=gen)).to(device)
    mask = torch.ones((batch, *crop), dtype=torch.bool, device=device)
    phi = KSpaceTruncation(0.5, 0.1).on_window(grid, crop, device=device)
    model = SwigResNet(["T1w", "T2w"], True, [80.0, 1100.0, 130.0], **profile.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=profile.train.lr)

    def step() -> None:
        q_hat = model(q_l, guides, mask)
        terms = swig_loss(
            q_hat,
            c_l,
            {"T1w": guides[:, 0], "T2w": guides[:, 1]},
            mask,
            mask,
            0.1,
            phi,
            profile.train.alpha,
        )
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def bench_inference(
    profile: Profile, crop: tuple[int, int], grid: tuple[int, int], n_slices: int, device: torch.device
) -> float:
    """Seconds to super-resolve one (grid, n_slices) volume whose brain fills ``crop`` minus the margin."""
    model = (
        SwigResNet(["T1w", "T2w"], True, [80.0, 1100.0, 130.0], **profile.model)
        .to(device)
        .eval()
    )
    margin = model.receptive_radius
    mask = torch.zeros((*grid, n_slices), dtype=torch.bool)
    x0, y0 = (grid[0] - crop[0]) // 2 + margin, (grid[1] - crop[1]) // 2 + margin
    mask[x0 : x0 + crop[0] - 2 * margin, y0 : y0 + crop[1] - 2 * margin] = True
    q_l = (torch.tensor([80.0, 1100.0, 130.0]).view(3, 1, 1, 1) * mask).numpy()
    guides = {"T1w": torch.randn(mask.shape).numpy(), "T2w": torch.randn(mask.shape).numpy()}
    start = time.perf_counter()
    predict_volume(model, q_l, guides, mask.numpy(), profile.eval.batch_size, device=device)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument(
        "--crop", type=int, nargs=2, default=(150, 180), help="training window (voxels)"
    )
    parser.add_argument(
        "--grid", type=int, nargs=2, default=(182, 218), help="in-plane acquisition grid (voxels)"
    )
    parser.add_argument(
        "--slices", type=int, default=150, help="axial slices of the inference volume"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (atomically)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    crop, grid = tuple(args.crop), tuple(args.grid)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        rows.append(
            {
                "profile": args.profile,
                "device": str(device),
                "threads": torch.get_num_threads() if device.type == "cpu" else None,
                "width": profile.model.width,
                "crop": f"{crop[0]}x{crop[1]}",
                "batch_size": profile.train.batch_size,
                "train_slices_per_s": bench_training(profile, crop, grid, device, args.steps),
                "inference_s_per_volume": bench_inference(profile, crop, grid, args.slices, device),
                "volume": f"{grid[0]}x{grid[1]}x{args.slices}",
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if args.out:
        write_csv(table, args.out)


if __name__ == "__main__":
    main()
