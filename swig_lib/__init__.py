"""SWIG qMRI SR: self-supervised weighted-image-guided quantitative MRI super-resolution.

A companion package to Samadifardheris et al., "Self-Supervised Weighted Image Guided
Quantitative MRI Super-Resolution". Units everywhere: times in ms, flip angles in degrees,
proton density (PD) in arbitrary units (a.u.).
"""

from __future__ import annotations

import torch

__version__ = "0.1.0"


def default_device() -> torch.device:
    """Return CUDA when it is available, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
