"""What the cross-sequence validation compares, and its settings (profile ``[<profile>.crosssequence]``).

The names of the protocols (quality levels of the other sequence), of the map sources (a
protocol's maps and their SR output) and of the Q_h reference, shared by the scores, the tables,
the pipeline and the figures; and :class:`CrossSequenceSettings`, read from the profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from swig_lib.experiments.config import Profile, check_known_fields
from swig_lib.experiments.crossseq.acquisition import ImageSettings
from swig_lib.experiments.crossseq.reconcnn import RECON_NAME, ReconSettings
from swig_lib.experiments.crossseq.sequence import AcquisitionSettings

#: Quality levels of the cross-sequence validation, in table order.
PROTOCOLS: tuple[str, str, str] = ("Acq1", "Acq5", RECON_NAME)
#: How the protocols are printed in figures (matplotlib mathtext).
PROTOCOL_LABELS: dict[str, str] = {"Acq1": "Acq1", "Acq5": "Acq5", RECON_NAME: "Acq5$^R$"}
#: Map sources: the protocol's maps (input) and the SR output.
SOURCES: tuple[str, str] = ("Q_l", "SR")
#: How the sources are printed (matplotlib mathtext).
SOURCE_LABELS: dict[str, str] = {"Q_l": "$Q_l$", "SR": r"$\hat{Q}_h$", "Q_h": "$Q_h$"}
#: Protocol and source name of the images synthesised from Q_h (the noise and bias floor).
REFERENCE = "Q_h"
#: The protocols whose maps the SR model is adapted to, and the source name of the adapted output.
ADAPT_PROTOCOLS: tuple[str, str] = ("Acq1", "Acq5")
ADAPTED = "SR+adapt"


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``[<profile>.crosssequence.calibration]`` table: how the radial sequence was calibrated.

    The chapter's acquisition settings were chosen so that the images synthesised from the Acq1
    maps match the acquired ones about as well as in the paper (Table II, "from Q_l"). To show
    that choice, the first ``subjects`` test subjects are also acquired with each of
    ``candidates`` (same slices, same acquired images, same noise seed) and scored "from Q_l".

    Attributes
    ----------
    subjects : int
        Test subjects (the first ones) acquired with every candidate (0 = none).
    candidates : tuple of (float, int, float)
        Alternative settings ``(noise_std, n_repetitions, kmax_fraction)`` of
        :class:`~swig_lib.experiments.crossseq.sequence.AcquisitionSettings`; the other fields
        are the chapter's.
    """

    subjects: int = 0
    candidates: tuple[tuple[float, int, float], ...] = ()

    def __post_init__(self) -> None:
        if self.subjects < 0:
            raise ValueError(f"calibration subjects must be >= 0, got {self.subjects}")
        for candidate in self.candidates:
            if len(candidate) != 3:
                raise ValueError(f"a calibration candidate is [noise_std, n_repetitions, kmax_fraction], got "
                                 f"{list(candidate)}")
        # Profile tables give lists: store hashable, typed tuples.
        object.__setattr__(self, "candidates", tuple((float(n), int(r), float(k)) for n, r, k in self.candidates))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CalibrationSettings:
        """Build from a profile table; unknown keys raise."""
        check_known_fields(cls, values, "crosssequence.calibration")
        return cls(**values)

    def acquisitions(self, chosen: AcquisitionSettings) -> dict[str, AcquisitionSettings]:
        """The candidates as acquisition settings, by label (``"noise 1, 4 spokes, kmax 0.5"``)."""
        return {calibration_label(n, r, k): dataclasses.replace(chosen, noise_std=n, n_repetitions=r,
                                                                kmax_fraction=k)
                for n, r, k in self.candidates}


def calibration_label(noise_std: float, n_repetitions: int, kmax_fraction: float) -> str:
    """How a setting of the radial sequence is named in the calibration table."""
    return f"noise {noise_std:g}, {n_repetitions} spokes, kmax {kmax_fraction:g}"


