"""The profile's ``[limits]`` section: subjects, lesion sizes and mismatch sweeps of the limits chapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swig_lib.experiments.config import Section


@dataclass(frozen=True, eq=False)
class LimitsSettings(Section):
    """``[limits]`` (see ``profiles.toml`` for the meaning of each setting).

    Attributes
    ----------
    n_subjects : int
        Test subjects used, the first ones of the split (0 = all).
    slices_per_subject : int
        Axial slices per subject: those of the stored slab with the most white matter (0 = every
        slice with at least ``eval.min_brain_fraction`` of the largest brain area).
    seed : int
        Seed of the lesion positions, the bias fields and the guide noise.
    ms_radii_mm : tuple of float
        Radii of the MS-like white-matter lesions, mm (one lesion per radius and subject).
    tumour_mm : (float, float)
        Radius of the tumour's necrotic core and outer radius of its oedema, mm.
    ring_mm : float
        Width of the ring of surrounding tissue a lesion's contrast is measured against, mm.
    bias : tuple of float
        Strengths of the receive bias field: standard deviation of its logarithm over the brain.
    protocol_pct : tuple of float
        Relative errors of the guides' TI, flip angle and TE, percent.
    fse_etl : tuple of int
        Echo-train lengths of the fast-spin-echo T2w guides.
    shift_mm : tuple of float
        In-plane shifts of the guides, mm.
    rotation_deg : tuple of float
        In-plane rotations of the guides, degrees.
    noise : tuple of float
        Guide noise: standard deviation relative to the guide's mean absolute signal in the brain.
    keep_gain : float
        Fraction of SR's gain over Q_l (SSIM and HFEN, every map) that the guidance asks to keep:
        the largest tested mismatch that keeps it is reported as tolerable.
    """

    n_subjects: int
    slices_per_subject: int
    seed: int
    ms_radii_mm: tuple[float, ...]
    tumour_mm: tuple[float, float]
    ring_mm: float
    bias: tuple[float, ...]
    protocol_pct: tuple[float, ...]
    fse_etl: tuple[int, ...]
    shift_mm: tuple[float, ...]
    rotation_deg: tuple[float, ...]
    noise: tuple[float, ...]
    keep_gain: float

    def __post_init__(self) -> None:
        core, outer = self.tumour_mm
        if min(self.n_subjects, self.slices_per_subject) < 0:
            raise ValueError("need n_subjects >= 0 and slices_per_subject >= 0")
        if not 0 <= core < outer or min(self.ms_radii_mm, default=1.0) <= 0 or self.ring_mm <= 0:
            raise ValueError(f"need 0 <= core < outer radius (tumour_mm {list(self.tumour_mm)}), "
                             f"positive ms_radii_mm and ring_mm")
        if not 0 < self.keep_gain <= 1:
            raise ValueError(f"keep_gain must lie in (0, 1], got {self.keep_gain}")
        if min(self.fse_etl, default=1) < 1 or min((*self.bias, *self.noise), default=0.0) < 0:
            raise ValueError("echo-train lengths must be >= 1; bias and noise levels >= 0")

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> LimitsSettings:
        """Read the profile's ``limits`` table (unknown or missing keys raise KeyError, wrong types TypeError)."""
        return cls.from_table(dict(profile["limits"]), "limits")
