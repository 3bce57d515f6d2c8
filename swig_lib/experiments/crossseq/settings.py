"""What the cross-sequence validation compares, and its settings (profile ``[<profile>.crosssequence]``).

The names of the protocols (quality levels of the other sequence), of the map sources (a
protocol's maps and their SR output) and of the Q_h reference, shared by the scores, the tables,
the pipeline and the figures; and :class:`CrossSequenceSettings`, read from the profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from swig_lib.experiments.config import Profile
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
        """Read ``profile.crosssequence`` and its ``acquisition``, ``images``, ``recon`` tables."""
        section = profile.crosssequence.to_dict()
        tables = {
            "acquisition": AcquisitionSettings.from_dict(section.pop("acquisition", {})),
            "images": ImageSettings.from_dict(section.pop("images", {})),
            "recon": ReconSettings.from_dict(section.pop("recon", {})),
        }
        known = {f.name for f in dataclasses.fields(cls)} - set(tables)
        unknown = set(section) - known
        if unknown:
            raise KeyError(f"[crosssequence] section: unknown setting(s) {sorted(unknown)}")
        return cls(**section, **tables)