@dataclass(frozen=True)
class CrossSequenceSettings:
    """The ``[<profile>.crosssequence]`` section (see ``profiles.toml`` for each setting).

    Attributes
    ----------
    n_subjects : int
        Test subjects used, the first ones of the split (0 = all).
    slice_stride : int
        Every n-th of the stored slices whose brain area is at least ``min_brain_fraction`` of the
        largest (:func:`swig_lib.experiments.training.windows.select_slices`).
    min_brain_fraction : float
        See ``slice_stride``.
    intensity_match : {"affine", "none"}
        Synthesised images are matched to the acquired ones by a least-squares affine intensity
        map before the metrics, or compared raw.
    batch_size : int
        Slices per forward pass of the networks.
    workers : int
        Processes over which the test subjects are spread (1 = this process; more need as many
        free CPU cores, and a dataset object that pickles). Results do not depend on it.
    adapt_subjects : int
        The SR model is also adapted to the :data:`ADAPT_PROTOCOLS` maps of the first n test
        subjects (0 = all) ...
    adapt_steps : int
        ... with this many Adam steps of the self-supervised loss per volume (0 = no adaptation).
    acquisition : AcquisitionSettings
        The radial sequence (fields overridden by ``[...crosssequence.acquisition]``).
    images : ImageSettings
        The acquired weighted images (``[...crosssequence.images]``).
    recon : ReconSettings
        The Acq5^R CNN (``[...crosssequence.recon]``).
    calibration : CalibrationSettings
        The alternative settings shown beside the chosen ones (``[...crosssequence.calibration]``).
    """

    n_subjects: int = 0
    slice_stride: int = 2
    min_brain_fraction: float = 0.25
    intensity_match: str = "affine"
    batch_size: int = 8
    workers: int = 1
    adapt_subjects: int = 1
    adapt_steps: int = 0
    acquisition: AcquisitionSettings = field(default_factory=AcquisitionSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    recon: ReconSettings = field(default_factory=ReconSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    @property
    def acquisition_label(self) -> str:
        """The chapter's setting of the radial sequence as the calibration table names it."""
        radial = self.acquisition
        return calibration_label(radial.noise_std, radial.n_repetitions, radial.kmax_fraction)

    def describe(self) -> str:
        """The simulated acquisition and the comparison, in a few lines for a chapter's page."""
        radial, images = self.acquisition, self.images
        flair = images.flair_protocol
        match = "after a least-squares affine intensity match" if self.intensity_match == "affine" else "raw"
        return "\n".join((
            f"radial sequence: {radial.sequence.n_timepoints} time points per cycle, "
            f"{radial.n_repetitions} spokes per time point in Acq5 (a quarter in Acq1),",
            f"  k-space radius {radial.kmax_fraction:g} of Nyquist, noise {radial.noise_std:g} a.u.",
            f"acquired images: noise {images.noise:.0%} of the mean brain signal, "
            f"bias field with log-sd {images.bias:g}",
            f"T2-FLAIR: TR/TE/TI = {flair.tr:.0f}/{flair.te:.0f}/{flair.ti:.0f} ms",
            f"synthesised images are compared {match}",
        ))

    def __post_init__(self) -> None:
        if self.intensity_match not in ("affine", "none"):
            raise ValueError(f"intensity_match must be 'affine' or 'none', got {self.intensity_match!r}")
        if self.n_subjects < 0 or self.slice_stride < 1 or self.workers < 1:
            raise ValueError("need n_subjects >= 0, slice_stride >= 1 and workers >= 1")
        if self.adapt_subjects < 0 or self.adapt_steps < 0:
            raise ValueError("need adapt_subjects >= 0 and adapt_steps >= 0")

    @classmethod
    def from_profile(cls, profile: Profile) -> CrossSequenceSettings:
        """Read ``profile.crosssequence`` and its ``acquisition``, ``images``, ``recon``, ``calibration`` tables."""
        section = profile.crosssequence.to_dict()
        tables = {
            "acquisition": AcquisitionSettings.from_dict(section.pop("acquisition", {})),
            "images": ImageSettings.from_dict(section.pop("images", {})),
            "recon": ReconSettings.from_dict(section.pop("recon", {})),
            "calibration": CalibrationSettings.from_dict(section.pop("calibration", {})),
        }
        known = {f.name for f in dataclasses.fields(cls)} - set(tables)
        unknown = set(section) - known
        if unknown:
            raise KeyError(f"[crosssequence] section: unknown setting(s) {sorted(unknown)}")
        return cls(**section, **tables)
