"""Guide sequences as data: a registry of differentiable signal models and the guide protocol.

A guide (the weighted HR image of eq. 4) is described by a :class:`GuideProtocol`: a sequence
type, a key of :data:`SEQUENCES`, and its timing. :func:`guide_signal` synthesises the guide from
PD, T1 and T2 maps with the sequence's signal model. Protocols come from a named preset
(:data:`PRESETS`: the paper's guides) or from a BIDS-style JSON sidecar (:func:`read_sidecar`).

Every model takes torch tensors that broadcast against each other (float32 or float64, any
device) and is differentiable with respect to PD, T1 and T2. Units: PD in a.u., T1, T2 and all
sequence times in ms, flip angles in degrees; BIDS sidecars give times in seconds and are
converted at the boundary (:func:`read_sidecar`). Like the paper, gradient-echo models use T2
where the scanner sees T2*. Relaxation times are clamped at
:data:`swig_lib.core.physics.MIN_RELAXATION_MS`, as in :mod:`swig_lib.core.physics`, whose
functions (eq. 13-18) the models reuse.

=========  =========================================================  =====================
name       signal (PD = 1, E1 = e^(−TR/T1), E2 = e^(−TE/T2))          protocol fields
=========  =========================================================  =====================
IR-SPGR    eq. 15-16 (the paper's T1w guide)                           tr, te, ti, flip, td
SE-alpha   eq. 17, spin echo with refocusing angle α (paper's T2w)     tr, te, flip
IR         ``|1 − 2e^(−TI/T1) + E1|·E2``, magnitude IR-SE / IR-TSE     tr, te, ti
SPGR       sin α·(1 − E1)/(1 − cos α·E1)·E2 (Ernst)                    tr, te, flip
SE         (1 − E1)·E2, spin echo with TR recovery                     tr, te
FLAIR      (1 − 2e^(−TI/T1) + E1)·E2, eq. 18 (signed)                  tr, te, ti
MPRAGE     steady state of the MP-RAGE cycle (Deichmann et al. 2000)   tr, te, ti, flip,
                                                                       tr_prep, readout_pulses,
                                                                       centre_pulse
=========  =========================================================  =====================
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from swig_lib.core import physics
from swig_lib.core.physics import decay
from swig_lib.core.protocols import GUIDE_PROTOCOLS, FlairProtocol

#: Longest plausible repetition or inversion time, ms (a sidecar value above 30 is ms, not s).
MAX_TIME_MS = 30_000.0
#: Longest plausible repetition time of a gradient-echo readout (SPGR, IR-SPGR, MPRAGE), ms: a
#: 2-D FLASH reaches about 1 s; a sidecar TR of 6.6 there is 6.6 ms written as seconds.
MAX_GRE_TR_MS = 2_000.0

#: Protocol fields that hold times (ms); the others are the flip angle and pulse counts.
_TIME_FIELDS = ("tr", "te", "ti", "td", "tr_prep")
# Sequences whose ``tr`` is that of a gradient-echo readout.
_GRADIENT_ECHO = ("IR-SPGR", "SPGR", "MPRAGE")


class ProtocolError(ValueError):
    """A guide protocol is missing a field or has an implausible one.

    The message names the source (a sidecar file, or ``GuideProtocol`` when built in code), the
    field and how to fix it.
    """


@dataclass(frozen=True)
class GuideProtocol:
    """Sequence type and timing of a guide; validated on construction.

    Fields a sequence does not use must be ``None`` (:attr:`SequenceModel.required` and
    :attr:`SequenceModel.optional` list those it uses).

    Attributes
    ----------
    sequence : str
        Key of :data:`SEQUENCES`.
    tr : float, optional
        Repetition time, ms: of the whole sequence (SE, SE-alpha, IR, FLAIR), or of the gradient
        echo readout (SPGR, IR-SPGR, MPRAGE).
    te : float, optional
        Echo time, ms.
    ti : float, optional
        Inversion time, ms: inversion to acquisition (IR-SPGR: TP of eq. 15; MPRAGE: inversion
        to the readout pulse that acquires the centre of k-space).
    flip : float, optional
        Flip angle, degrees (SE-alpha: the refocusing angle α of eq. 17).
    td : float, optional
        IR-SPGR: delay before the inversion, ms (default 0, the paper's).
    tr_prep : float, optional
        MPRAGE: time between two inversions, ms.
    readout_pulses : int, optional
        MPRAGE: gradient-echo readout pulses per inversion.
    centre_pulse : int, optional
        MPRAGE: index (from 0) of the pulse that acquires the centre of k-space (default
        ``readout_pulses // 2``, linear phase-encode order).

    Raises
    ------
    ProtocolError
        If the sequence is unknown, a required field is missing, an unused field is set, or a
        value is implausible (non-positive or non-finite time, TE ≥ TR, flip angle outside
        (0, 180], TI ≥ TR for IR and FLAIR, MPRAGE timing that does not fit in ``tr_prep``).
    """

    sequence: str
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    flip: float | None = None
    td: float | None = None
    tr_prep: float | None = None
    readout_pulses: int | None = None
    centre_pulse: int | None = None

    def __post_init__(self) -> None:
        if self.sequence not in SEQUENCES:
            raise ProtocolError(
                f"GuideProtocol: sequence {self.sequence!r} is unknown; use one of {', '.join(SEQUENCES)}"
            )
        values = {name: getattr(self, name) for name in _FIELDS}
        _validate(self.sequence, values, _Names("GuideProtocol", {name: name for name in _FIELDS}, seconds=False))

    @property
    def model(self) -> SequenceModel:
        """The signal model of :attr:`sequence`."""
        return SEQUENCES[self.sequence]


@dataclass(frozen=True)
class SequenceModel:
    """A registered signal model.

    Attributes
    ----------
    name : str
        Registry key.
    signal : callable
        ``signal(protocol, pd, t1, t2) -> Tensor``: the guide image (a.u.).
    required : tuple of str
        :class:`GuideProtocol` fields the model needs.
    optional : tuple of str
        Fields it uses when given (with the default its docstring states).
    summary : str
        One line: what the sequence is.
    """

    name: str
    signal: Callable[[GuideProtocol, Tensor, Tensor, Tensor], Tensor]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    summary: str


# ---------------------------------------------------------------------------------------------
# Signal models not in swig_lib.core.physics
# ---------------------------------------------------------------------------------------------


def spoiled_gradient_echo(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float, flip: float) -> Tensor:
    """Spoiled gradient echo in steady state, the Ernst equation.

    S = PD·sin α·(1 − E1)/(1 − cos α·E1)·e^(−TE/T2), E1 = e^(−TR/T1) (Ernst & Anderson, Rev. Sci.
    Instrum. 37:93, 1966; Bernstein, King & Zhou, *Handbook of MRI Pulse Sequences*, Elsevier,
    2004). It is sin α times the longitudinal steady state of eq. 16
    (:func:`swig_lib.core.physics.spgr_steady_state`). T2 stands in for T2*.

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr, te : float
        Repetition and echo time, ms.
    flip : float
        Flip angle α, degrees.
    """
    return math.sin(math.radians(flip)) * physics.spgr_steady_state(pd, t1, t2, tr, te, flip)


def spin_echo_recovery(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float) -> Tensor:
    """Spin echo (or turbo spin echo, at its effective TE) with recovery over TR.

    S = PD·(1 − e^(−TR/T1))·e^(−TE/T2): eq. 13 followed by eq. 14 (Bernstein et al., *Handbook
    of MRI Pulse Sequences*, 2004, for TE ≪ TR), assuming 90° excitation and ideal 180°
    refocusing.

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr, te : float
        Repetition and echo time, ms.
    """
    return physics.spin_echo(physics.saturation_recovery(pd, t1, tr), t2, te)


def inversion_recovery(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float, ti: float) -> Tensor:
    """Magnitude inversion recovery (IR-SE, IR-TSE): ``|PD·(1 − 2e^(−TI/T1) + e^(−TR/T1))|·e^(−TE/T2)``.

    The magnitude of eq. 18 (:func:`swig_lib.core.physics.flair` with ``magnitude=True``), the
    image a scanner reconstructs (Bydder & Young, J. Comput. Assist. Tomogr. 9:659, 1985;
    Bernstein et al., *Handbook of MRI Pulse Sequences*, 2004; TE ≪ TR). With a
    readout of duration T_ro that leaves M_z = 0, the recovery term is e^(−(TR − T_ro)/T1),
    independent of TI; TR here is that effective time.

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr, te, ti : float
        Repetition, echo and inversion time, ms.
    """
    return physics.flair(pd, t1, t2, ti=ti, tr=tr, te=te, magnitude=True)


def mprage(
    pd: Tensor,
    t1: Tensor,
    t2: Tensor,
    tr: float,
    te: float,
    ti: float,
    flip: float,
    tr_prep: float,
    readout_pulses: int,
    centre_pulse: int,
) -> Tensor:
    """MP-RAGE: the signal of the centre-of-k-space pulse in the steady state of the cycle.

    The closed-form steady state of Deichmann et al., NeuroImage 12:112 (2000), as written out
    by Wang et al., PLoS ONE 9:e96899 (2014). One cycle of length ``tr_prep``: an ideal inversion, a
    delay T_A = TI − c·τ, ``n`` readout pulses of angle α every τ = TR, then a delay
    T_D = tr_prep − T_A − n·τ. With E1 = e^(−τ/T1), A = cos α·E1 and the SPGR steady state
    M_ss = PD·(1 − E1)/(1 − A) (eq. 16 without T2 decay), M_z before readout pulse j is
    M_j = M_ss + (M_0 − M_ss)·A^j. The cycle is periodic, so M_z before the inversion, M_a, solves::

        M_a·(1 + D·Aⁿ·E_A) = D·M_ss·(1 − Aⁿ) + D·Aⁿ·PD·(1 − E_A) + PD·(1 − D)

    with E_A = e^(−T_A/T1), D = e^(−T_D/T1); then M_0 = −M_a·E_A + PD·(1 − E_A) and
    S = sin α·M_c·e^(−TE/T2) for the centre pulse c.

    Parameters
    ----------
    pd : Tensor
        Proton density, a.u.
    t1, t2 : Tensor
        Relaxation times, ms.
    tr : float
        Readout (echo-spacing) repetition time τ, ms.
    te : float
        Echo time of the readout, ms.
    ti : float
        Inversion to the centre pulse, ms (the scanner's TI).
    flip : float
        Readout flip angle α, degrees.
    tr_prep : float
        Time between two inversions, ms.
    readout_pulses : int
        Readout pulses per cycle, n ≥ 1.
    centre_pulse : int
        Index c (0 ≤ c < n) of the pulse at the centre of k-space.
    """
    t_a = ti - centre_pulse * tr
    t_d = tr_prep - t_a - readout_pulses * tr
    cos_a = math.cos(math.radians(flip))
    a = cos_a * decay(tr, t1)
    a_n = a**readout_pulses
    m_ss = physics.spgr_steady_state(pd, t1, t2, tr, 0.0, flip)
    e_a, d = decay(t_a, t1), decay(t_d, t1)
    m_a = (d * m_ss * (1.0 - a_n) + d * a_n * physics.saturation_recovery(pd, t1, t_a)
           + physics.saturation_recovery(pd, t1, t_d)) / (1.0 + d * a_n * e_a)
    m_0 = -m_a * e_a + physics.saturation_recovery(pd, t1, t_a)
    m_c = m_ss + (m_0 - m_ss) * a**centre_pulse
    return math.sin(math.radians(flip)) * physics.spin_echo(m_c, t2, te)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


_MODELS = (
    SequenceModel(
        "IR-SPGR",
        lambda p, pd, t1, t2: physics.ir_spgr(pd, t1, t2, p.tr, p.te, p.ti, p.td if p.td is not None else 0.0, p.flip),
        ("tr", "te", "ti", "flip"), ("td",),
        "inversion-recovery spoiled gradient echo, eq. 15-16 (the paper's T1w guide; ti is TP)",
    ),
    SequenceModel(
        "SE-alpha",
        lambda p, pd, t1, t2: physics.se_guide(pd, t1, t2, p.tr, p.te, p.flip),
        ("tr", "te", "flip"), (),
        "spin echo with refocusing angle alpha, eq. 17 (the paper's T2w guide)",
    ),
    SequenceModel(
        "IR",
        lambda p, pd, t1, t2: inversion_recovery(pd, t1, t2, p.tr, p.te, p.ti),
        ("tr", "te", "ti"), (),
        "magnitude inversion recovery (IR-SE, IR-TSE)",
    ),
    SequenceModel(
        "SPGR",
        lambda p, pd, t1, t2: spoiled_gradient_echo(pd, t1, t2, p.tr, p.te, p.flip),
        ("tr", "te", "flip"), (),
        "spoiled gradient echo (Ernst equation)",
    ),
    SequenceModel(
        "SE",
        lambda p, pd, t1, t2: spin_echo_recovery(pd, t1, t2, p.tr, p.te),
        ("tr", "te"), (),
        "spin echo or turbo spin echo with recovery over TR",
    ),
    SequenceModel(
        "FLAIR",
        lambda p, pd, t1, t2: physics.flair(pd, t1, t2, p.ti, p.tr, p.te),
        ("tr", "te", "ti"), (),
        "fluid-attenuated inversion recovery, eq. 18 (signed)",
    ),
    SequenceModel(
        "MPRAGE",
        lambda p, pd, t1, t2: mprage(
            pd, t1, t2, p.tr, p.te, p.ti, p.flip, p.tr_prep, p.readout_pulses, _centre(dataclasses.asdict(p))
        ),
        ("tr", "te", "ti", "flip", "tr_prep", "readout_pulses"), ("centre_pulse",),
        "magnetisation-prepared rapid gradient echo (Deichmann et al. 2000)",
    ),
)

#: The signal models, by sequence type.
SEQUENCES: dict[str, SequenceModel] = {m.name: m for m in _MODELS}

_FIELDS = tuple(f.name for f in dataclasses.fields(GuideProtocol) if f.name != "sequence")


def guide_signal(protocol: GuideProtocol, pd: Tensor, t1: Tensor, t2: Tensor) -> Tensor:
    """Synthesise the guide of ``protocol`` from maps (M_g^j of eq. 4).

    Parameters
    ----------
    protocol : GuideProtocol
        Sequence type and timing (ms, degrees).
    pd, t1, t2 : Tensor
        PD (a.u.), T1 and T2 (ms); broadcast against each other.

    Returns
    -------
    Tensor
        The guide image, a.u.
    """
    return protocol.model.signal(protocol, pd, t1, t2)


# ---------------------------------------------------------------------------------------------
# Validation (shared by GuideProtocol and read_sidecar)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Names:
    """How messages name things: the source, each field's name there, and the time unit."""

    source: str
    field: Mapping[str, str]
    seconds: bool

    def value(self, name: str, value: float) -> str:
        """``value`` with its unit: times in the source's unit (s or ms), flip angles in degrees."""
        if name in _TIME_FIELDS:
            return f"{value / 1000.0:g} s" if self.seconds else f"{value:g} ms"
        return f"{value:g} degrees" if name == "flip" else f"{value:g}"

    def error(self, name: str, problem: str, fix: str) -> ProtocolError:
        """Build the error for field ``name``: ``source: field problem; fix``."""
        return ProtocolError(f"{self.source}: {self.field[name]} {problem}; {fix}")

    def how_to_give(self, name: str) -> str:
        """Say how to give a missing or malformed field."""
        if name == "flip":
            return f"give {self.field[name]} in degrees"
        if name in _TIME_FIELDS:
            return f"give {self.field[name]} in {'seconds, as BIDS does' if self.seconds else 'ms'}"
        return f"give {self.field[name]} as a whole number"


def _centre(values: Mapping[str, Any]) -> int:
    """MPRAGE centre pulse: given, or the middle of the readout (linear order)."""
    centre = values.get("centre_pulse")
    return centre if centre is not None else values["readout_pulses"] // 2


def _validate(sequence: str, values: Mapping[str, Any], names: _Names) -> None:
    """Raise :class:`ProtocolError` on the first missing, unused or implausible field.

    ``values`` maps protocol fields to values in ms and degrees (``None``: not given).
    """
    model = SEQUENCES[sequence]
    for name in model.required:
        if values.get(name) is None:
            raise names.error(name, f"is missing (needed by {sequence})", names.how_to_give(name))
    for name in _FIELDS:
        value = values.get(name)
        if value is None:
            continue
        if name not in model.required + model.optional:
            raise names.error(name, f"is not used by {sequence}", "leave it out")
        if name in ("readout_pulses", "centre_pulse"):
            if isinstance(value, bool) or not isinstance(value, int) or value < (name == "readout_pulses"):
                raise names.error(name, f"= {value!r} is not a pulse count", names.how_to_give(name))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise names.error(name, f"= {value!r} is not a finite number", names.how_to_give(name))
        elif name == "flip" and not 0.0 < value <= 180.0:
            raise names.error(name, f"= {names.value(name, value)} is outside (0, 180]",
                              "give the flip angle in degrees")
        elif name == "td" and value < 0.0:
            raise names.error(name, f"= {names.value(name, value)} is negative", "give the delay before the inversion")
        elif name in _TIME_FIELDS and name != "td" and not 0.0 < value <= MAX_TIME_MS:
            raise names.error(name, f"= {names.value(name, value)} is not in (0, {names.value(name, MAX_TIME_MS)}]",
                              names.how_to_give(name))
    tr, te, ti = values["tr"], values["te"], values.get("ti")
    if sequence in _GRADIENT_ECHO and tr > MAX_GRE_TR_MS:
        raise names.error("tr", f"= {names.value('tr', tr)} is implausible for a gradient-echo readout "
                          f"(above {names.value('tr', MAX_GRE_TR_MS)})",
                          f"check the units ({'seconds: 0.0066 for 6.6 ms' if names.seconds else 'ms'})")
    if te >= tr:
        raise names.error("te", f"= {names.value('te', te)} is not below {names.field['tr']} = {names.value('tr', tr)}",
                          "check the units and that both belong to this image")
    if sequence in ("IR", "FLAIR") and ti >= tr:
        raise names.error("ti", f"= {names.value('ti', ti)} is not below {names.field['tr']} = {names.value('tr', tr)}",
                          "check the units and that both belong to this image")
    if sequence == "MPRAGE":
        centre, pulses, tr_prep = _centre(values), values["readout_pulses"], values["tr_prep"]
        if centre >= pulses:
            raise names.error("centre_pulse", f"= {centre} is not below {names.field['readout_pulses']} = {pulses}",
                              "give the index (from 0) of the pulse at the centre of k-space")
        if ti < centre * tr:
            raise names.error("ti", f"= {names.value('ti', ti)} is shorter than the {centre} readout pulses "
                              f"({names.field['tr']} = {names.value('tr', tr)}) before the centre of k-space",
                              "give the time from the inversion to the centre of k-space")
        if tr_prep < ti + (pulses - centre) * tr:
            raise names.error("tr_prep", f"= {names.value('tr_prep', tr_prep)} is shorter than "
                              f"{names.field['ti']} plus the {pulses - centre} readout pulses after the centre "
                              "of k-space", "give the time between two inversions")


#: The paper's guides (and the FLAIR of :class:`swig_lib.core.protocols.FlairProtocol`), built
#: from :mod:`swig_lib.core.protocols` so that they give exactly the images of
#: :func:`swig_lib.core.physics.weighted_image`.
PRESETS: dict[str, GuideProtocol] = {
    "T1w": GuideProtocol(
        "IR-SPGR", tr=GUIDE_PROTOCOLS["T1w"].tr, te=GUIDE_PROTOCOLS["T1w"].te, ti=GUIDE_PROTOCOLS["T1w"].tp,
        flip=GUIDE_PROTOCOLS["T1w"].flip, td=GUIDE_PROTOCOLS["T1w"].td,
    ),
    "T2w": GuideProtocol(
        "SE-alpha", tr=GUIDE_PROTOCOLS["T2w"].tr, te=GUIDE_PROTOCOLS["T2w"].te, flip=GUIDE_PROTOCOLS["T2w"].flip
    ),
    "FLAIR": GuideProtocol("FLAIR", tr=FlairProtocol.tr, te=FlairProtocol.te, ti=FlairProtocol.ti),
}


# ---------------------------------------------------------------------------------------------
# BIDS sidecars
# ---------------------------------------------------------------------------------------------

#: Sidecar key of each protocol field. MPRAGE reads ``tr`` from RepetitionTimeExcitation and
#: ``tr_prep`` from RepetitionTimePreparation (or RepetitionTime) instead.
SIDECAR_KEYS: dict[str, str] = {
    "tr": "RepetitionTime",
    "te": "EchoTime",
    "ti": "InversionTime",
    "flip": "FlipAngle",
    "td": "SwigInversionDelay",
    "tr_prep": "RepetitionTimePreparation",
    "readout_pulses": "SwigReadoutPulses",
    "centre_pulse": "SwigCentrePulse",
}

#: Project key that names the sequence type explicitly (a key of :data:`SEQUENCES`).
SEQUENCE_KEY = "SwigSequence"

# BIDS PulseSequenceType values (upper case) that name a registered sequence.
_PULSE_SEQUENCE_TYPES = {
    "MPRAGE": "MPRAGE", "MP-RAGE": "MPRAGE", "IR-SPGR": "IR-SPGR", "IRSPGR": "IR-SPGR", "BRAVO": "IR-SPGR",
    "FLAIR": "IR", "IR": "IR", "IR-SE": "IR", "IR-TSE": "IR", "SE": "SE", "TSE": "SE", "FSE": "SE",
    "GRE": "SPGR", "GR": "SPGR", "SPGR": "SPGR", "FLASH": "SPGR",
}


def _sidecar_keys(sequence: str, meta: Mapping[str, Any]) -> dict[str, str]:
    """Sidecar key of each protocol field for ``sequence``."""
    keys = dict(SIDECAR_KEYS)
    if sequence == "MPRAGE":
        keys["tr"] = "RepetitionTimeExcitation"
        if "RepetitionTimePreparation" not in meta:
            keys["tr_prep"] = "RepetitionTime"
    return keys


def _codes(value: Any) -> set[str]:
    """Split DICOM code strings into a set: a list, or one string joined by backslash, '_', ',' or spaces."""
    if isinstance(value, str):
        for sep in ("\\", "_", ","):
            value = value.replace(sep, " ")
        return {v.upper() for v in value.split()}
    if isinstance(value, (list, tuple)):
        return {str(v).upper() for v in value}
    return set()


def _infer_sequence(meta: Mapping[str, Any], source: str) -> str:
    """Tell the sequence type of a sidecar: SwigSequence, else PulseSequenceType, else ScanningSequence."""
    if SEQUENCE_KEY in meta:
        name = meta[SEQUENCE_KEY]
        if name not in SEQUENCES:
            raise ProtocolError(f"{source}: {SEQUENCE_KEY} = {name!r} is unknown; use one of {', '.join(SEQUENCES)}")
        return name
    pulse = str(meta.get("PulseSequenceType", "")).strip().upper()
    if pulse in _PULSE_SEQUENCE_TYPES:
        return _PULSE_SEQUENCE_TYPES[pulse]
    scanning = _codes(meta.get("ScanningSequence"))
    if {"IR", "GR"} <= scanning:
        raise ProtocolError(
            f"{source}: ScanningSequence {sorted(scanning)} fits both IR-SPGR and MPRAGE; add "
            f'"{SEQUENCE_KEY}": "IR-SPGR" or "MPRAGE"'
        )
    if {"IR", "SE"} <= scanning:
        return "IR"
    if "GR" in scanning:
        return "SPGR"
    if "SE" in scanning:
        return "SE"
    raise ProtocolError(
        f"{source}: cannot tell the sequence type (no {SEQUENCE_KEY}, PulseSequenceType or ScanningSequence "
        f'with SE, GR or IR); add "{SEQUENCE_KEY}": one of {", ".join(SEQUENCES)}'
    )


def seconds_to_ms(seconds: float | str) -> float:
    """Convert seconds to ms through the decimal value as written (0.0066 s gives exactly 6.6 ms).

    Parameters
    ----------
    seconds : float or str
        A time in s, or its decimal text (e.g. a DICOM DS value).
    """
    return float(decimal.Decimal(seconds if isinstance(seconds, str) else repr(float(seconds))) * 1000)


def ms_to_seconds(ms: float | str) -> float:
    """Convert ms to seconds through the decimal value as written (6.9 ms gives exactly 0.0069 s).

    Parameters
    ----------
    ms : float or str
        A time in ms, or its decimal text (e.g. a DICOM DS value such as ``"6.9"``).
    """
    return float(decimal.Decimal(ms if isinstance(ms, str) else repr(float(ms))) / 1000)


def read_sidecar(path: str | Path) -> GuideProtocol:
    """Read a guide protocol from a BIDS-style JSON sidecar; times convert from s to ms.

    Keys: ``RepetitionTime``, ``EchoTime``, ``InversionTime`` (seconds), ``FlipAngle``
    (degrees); MPRAGE: ``RepetitionTimeExcitation`` (readout TR, s), ``RepetitionTimePreparation``
    (or ``RepetitionTime``, s), ``SwigReadoutPulses`` and optionally ``SwigCentrePulse``;
    IR-SPGR optionally ``SwigInversionDelay`` (s). The sequence type is ``SwigSequence`` (a key of
    :data:`SEQUENCES`) if present, else BIDS ``PulseSequenceType``, else DICOM
    ``ScanningSequence`` (IR with SE → IR, GR → SPGR, SE → SE; IR with GR needs
    ``SwigSequence``). Keys the sequence does not use are ignored.

    Parameters
    ----------
    path : str or Path
        The ``.json`` sidecar.

    Returns
    -------
    GuideProtocol
        Times in ms, flip angle in degrees.

    Raises
    ------
    ProtocolError
        If the file is not a JSON object, the sequence type is unknown or cannot be inferred, or a
        field the sequence needs is missing, not a single number, looks like milliseconds (a time
        above 30 s) or is implausible (see :class:`GuideProtocol`). The message starts with the
        file, names the sidecar key and says how to fix it.
    """
    source = str(path)
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"{source}: cannot read a JSON sidecar ({err}); give a BIDS JSON sidecar file") from err
    if not isinstance(meta, dict):
        raise ProtocolError(f"{source}: the sidecar is not a JSON object; write {{\"RepetitionTime\": ..., ...}}")
    sequence = _infer_sequence(meta, source)
    keys = _sidecar_keys(sequence, meta)
    names = _Names(source, keys, seconds=True)
    model = SEQUENCES[sequence]
    values: dict[str, Any] = {}
    for name in model.required + model.optional:
        if keys[name] not in meta:
            continue  # a missing required field is reported by _validate
        value = meta[keys[name]]
        if isinstance(value, list):
            raise names.error(name, f"is a list ({len(value)} values)",
                              "a guide is one image: give the sidecar of one echo or inversion, with one number")
        if name in _TIME_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
            if value > MAX_TIME_MS / 1000.0:
                raise names.error(name, f"= {value:g} looks like milliseconds",
                                  f"BIDS gives seconds: write {value / 1000.0:g}")
            value = seconds_to_ms(value)
        values[name] = value
    _validate(sequence, values, names)  # first with the sidecar's names, keys and units
    return GuideProtocol(sequence, **values)


def sidecar_fields(protocol: GuideProtocol) -> dict[str, Any]:
    """Give the BIDS sidecar keys of ``protocol`` (times in s), the inverse of :func:`read_sidecar`.

    Parameters
    ----------
    protocol : GuideProtocol
        Times in ms.

    Returns
    -------
    dict
        ``SwigSequence`` and one key per field that is set, times in seconds.
    """
    keys = _sidecar_keys(protocol.sequence, {"RepetitionTimePreparation": None})
    out: dict[str, Any] = {SEQUENCE_KEY: protocol.sequence}
    for name in _FIELDS:
        value = getattr(protocol, name)
        if value is not None:
            out[keys[name]] = ms_to_seconds(value) if name in _TIME_FIELDS else value
    return out


def load_protocol(spec: str | Path) -> GuideProtocol:
    """Get a guide protocol from a preset name (:data:`PRESETS`) or a sidecar path (:func:`read_sidecar`).

    Parameters
    ----------
    spec : str or Path
        ``"T1w"``, ``"T2w"``, ``"FLAIR"`` or the path of a ``.json`` sidecar.

    Raises
    ------
    ProtocolError
        If ``spec`` is neither a preset nor an existing file, or the sidecar is invalid.
    """
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    if not Path(spec).is_file():
        raise ProtocolError(
            f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a sidecar file; check the name or path"
        )
    return read_sidecar(spec)

