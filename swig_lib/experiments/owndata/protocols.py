"""Guide protocols against a model's: the tolerance, the sidecar check, the one-line refusal.

A SWIG network sees its guides as z-scored images, so a guide acquired with another protocol than
the training guides (another TE, TI or flip angle) shows the network a contrast it never saw. ``swig
apply`` therefore reads the BIDS sidecar of every guide (``<image>.json`` next to
``<image>.nii.gz``; :func:`sidecar_path`), compares its protocol with the one the model was
trained with (:class:`swig_lib.experiments.training.checkpoints.Acquisition`) and refuses a guide
that differs beyond :class:`ProtocolTolerance`, in one line naming the sidecar, the field, both
values and :data:`OVERRIDE_FLAG`. Own-data training applies the same check between subjects: one
model has one protocol per guide.

Fields are compared as their sidecar keys read (times in seconds, flip angles in degrees); an
IR-SPGR without ``SwigInversionDelay`` has TD = 0 and an MPRAGE without ``SwigCentrePulse`` its
centre pulse in the middle of the readout, as :mod:`swig_lib.core.sequences` computes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from swig_lib.core.io import DataValidationError, PathLike
from swig_lib.core.sequences import SEQUENCE_KEY, GuideProtocol, ProtocolError, read_sidecar, sidecar_fields

#: The ``swig apply`` option that accepts guides whose protocol differs from the model's.
OVERRIDE_FLAG = "--accept-protocol-mismatch"

# Sidecar keys that are not times (compared with their own rule).
_NOT_TIMES = (SEQUENCE_KEY, "FlipAngle", "SwigReadoutPulses", "SwigCentrePulse")


class ProtocolMismatchError(DataValidationError):
    """A guide's protocol differs from the model's (or from another subject's) beyond the tolerance."""


@dataclass(frozen=True)
class ProtocolTolerance:
    """How far a guide's protocol may lie from the model's.

    Attributes
    ----------
    time : float
        Relative tolerance on every time (TR, TE, TI, and TD, TR_prep where used): 0.05 accepts
        TE = 100 ms for a model trained with 95.3-105 ms.
    flip : float
        Absolute tolerance on the flip angle, degrees.
    """

    time: float = 0.05
    flip: float = 2.0

    def __post_init__(self) -> None:
        if not (self.time >= 0 and self.flip >= 0):
            raise ValueError(f"tolerances must be non-negative; got time {self.time}, flip {self.flip}")


#: The default tolerance (5 % on times, 2 degrees on the flip angle).
DEFAULT_TOLERANCE = ProtocolTolerance()


def sidecar_path(image: PathLike) -> Path:
    """The BIDS sidecar of an image: ``x.nii.gz`` or ``x.nii`` → ``x.json`` in the same folder."""
    path = Path(image)
    for suffix in (".nii.gz", ".nii"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def read_guide_sidecar(path: PathLike) -> GuideProtocol:
    """:func:`swig_lib.core.sequences.read_sidecar` with its error as a user error (same one-line message).

    Raises
    ------
    swig_lib.core.io.DataValidationError
        When the sidecar is unreadable, or a field is missing or implausible; the message names
        the file, the sidecar key and the fix.
    """
    try:
        return read_sidecar(path)
    except ProtocolError as err:
        raise DataValidationError(str(err)) from err


def _effective(protocol: GuideProtocol) -> GuideProtocol:
    """``protocol`` with the defaults of its optional fields filled in (IR-SPGR TD, MPRAGE centre pulse)."""
    if protocol.sequence == "IR-SPGR" and protocol.td is None:
        return dataclasses.replace(protocol, td=0.0)
    if protocol.sequence == "MPRAGE" and protocol.centre_pulse is None:
        return dataclasses.replace(protocol, centre_pulse=protocol.readout_pulses // 2)
    return protocol


@dataclass(frozen=True)
class Difference:
    """A field of a guide protocol beyond the tolerance, as its sidecar key reads.

    Attributes
    ----------
    key : str
        The sidecar key (``"EchoTime"``, ``"FlipAngle"``, ...) or ``"sequence type"``.
    given, expected : str
        The two values with their units (times in s, as sidecars give them; flip angles in degrees).
    limit : str
        The tolerance exceeded (``"by more than 5 %"``), empty where values must be equal.
    """

    key: str
    given: str
    expected: str
    limit: str

    def describe(self, expected_source: str) -> str:
        """``"<key> = <given> differs from <expected> of <expected_source> <limit>"``."""
        return f"{self.key} = {self.given} differs from {self.expected} of {expected_source}" + (
            f" {self.limit}" if self.limit else "")


def protocol_difference(given: GuideProtocol, expected: GuideProtocol,
                        tolerance: ProtocolTolerance) -> Difference | None:
    """The first field in which ``given`` differs from ``expected`` beyond ``tolerance``, or None.

    Parameters
    ----------
    given, expected : GuideProtocol
        Times in ms, flip angles in degrees.
    tolerance : ProtocolTolerance
        Relative on times, absolute on the flip angle; the sequence type and pulse counts must
        be equal.
    """
    if given.sequence != expected.sequence:
        return Difference("sequence type", given.sequence, expected.sequence, "")
    ours, theirs = sidecar_fields(_effective(given)), sidecar_fields(_effective(expected))
    for key, want in theirs.items():
        have = ours[key]
        if key in _NOT_TIMES[2:] and have != want:
            return Difference(key, str(have), str(want), "")
        if key == "FlipAngle" and abs(have - want) > tolerance.flip:
            return Difference(key, f"{have:g} degrees", f"{want:g} degrees", f"by more than {tolerance.flip:g} degrees")
        if key not in _NOT_TIMES and abs(have - want) > tolerance.time * abs(want):
            return Difference(key, f"{have:g} s", f"{want:g} s", f"by more than {100 * tolerance.time:g} %")
    return None


@dataclass(frozen=True)
class GuideCheck:
    """The outcome of checking one guide against the model's protocol.

    Attributes
    ----------
    protocol : GuideProtocol
        The protocol the guide was acquired with: its sidecar's, or the model's when it has none.
    sidecar : Path or None
        The sidecar read (None: the image has none, nothing was checked).
    status : str
        ``"no sidecar: not checked"``, ``"within tolerance"`` or ``"mismatch accepted: <difference>"``.
    """

    protocol: GuideProtocol
    sidecar: Path | None
    status: str


def check_guides(images: Mapping[str, PathLike], expected: Mapping[str, GuideProtocol], model: PathLike,
                 tolerance: ProtocolTolerance = DEFAULT_TOLERANCE, accept: bool = False) -> dict[str, GuideCheck]:
    """Check the sidecar of every guide image against the model's protocol of that guide.

    Parameters
    ----------
    images : mapping of str to path
        Guide images by name (``{"T1w": "t1w.nii.gz", ...}``); each image's sidecar is
        :func:`sidecar_path` of it, read when it exists.
    expected : mapping of str to GuideProtocol
        The model's protocols by guide name.
    model : path
        The model's file, for messages.
    tolerance : ProtocolTolerance
        How far a sidecar may differ.
    accept : bool
        Accept a difference beyond the tolerance (:data:`OVERRIDE_FLAG`): the check records it
        instead of raising.

    Returns
    -------
    dict of str to GuideCheck
        One per guide, in the order of ``images``.

    Raises
    ------
    ProtocolMismatchError
        Without ``accept``, for the first guide whose sidecar differs beyond the tolerance:
        ``<sidecar>: <key> = <value> differs from <model's value> of the model <model> by more
        than <tolerance>; ...; or pass --accept-protocol-mismatch ...``.
    swig_lib.core.io.DataValidationError
        For a sidecar that is unreadable or lacks a field its sequence needs.
    """
    checks = {}
    for name, image in images.items():
        sidecar = sidecar_path(image)
        if not sidecar.is_file():
            checks[name] = GuideCheck(expected[name], None, "no sidecar: not checked")
            continue
        protocol = read_guide_sidecar(sidecar)
        difference = protocol_difference(protocol, expected[name], tolerance)
        if difference is None:
            checks[name] = GuideCheck(protocol, sidecar, "within tolerance")
        elif accept:
            checks[name] = GuideCheck(protocol, sidecar, f"mismatch accepted: {difference.describe('the model')}")
        else:
            raise ProtocolMismatchError(
                f"{sidecar}: {difference.describe(f'the model {model}')}; use a {name} guide acquired with the "
                f"model's protocol, or pass {OVERRIDE_FLAG} to use it anyway (with --adapt N to fine-tune the "
                "model on it)"
            )
    return checks
